"""gitvault through real git hosting: SSH with gitolite, and smart HTTP with Apache.

Each test runs over both servers. The vaults are hosted ones: the pusher is the user the
server authenticated (gitolite's ``GL_USER``, Apache's ``REMOTE_USER``), and each user
``U`` may act as agents ``U`` and ``U-*`` (``admin`` as anyone).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gitvault import Vault
from gitvault.cli import app
from gitvault.hooks import fmt

from ..conftest import Git, git_in
from .servers import Server

_names = itertools.count()
Run = Callable[..., Result]


@pytest.fixture(params=["ssh", "http"])
def server(request: pytest.FixtureRequest) -> Server:
    s: Server = request.getfixturevalue(f"{request.param}_server")
    return s


@pytest.fixture
def repo(server: Server) -> str:
    name = f"hosting-{next(_names)}"
    server.vault(name)
    return name


@pytest.fixture
def vault(server: Server, repo: str) -> Vault:
    return Vault.open(server.path(repo))


@pytest.fixture
def as_user(server: Server, repo: str, tmp_path: Path) -> Callable[[str], Run]:
    """The gitvault CLI against the hosted vault, authenticated as a user of the server."""
    runner = CliRunner()

    def user(name: str) -> Run:
        def go(*args: str) -> Result:
            return runner.invoke(
                app,
                [
                    "--vault",
                    server.url(name, repo),
                    "--workdir",
                    str(tmp_path / f"cache-{name}"),
                    *args,
                ],
            )

        return go

    return user


def refs(vault: Vault) -> str:
    return git_in(Path(vault.path))("for-each-ref")


def clone_as(server: Server, repo: str, user: str, tmp_path: Path, name: str = "") -> Git:
    dest = tmp_path / f"clone-{name or user}"
    r = subprocess.run(
        ["git", "clone", "-q", server.url(user, repo), str(dest)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    g = git_in(dest)
    g("config", "user.name", user)
    g("config", "user.email", f"{user}@example")
    return g


def edit(clone: Git, file: str, old: str, new: str) -> None:
    path = Path(clone("rev-parse", "--show-toplevel").strip()) / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def commit(clone: Git, *trailers: str) -> None:
    args = ["commit", "-qam", "edit"]
    for t in trailers:
        args += ["--trailer", t]
    clone(*args)


def push(clone: Git, ref: str) -> subprocess.CompletedProcess[str]:
    top = clone("rev-parse", "--show-toplevel").strip()
    return subprocess.run(
        ["git", "-C", top, "push", "origin", f"HEAD:{ref}"], capture_output=True, text=True
    )


def report(stderr: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(stderr.split("gitvault-report: ")[-1].splitlines()[0])
    return data


def write(tmp_path: Path, name: str, doc: Any) -> str:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


def test_the_remote_cli_works_as_an_authenticated_user(
    as_user: Callable[[str], Run], vault: Vault, tmp_path: Path
) -> None:
    alice = as_user("alice")
    r = alice("checkout", "alice-1", "600")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    doc["tasks"][0]["status"] = "doing"
    r = alice("checkin", "alice-1", write(tmp_path, "a.json", doc), "hosted", "0.8", "why")
    assert r.exit_code == 0, r.output
    patch = [{"op": "replace", "path": "/roadmap/vision", "value": "patched"}]
    r = alice("checkin", "alice-1", write(tmp_path, "p.json", patch), "hosted", "--patch")
    assert r.exit_code == 0, r.output
    assert vault.read()["roadmap"]["vision"] == "patched"
    r = alice("log", "-n", "1", "--json")
    assert json.loads(r.stdout)[0]["agent"] == "alice-1"
    r = alice("show", "--path", "/tasks/0/status", "--json")
    assert json.loads(r.stdout)["value"] == "doing"
    r = alice("blame", "/roadmap/vision", "--json")
    assert json.loads(r.stdout)[0]["agent"] == "alice-1"
    assert alice("release", "alice-1").exit_code == 0
    assert vault.leases.get("alice-1") is None


def test_a_conflict_is_exit_3_and_resolved_by_its_owner(
    as_user: Callable[[str], Run], vault: Vault, tmp_path: Path
) -> None:
    alice, bob = as_user("alice"), as_user("bob")
    a = json.loads(alice("checkout", "alice").stdout)
    b = json.loads(bob("checkout", "bob").stdout)
    a["roadmap"]["vision"], b["roadmap"]["vision"] = "A", "B"
    assert alice("checkin", "alice", write(tmp_path, "a.json", a), "s").exit_code == 0
    head = vault.head()
    r = bob("checkin", "bob", write(tmp_path, "b.json", b), "s")
    assert r.exit_code == 3 and vault.head() == head
    r = alice("resolve", "bob/1", "--take", "theirs")
    assert r.exit_code == 5, r.output  # alice may not act as bob
    r = bob("resolve", "bob/1", "--take", "theirs")
    assert r.exit_code == 0, r.output
    assert vault.read()["roadmap"]["vision"] == "B"


def test_a_stale_lease_is_exit_4_over_the_server(
    as_user: Callable[[str], Run], tmp_path: Path
) -> None:
    alice = as_user("alice")
    doc = json.loads(alice("checkout", "alice").stdout)
    alice("checkout", "alice")
    doc["roadmap"]["vision"] = "x"
    r = alice("checkin", "alice", write(tmp_path, "a.json", doc), "s", "--lease", "1")
    assert r.exit_code == 4, r.output


def test_four_users_pushing_at_once_as_their_own_agents_lose_nothing(
    server: Server, repo: str, vault: Vault, tmp_path: Path
) -> None:
    users = ["alice", "bob", "carol", "dave"]
    clones = {}
    for i, user in enumerate(users):
        c = clone_as(server, repo, user, tmp_path)
        edit(c, "tasks.json", f'"id": "T-00{i + 1}"', f'"id": "T-00{i + 1}", "seen_by": "{user}"')
        fmt([str(Path(c("rev-parse", "--show-toplevel").strip()) / "tasks.json")])
        commit(c, f"Agent-Id={user}-1", "Source=standup")
        clones[user] = c
    procs = [
        subprocess.Popen(
            [
                "git",
                "-C",
                clones[u]("rev-parse", "--show-toplevel").strip(),
                "push",
                "origin",
                f"HEAD:refs/heads/agents/{u}-1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for u in users
    ]
    outs = [p.communicate()[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    tasks = vault.read()["tasks"]
    assert [tasks[i].get("seen_by") for i in range(4)] == users, outs
    agents = {e.agent for e in vault.log(limit=20)}
    assert {f"{u}-1" for u in users} <= agents
    git_in(Path(vault.path))("fsck", "--full", "--strict")


def test_mallory_pushing_agents_planner_is_refused_with_exit_5(
    server: Server, repo: str, vault: Vault, tmp_path: Path
) -> None:
    c = clone_as(server, repo, "mallory", tmp_path)
    edit(c, "tasks.json", '"status": "todo"', '"status": "done"')
    commit(c, "Agent-Id=planner", "Source=s", "Confidence=0.99")
    before = refs(vault)
    r = push(c, "refs/heads/agents/planner")
    assert r.returncode != 0
    rep = report(r.stderr)
    assert (rep["exit_code"], rep["user"], rep["agent"]) == (5, "mallory", "planner")
    assert "no grant for mallory matches planner" in rep["rule"]
    assert refs(vault) == before


def test_a_commit_with_another_agents_id_is_refused_with_exit_5(
    server: Server, repo: str, vault: Vault, tmp_path: Path
) -> None:
    c = clone_as(server, repo, "mallory", tmp_path)
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Planner says: every')
    commit(c, "Agent-Id=planner", "Source=s")
    before = refs(vault)
    r = push(c, "refs/heads/agents/mallory")
    assert r.returncode != 0 and report(r.stderr)["exit_code"] == 5
    assert "Agent-Id" in r.stderr and refs(vault) == before


def test_a_lease_request_for_another_agent_is_exit_5(
    as_user: Callable[[str], Run], vault: Vault
) -> None:
    before = refs(vault)
    r = as_user("mallory")("checkout", "planner")
    assert r.exit_code == 5, r.output
    assert "'mallory' may not act as agent 'planner'" in r.stderr
    assert refs(vault) == before


def test_a_commit_with_only_agent_id_and_source_lands(
    server: Server, repo: str, vault: Vault, tmp_path: Path
) -> None:
    c = clone_as(server, repo, "carol", tmp_path)
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Carol: every')
    commit(c, "Agent-Id=carol", "Source=standup")
    r = push(c, "refs/heads/agents/carol")
    assert r.returncode == 0, r.stderr
    assert vault.read()["roadmap"]["vision"].startswith("Carol")
    assert vault.blame("/roadmap/vision")[0].confidence == 0.5


def test_a_forger_on_the_server_pushing_to_the_path_is_not_authenticated(
    server: Server, repo: str, vault: Vault, tmp_path: Path
) -> None:
    """Another account of the server machine (here root) pushes to the vault's path and
    exports the variable the host would set, naming the admin: the hook runs as that
    account, not as the hosting account, so the claim counts for nothing."""
    dest = tmp_path / "local"
    subprocess.run(["git", "clone", "-q", str(server.path(repo)), str(dest)], check=True)
    c = git_in(dest)
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Forged: every')
    c(
        "-c",
        "user.name=x",
        "-c",
        "user.email=x@x",
        "commit",
        "-qam",
        "forged",
        "--trailer",
        "Agent-Id=planner",
        "--trailer",
        "Source=s",
    )
    before = refs(vault)
    env = {**os.environ, "GL_USER": "admin", "REMOTE_USER": "admin"}
    r = subprocess.run(
        ["git", "-C", str(dest), "push", "origin", "HEAD:refs/heads/agents/planner"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode != 0 and report(r.stderr)["exit_code"] == 5
    assert "not as the hosting account" in r.stderr
    assert refs(vault) == before


def test_an_admin_grants_over_the_server_and_a_user_may_not(
    as_user: Callable[[str], Run], vault: Vault
) -> None:
    head = vault.head()
    r = as_user("mallory")("access", "grant", "mallory", "planner", "--by", "mallory")
    assert r.exit_code == 5, r.output
    assert vault.head() == head
    r = as_user("admin")("access", "grant", "mallory", "planner", "--by", "admin")
    assert r.exit_code == 0, r.output
    assert vault.access().rule_for("mallory", "planner") == "grant mallory planner"
    assert as_user("mallory")("checkout", "planner").exit_code == 0
