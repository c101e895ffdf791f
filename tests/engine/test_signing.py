"""Signed commits in git's ssh format: the CLI, the library and plain git sign; the vault
refuses what is unsigned or wrongly signed (exit 5, nothing changed), and ``git log
--show-signature`` agrees with ``gitvault log --json`` and ``gitvault verify``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitvault import Vault
from gitvault.engine.signing import VAULT_KEY
from gitvault.errors import NotAllowed

from ..conftest import Cli, Git
from ..hooks.test_hooks import edit, push, work
from ..model.test_access import report_of

if shutil.which("ssh-keygen") is None and os.environ.get("CI") != "true":
    pytest.skip("ssh-keygen (openssh-client) is not installed", allow_module_level=True)

DOC_EDIT = ('"status": "todo"', '"status": "doing"')


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "keys"
    folder.mkdir()
    return {name: keygen(folder / name) for name in ("alice", "bob", "alice2")}


@pytest.fixture
def signed(vault: Vault, keys: dict[str, Path], cli: Cli) -> Vault:
    """The example vault with keys for alice and bob, and requireSigned=agents."""
    for agent in ("alice", "bob"):
        assert cli("keys", "add", agent, f"{keys[agent]}.pub").exit_code == 0
    assert cli("config", "set", "requireSigned", "agents").exit_code == 0
    return vault


def signers_file(vault: Vault, tmp_path: Path, git: Git) -> Path:
    out = tmp_path / "allowed_signers"
    out.write_text(git("show", "main:.gitvault/allowed_signers"))
    return out


def show_signature(git: Git, signers: Path, rev: str = "main") -> str:
    return git(
        "-c",
        "gpg.format=ssh",
        "-c",
        f"gpg.ssh.allowedSignersFile={signers}",
        "log",
        "-1",
        "--show-signature",
        "--format=%H",
        rev,
    )


def edit_tasks(vault: Vault) -> dict[str, object]:
    doc = vault.read()
    tasks = doc["tasks"]
    assert isinstance(tasks, list)
    tasks[0]["status"] = "doing" if tasks[0]["status"] != "doing" else "done"
    return doc


def cli_checkin(
    cli: Cli,
    tmp_path: Path,
    vault: Vault,
    agent: str,
    key: Path | None,
    *extra: str,
    checkout: bool = True,
) -> object:
    if checkout:
        assert cli("checkout", agent).exit_code == 0
    proposal = tmp_path / f"proposal-{agent}.json"
    proposal.write_text(json.dumps(edit_tasks(vault)))
    sign = ["--sign-key", str(key)] if key is not None else []
    return cli(*sign, "checkin", agent, str(proposal), "test", "0.8", "why", *extra)


def refs(git: Git) -> str:
    return git("for-each-ref")


# -- the vault's own key ----------------------------------------------------------------------
def test_init_creates_a_private_vault_key_whose_public_half_is_on_main(
    empty_vault: Vault, git: Git, tmp_path: Path
) -> None:
    key = Path(empty_vault.path) / VAULT_KEY
    assert key.stat().st_mode & 0o777 == 0o600
    assert git("show", "main:.gitvault/allowed_signers").count("\ngitvault ssh-ed25519 ") == 1
    assert 'Good "git" signature for gitvault' in show_signature(
        git, signers_file(empty_vault, tmp_path, git)
    )


# -- checkins -------------------------------------------------------------------------------
def test_a_signed_cli_checkin_is_a_good_signature_for_git_and_verified_in_the_log(
    signed: Vault, keys: dict[str, Path], cli: Cli, git: Git, tmp_path: Path
) -> None:
    r = cli_checkin(cli, tmp_path, signed, "alice", keys["alice"])
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    out = show_signature(git, signers_file(signed, tmp_path, git))
    assert 'Good "git" signature for alice with ED25519 key' in out
    entry = json.loads(cli("log", "--json", "-n", "1").stdout)[0]
    assert entry["agent"] == "alice" and entry["verified"] is True
    assert entry["fingerprint"].startswith("SHA256:") and entry["fingerprint"] in out


def test_an_unsigned_checkin_is_refused_with_exit_5_and_changes_nothing(
    signed: Vault, cli: Cli, git: Git, tmp_path: Path
) -> None:
    assert cli("checkout", "alice").exit_code == 0
    before = refs(git)
    r = cli_checkin(cli, tmp_path, signed, "alice", None, checkout=False)
    assert r.exit_code == 5, r.output  # type: ignore[attr-defined]
    assert "not signed" in r.output and "requireSigned=agents" in r.output  # type: ignore
    assert refs(git) == before


def test_alice_signing_with_bobs_key_is_refused_naming_the_key_and_the_agent(
    signed: Vault, keys: dict[str, Path], cli: Cli, git: Git, tmp_path: Path
) -> None:
    assert cli("checkout", "alice").exit_code == 0
    before = refs(git)
    r = cli_checkin(cli, tmp_path, signed, "alice", keys["bob"], "--json", checkout=False)
    assert r.exit_code == 5  # type: ignore[attr-defined]
    err = json.loads(r.stdout)  # type: ignore[attr-defined]
    assert err["error"] == "NotAllowed" and err["rule"] == "gitvault.requireSigned=agents"
    assert "key of bob" in err["reason"] and "not allowed for Agent-Id alice" in err["reason"]
    assert refs(git) == before


def test_an_unsigned_patch_checkin_is_refused_and_a_signed_one_lands(
    signed: Vault, keys: dict[str, Path], cli: Cli, git: Git, tmp_path: Path
) -> None:
    assert cli("checkout", "bob").exit_code == 0
    patch = tmp_path / "patch.json"
    patch.write_text('[{"op": "replace", "path": "/tasks/0/status", "value": "done"}]')
    before = refs(git)
    assert cli("checkin", "bob", str(patch), "review", "--patch").exit_code == 5
    assert refs(git) == before
    r = cli("--sign-key", str(keys["bob"]), "checkin", "bob", str(patch), "review", "--patch")
    assert r.exit_code == 0, r.output
    assert [e.verified for e in signed.log(agent="bob", limit=1)] == [True]


def test_a_key_from_the_environment_signs_library_checkins(
    signed: Vault, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITVAULT_SIGNING_KEY", str(keys["alice"]))
    v = Vault.open(signed.path)
    with v.lease("alice") as s:
        s.doc["tasks"][0]["status"] = "done"
        r = s.commit("library", 0.9)
    assert v.verdict(r.commit).signer in ("alice", "gitvault")
    assert [e.verified for e in v.log(agent="alice", limit=1)] == [True]


def test_a_key_held_by_ssh_agent_signs_through_its_public_half(
    signed: Vault, keys: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("ssh-agent is not installed")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.02"], check=True)  # the socket appears when it listens
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        subprocess.run(
            ["ssh-add", "-q", str(keys["alice"])],
            check=True,
            env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
        )
        v = Vault.open(signed.path)
        v.sign_with(f"{keys['alice']}.pub")
        with v.lease("alice") as s:
            s.doc["tasks"][0]["status"] = "done"
            s.commit("agent-held key")
        assert v.log(agent="alice", limit=1)[0].verified is True
    finally:
        agent.terminate()
        agent.wait()


# -- rotation -------------------------------------------------------------------------------
def test_a_revoked_key_keeps_old_commits_verified_and_refuses_new_ones(
    signed: Vault, keys: dict[str, Path], cli: Cli, git: Git, tmp_path: Path
) -> None:
    assert cli_checkin(cli, tmp_path, signed, "alice", keys["alice"]).exit_code == 0  # type: ignore
    old = signed.head()
    assert cli("keys", "add", "alice", f"{keys['alice2']}.pub").exit_code == 0
    next_second()  # allowed_signers counts whole seconds: revoke after the old commit's
    assert cli("keys", "revoke", "alice", f"{keys['alice']}.pub").exit_code == 0
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert [k["revoked"] for k in listed if k["principals"] == ["alice"]] == [True, False]
    assert signed.verdict(old).verified is True  # judged at its own time
    assert "Good" in show_signature(git, signers_file(signed, tmp_path, git), str(old))
    assert cli("checkout", "alice").exit_code == 0
    before = refs(git)
    r = cli_checkin(cli, tmp_path, signed, "alice", keys["alice"], checkout=False)
    assert r.exit_code == 5 and "was revoked" in r.output, r.output  # type: ignore
    assert refs(git) == before
    assert cli_checkin(cli, tmp_path, signed, "alice", keys["alice2"]).exit_code == 0  # type: ignore
    assert cli("verify", "--require", "agents").exit_code == 0


# -- pushes ---------------------------------------------------------------------------------
def signed_commit(clone: Git, agent: str, key: Path | None) -> None:
    sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"] if key else []
    clone(
        *sign,
        "commit",
        *(["-S"] if key else []),
        "-qam",
        f"{agent} edits",
        "--trailer",
        f"Agent-Id={agent}",
        "--trailer",
        "Source=field-notes",
    )


def test_a_signed_plain_git_push_is_good_for_git_and_verified_for_gitvault(
    signed: Vault, keys: dict[str, Path], git: Git, tmp_path: Path, cli: Cli
) -> None:
    c = work(signed, tmp_path, "alice")
    edit(c, "tasks.json", *DOC_EDIT)
    signed_commit(c, "alice", keys["alice"])
    tip = c("rev-parse", "HEAD").strip()
    r = push(c, "refs/heads/agents/alice")
    assert r.returncode == 0, r.stderr
    assert 'Good "git" signature for alice' in show_signature(
        git, signers_file(signed, tmp_path, git), tip
    )
    entries = {e["commit"]: e for e in json.loads(cli("log", "--json").stdout)}
    assert entries[tip]["verified"] is True
    assert entries[signed.head() or ""]["verified"] is True  # the vault's signed merge or tip


def next_second() -> None:
    """Wait for the clock's next whole second (at most one): allowed_signers times, like git's
    commit times, are whole seconds, so a revocation in the old commit's own second would
    also end that commit's validity."""
    now = int(time.time())
    while int(time.time()) == now:
        time.sleep(0.01)


