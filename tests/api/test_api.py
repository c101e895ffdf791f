"""The Python API beyond the four commands: sessions, JSON Patch checkins, settings, docs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gitvault import Vault
from gitvault.cli.doc import render
from gitvault.errors import InputError, LeaseFenced, NoLease

from ..conftest import Cli, Git

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_a_session_commits_and_releases_its_lease(vault: Vault, git: Git) -> None:
    with vault.lease("planner", ttl=60) as co:
        co.doc["roadmap"]["vision"] = "v2"
        r = co.commit(source="planning", confidence=0.8, justification="kick-off")
        co.doc["roadmap"]["vision"] = "v3"
        co.commit(source="planning", confidence=0.9)
    assert r.commit is not None and vault.read()["roadmap"]["vision"] == "v3"
    assert git("for-each-ref", "refs/leases/") == ""


def test_a_session_releases_its_lease_when_the_body_fails(vault: Vault) -> None:
    with pytest.raises(RuntimeError), vault.lease("planner"):
        raise RuntimeError("agent crashed")
    assert vault.leases.get("planner") is None


def test_a_session_is_fenced_by_a_newer_checkout_of_the_same_agent(vault: Vault) -> None:
    with vault.lease("planner") as co:
        vault.checkout("planner")
        co.doc["roadmap"]["vision"] = "stale"
        with pytest.raises(LeaseFenced):
            co.commit(source="s")


def test_a_json_patch_checkin_changes_only_what_it_names(vault: Vault) -> None:
    vault.checkout("a")
    before = vault.read()
    r = vault.checkin_patch(
        "a", [{"op": "replace", "path": "/tasks/0/status", "value": "review"}], "patcher", 0.7
    )
    after = vault.read()
    assert r.changed == ["tasks"] and after["tasks"][0]["status"] == "review"
    after["tasks"][0]["status"] = before["tasks"][0]["status"]
    assert after == before


@pytest.mark.parametrize(
    "patch",
    [
        [{"op": "replace", "path": "/nope/0", "value": 1}],
        [{"op": "frobnicate", "path": "/a"}],
        {"op": "add"},
        [{"op": "add", "path": "/bad key", "value": 1}],
    ],
)
def test_a_patch_that_does_not_apply_is_refused(vault: Vault, patch: Any) -> None:
    vault.checkout("a")
    head = vault.head()
    with pytest.raises(InputError):
        vault.checkin_patch("a", patch, "s")
    assert vault.head() == head


def test_a_patch_needs_a_lease(vault: Vault) -> None:
    with pytest.raises(NoLease):
        vault.checkin_patch("ghost", [], "s")


def test_cli_patch_and_dry_run(vault: Vault, cli: Cli, write_json: Callable[[Any], str]) -> None:
    cli("checkout", "a")
    ops = write_json([{"op": "add", "path": "/patterns/new", "value": {"uses": 1}}])
    r = cli("checkin", "a", ops, "s", "--patch", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "/patterns/new" in r.stdout and vault.read().get("patterns", {}).get("new") is None
    r = cli("checkin", "a", ops, "s", "--patch")
    assert r.exit_code == 0, r.output
    assert vault.read()["patterns"]["new"] == {"uses": 1}


def test_settings_resolve_flag_env_vault_default(
    vault: Vault, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert vault.config_get("defaultTtl") == 900
    assert cli("config", "set", "defaultTtl", "300").exit_code == 0
    assert Vault.open(vault.path).config_get("defaultTtl") == 300
    monkeypatch.setenv("GITVAULT_DEFAULT_TTL", "120")
    rows = {r["name"]: r for r in json.loads(cli("config", "list", "--json").stdout)}
    assert rows["defaultTtl"]["value"] == 120 and rows["defaultTtl"]["source"] == "env"
    assert Vault.open(vault.path).checkout("a").lease.ttl == 120
    assert Vault.open(vault.path).checkout("a", 30).lease.ttl == 30  # the argument wins


@pytest.mark.parametrize(
    ("name", "value"),
    [("defaultTtl", "x"), ("fsync", "maybe"), ("onConflict", "coin"), ("nope", "1")],
)
def test_bad_settings_are_refused(cli: Cli, vault: Vault, name: str, value: str) -> None:
    r = cli("config", "set", name, value)
    assert r.exit_code == 1 and r.stderr.startswith("gitvault: ")


def test_the_cli_reference_is_up_to_date() -> None:
    assert DOCS.read_text() == render(), "run: python -m gitvault.cli.doc > docs/cli.md"


def test_history_commands_through_the_cli(vault: Vault, cli: Cli) -> None:
    with vault.lease("planner") as co:
        co.doc["tasks"][3]["status"] = "review"
        co.commit(source="standup", confidence=0.9, justification="shipped")
    r = cli("log", "--path", "/tasks/[id=T-004]/status", "--json")
    assert r.exit_code == 0, r.output
    assert [e["agent"] for e in json.loads(r.stdout)][:1] == ["planner"]
    r = cli("blame", "/tasks/[id=T-004]/status", "--json")
    assert json.loads(r.stdout)[0]["source"] == "standup"
    r = cli("show", "--path", "/tasks/[id=T-004]/status")
    assert json.loads(r.stdout) == "review"
    r = cli("diff", "--format", "patch")
    assert json.loads(r.stdout) == [{"op": "replace", "path": "/tasks/3/status", "value": "review"}]
    r = cli("export", "--format", "jsonl")
    assert {json.loads(line)["key"] for line in r.stdout.splitlines()} >= {"tasks", "bugs"}
    for bad in (
        ["show", "nosuchrev"],
        ["blame", "tasks/0"],
        ["log", "--since", "yesterday-ish"],
        ["diff", "--format", "xml"],
        ["export", "--format", "csv"],
    ):
        r = cli(*bad)
        assert r.exit_code == 1, (bad, r.output)
        assert "Traceback" not in r.output


def test_every_command_but_the_servers_has_json() -> None:
    import typer

    from gitvault.cli import app

    missing = []

    def walk(cmd: Any, name: str) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for n, c in subs.items():
                walk(c, f"{name} {n}".strip())
        elif name not in ("mcp", "hook") and not any(p.name == "as_json" for p in cmd.params):
            missing.append(name)

    walk(typer.main.get_command(app), "")
    assert missing == []


def test_show_json_wraps_the_value(vault: Vault, cli: Cli) -> None:
    r = cli("show", "--path", "/roadmap/vision", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["value"] == vault.read()["roadmap"]["vision"]
