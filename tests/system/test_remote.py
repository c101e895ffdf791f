"""The four commands and conflicts against a vault behind a git URL, as against a local one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gitvault import Vault
from gitvault.api.remote import RemoteVault, is_remote
from gitvault.cli import app

from ..conftest import Git

Run = Callable[..., Result]


@pytest.fixture(params=["path", "file-url", "git-daemon"])
def target(request: pytest.FixtureRequest, vault: Vault) -> str:
    if request.param == "path":
        return vault.path
    if request.param == "file-url":
        return "file://" + vault.path
    url: str = request.getfixturevalue("daemon")
    return url


@pytest.fixture
def run(target: str, tmp_path: Path) -> Run:
    runner = CliRunner()

    def go(*args: str) -> Result:
        return runner.invoke(app, ["--vault", target, "--workdir", str(tmp_path / "cache"), *args])

    return go


def write(tmp_path: Path, name: str, doc: Any) -> str:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


def test_urls_are_told_apart_from_paths() -> None:
    assert is_remote("git://h/v.git") and is_remote("ssh://h/v") and is_remote("me@host:v.git")
    assert not is_remote("/srv/v.git") and not is_remote("vault.git")


def test_checkout_checkin_release(run: Run, vault: Vault, tmp_path: Path, git: Git) -> None:
    r = run("checkout", "alice", "600")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc == vault.read()
    doc["tasks"][0]["status"] = "doing"
    r = run("checkin", "alice", write(tmp_path, "a.json", doc), "remote-test", "0.8", "why")
    assert r.exit_code == 0, r.output
    assert vault.read()["tasks"][0]["status"] == "doing"
    assert git("log", "-1", "--format=%(trailers:key=Source,valueonly)", "main").strip() == (
        "remote-test"
    )
    assert run("release", "alice").exit_code == 0
    assert vault.leases.get("alice") is None
    r = run("checkin", "alice", write(tmp_path, "a.json", doc), "s")
    assert r.exit_code == 4, r.output


def test_a_second_agent_is_merged(run: Run, vault: Vault, tmp_path: Path) -> None:
    a = json.loads(run("checkout", "alice").stdout)
    b = json.loads(run("checkout", "bob").stdout)
    a["tasks"][0]["status"] = "doing"
    b["roadmap"]["vision"] = "Bob's vision"
    assert run("checkin", "alice", write(tmp_path, "a.json", a), "s").exit_code == 0
    r = run("checkin", "bob", write(tmp_path, "b.json", b), "s", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["merged"] is True
    doc = vault.read()
    assert doc["tasks"][0]["status"] == "doing" and doc["roadmap"]["vision"] == "Bob's vision"


def test_conflicts_are_reported_listed_and_resolved(run: Run, vault: Vault, tmp_path: Path) -> None:
    a = json.loads(run("checkout", "alice").stdout)
    b = json.loads(run("checkout", "bob").stdout)
    a["roadmap"]["vision"], b["roadmap"]["vision"] = "A", "B"
    run("checkin", "alice", write(tmp_path, "a.json", a), "s")
    head = vault.head()
    r = run("checkin", "bob", write(tmp_path, "b.json", b), "s")
    assert r.exit_code == 3, r.output
    assert "/roadmap/vision" in r.stdout and vault.head() == head
    r = run("conflicts", "--json")
    assert [c["id"] for c in json.loads(r.stdout)] == ["bob/1"]
    r = run("resolve", "bob/1", "--take", "theirs")
    assert r.exit_code == 0, r.output
    assert vault.read()["roadmap"]["vision"] == "B"


def test_exclusive_leases_hold_across_the_wire(run: Run, vault: Vault) -> None:
    assert run("checkout", "alice", "--exclusive").exit_code == 0
    r = run("checkout", "bob")
    assert r.exit_code == 4 and "exclusive" in r.stderr


def test_a_stale_token_is_fenced_remotely(run: Run, tmp_path: Path) -> None:
    doc = json.loads(run("checkout", "alice").stdout)
    run("checkout", "alice")
    doc["roadmap"]["vision"] = "x"
    r = run("checkin", "alice", write(tmp_path, "a.json", doc), "s", "--lease", "1")
    assert r.exit_code == 4, r.output


def test_an_unreachable_vault_is_exit_1(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no gitvault"):
        RemoteVault("file:///nonexistent/v.git", str(tmp_path))


def test_a_remote_exclusive_checkout_waits_in_the_vaults_queue(run: Run, vault: Vault) -> None:
    vault.checkout("alice", 1, exclusive=True)  # expires in a second; nobody releases it
    r = run("checkout", "bob", "--exclusive", "--wait", "60", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["lease"]["mode"] == "exclusive"
    assert vault.store.refs_under("refs/gitvault/queue/") == {}


def test_a_remote_waiter_that_gives_up_is_exit_4(run: Run, vault: Vault) -> None:
    vault.checkout("alice", 60, exclusive=True)
    r = run("checkout", "bob", "--exclusive", "--wait", "0.2")
    assert r.exit_code == 4 and "gave up" in r.stderr, r.output
    assert vault.leases.get("bob") is None
    assert vault.store.refs_under("refs/gitvault/queue/") == {}