@pytest.mark.parametrize("case", ["unsigned", "bobs-key", "revoked"])
def test_a_wrongly_signed_push_is_refused_with_exit_5_and_changes_no_ref(
    case: str, signed: Vault, keys: dict[str, Path], git: Git, tmp_path: Path, cli: Cli
) -> None:
    if case == "revoked":
        next_second()  # a key revoked in its first second vouches to that second's end
        assert cli("keys", "revoke", "alice", f"{keys['alice']}.pub").exit_code == 0
    key = {"unsigned": None, "bobs-key": keys["bob"], "revoked": keys["alice"]}[case]
    c = work(signed, tmp_path, "alice")
    edit(c, "tasks.json", *DOC_EDIT)
    signed_commit(c, "alice", key)
    before = refs(git)
    r = push(c, "refs/heads/agents/alice")
    assert r.returncode != 0
    assert report_of(r.stderr)["exit_code"] == 5 and "requireSigned" in r.stderr, r.stderr
    assert refs(git) == before


def test_a_backdated_commit_with_a_revoked_key_is_refused_at_push(
    signed: Vault, keys: dict[str, Path], git: Git, tmp_path: Path, cli: Cli
) -> None:
    assert cli("keys", "revoke", "alice", f"{keys['alice']}.pub").exit_code == 0
    c = work(signed, tmp_path, "alice")
    edit(c, "tasks.json", *DOC_EDIT)
    top = c("rev-parse", "--show-toplevel").strip()
    env = {
        **os.environ,
        "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z",
        "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
    }
    subprocess.run(
        [
            "git",
            "-C",
            top,
            "-c",
            "gpg.format=ssh",
            "-c",
            f"user.signingkey={keys['alice']}",
            "commit",
            "-S",
            "-qam",
            "old",
            "--trailer",
            "Agent-Id=alice",
            "--trailer",
            "Source=s",
        ],
        check=True,
        env=env,
    )
    before = refs(git)
    r = push(c, "refs/heads/agents/alice")
    assert r.returncode != 0 and report_of(r.stderr)["exit_code"] == 5, r.stderr
    assert "valid only from" in r.stderr or "was revoked" in r.stderr
    assert refs(git) == before


