"""The core commands through the library: init, import, checkout, checkin."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gitvault import Vault
from gitvault.errors import (
    CodecError,
    LeaseFenced,
    LegacyImportError,
    VaultExists,
    VaultNotFound,
)

from ..conftest import EXAMPLE, Git, git_in


def test_init_makes_a_bare_repo_with_main_and_one_commit(empty_vault: Vault, git: Git) -> None:
    assert git("rev-parse", "--is-bare-repository").strip() == "true"
    assert git("symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git("rev-list", "--count", "main").strip() == "1"
    assert git("log", "-1", "--format=%(trailers:key=Source,valueonly)").strip() == "init"
    git("fsck", "--full")


def test_init_refuses_a_non_empty_path(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "keep.txt").write_text("mine")
    with pytest.raises(VaultExists):
        Vault.init(tmp_path / "v")
    assert [p.name for p in (tmp_path / "v").iterdir()] == ["keep.txt"]


def test_import_holds_every_legacy_key_in_one_commit(vault: Vault, git: Git) -> None:
    assert sorted(vault.read()) == ["agents", "bugs", "decisions", "patterns", "roadmap", "tasks"]
    assert sorted(vault.read()["agents"]) == ["coder", "planner", "reviewer"]
    assert git("log", "-1", "--format=%(trailers:key=Source,valueonly)").strip() == "legacy-import"
    files = git("ls-tree", "-r", "--name-only", "main").split()
    assert ".gitvault/legacy-eventlog/00000001.json" in files
    assert "tasks.json" in files
    original = json.loads((EXAMPLE / "tasks.json").read_text())
    assert json.loads(git("cat-file", "-p", "main:tasks.json")) == original


def test_imported_blobs_are_canonical(vault: Vault, git: Git) -> None:
    text = git("cat-file", "-p", "main:patterns.json")
    value = json.loads(text)
    assert text == json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert "café ☕" in text


def test_a_broken_legacy_file_stops_the_import_and_leaves_nothing(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy"
    shutil.copytree(EXAMPLE, legacy)
    (legacy / "bugs.json").write_text('[{"id": "B-1",]')
    with pytest.raises(LegacyImportError, match=r"bugs\.json.*line 1 column"):
        Vault.init(tmp_path / "v.git", legacy)
    assert not (tmp_path / "v.git").exists()


def test_a_legacy_file_with_a_bad_key_name_is_refused(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "my tasks.json").write_text("[]")
    with pytest.raises(LegacyImportError, match="my tasks"):
        Vault.init(tmp_path / "v.git", legacy)
    assert not (tmp_path / "v.git").exists()


def test_a_legacy_snapshot_is_taken_as_a_whole_document(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy"
    (legacy / "memory").mkdir(parents=True)
    (legacy / "tasks.json").write_text('[{"id": "old"}]')
    (legacy / "memory" / "snapshot.json").write_text('{"tasks": [{"id": "new"}], "extra": 1}')
    v = Vault.init(tmp_path / "v.git", legacy)
    assert v.read() == {"extra": 1, "tasks": [{"id": "new"}]}


def test_open_refuses_what_is_not_a_vault(tmp_path: Path) -> None:
    with pytest.raises(VaultNotFound):
        Vault.open(tmp_path / "nothing")


def test_checkout_returns_the_document_at_main(vault: Vault) -> None:
    co = vault.checkout("planner")
    assert co.document == vault.read()
    assert co.lease.base == vault.head()


def test_checkin_commits_with_author_and_trailers(vault: Vault, git: Git) -> None:
    co = vault.checkout("planner-1")
    co.document["tasks"][0]["status"] = "done"
    r = vault.checkin("planner-1", co.document, "web-research", 0.8, "")
    assert r.changed == ["tasks"] and r.commit == vault.head()
    assert git("log", "-1", "--format=%an|%s").strip() == "planner-1|checkin planner-1: tasks"
    trailers = git("log", "-1", "--format=%(trailers:unfold)").strip().splitlines()
    assert trailers == [
        "Agent-Id: planner-1",
        "Source: web-research",
        "Confidence: 0.8",
        "Justification: ",
        "Lease: 1",
        f"Base: {co.lease.base}",
        "Changed: /tasks/[id=T-001]",
    ]


def test_checkin_reuses_the_blobs_of_unchanged_keys(vault: Vault, git: Git) -> None:
    before = git("ls-tree", "main").splitlines()
    co = vault.checkout("a")
    co.document["bugs"].append({"id": "B-9"})
    vault.checkin("a", co.document, "s")
    after = git("ls-tree", "main").splitlines()
    assert [x for x in after if x not in before] == [x for x in after if x.endswith("bugs.json")]
    assert git("rev-parse", "main:.gitvault").strip() == git("rev-parse", "main~:.gitvault").strip()


def test_checkin_moves_the_lease_base_so_a_second_checkin_needs_no_merge(
    vault: Vault, git: Git
) -> None:
    co = vault.checkout("a")
    co.document["bugs"].append({"id": "B-9"})
    r1 = vault.checkin("a", co.document, "s")
    co.document["bugs"].append({"id": "B-10"})
    r2 = vault.checkin("a", co.document, "s")
    assert r2.lease is not None and r2.lease.base == r2.commit
    assert git("rev-parse", "main~").strip() == r1.commit


def test_a_proposal_equal_to_the_base_makes_no_commit(vault: Vault) -> None:
    head = vault.head()
    co = vault.checkout("a")
    r = vault.checkin("a", co.document, "s")
    assert r.noop and vault.head() == head


def test_a_key_can_be_removed_and_added(vault: Vault) -> None:
    co = vault.checkout("a")
    del co.document["patterns"]
    co.document["notes.v2"] = {"x": [1, 2]}
    r = vault.checkin("a", co.document, "s")
    assert r.changed == ["notes.v2", "patterns"]
    assert "patterns" not in vault.read() and vault.read()["notes.v2"] == {"x": [1, 2]}


def test_a_bad_key_in_a_proposal_changes_nothing(vault: Vault) -> None:
    head = vault.head()
    vault.checkout("a")
    with pytest.raises(CodecError):
        vault.checkin("a", {"../x": 1}, "s")
    assert vault.head() == head


def test_fsync_is_on_unless_the_vault_config_turns_it_off(tmp_path: Path) -> None:
    v = Vault.init(tmp_path / "v.git")
    assert v.store.fsync is True
    git_in(tmp_path / "v.git")("config", "gitvault.fsync", "false")
    assert Vault.open(tmp_path / "v.git").store.fsync is False


def test_a_fenced_checkin_is_refused_but_its_work_is_kept(vault: Vault, git: Git) -> None:
    """A newer checkout of the same agent fences the old token; the old work is not lost."""
    old = vault.checkout("planner")
    new = vault.checkout("planner")
    old.document["roadmap"]["vision"] = "from the old process"
    main = vault.head()
    with pytest.raises(LeaseFenced) as e:
        vault.checkin("planner", old.document, "late", 0.5, lease=old.lease.token)
    assert vault.head() == main and e.value.kept is not None
    assert f"kept as conflict {e.value.kept}" in str(e.value)
    kept = git("log", "-1", "--format=%P", f"refs/conflicts/{e.value.kept}").strip()
    assert kept == old.lease.base  # made on the base the old lease stood on
    vault.resolve(e.value.kept, take="theirs", agent="planner")
    assert vault.read()["roadmap"]["vision"] == "from the old process"
    assert vault.checkout("planner").lease.token > new.lease.token
