"""Plain git pushes need only what git does not know: Agent-Id and Source."""

from __future__ import annotations

from pathlib import Path

from gitvault import Vault

from ..conftest import Git
from .test_hooks import commit, edit, push, refs, work


def test_a_commit_with_only_agent_id_and_source_lands(
    vault: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(vault, tmp_path, "alice")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Two trailers: every')
    commit(c, "alice", "Agent-Id=alice", "Source=standup")
    parent = c("rev-parse", "HEAD^").strip()
    r = push(c, "refs/heads/agents/alice")
    assert r.returncode == 0, r.stderr
    assert vault.read()["roadmap"]["vision"].startswith("Two trailers")
    entry = vault.log(path="/roadmap/vision")[0]
    assert (entry.agent, entry.source, entry.confidence, entry.justification) == (
        "alice",
        "standup",
        0.5,
        "",
    )
    assert entry.base == parent
    git("fsck", "--full")


def test_a_commit_without_source_is_refused(vault: Vault, git: Git, tmp_path: Path) -> None:
    c = work(vault, tmp_path, "alice")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "X')
    commit(c, "alice", "Agent-Id=alice")
    before = refs(git)
    r = push(c, "refs/heads/agents/alice")
    assert r.returncode != 0 and "missing trailer Source:" in r.stderr
    assert "missing trailer Base" not in r.stderr and "missing trailer Lease" not in r.stderr
    assert refs(git) == before


def test_a_given_lease_trailer_that_is_no_token_is_refused(
    vault: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(vault, tmp_path, "alice")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "X')
    commit(c, "alice", "Agent-Id=alice", "Source=s", "Lease=soon")
    before = refs(git)
    r = push(c, "refs/heads/agents/alice")
    assert r.returncode != 0 and "is not a lease token" in r.stderr
    assert refs(git) == before


def test_a_given_lease_push_option_is_still_checked(vault: Vault, git: Git, tmp_path: Path) -> None:
    c = work(vault, tmp_path, "alice")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "X')
    commit(c, "alice", "Agent-Id=alice", "Source=s", "Lease=3")
    before = refs(git)
    top = c("rev-parse", "--show-toplevel").strip()
    import subprocess

    r = subprocess.run(
        ["git", "-C", top, "push", "-o", "lease=3", "origin", "HEAD:refs/heads/agents/alice"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "holds no lease" in r.stderr
    assert refs(git) == before
