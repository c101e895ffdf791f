"""`gitvault integrate --watch` against Apache serving a vault whose hooks are off: the
integrator, not the host, checks and folds agents/* into main."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from gitvault import Vault
from gitvault.cli import app

from ..conftest import git_in
from .servers import ADMIN, Server
from .test_hosting import clone_as, commit, edit, push


def test_the_integrator_merges_and_refuses_on_a_host_without_hooks(
    http_server: Server, tmp_path: Path
) -> None:
    repo = "no-hooks"
    http_server.vault(repo, hooks=False)
    vault = Vault.open(http_server.path(repo))
    good = clone_as(http_server, repo, "alice", tmp_path)
    edit(good, "roadmap.json", '"vision": "Every', '"vision": "Alice: every')
    commit(good, "Agent-Id=alice", "Source=standup")
    assert push(good, "refs/heads/agents/alice").returncode == 0
    bad = clone_as(http_server, repo, "mallory", tmp_path)
    edit(bad, "tasks.json", '"status": "todo"', '"status": "done"')
    commit(bad, "Agent-Id=planner", "Source=s")
    assert push(bad, "refs/heads/agents/mallory").returncode == 0  # the host checks nothing
    head = vault.head()
    assert not vault.read()["roadmap"]["vision"].startswith("Alice")
    r = CliRunner().invoke(
        app,
        [
            "--vault",
            http_server.url(ADMIN, repo),
            "--workdir",
            str(tmp_path / "integrator"),
            "integrate",
            "--watch",
            "--rounds",
            "2",
            "--interval",
            "0",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    outcomes = {o["ref"]: o for o in json.loads(r.stdout)}
    assert outcomes["refs/heads/agents/alice"]["status"] == "merged"
    assert outcomes["refs/heads/agents/mallory"]["status"] == "refused"
    assert "does not match the branch's agent" in outcomes["refs/heads/agents/mallory"]["detail"]
    assert len(json.loads(r.stdout)) == 2  # the second round found nothing new
    assert vault.read()["roadmap"]["vision"].startswith("Alice")
    assert vault.read()["tasks"][0]["status"] != "done"
    assert vault.head() != head
    git_in(Path(vault.path))("fsck", "--full")
    assert not (Path(vault.path) / "hooks" / "post-receive").exists()
    subprocess.run(
        ["git", "ls-remote", http_server.url(ADMIN, repo)], check=True, capture_output=True
    )
