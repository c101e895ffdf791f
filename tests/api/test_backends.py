"""A remote vault writes to the real vault or refuses: it never acknowledges a write that only
reached its cache (the bug a remote vault inheriting the local write paths had).

Every public method of :class:`Vault` is classified in :mod:`gitvault.api.backend` as a read or a
write; every write has its own implementation on :class:`RemoteVault` and a driver below, and
each driver runs against a remote vault over a path, ``file://`` and ``git://``.
"""

from __future__ import annotations

import inspect
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gitvault import Vault
from gitvault.api import backend
from gitvault.api.remote import RemoteVault
from gitvault.cli import app
from gitvault.errors import ConflictError, NotAllowed, RemoteUnsupported


def public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def test_every_public_method_of_vault_is_a_read_or_a_write() -> None:
    unclassified = public(Vault) - backend.READS - backend.WRITES - backend.CONSTRUCTORS
    assert not unclassified, (
        f"classify {sorted(unclassified)} in gitvault/api/backend.py "
        "and give each write a RemoteVault implementation"
    )
    assert not backend.READS & backend.WRITES


def test_the_remote_vault_inherits_nothing_from_the_local_one() -> None:
    assert not issubclass(RemoteVault, Vault)
    assert Vault not in inspect.getmro(RemoteVault)


@pytest.mark.parametrize("name", sorted(backend.WRITES))
def test_every_write_has_its_own_remote_implementation(name: str) -> None:
    assert name in vars(RemoteVault), f"RemoteVault.{name} must push or refuse"


@pytest.mark.parametrize("name", sorted(backend.READS))
def test_every_read_is_offered_by_the_remote_vault(name: str) -> None:
    assert hasattr(RemoteVault, name)


