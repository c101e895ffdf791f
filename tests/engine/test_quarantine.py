"""Quarantine: an agent's writes undone and refused everywhere (CLI, patch, MCP, push) until
lifted; recorded on main where plain git reads it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession

from gitvault import Vault
from gitvault.errors import NotAllowed

from ..conftest import Cli, Git
from ..hooks.test_hooks import commit, edit, push, work
from ..mcp.test_mcp import call, fail, run_with


def change(vault: Vault, agent: str, task_id: str, value: str) -> str:
    doc = vault.checkout(agent).document
    next(t for t in doc["tasks"] if t["id"] == task_id)["status"] = value
    r = vault.checkin(agent, doc, "test", 0.5)
    assert r.commit is not None
    return r.commit


def status_of(doc: dict[str, Any], task_id: str) -> str:
    value: str = next(t for t in doc["tasks"] if t["id"] == task_id)["status"]
    return value


@pytest.fixture
def quarantined(vault: Vault) -> Vault:
    change(vault, "mallory", "T-001", "poisoned")
    change(vault, "planner", "T-002", "honest")
    vault.checkout("mallory")
    vault.quarantine("mallory", by="admin", source="incident-9")
    return vault


def test_quarantine_undoes_the_agents_writes_and_keeps_the_others(quarantined: Vault) -> None:
    doc = quarantined.read()
    assert status_of(doc, "T-001") == "todo" and status_of(doc, "T-002") == "honest"


def test_quarantine_is_recorded_on_main_and_shown_by_status(
    quarantined: Vault, git: Git, cli: Cli
) -> None:
    record = json.loads(git("show", "main:.gitvault/quarantine.json"))
    assert record["mallory"]["by"] == "admin" and record["mallory"]["source"] == "incident-9"
    st = json.loads(cli("status", "--json").output)
    assert st["quarantined"][0]["agent"] == "mallory"
    assert "mallory" in cli("status").output.split("quarantined:")[1]


def test_quarantine_revokes_the_agents_lease(quarantined: Vault, git: Git) -> None:
    assert quarantined.leases.get("mallory") is None
    assert "refs/leases/mallory" not in git("for-each-ref")


def test_a_quarantined_agent_is_refused_through_the_cli_until_lifted(
    quarantined: Vault, cli: Cli, write_json: Any
) -> None:
    r = cli("checkout", "mallory")
    assert r.exit_code == 5
    assert "quarantined since" in r.output and "by admin" in r.output
    lifted = cli("quarantine", "mallory", "--lift", "--by", "admin")
    assert lifted.exit_code == 0, lifted.output
    assert cli("checkout", "mallory").exit_code == 0
    assert cli("status", "--json").output.count('"quarantined": []') == 1


def test_a_quarantined_agent_holding_a_lease_cannot_check_in(vault: Vault) -> None:
    doc = copy.deepcopy(vault.checkout("mallory").document)
    vault.quarantine("mallory", by="admin", source="incident-9")
    head = vault.head()
    with pytest.raises(NotAllowed) as e:
        vault.checkin("mallory", doc, "again")
    assert e.value.exit_code == 5 and e.value.details["by"] == "admin"
    assert vault.head() == head


def test_a_quarantined_agent_is_refused_a_patch_checkin(quarantined: Vault, cli: Cli) -> None:
    patch = json.dumps([{"op": "replace", "path": "/tasks/0/status", "value": "again"}])
    r = cli("checkin", "mallory", "-", "again", "--patch", input=patch)
    assert r.exit_code == 5 and "quarantined since" in r.output
    r = cli("checkin", "mallory", "-", "again", "--patch", "--json", input=patch)
    assert json.loads(r.stdout)["rule"] == "quarantine"


def test_a_quarantined_agent_cannot_push_until_lifted(
    vault: Vault, git: Git, tmp_path: Path
) -> None:
    clone = work(vault, tmp_path, "mallory")
    vault.quarantine("mallory", by="admin", source="incident-9")
    clone("pull", "-q", "origin", "main")
    edit(clone, "roadmap.json", '"vision": "Every', '"vision": "Mallory says: every')
    commit(clone, "mallory")
    head = vault.head()
    r = push(clone, "refs/heads/agents/mallory")
    assert r.returncode != 0 and "quarantined since" in r.stderr
    assert '"exit_code": 5' in r.stderr
    assert vault.head() == head
    vault.lift_quarantine("mallory", by="admin")
    r = push(clone, "refs/heads/agents/mallory")
    assert r.returncode == 0, r.stderr
    assert vault.read()["roadmap"]["vision"].startswith("Mallory says")


def test_a_push_may_not_change_the_quarantine_record(
    quarantined: Vault, git: Git, tmp_path: Path
) -> None:
    clone = work(quarantined, tmp_path, "planner")
    top = Path(clone("rev-parse", "--show-toplevel").strip())
    (top / ".gitvault" / "quarantine.json").write_text("{}\n")
    commit(clone, "planner")
    r = push(clone, "refs/heads/agents/planner")
    assert r.returncode != 0 and "changes only through `gitvault quarantine`" in r.stderr
    assert json.loads(git("show", "main:.gitvault/quarantine.json"))["mallory"]


def test_a_quarantined_agents_mcp_server_refuses_every_call(
    tmp_path: Path, quarantined: Vault
) -> None:
    async def scenario(bad: ClientSession, admin: ClientSession) -> None:
        for tool, args in (
            ("checkout", {}),
            ("status", {}),
            ("checkin", {"source": "s", "confidence": 0.5, "justification": "", "patch": []}),
        ):
            error = await fail(bad, tool, **args)
            assert error["exit_code"] == 5 and error["rule"] == "quarantine", tool
        tools = {t.name for t in (await admin.list_tools()).tools}
        assert {"revert", "restore", "exposure"} <= tools and "quarantine" not in tools
        listed = await call(admin, "exposure", writer="mallory")
        assert [c["agent"] for c in listed["commits"]] == ["planner"]
        undone = await call(admin, "revert", revisions=["main~1"], source="review")
        assert undone["changed"] == ["tasks"] and undone["commit"]

    run_with(tmp_path, Path(quarantined.path), "mallory", "admin")(scenario)
    assert status_of(quarantined.read(), "T-002") == "todo"  # planner's change undone


def test_quarantine_over_mcp_needs_the_server_flag_and_lifts(tmp_path: Path, vault: Vault) -> None:
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from ..mcp.test_mcp import ROOT

    async def scenario() -> None:
        import sys

        params = StdioServerParameters(
            command=sys.executable,
            cwd=ROOT,
            args=[
                "-m",
                "gitvault",
                "mcp",
                "--vault",
                vault.path,
                "--agent",
                "admin",
                "--allow-quarantine",
            ],
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            out = await call(s, "quarantine", target="mallory", source="incident-9")
            assert out["quarantine"]["by"] == "admin"
            out = await call(s, "quarantine", target="mallory", source="ok", lift=True)
            assert out["noop"] is False

    import asyncio

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert Vault.open(vault.path).status().quarantined == []


def test_quarantine_dry_run_prints_the_patch_and_changes_nothing(vault: Vault, cli: Cli) -> None:
    change(vault, "mallory", "T-001", "poisoned")
    head = vault.head()
    r = cli("quarantine", "mallory", "--by", "admin", "--dry-run")
    assert r.exit_code == 0, r.output
    patch = json.loads(r.stdout)
    assert patch == [{"op": "replace", "path": "/tasks/0/status", "value": "todo"}]
    assert vault.head() == head and vault.status().quarantined == []


def test_quarantine_since_undoes_only_the_window(vault: Vault) -> None:
    t0 = vault.clock()
    now = [t0 + 10]
    vault = Vault.open(vault.path, clock=lambda: now[0])
    change(vault, "mallory", "T-001", "early")
    now[0] = t0 + 1000
    change(vault, "mallory", "T-002", "late")
    vault.quarantine("mallory", by="admin", source="s", since=str(t0 + 500))
    doc = vault.read()
    assert status_of(doc, "T-001") == "early" and status_of(doc, "T-002") == "todo"


def test_quarantine_twice_is_refused(quarantined: Vault, cli: Cli) -> None:
    r = cli("quarantine", "mallory", "--by", "admin")
    assert r.exit_code == 1 and "already quarantined" in r.output


def test_a_push_may_not_claim_to_be_an_undo(vault: Vault, tmp_path: Path) -> None:
    clone = work(vault, tmp_path, "mallory")
    edit(clone, "roadmap.json", '"vision": "Every', '"vision": "Hidden: every')
    commit(
        clone,
        "mallory",
        "Agent-Id=mallory",
        "Source=s",
        "Confidence=0.5",
        "Justification=j",
        "Lease=none",
        "Base=none",
        f"Reverts={vault.head()}",
    )
    r = push(clone, "refs/heads/agents/mallory")
    assert r.returncode != 0 and "Reverts:/Restores: are written by" in r.stderr


def test_nobody_can_land_a_quarantined_agents_kept_conflict(vault: Vault) -> None:
    stale = copy.deepcopy(vault.checkout("mallory").document)
    change(vault, "planner", "T-001", "planner's")
    next(t for t in stale["tasks"] if t["id"] == "T-001")["status"] = "mallory's"
    with pytest.raises(Exception, match="conflict"):
        vault.checkin("mallory", stale, "s")
    vault.quarantine("mallory", by="admin", source="s")
    with pytest.raises(NotAllowed):
        vault.resolve("mallory/1", take="theirs", agent="planner")
