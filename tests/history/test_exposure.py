"""exposure: who wrote after having the bad change checked out, on a history built by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gitvault import Vault

from ..conftest import Cli, Git
from ..hooks.test_hooks import commit, edit, push, work


def set_in(doc: dict[str, Any], key: str, item: str, field: str, value: Any) -> None:
    next(t for t in doc[key] if t["id"] == item)[field] = value


@pytest.fixture
def known(vault: Vault, git: Git, tmp_path: Path) -> tuple[Vault, dict[str, str]]:
    """The history, oldest first (the base each writer had checked out in brackets):

    bad    alice  T-001 status            [import]
    bob    merge  T-002 status            [import: checked out before bad]  not exposed
    carol         T-001 title             [bad]         derived (same item)
    dave          T-003 status            [bad]         exposed
    bob2          T-004 status            [bob's merge]  exposed
    frank  push   tasks.json T-001 owner  [dave's]      derived, no Changed: lines
    """
    ids: dict[str, str] = {}
    stale = vault.checkout("bob").document
    doc = vault.checkout("alice").document
    set_in(doc, "tasks", "T-001", "status", "poisoned")
    ids["bad"] = str(vault.checkin("alice", doc, "web").commit)
    set_in(stale, "tasks", "T-002", "status", "done")
    ids["bob"] = str(vault.checkin("bob", stale, "ci").commit)
    for name, item, field in (("carol", "T-001", "title"), ("dave", "T-003", "status")):
        doc = vault.checkout(name).document
        set_in(doc, "tasks", item, field, f"{name} was here")
        ids[name] = str(vault.checkin(name, doc, "work").commit)
    doc = vault.checkout("bob").document
    set_in(doc, "tasks", "T-004", "status", "bob was here")
    ids["bob2"] = str(vault.checkin("bob", doc, "ci").commit)
    clone = work(vault, tmp_path, "frank")
    edit(clone, "tasks.json", '"owner": "coder"', '"owner": "frank"')  # T-001's owner
    commit(clone, "frank")
    r = push(clone, "refs/heads/main")  # a checked fast-forward: no Changed: lines
    assert r.returncode == 0, r.stderr
    ids["frank"] = git("rev-parse", "main").strip()
    assert "Changed:" not in git("log", "-1", "--format=%B", "main")
    return vault, ids


def test_exposure_of_a_commit_matches_the_hand_computed_list(
    known: tuple[Vault, dict[str, str]],
) -> None:
    vault, ids = known
    found = [(e.commit, e.kind, e.pointers) for e in vault.exposure(ids["bad"])]
    assert found == [
        (ids["carol"], "derived", ["/tasks/[id=T-001]"]),
        (ids["dave"], "exposed", ["/tasks/[id=T-003]"]),
        (ids["bob2"], "exposed", ["/tasks/[id=T-004]"]),
        (ids["frank"], "derived", ["/tasks/[id=T-001]"]),
    ]


def test_exposure_of_an_agent_since_a_time_through_the_cli(
    known: tuple[Vault, dict[str, str]], cli: Cli
) -> None:
    _vault, ids = known
    r = cli("exposure", "--agent", "alice", "--since", "2000-01-01", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [(x["commit"], x["kind"]) for x in rows] == [
        (ids["carol"], "derived"),
        (ids["dave"], "exposed"),
        (ids["bob2"], "exposed"),
        (ids["frank"], "derived"),
    ]
    text = cli("exposure", ids["bad"]).output
    assert ids["carol"][:12] in text and "derived" in text and "touched:" in text


def test_exposure_needs_a_revision_or_an_agent(
    known: tuple[Vault, dict[str, str]], cli: Cli
) -> None:
    assert cli("exposure").exit_code == 1
    assert cli("exposure", "main", "--agent", "alice").exit_code == 1


def test_quarantine_with_derived_also_reverts_the_derived_commits(
    known: tuple[Vault, dict[str, str]],
) -> None:
    vault, ids = known
    before = {t["id"]: t for t in vault.read(f"{ids['bad']}~1")["tasks"]}
    r = vault.quarantine("alice", by="admin", source="s", with_derived=True)
    assert set(r.reverted) == {ids["bad"], ids["carol"], ids["frank"]}
    tasks = {t["id"]: t for t in vault.read()["tasks"]}
    assert tasks["T-001"] == before["T-001"]
    assert tasks["T-003"]["status"] == "dave was here"  # exposed only: kept