def test_a_push_editing_allowed_signers_without_admin_rights_is_refused(
    signed: Vault, keys: dict[str, Path], git: Git, tmp_path: Path
) -> None:
    c = work(signed, tmp_path, "alice")
    top = Path(c("rev-parse", "--show-toplevel").strip())
    signers = top / ".gitvault" / "allowed_signers"
    signers.write_text(
        signers.read_text()
        + "alice "
        + " ".join(Path(f"{keys['bob']}.pub").read_text().split()[:2])
        + "\n"
    )
    signed_commit(c, "alice", keys["alice"])
    before = refs(git)
    r = push(c, "refs/heads/agents/alice")
    assert r.returncode != 0 and report_of(r.stderr)["exit_code"] == 5
    assert "allowed_signers, which only an authenticated admin may push" in r.stderr
    assert refs(git) == before


# -- verify, show, blame, resolve, confidence ---------------------------------------------------
def test_verify_prints_one_line_per_bad_commit_and_exits_5(
    signed: Vault, cli: Cli, git: Git
) -> None:
    assert cli("verify").exit_code == 0  # the import and the keys: the vault signed them
    git("config", "gitvault.requireSigned", "off")
    with Vault.open(signed.path).lease("mallory") as s:
        s.doc["tasks"][0]["status"] = "done"
        s.commit("unsigned")
    r = cli("verify")
    assert r.exit_code == 5
    assert r.stdout.splitlines() == [f"{signed.head()} mallory: the commit is not signed"]
    assert json.loads(cli("verify", "--json").stdout)["ok"] is False
    assert cli("verify", "--require", "off").exit_code == 0