def state(path: str) -> tuple[str, str]:
    """Every ref and the git config of the real vault: what a refused write must not change."""
    refs = subprocess.run(
        ["git", "-C", path, "for-each-ref", "--format=%(refname) %(objectname)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config = Path(path, "config").read_text()
    return refs, config


def conflict(real: Vault) -> str:
    """A kept conflict on the real vault: two agents change the same value from one base."""
    a, b = real.checkout("ca", 600), real.checkout("cb", 600)
    for agent, co, value in (("ca", a, "x"), ("cb", b, "y")):
        doc = json.loads(json.dumps(co.document))
        doc["tasks"][0]["title"] = value
        try:
            real.checkin(agent, doc, "test")
        except ConflictError as e:
            return str(e.report["id"])
    raise AssertionError("no conflict")


Write = Callable[[RemoteVault, Vault], Any]


def _checkin(rv: RemoteVault, real: Vault) -> None:
    co = rv.checkout("alice", 600)
    doc = json.loads(json.dumps(co.document))
    doc["tasks"][0]["status"] = "remote-done"
    rv.checkin("alice", doc, "remote-test", 0.8)
    assert real.read()["tasks"][0]["status"] == "remote-done"


def _patch(rv: RemoteVault, real: Vault) -> None:
    rv.checkout("alice", 600)
    rv.checkin_patch(
        "alice",
        [{"op": "replace", "path": "/tasks/0/status", "value": "patched-remote"}],
        "remote-test",
    )
    assert real.read()["tasks"][0]["status"] == "patched-remote"


def _lease(rv: RemoteVault, real: Vault) -> None:
    with rv.lease("alice", 600) as s:
        assert real.leases.get("alice") is not None
        s.doc["tasks"][0]["status"] = "via-session"
        s.commit("remote-test")
    assert real.read()["tasks"][0]["status"] == "via-session"
    assert real.leases.get("alice") is None


def _checkout(rv: RemoteVault, real: Vault) -> None:
    lease = rv.checkout("alice", 600).lease
    held = real.leases.get("alice")
    assert held is not None and held.token == lease.token


def _checkout_parts(rv: RemoteVault, real: Vault) -> None:
    co, parts = rv.checkout_parts("alice", ["/tasks/0/status"], 600)
    held = real.leases.get("alice")
    assert held is not None and held.token == co.lease.token
    assert list(parts.values.values()) == [real.read()["tasks"][0]["status"]]


def _release(rv: RemoteVault, real: Vault) -> None:
    rv.checkout("alice", 600)
    assert rv.release("alice") is not None
    assert real.leases.get("alice") is None


def _resolve(rv: RemoteVault, real: Vault) -> None:
    cid = conflict(real)
    rv.resolve(cid, take="theirs", agent="bob")
    assert real.read()["tasks"][0]["title"] == "y"
    assert not real.conflicts.all()


def _drop(rv: RemoteVault, real: Vault) -> None:
    cid = conflict(real)
    rv.drop_conflict(cid)
    assert not real.conflicts.all()


def _access(rv: RemoteVault, real: Vault) -> None:
    """Rules change only by an authenticated admin's push; these transports vouch for nobody,
    so the vault refuses (exit 5) and nothing changes (tests/system/test_hosting.py pushes
    rules as an admin over SSH and HTTP)."""
    before = state(real.path)
    with pytest.raises(NotAllowed, match="only an authenticated admin"):
        rv.change_access(lambda rules: rules.add_admin("root").grant("alice", "alice-*"), by="root")
    assert state(real.path) == before
    assert not real.access().present


REFUSED: dict[str, Write] = {
    "set_schema": lambda rv, real: rv.set_schema("tasks", {"type": "array"}),
    "config_set": lambda rv, real: rv.config_set("defaultTtl", "60"),
    "gc": lambda rv, real: rv.gc(),
    "doctor": lambda rv, real: rv.doctor(),
    "fold_branch": lambda rv, real: rv.fold_branch("refs/heads/agents/alice"),
    "install_hooks": lambda rv, real: rv.install_hooks(),
    "revert": lambda rv, real: rv.revert([str(real.head())], by="alice", source="undo"),
    "restore": lambda rv, real: rv.restore("main~1", by="alice", source="undo"),
    "quarantine": lambda rv, real: rv.quarantine("mallory", by="alice", source="undo"),
    "lift_quarantine": lambda rv, real: rv.lift_quarantine("mallory", by="alice"),
    "add_key": lambda rv, real: rv.add_key("alice", "ssh-ed25519 AAAA alice"),
    "revoke_key": lambda rv, real: rv.revoke_key("alice", "ssh-ed25519 AAAA alice"),
}
CARRIED: dict[str, Write] = {
    "checkout": _checkout,
    "release": _release,
    "checkin": _checkin,
    "checkin_patch": _patch,
    "lease": _lease,
    "resolve": _resolve,
    "drop_conflict": _drop,
    "change_access": _access,
    "checkout_parts": _checkout_parts,
}


def test_every_write_has_a_driver_here() -> None:
    assert set(REFUSED) | set(CARRIED) == backend.WRITES


@pytest.fixture(params=["path", "file-url", "git-daemon"])
def url(request: pytest.FixtureRequest, vault: Vault) -> str:
    if request.param == "path":
        return vault.path
    if request.param == "file-url":
        return "file://" + vault.path
    daemon: str = request.getfixturevalue("daemon")
    return daemon


@pytest.fixture(params=["file-url", "git-daemon"])
def remote_url(request: pytest.FixtureRequest, vault: Vault) -> str:
    """A URL the CLI treats as remote (a plain path opens the vault itself)."""
    if request.param == "file-url":
        return "file://" + vault.path
    daemon: str = request.getfixturevalue("daemon")
    return daemon


@pytest.mark.parametrize("name", sorted(CARRIED))
def test_a_carried_write_changes_the_real_vault(
    name: str, url: str, vault: Vault, tmp_path: Path
) -> None:
    CARRIED[name](RemoteVault(url, str(tmp_path / "cache")), vault)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_refused_write_changes_nothing_anywhere(
    name: str, url: str, vault: Vault, tmp_path: Path
) -> None:
    rv = RemoteVault(url, str(tmp_path / "cache"))
    before, cache_before = state(vault.path), state(rv.path)
    with pytest.raises(RemoteUnsupported, match="run it on the machine that holds the vault"):
        REFUSED[name](rv, vault)
    assert state(vault.path) == before
    assert state(rv.path) == cache_before


def test_a_patch_on_a_sharded_key_through_a_url_lands_on_the_real_vault(
    tmp_path: Path, remote_url: str, vault: Vault
) -> None:
    """The reproduction from the issue: it printed a commit and changed only the cache."""
    with vault.lease("seed", 600) as s:
        s.doc["big"] = [
            {"id": f"B-{i}", "status": "open", "note": "x" * 120} for i in range(12_000)
        ]
        s.commit("seed")
    cli = CliRunner()
    base = ["--vault", remote_url, "--workdir", str(tmp_path / "cache")]
    r = cli.invoke(app, [*base, "checkout", "alice", "600"])
    assert r.exit_code == 0, r.output
    patch = json.dumps([{"op": "replace", "path": "/big/5/status", "value": "done-remote"}])
    r = cli.invoke(
        app, [*base, "checkin", "alice", "-", "remote-test", "0.8", "--patch"], input=patch
    )
    assert r.exit_code == 0, r.output
    assert vault.show(path="/big/5/status") == "done-remote"


@pytest.mark.parametrize(
    "args",
    [
        ["schema", "set", "tasks", "SCHEMA"],
        ["config", "set", "defaultTtl", "60"],
        ["gc"],
        ["doctor"],
    ],
)
def test_the_cli_refuses_what_a_url_cannot_carry_with_exit_1(
    args: list[str], tmp_path: Path, remote_url: str, vault: Vault
) -> None:
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "array"}')
    before = state(vault.path)
    argv = [str(schema) if a == "SCHEMA" else a for a in args]
    r = CliRunner().invoke(app, ["--vault", remote_url, "--workdir", str(tmp_path / "c"), *argv])
    assert r.exit_code == 1, r.output
    assert "run it on the machine that holds the vault" in r.output
    assert state(vault.path) == before
