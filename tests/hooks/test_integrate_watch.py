"""`gitvault integrate`: agents/* folded into main from outside, for a host without hooks.

Here the host is a vault path with its hooks removed; tests/system/test_integrate_hosted.py
does the same against Apache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gitvault import Vault
from gitvault.cli import app

from ..conftest import Git
from .test_hooks import commit, edit, push, work


@pytest.fixture
def hookless(vault: Vault) -> Vault:
    for name in ("pre-receive", "post-receive"):
        (Path(vault.path) / "hooks" / name).unlink()
    return vault


def integrate(url: str, tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(
        app,
        ["--vault", url, "--workdir", str(tmp_path / "integrator"), "integrate", "--json", *args],
    )


def test_a_pushed_branch_is_merged_by_the_integrator(
    hookless: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(hookless, tmp_path, "alice")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Alice: every')
    commit(c, "alice", "Agent-Id=alice", "Source=s")
    assert push(c, "refs/heads/agents/alice").returncode == 0
    assert not hookless.read()["roadmap"]["vision"].startswith("Alice")  # no hooks ran
    r = integrate(hookless.path, tmp_path)
    assert r.exit_code == 0, r.output
    assert [o["status"] for o in json.loads(r.stdout)] == ["merged"]
    assert hookless.read()["roadmap"]["vision"].startswith("Alice")
    assert json.loads(integrate(hookless.path, tmp_path).stdout) == []  # nothing left
    git("fsck", "--full")


def test_the_integrator_refuses_what_pre_receive_would(hookless: Vault, tmp_path: Path) -> None:
    c = work(hookless, tmp_path, "mallory")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Forged')
    commit(c, "mallory", "Agent-Id=planner", "Source=s")
    push(c, "refs/heads/agents/mallory")
    head = hookless.head()
    r = integrate(hookless.path, tmp_path)
    (o,) = json.loads(r.stdout)
    assert o["status"] == "refused" and "does not match the branch's agent" in o["detail"]
    assert hookless.head() == head


def test_a_conflict_is_kept_once_and_main_is_unchanged(hookless: Vault, tmp_path: Path) -> None:
    a, b = work(hookless, tmp_path, "alice"), work(hookless, tmp_path, "bob")
    edit(a, "roadmap.json", '"vision": "Every', '"vision": "A')
    commit(a, "alice", "Agent-Id=alice", "Source=s")
    edit(b, "roadmap.json", '"vision": "Every', '"vision": "B')
    commit(b, "bob", "Agent-Id=bob", "Source=s")
    push(a, "refs/heads/agents/alice")
    push(b, "refs/heads/agents/bob")
    r = integrate(hookless.path, tmp_path, "--watch", "--rounds", "2", "--interval", "0")
    outcomes = json.loads(r.stdout)
    assert [(o["ref"], o["status"]) for o in outcomes] == [
        ("refs/heads/agents/alice", "merged"),
        ("refs/heads/agents/bob", "conflict"),
    ]
    assert hookless.read()["roadmap"]["vision"].startswith("A agent")
    assert [p["id"] for p in hookless.pending_conflicts()] == ["bob/1"]
