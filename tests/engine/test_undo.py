"""revert and restore: undo as new commits through the checkin merge engine."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitvault import Vault
from gitvault.errors import ConflictError, InputError

from ..conftest import Cli, Git


def change(vault: Vault, agent: str, edit: Any, stale: dict[str, Any] | None = None) -> str:
    """A checkin of ``edit(doc)`` by ``agent``; from ``stale`` (an older checkout) if given."""
    doc = copy.deepcopy(stale) if stale is not None else vault.checkout(agent).document
    edit(doc)
    r = vault.checkin(agent, doc, "test", 0.5, "edit")
    assert r.commit is not None
    return r.commit


def task(doc: dict[str, Any], task_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in doc["tasks"] if t["id"] == task_id)
    return found


def set_status(task_id: str, value: str) -> Any:
    return lambda d: task(d, task_id).update(status=value)


def test_revert_of_the_last_commit_restores_the_document_before_it(vault: Vault, git: Git) -> None:
    before = vault.read()
    bad = change(vault, "coder", set_status("T-001", "wrong"))
    r = vault.revert([bad], by="admin", source="review")
    assert vault.read() == before and r.commit == vault.head()
    assert git("log", "-1", "--format=%(trailers:key=Reverts,valueonly)", "main").strip() == bad
    assert git("log", "-1", "--format=%an %(trailers:key=Agent-Id,valueonly)").split() == [
        "admin",
        "admin",
    ]
    assert git("rev-list", "--count", f"{bad}..main").strip() == "1"  # history kept, one commit
    git("fsck", "--full")


def test_revert_keeps_later_work_elsewhere(vault: Vault) -> None:
    bad = change(vault, "coder", set_status("T-001", "wrong"))
    change(vault, "planner", set_status("T-002", "later"))
    vault.revert([bad], by="admin", source="review")
    doc = vault.read()
    assert task(doc, "T-002")["status"] == "later"
    assert task(doc, "T-001")["status"] != "wrong"


def test_revert_of_a_merge_undoes_what_it_brought_in(vault: Vault, git: Git) -> None:
    stale = vault.checkout("coder").document
    change(vault, "planner", set_status("T-001", "planned"))
    merge = change(vault, "coder", set_status("T-002", "coded"), stale)
    assert len(vault.store.commit(merge).parents) == 2
    vault.revert([merge], by="admin", source="review")
    doc = vault.read()
    assert task(doc, "T-001")["status"] == "planned"  # the first parent's side stays
    assert task(doc, "T-002")["status"] == task(stale, "T-002")["status"]


def test_revert_of_a_value_changed_later_is_a_conflict_kept_and_resolvable(
    vault: Vault, git: Git, cli: Cli
) -> None:
    original = task(vault.read(), "T-001")["status"]
    bad = change(vault, "coder", set_status("T-001", "wrong"))
    change(vault, "planner", set_status("T-001", "built on wrong"))
    head = vault.head()
    r = cli("revert", bad, "--by", "admin", "--source", "review")
    assert r.exit_code == 3, r.output
    assert "/tasks/[id=T-001]/status" in r.output and "built on wrong" in r.output
    assert vault.head() == head
    assert "refs/conflicts/admin/1" in git("for-each-ref", "refs/conflicts/")
    ok = cli("resolve", "admin/1", "--take", "theirs")
    assert ok.exit_code == 0, ok.output
    assert task(vault.read(), "T-001")["status"] == original


def test_a_conflict_policy_decides_a_revert(vault: Vault) -> None:
    bad = change(vault, "coder", set_status("T-001", "wrong"))
    change(vault, "planner", set_status("T-001", "kept"))
    r = vault.revert([bad], by="admin", source="review", on_conflict="ours")
    assert task(vault.read(), "T-001")["status"] == "kept"
    assert r.resolved and "ours" in r.resolved[0]


def test_revert_with_a_path_undoes_only_that_value(vault: Vault) -> None:
    before = vault.read()

    def two(d: dict[str, Any]) -> None:
        task(d, "T-001")["status"] = "x"
        task(d, "T-002")["status"] = "y"

    bad = change(vault, "coder", two)
    vault.revert([bad], by="admin", source="review", path="/tasks/[id=T-001]/status")
    doc = vault.read()
    assert task(doc, "T-001")["status"] == task(before, "T-001")["status"]
    assert task(doc, "T-002")["status"] == "y"


def test_several_revisions_become_one_commit_with_a_reverts_trailer_each(
    vault: Vault, git: Git
) -> None:
    before = vault.read()
    first = change(vault, "coder", set_status("T-001", "a"))
    second = change(vault, "planner", set_status("T-001", "b"))  # on top of the first
    head = vault.head()
    vault.revert([first, second], by="admin", source="review")
    assert vault.read() == before
    assert git("rev-list", "--count", f"{head}..main").strip() == "1"
    reverts = git("log", "-1", "--format=%(trailers:key=Reverts,valueonly)").split()
    assert reverts == [second, first]  # newest first


def test_a_multi_commit_conflict_is_kept_so_resolve_sees_exactly_it(vault: Vault) -> None:
    a = change(vault, "coder", set_status("T-001", "a"))
    b = change(vault, "coder", set_status("T-002", "b"))
    change(vault, "planner", set_status("T-001", "later"))
    with pytest.raises(ConflictError) as e:
        vault.revert([a, b], by="admin", source="review")
    assert [c["path"] for c in e.value.report["conflicts"]] == ["/tasks/[id=T-001]/status"]
    vault.resolve(e.value.report["id"], take="ours")
    doc = vault.read()
    assert task(doc, "T-001")["status"] == "later"
    assert task(doc, "T-002")["status"] != "b"


def test_blame_after_a_revert_names_the_reverter_and_log_shows_reverts(
    vault: Vault, cli: Cli
) -> None:
    bad = change(vault, "coder", set_status("T-001", "wrong"))
    vault.revert([bad], by="reviewer-2", source="review")
    assert vault.blame("/tasks/[id=T-001]/status")[0].agent == "reviewer-2"
    entries = json.loads(cli("log", "-n", "1", "--json").output)
    assert entries[0]["reverts"] == [bad]
    assert f"reverts: {bad}" in cli("log", "-n", "1").output


def test_revert_of_a_commit_outside_main_changes_nothing(vault: Vault, cli: Cli) -> None:
    head = vault.head()
    r = cli("revert", "0" * 40, "--by", "admin", "--source", "s")
    assert r.exit_code == 1 and "unknown revision" in r.output
    assert vault.head() == head


def test_revert_dry_run_prints_the_patch_and_changes_nothing(vault: Vault, cli: Cli) -> None:
    bad = change(vault, "coder", set_status("T-001", "wrong"))
    head = vault.head()
    r = cli("revert", bad, "--by", "admin", "--source", "s", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["dry_run"] and out["commit"] is None
    assert out["patch"][0]["op"] == "replace" and out["patch"][0]["path"].endswith("/status")
    assert vault.head() == head


def test_revert_needs_provenance(vault: Vault, cli: Cli) -> None:
    bad = change(vault, "coder", set_status("T-001", "wrong"))
    assert cli("revert", bad, "--source", "s").exit_code == 2
    r = cli("revert", bad, "--by", "admin", "--source", " ")
    assert r.exit_code == 1 and "source is empty" in r.output


def test_revert_of_a_sharded_key_change(empty_vault: Vault, git: Git) -> None:
    items = [{"id": f"I-{i:05d}", "text": "x" * 200, "n": i} for i in range(6000)]
    empty_vault.checkout("seed")
    empty_vault.checkin("seed", {"items": items}, "seed")
    assert git("cat-file", "-t", "main:items").strip() == "tree"  # sharded
    bad = change(empty_vault, "coder", lambda d: d["items"][10].update(n=-1))
    change(empty_vault, "planner", lambda d: d["items"][5000].update(n=-2))
    empty_vault.revert([bad], by="admin", source="review")
    doc = empty_vault.read()
    assert doc["items"][10]["n"] == 10 and doc["items"][5000]["n"] == -2
    assert git("cat-file", "-t", "main:items").strip() == "tree"
    git("fsck", "--full")


def test_restore_at_a_time_brings_the_whole_document_back(vault: Vault, cli: Cli) -> None:
    before = vault.read()
    when = vault.store.commit(vault.head() or "").commit_time
    vault = Vault.open(vault.path, clock=lambda: when + 100.0)
    change(vault, "coder", set_status("T-001", "later"))
    r = cli("restore", "--at", str(when + 50), "--by", "admin", "--source", "s", "--json")
    assert r.exit_code == 0, r.output
    assert vault.read() == before
    assert json.loads(r.output)["changed"] == ["tasks"]


def test_restore_of_one_value_from_a_revision(vault: Vault, git: Git) -> None:
    past = vault.head()
    assert past is not None
    change(vault, "coder", set_status("T-001", "x"))
    change(vault, "coder", set_status("T-002", "y"))
    vault.restore(past, by="admin", source="s", path="/tasks/[id=T-001]/status")
    doc = vault.read()
    assert task(doc, "T-001")["status"] == task(vault.read(past), "T-001")["status"]
    assert task(doc, "T-002")["status"] == "y"
    assert git("log", "-1", "--format=%(trailers:key=Restores,valueonly)").strip() == past


def test_restore_needs_exactly_one_of_rev_or_time(vault: Vault) -> None:
    with pytest.raises(InputError):
        vault.restore(by="admin", source="s")


# -- properties --------------------------------------------------------------------------
values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner, max_size=3)
    ),
    max_leaves=6,
)
docs = st.dictionaries(st.sampled_from(["k1", "k2", "k3"]), values, max_size=3)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=docs, second=docs)
def test_revert_of_the_last_commit_restores_the_previous_document_and_twice_is_identity(
    empty_vault: Vault, first: dict[str, Any], second: dict[str, Any]
) -> None:
    empty_vault.checkout("p")
    empty_vault.checkin("p", first, "prop")
    before = empty_vault.read()
    r = empty_vault.checkin("p", second, "prop")
    after = empty_vault.read()
    if r.commit is None:
        return
    first_revert = empty_vault.revert([r.commit], by="admin", source="prop")
    assert empty_vault.read() == before
    assert first_revert.commit is not None
    empty_vault.revert([first_revert.commit], by="admin", source="prop")
    assert empty_vault.read() == after


def test_a_revert_that_loses_the_race_for_main_recomputes_on_the_new_main(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitvault.engine import undo

    bad = change(vault, "coder", set_status("T-001", "wrong"))
    land = undo._Undo.land
    raced: list[str] = []

    def racing(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not raced:  # another writer moves main between planning and landing
            raced.append(change(Vault.open(vault.path), "planner", set_status("T-002", "raced")))
        return land(self, *args, **kwargs)

    monkeypatch.setattr(undo._Undo, "land", racing)
    r = vault.revert([bad], by="admin", source="review")
    doc = vault.read()
    assert task(doc, "T-002")["status"] == "raced" and task(doc, "T-001")["status"] != "wrong"
    assert [str(p) for p in vault.store.commit(r.commit or "").parent_ids] == raced
