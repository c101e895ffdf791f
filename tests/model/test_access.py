"""Access rules on main and the authenticated pusher in the hooks (local pushes; the real
gitolite and Apache servers are in tests/system/test_hosting.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gitvault import Vault
from gitvault.cli import app
from gitvault.errors import InputError
from gitvault.model.access import ACCESS_PATH, Rules

from ..conftest import EXAMPLE, Cli, Git, fast, git_in
from ..hooks.test_hooks import commit, edit, refs, work


def report_of(stderr: str) -> dict[str, object]:
    line = stderr.split("gitvault-report: ")[-1].splitlines()[0].strip()
    data: dict[str, object] = json.loads(line)
    return data


@pytest.fixture
def hosted(vault_path: Path, cli: Cli) -> Vault:
    """A vault as a host serves it: identity required, taken from $REMOTE_USER, rules set.

    The hooks of a local push run as this test's uid, which owns the vault: the hosting
    account itself, whom the vault trusts (tests/system/ pushes through real servers)."""
    r = cli(
        "init", "--import", str(EXAMPLE), "--hosted", "--identity-from", "http", "--admin", "root"
    )
    assert r.exit_code == 0, r.output
    fast(vault_path)
    for user, pattern in (("alice", "alice"), ("alice", "alice-*"), ("mallory", "mallory")):
        assert cli("access", "grant", user, pattern).exit_code == 0
    return Vault.open(vault_path)


def push_as(
    user: str | None, clone: Git, ref: str, *options: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REMOTE_USER", "GL_USER")}
    if user is not None:
        env["REMOTE_USER"] = user
    top = clone("rev-parse", "--show-toplevel").strip()
    args = ["git", "-C", top, "push"]
    for o in options:
        args += ["-o", o]
    return subprocess.run([*args, "origin", f"HEAD:{ref}"], capture_output=True, text=True, env=env)


def test_grants_are_a_commit_on_main_readable_with_plain_git(
    hosted: Vault, git: Git, cli: Cli
) -> None:
    stored = json.loads(git("show", f"main:{ACCESS_PATH}"))
    assert stored == {
        "admins": ["root"],
        "grants": {"alice": ["alice", "alice-*"], "mallory": ["mallory"]},
        "version": 1,
    }
    assert git("log", "-1", "--format=%s", "main").strip() == "access: grant mallory mallory"
    r = cli("access", "list")
    assert r.stdout.splitlines() == [
        "admin root",
        "grant alice alice",
        "grant alice alice-*",
        "grant mallory mallory",
    ]


def test_revoke_and_admin_remove_change_the_rules(hosted: Vault, cli: Cli) -> None:
    assert cli("access", "revoke", "alice", "alice-*").exit_code == 0
    assert cli("access", "admin", "add", "carol").exit_code == 0
    assert cli("access", "admin", "remove", "root").exit_code == 0
    r = cli("access", "list", "--json")
    data = json.loads(r.stdout)
    assert data["admins"] == ["carol"] and data["grants"]["alice"] == ["alice"]


def test_revoking_a_grant_nobody_has_is_exit_1_and_changes_nothing(hosted: Vault, cli: Cli) -> None:
    head = hosted.head()
    r = cli("access", "revoke", "bob", "bob")
    assert r.exit_code == 1 and "no grant" in r.stderr and hosted.head() == head


def test_access_may_names_the_rule_or_exits_5(hosted: Vault, cli: Cli) -> None:
    assert cli("access", "may", "alice", "alice-7").stdout.strip() == "grant alice alice-*"
    assert cli("access", "may", "root", "planner").stdout.strip() == "admin root"
    r = cli("access", "may", "mallory", "planner", "--json")
    assert r.exit_code == 5 and json.loads(r.stdout)["rule"].endswith("matches planner")


def test_init_hosted_requires_identity_and_local_vaults_do_not(
    hosted: Vault, tmp_path: Path
) -> None:
    assert hosted.config_get("requireIdentity") is True
    plain = Vault.init(tmp_path / "plain.git")
    assert plain.config_get("requireIdentity") is False


def test_require_identity_cannot_be_turned_off_from_the_environment(
    hosted: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITVAULT_REQUIRE_IDENTITY", "false")
    monkeypatch.setenv("GITVAULT_IDENTITY_FROM", "none")
    assert hosted.config_get("requireIdentity") is True
    assert hosted.config_get("identityFrom") == "http"


def test_a_granted_user_pushes_as_its_agent(hosted: Vault, tmp_path: Path) -> None:
    c = work(hosted, tmp_path, "alice-1")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Alice-1: every')
    commit(c, "alice-1", "Agent-Id=alice-1", "Source=s")
    r = push_as("alice", c, "refs/heads/agents/alice-1")
    assert r.returncode == 0, r.stderr
    assert hosted.read()["roadmap"]["vision"].startswith("Alice-1")


def test_mallory_pushing_agents_planner_is_refused_with_exit_5(
    hosted: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(hosted, tmp_path, "planner")
    edit(c, "tasks.json", '"status": "todo"', '"status": "done"')
    commit(c, "planner", "Agent-Id=planner", "Source=s", "Confidence=0.99")
    before = refs(git)
    r = push_as("mallory", c, "refs/heads/agents/planner")
    assert r.returncode != 0
    rep = report_of(r.stderr)
    assert rep["exit_code"] == 5 and rep["user"] == "mallory" and rep["agent"] == "planner"
    assert "user 'mallory' may not act as agent 'planner'" in r.stderr
    assert refs(git) == before


def test_a_commit_with_another_agents_id_on_ones_own_branch_is_refused(
    hosted: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(hosted, tmp_path, "mallory")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "M')
    commit(c, "mallory", "Agent-Id=planner", "Source=s")
    before = refs(git)
    r = push_as("mallory", c, "refs/heads/agents/mallory")
    assert r.returncode != 0 and report_of(r.stderr)["exit_code"] == 5
    assert "Agent-Id" in r.stderr and refs(git) == before


def test_a_forger_exporting_remote_user_over_a_local_path_is_not_authenticated(
    hosted: Vault, git: Git, tmp_path: Path
) -> None:
    """Without gitvault.identityFrom the host vouches for nobody: REMOTE_USER=root (an admin)
    exported by hand is the pusher's own claim, and a hosted vault refuses the push."""
    subprocess.run(
        ["git", "-C", hosted.path, "config", "gitvault.identityFrom", "none"], check=True
    )
    c = work(hosted, tmp_path, "planner")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Forged')
    commit(c, "planner", "Agent-Id=planner", "Source=s")
    before = refs(git)
    r = push_as("root", c, "refs/heads/agents/planner")
    assert r.returncode != 0
    rep = report_of(r.stderr)
    assert rep["exit_code"] == 5 and rep["rule"] == "gitvault.requireIdentity"
    assert "anyone pushing to a path can set it" in r.stderr
    assert refs(git) == before