def test_verify_finds_a_rewrite_of_main_in_its_reflog(
    signed: Vault, keys: dict[str, Path], cli: Cli, git: Git, tmp_path: Path
) -> None:
    assert cli_checkin(cli, tmp_path, signed, "alice", keys["alice"]).exit_code == 0  # type: ignore
    git("update-ref", "refs/heads/main", "main~1")
    r = cli("verify", "--require", "off")
    assert r.exit_code == 5 and "main was rewritten" in r.stdout


def test_show_and_blame_json_carry_the_verification(
    signed: Vault, keys: dict[str, Path], cli: Cli, tmp_path: Path
) -> None:
    assert cli_checkin(cli, tmp_path, signed, "alice", keys["alice"]).exit_code == 0  # type: ignore
    shown = json.loads(cli("show", "--json", "--path", "/tasks/0/status").stdout)
    assert shown["verified"] is True and shown["fingerprint"].startswith("SHA256:")
    blamed = json.loads(cli("blame", "/tasks/0/status", "--json").stdout)[0]
    assert blamed["agent"] == "alice" and blamed["verified"] is True


def test_resolving_an_unsigned_kept_proposal_is_refused_when_signatures_are_required(
    signed: Vault, keys: dict[str, Path], cli: Cli, git: Git, tmp_path: Path
) -> None:
    git("config", "gitvault.requireSigned", "off")
    v = Vault.open(signed.path)
    a = v.checkout("bob")
    with v.lease("alice") as s:
        s.doc["tasks"][0]["status"] = "done"
        s.commit("first")
    doc = a.document
    doc["tasks"][0]["status"] = "blocked"
    with pytest.raises(Exception) as conflict:
        v.checkin("bob", doc, "second")
    kept = conflict.value.to_json()["id"]  # type: ignore[attr-defined]
    git("config", "gitvault.requireSigned", "agents")
    before = refs(git)
    r = cli("resolve", kept, "--take", "theirs")
    assert r.exit_code == 5 and "not signed" in r.output, r.output
    assert refs(git) == before


def test_the_confidence_policy_ignores_an_unverified_writers_confidence(
    signed: Vault, keys: dict[str, Path], git: Git
) -> None:
    git("config", "gitvault.requireSigned", "off")
    v = Vault.open(signed.path)
    co = v.checkout("alice")
    with v.lease("mallory") as s:  # unsigned, and sure of itself
        s.doc["tasks"][0]["status"] = "mallory-says"
        s.commit("forged", 1.0)
    git("config", "gitvault.requireSigned", "agents")
    v.sign_with(str(keys["alice"]))
    doc = co.document
    doc["tasks"][0]["status"] = "alice-says"
    r = v.checkin("alice", doc, "signed", 0.3, on_conflict="confidence")
    assert v.read()["tasks"][0]["status"] == "alice-says"
    assert any("not verified" in d for d in r.resolved)


