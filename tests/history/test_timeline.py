"""The review page's timeline query: the same entries as `gitvault log`, a page at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gitvault import Vault
from gitvault.errors import InputError
from gitvault.history import revision
from gitvault.history.timeline import Filters, page, revision_at


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def history_vault(vault: Vault, vault_path: Path) -> Vault:
    """Twelve checkins by three agents a minute apart, each setting one task's status."""
    clock = Clock()
    v = Vault.open(vault_path, clock=clock)
    for i in range(12):
        clock.now += 60
        agent = ("planner", "coder", "reviewer")[i % 3]
        co = v.checkout(agent, 600)
        co.document["tasks"][i % 4]["status"] = f"s{i}"
        if i % 4 == 3:
            co.document["bugs"][0]["open"] = i % 8 == 3
        v.checkin(agent, co.document, f"src{i % 2}", 0.5, f"step {i}")
    return v


def ids(entries: list[Any]) -> list[str | None]:
    return [e.commit or e.legacy_file for e in entries]


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"agent": "coder"},
        {"source": "src1"},
        {"key": "bugs"},
        {"path": "/tasks/[id=T-002]/status"},
        {"path": "/tasks/[id=T-002]"},
        {"agent": "planner", "key": "tasks"},
    ],
)
def test_a_page_holds_what_log_finds_with_the_same_filters(
    history_vault: Vault, filters: dict[str, str]
) -> None:
    everything = page(history_vault.store, Filters(**filters), 0, 1000)
    assert ids(everything.entries) == ids(history_vault.log(**filters))  # type: ignore[arg-type]
    assert not everything.more


def test_pages_follow_each_other_without_overlap(history_vault: Vault) -> None:
    whole = ids(history_vault.log())
    pages = [page(history_vault.store, Filters(), n * 5, 5) for n in range(4)]
    assert [p.more for p in pages] == [True, True, True, False]
    assert [i for p in pages for i in ids(p.entries)] == whole


def test_a_filtered_page_counts_only_matches(history_vault: Vault) -> None:
    coder = ids(history_vault.log(agent="coder"))
    first, second = (page(history_vault.store, Filters(agent="coder"), n * 3, 3) for n in range(2))
    assert ids(first.entries) + ids(second.entries) == coder[:6]
    assert first.more


def test_a_time_range_keeps_the_commits_inside_it(history_vault: Vault) -> None:
    entries = history_vault.log()
    times = sorted(e.time for e in entries if e.commit and e.agent != "gitvault")
    lo, hi = str(times[3]), str(times[6])
    got = page(history_vault.store, Filters(since=lo, until=hi), 0, 100).entries
    assert ids(got) == ids(history_vault.log(since=lo, until=hi))
    assert len(got) == 4


def test_a_bad_pointer_is_an_input_error(history_vault: Vault) -> None:
    with pytest.raises(InputError):
        page(history_vault.store, Filters(path="tasks"), 0, 10)


def test_revision_at_a_time_is_what_show_at_means(history_vault: Vault) -> None:
    entries = [e for e in history_vault.log() if e.commit and not e.merged]
    middle = entries[len(entries) // 2]
    assert middle.time is not None
    for at in (str(middle.time), str(middle.time + 30)):
        assert (
            revision_at(history_vault.store, None, at).id
            == revision(history_vault.store, None, at).id
        )
    with pytest.raises(InputError, match="history starts"):
        revision_at(history_vault.store, None, "2001-01-01")