def test_a_forger_who_is_not_the_hosting_account_is_not_authenticated(
    hosted: Vault, git: Git, tmp_path: Path
) -> None:
    """identityFrom=http, but the vault belongs to another account than the one running the
    hook: the variable was set by whoever pushed through the filesystem."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the vault to another uid")
    config = Path(hosted.path) / "config"
    os.chown(config, 65534, 65534)
    try:
        c = work(hosted, tmp_path, "planner")
        edit(c, "roadmap.json", '"vision": "Every', '"vision": "Forged')
        commit(c, "planner", "Agent-Id=planner", "Source=s")
        before = refs(git)
        r = push_as("root", c, "refs/heads/agents/planner")
        assert r.returncode != 0 and report_of(r.stderr)["exit_code"] == 5
        assert "not as the hosting account" in r.stderr and refs(git) == before
    finally:
        os.chown(config, 0, 0)


def test_a_hosted_vault_refuses_a_push_with_no_user(
    hosted: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(hosted, tmp_path, "alice")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "A')
    commit(c, "alice", "Agent-Id=alice", "Source=s")
    before = refs(git)
    r = push_as(None, c, "refs/heads/agents/alice")
    assert r.returncode != 0 and report_of(r.stderr)["exit_code"] == 5
    assert refs(git) == before


def test_only_an_admin_may_push_a_change_of_the_access_file(
    hosted: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(hosted, tmp_path, "alice")
    top = Path(c("rev-parse", "--show-toplevel").strip())
    rules = Rules.from_json(json.loads((top / ACCESS_PATH).read_text())).grant("alice", "*")
    from gitvault.core.codec import dumps

    (top / ACCESS_PATH).write_bytes(dumps(rules.to_json()))
    commit(c, "alice", "Agent-Id=alice", "Source=s")
    before = refs(git)
    r = push_as("alice", c, "refs/heads/main")
    assert r.returncode != 0 and report_of(r.stderr)["exit_code"] == 5
    assert "only an authenticated admin may push" in r.stderr and refs(git) == before
    c(
        "commit",
        "-q",
        "--amend",
        "-m",
        "root widens alice",
        "--trailer",
        "Agent-Id=root",
        "--trailer",
        "Source=s",
    )
    r = push_as("root", c, "refs/heads/main")
    assert r.returncode == 0, r.stderr
    assert hosted.access().rule_for("alice", "planner") == "grant alice *"


def test_an_unauthenticated_push_may_not_change_the_access_file_of_a_local_vault(
    vault: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(vault, tmp_path, "alice")
    top = Path(c("rev-parse", "--show-toplevel").strip())
    (top / ".gitvault").mkdir(exist_ok=True)
    (top / ACCESS_PATH).write_text('{\n  "admins": [\n    "alice"\n  ]\n}\n')
    c("add", ACCESS_PATH)
    commit(c, "alice", "Agent-Id=alice", "Source=s")
    before = refs(git)
    r = push_as("alice", c, "refs/heads/agents/alice")
    assert r.returncode != 0 and "only an authenticated admin" in r.stderr
    assert refs(git) == before


def remote_cli(
    url: str, tmp_path: Path, user: str, *args: str, monkeypatch: pytest.MonkeyPatch
) -> Result:
    monkeypatch.setenv("REMOTE_USER", user)
    return CliRunner().invoke(
        app, ["--vault", url, "--workdir", str(tmp_path / f"c-{user}"), *args]
    )


def test_a_lease_request_for_another_agent_is_exit_5_and_changes_nothing(
    hosted: Vault, git: Git, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = refs(git)
    r = remote_cli(
        "file://" + hosted.path, tmp_path, "mallory", "checkout", "planner", monkeypatch=monkeypatch
    )
    assert r.exit_code == 5, r.output
    assert "may not act as agent 'planner'" in r.stderr
    assert refs(git) == before
    r = remote_cli(
        "file://" + hosted.path, tmp_path, "mallory", "checkout", "mallory", monkeypatch=monkeypatch
    )
    assert r.exit_code == 0, r.output


def test_an_admin_changes_the_rules_remotely_and_others_may_not(
    hosted: Vault, git: Git, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "file://" + hosted.path
    head = hosted.head()
    r = remote_cli(
        url, tmp_path, "mallory", "access", "grant", "mallory", "planner", monkeypatch=monkeypatch
    )
    assert r.exit_code == 5, r.output
    assert hosted.head() == head
    r = remote_cli(
        url,
        tmp_path,
        "root",
        "access",
        "grant",
        "bob",
        "bob",
        "--by",
        "root",
        monkeypatch=monkeypatch,
    )
    assert r.exit_code == 0, r.output
    assert hosted.access().rule_for("bob", "bob") == "grant bob bob"
    git_in(Path(hosted.path))("fsck", "--full")


def test_grants_from_many_processes_at_once_all_land(hosted: Vault, git: Git) -> None:
    """Each grant is a compare-and-swap on main: racing writers retry, none is lost."""
    import sys

    users = [f"u{i}" for i in range(6)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gitvault",
                "--vault",
                hosted.path,
                "access",
                "grant",
                u,
                f"{u}-*",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for u in users
    ]
    errs = [p.communicate()[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    rules = hosted.access()
    assert all(rules.rule_for(u, f"{u}-1") == f"grant {u} {u}-*" for u in users)
    assert rules.rule_for("alice", "alice-2") == "grant alice alice-*"
    git("fsck", "--full")


def test_an_access_file_with_a_section_this_gitvault_does_not_know_is_refused() -> None:
    """A later gitvault's rule (path rules, signers) must not be silently ignored."""
    bad = {"admins": ["root"], "grants": {}, "paths": {"x": ["/y"]}, "version": 2}
    with pytest.raises(InputError, match="unknown section"):
        Rules.from_json(bad)
    assert Rules.from_json({"admins": [], "grants": {}}).present


def test_identity_from_env_reads_only_the_variables_the_vault_names(
    hosted: Vault, git: Git, tmp_path: Path
) -> None:
    """A host of one's own (a forced ssh command setting GITVAULT_USER, say): the vault names
    the variable; REMOTE_USER, which that host never sets, is ignored."""
    g = git_in(Path(hosted.path))
    g("config", "gitvault.identityFrom", "env")
    g("config", "gitvault.identityVariables", "GITVAULT_TEST_USER")
    c = work(hosted, tmp_path, "alice")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Alice: every')
    commit(c, "alice", "Agent-Id=alice", "Source=s")
    before = refs(git)
    r = push_as("alice", c, "refs/heads/agents/alice")  # REMOTE_USER only
    assert r.returncode != 0 and report_of(r.stderr)["rule"] == "gitvault.requireIdentity"
    assert refs(git) == before
    top = c("rev-parse", "--show-toplevel").strip()
    env = {**os.environ, "GITVAULT_TEST_USER": "alice"}
    r = subprocess.run(
        ["git", "-C", top, "push", "origin", "HEAD:refs/heads/agents/alice"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert hosted.read()["roadmap"]["vision"].startswith("Alice")