def test_require_signed_is_read_from_the_vault_file_only(
    empty_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITVAULT_REQUIRE_SIGNED", "agents")
    assert empty_vault.config_get("requireSigned") == "off"


def test_keys_add_refuses_an_agent_id_git_would_read_as_a_pattern(
    empty_vault: Vault, keys: dict[str, Path]
) -> None:
    with pytest.raises(Exception, match="cannot name a key"):
        empty_vault.add_key("intern-*", f"{keys['alice']}.pub")


def test_a_refusal_is_a_not_allowed_error_in_the_library(
    signed: Vault, keys: dict[str, Path]
) -> None:
    v = Vault.open(signed.path)
    v.sign_with(str(keys["bob"]))
    co = v.checkout("alice")
    co.document["tasks"][0]["status"] = "done"
    with pytest.raises(NotAllowed) as e:
        v.checkin("alice", co.document, "lib")
    assert e.value.exit_code == 5 and e.value.rule == "gitvault.requireSigned=agents"


@pytest.fixture(autouse=True)
def _no_stray_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("GITVAULT_SIGNING_KEY", raising=False)
    yield


def test_an_mcp_server_signs_with_the_sign_key_and_refuses_unsigned_as_is_error(
    signed: Vault, keys: dict[str, Path], tmp_path: Path
) -> None:
    import asyncio
    import sys

    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from ..mcp.test_mcp import ROOT, call, fail

    patch = [{"op": "replace", "path": "/tasks/0/status", "value": "done"}]

    async def server(*sign: str) -> None:
        args = ["-m", "gitvault", *sign, "mcp", "--vault", signed.path, "--agent", "alice"]
        params = StdioServerParameters(command=sys.executable, args=args, cwd=ROOT)
        with (tmp_path / "mcp.log").open("a") as log:
            async with stdio_client(params, errlog=log) as (r, w), ClientSession(r, w) as s:
                await s.initialize()
                await call(s, "checkout")
                if not sign:
                    err = await fail(
                        s, "checkin", patch=patch, source="mcp", confidence=0.8, justification=""
                    )
                    assert err["exit_code"] == 5 and err["verified"] == "unsigned"
                    assert err["rule"] == "gitvault.requireSigned=agents"
                    return
                await call(
                    s, "checkin", patch=patch, source="mcp", confidence=0.8, justification=""
                )
                entries = (await call(s, "log", limit=1))["entries"]
                assert entries[0]["verified"] is True and entries[0]["agent"] == "alice"

    asyncio.run(asyncio.wait_for(server(), 60))
    asyncio.run(asyncio.wait_for(server("--sign-key", str(keys["alice"])), 60))


def test_git_verify_commit_and_gitvault_agree_on_every_commit_of_a_mixed_history(
    signed: Vault, keys: dict[str, Path], git: Git, tmp_path: Path
) -> None:
    """Good, unsigned, another agent's key, a revoked key: git says whose key is good at the
    commit's time; gitvault says the same, and also whether that key is the Agent-Id's."""
    git("config", "gitvault.requireSigned", "off")
    # a clock that moves a second on every reading: each commit and the revocation get a
    # second of their own, whatever the machine's speed (git compares whole seconds)
    ticks = iter(range(1, 1_000_000))
    start = time.time()
    v = Vault.open(signed.path, clock=lambda: start + next(ticks))

    def land(agent: str, key: Path | None, status: str) -> None:
        v.sign_with(str(key) if key else None)
        with v.lease(agent) as s:
            s.doc["tasks"][0]["status"] = status
            s.commit("mixed")

    land("alice", keys["alice"], "a")
    land("alice", None, "b")
    land("alice", keys["bob"], "c")
    v.revoke_key("bob", f"{keys['bob']}.pub")
    land("bob", keys["bob"], "d")  # signed after the revocation (in its second or later)
    signers = signers_file(signed, tmp_path, git)
    seen = set()
    for e in v.log():
        if e.commit is None:
            continue  # an imported legacy event, not a commit
        rc = subprocess.run(
            [
                "git",
                "-C",
                signed.path,
                "-c",
                f"gpg.ssh.allowedSignersFile={signers}",
                "verify-commit",
                e.commit,
            ],
            capture_output=True,
            text=True,
        ).returncode
        verdict = v.verdict(e.commit)
        wrong_agent = verdict.verified is False and "not allowed for Agent-Id" in verdict.reason
        assert (rc == 0) == (verdict.verified is True or wrong_agent), (e.subject, verdict)
        seen.add(verdict.verified if not wrong_agent else "wrong-agent")
    # the revoked key's commit: good for both within the revocation's second, bad for both after
    assert {True, "unsigned", "wrong-agent"} <= seen


def test_verify_fresh_ignores_verdicts_planted_in_the_vault_folder(
    signed: Vault, cli: Cli, git: Git
) -> None:
    git("config", "gitvault.requireSigned", "off")
    with Vault.open(signed.path).lease("mallory") as s:
        s.doc["tasks"][0]["status"] = "done"
        s.commit("unsigned")
    assert cli("verify").exit_code == 5  # and its verdicts are kept
    [kept] = (Path(signed.path) / "gitvault-verified").iterdir()
    lines = kept.read_text().replace('"verified": "unsigned"', '"verified": true')
    kept.write_text(lines)
    assert cli("verify").exit_code == 0  # the kept verdicts are believed...
    assert cli("verify", "--fresh").exit_code == 5  # ...unless asked not to
