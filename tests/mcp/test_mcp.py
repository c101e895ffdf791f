"""The MCP server through the SDK's own client: real stdio sessions with server subprocesses.

Each server is ``python -c "...run(VAULT, agent=AGENT)"`` (what ``gitvault mcp`` calls), so the
tests cover the wire: initialize, tool schemas, structured results, isError results whose text
is the error JSON, and resources. Several servers on one vault are separate processes, as
agents on one machine would be.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import CallToolResult, TextContent, TextResourceContents

from gitvault import Vault
from gitvault.core import codec
from gitvault.errors import VaultNotFound
from gitvault.mcp.server import build_server

from ..conftest import EXAMPLE

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {
    "checkout",
    "checkin",
    "release",
    "status",
    "log",
    "show",
    "diff",
    "blame",
    "conflicts",
    "resolve",
    "query",
    "search",
    "revert",
    "restore",
    "exposure",
}
Scenario = Callable[..., Awaitable[None]]


@pytest.fixture
def vault_dir(tmp_path: Path) -> Path:
    """The issue's set-up: the bundled legacy folder imported, fsync off for speed."""
    path = tmp_path / "v.git"
    Vault.init(path, import_dir=EXAMPLE)
    subprocess.run(
        ["git", "config", "-f", str(path / "config"), "gitvault.fsync", "false"], check=True
    )
    return path


@asynccontextmanager
async def session(vault: Path, agent: str | None, log: Path) -> AsyncIterator[ClientSession]:
    """An initialized client session with a server subprocess for ``agent``."""
    args = ["-m", "gitvault", "mcp", "--vault", str(vault)]  # exactly what a client config runs
    if agent is not None:
        args += ["--agent", agent]
    params = StdioServerParameters(command=sys.executable, args=args, cwd=ROOT)
    with log.open("a", encoding="utf-8") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, read_timeout_seconds=30) as s,
        ):
            await s.initialize()
            yield s


def run_with(tmp_path: Path, vault: Path, *agents: str | None) -> Callable[[Scenario], None]:
    """Run ``scenario(*sessions)`` with one server per agent; show the servers' logs on failure."""
    log = tmp_path / "servers.log"

    def runner(scenario: Scenario) -> None:
        async def main() -> None:
            async with AsyncExitStack() as stack:
                sessions = [await stack.enter_async_context(session(vault, a, log)) for a in agents]
                await asyncio.wait_for(scenario(*sessions), timeout=60)

        try:
            asyncio.run(main())
        except BaseException as e:
            print(log.read_text(encoding="utf-8") if log.exists() else "(no server log)")
            while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
                e = e.exceptions[0]  # the task groups of the transports wrap the real failure
            raise e from None

    return runner


def text_of(result: CallToolResult) -> str:
    assert len(result.content) == 1
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def call(s: ClientSession, tool: str, **args: Any) -> dict[str, Any]:
    """A tool call that must succeed; its structured result."""
    result = await s.call_tool(tool, args)
    assert isinstance(result, CallToolResult)
    assert not result.is_error, text_of(result)
    structured: dict[str, Any] | None = result.structured_content
    assert structured is not None
    return structured


async def fail(s: ClientSession, tool: str, **args: Any) -> dict[str, Any]:
    """A tool call that must fail; the error JSON parsed from its text."""
    result = await s.call_tool(tool, args)
    assert isinstance(result, CallToolResult)
    assert result.is_error
    error: dict[str, Any] = json.loads(text_of(result))
    return error


def task(doc: dict[str, Any], task_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in doc["tasks"] if t["id"] == task_id)
    return found


def test_the_tools_are_listed_and_checkin_requires_source_and_confidence(
    tmp_path: Path, vault_dir: Path
) -> None:
    async def scenario(s: ClientSession) -> None:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        assert set(tools) == TOOLS
        checkin = tools["checkin"].input_schema
        assert {"source", "confidence", "justification"} <= set(checkin["required"])
        assert not {"document", "patch", "agent"} & set(checkin["required"])
        assert checkin["properties"]["confidence"]["maximum"] == 1
        assert tools["blame"].input_schema["required"] == ["path"]
        assert tools["checkout"].output_schema is not None
        assert all(tools[t].description for t in TOOLS)
        assert tools["status"].annotations is not None
        assert tools["status"].annotations.read_only_hint is True
        resources = (await s.list_resources()).resources
        assert [str(r.uri) for r in resources] == ["gitvault://main"]
        templates = (await s.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["gitvault://main/{key}"]

    run_with(tmp_path, vault_dir, "planner")(scenario)


def test_two_agents_merge_over_mcp_and_a_true_conflict_comes_back_as_a_json_report(
    tmp_path: Path, vault_dir: Path
) -> None:
    async def scenario(planner: ClientSession, coder: ClientSession) -> None:
        # both check out the same base and change different records: the second merges
        p, c = await call(planner, "checkout", ttl_sec=600), await call(coder, "checkout")
        assert p["lease"]["base"] == c["lease"]["base"]
        assert p["lease"]["agent"] == "planner" and c["lease"]["agent"] == "coder"
        p_doc, c_doc = copy.deepcopy(p["document"]), copy.deepcopy(c["document"])
        task(p_doc, "T-001")["status"] = "doing"
        task(c_doc, "T-002")["status"] = "done"
        first = await call(
            planner,
            "checkin",
            document=p_doc,
            source="planning",
            confidence=0.9,
            justification="user confirmed",
        )
        assert first["merged"] is False and first["changed"] == ["tasks"]
        second = await call(
            coder,
            "checkin",
            document=c_doc,
            source="ci-logs",
            confidence=0.7,
            justification="T-002 done",
        )
        assert second["merged"] is True and second["commit"] != first["commit"]
        main = Vault.open(vault_dir).read()
        assert task(main, "T-001")["status"] == "doing"
        assert task(main, "T-002")["status"] == "done"

        # both check out again and change the same value: the second is refused
        p_doc = (await call(planner, "checkout"))["document"]
        c_doc = (await call(coder, "checkout"))["document"]
        task(p_doc, "T-004")["status"] = "blocked"
        task(c_doc, "T-004")["status"] = "todo"
        won = await call(
            planner,
            "checkin",
            document=p_doc,
            source="planning",
            confidence=0.6,
            justification="waiting on review",
        )
        head = won["commit"]
        error = await fail(
            coder,
            "checkin",
            document=c_doc,
            source="ci-logs",
            confidence=0.5,
            justification="reopened",
        )
        assert error["exit_code"] == 3 and error["error"] == "ConflictError"
        [row] = error["conflicts"]
        assert row["path"] == "/tasks/[id=T-004]/status"
        assert row["pointer"] == "/tasks/3/status"
        assert (row["base"], row["current"], row["proposed"]) == ("done", "blocked", "todo")
        assert row["current_writer"] == "planner"
        assert Vault.open(vault_dir).head() == head  # main unchanged

        # the resource shows main as the vault has it, in canonical JSON
        contents = (await coder.read_resource("gitvault://main/tasks")).contents
        assert len(contents) == 1 and isinstance(contents[0], TextResourceContents)
        assert contents[0].mime_type == "application/json"
        tasks = Vault.open(vault_dir).read()["tasks"]
        assert contents[0].text == codec.dumps(tasks).decode()
        assert json.loads(contents[0].text) == tasks
        whole = (await planner.read_resource("gitvault://main")).contents[0]
        assert isinstance(whole, TextResourceContents)
        assert json.loads(whole.text) == Vault.open(vault_dir).read()

        # the kept proposal is listed and can be resolved through MCP
        [pending] = (await call(coder, "conflicts"))["conflicts"]
        assert pending["id"] == error["id"] and pending["agent"] == "coder"
        done = await call(coder, "resolve", conflict_id=error["id"], take="theirs")
        assert done["merged"] is True
        assert task(Vault.open(vault_dir).read(), "T-004")["status"] == "todo"
        assert (await call(planner, "status"))["conflicts"] == []

    run_with(tmp_path, vault_dir, "planner", "coder")(scenario)


def test_a_checkin_by_json_patch_applies_to_what_the_agent_checked_out(
    tmp_path: Path, vault_dir: Path
) -> None:
    bug = {"id": "B-900", "title": "found over MCP", "severity": "low"}

    async def scenario(s: ClientSession) -> None:
        no_lease = await fail(
            s,
            "checkin",
            patch=[{"op": "add", "path": "/bugs/-", "value": bug}],
            source="review",
            confidence=0.8,
            justification="",
        )
        assert (no_lease["error"], no_lease["exit_code"]) == ("NoLease", 4)
        before = (await call(s, "checkout"))["document"]
        patch = [
            {"op": "test", "path": "/tasks/0/id", "value": "T-001"},
            {"op": "replace", "path": "/tasks/0/status", "value": "done"},
            {"op": "add", "path": "/bugs/-", "value": bug},
            {"op": "copy", "from": "/tasks/0/owner", "path": "/roadmap/milestones/0/owner"},
        ]
        result = await call(
            s, "checkin", patch=patch, source="review", confidence=0.8, justification=""
        )
        assert result["changed"] == ["bugs", "roadmap", "tasks"]
        after = Vault.open(vault_dir).read()
        assert after["bugs"] == [*before["bugs"], bug]
        assert after["tasks"][0]["status"] == "done"
        assert after["roadmap"]["milestones"][0]["owner"] == before["tasks"][0]["owner"]
        assert after["decisions"] == before["decisions"]

        bad = await fail(
            s,
            "checkin",
            patch=[{"op": "remove", "path": "/no-such-key"}],
            source="review",
            confidence=0.8,
            justification="",
        )
        assert bad["exit_code"] == 1 and "patch does not apply" in bad["message"]
        both = await fail(
            s,
            "checkin",
            patch=[],
            document=after,
            source="review",
            confidence=0.8,
            justification="",
        )
        assert both["exit_code"] == 1 and "exactly one" in both["message"]
        assert Vault.open(vault_dir).head() == result["commit"]

    run_with(tmp_path, vault_dir, "reviewer")(scenario)


def test_a_server_with_an_agent_refuses_to_act_as_another(tmp_path: Path, vault_dir: Path) -> None:
    async def scenario(s: ClientSession) -> None:
        error = await fail(s, "checkout", agent="coder")
        assert (error["error"], error["exit_code"]) == ("InputError", 1)
        assert "'planner'" in error["message"] and "'coder'" in error["message"]
        assert (await call(s, "checkout", agent="planner"))["lease"]["agent"] == "planner"
        leases = (await call(s, "status"))["leases"]
        assert [x["agent"] for x in leases] == ["planner"]  # nothing taken for coder

    run_with(tmp_path, vault_dir, "planner")(scenario)


def test_a_server_without_an_agent_takes_it_from_each_call_and_refuses_a_call_without(
    tmp_path: Path, vault_dir: Path
) -> None:
    async def scenario(s: ClientSession) -> None:
        error = await fail(s, "checkout")
        assert error["exit_code"] == 1 and "--agent" in error["message"]
        assert (await call(s, "checkout", agent="coder"))["lease"]["agent"] == "coder"
        released = await call(s, "release", agent="coder")
        assert released["released"] is True and released["lease"]["agent"] == "coder"
        assert (await call(s, "release", agent="coder"))["released"] is False

    run_with(tmp_path, vault_dir, None)(scenario)


def test_history_tools_answer_with_structured_results(tmp_path: Path, vault_dir: Path) -> None:
    async def scenario(s: ClientSession) -> None:
        doc = (await call(s, "checkout"))["document"]
        task(doc, "T-003")["status"] = "todo"
        done = await call(
            s, "checkin", document=doc, source="planning", confidence=0.4, justification="reopened"
        )
        entries = (await call(s, "log", agent="planner", limit=2))["entries"]
        assert len(entries) <= 2  # newest first; imported legacy events may follow
        assert entries[0]["commit"] == done["commit"] and entries[0]["source"] == "planning"
        shown = await call(s, "show", rev="main~1", path="/tasks/[id=T-003]/status")
        assert shown["value"] == "done"
        diff = await call(s, "diff", rev1="main~1", rev2="main")
        assert diff["patch"] == [{"op": "replace", "path": "/tasks/2/status", "value": "todo"}]
        [blamed] = (await call(s, "blame", path="/tasks/[id=T-003]/status"))["entries"]
        assert blamed["agent"] == "planner" and blamed["justification"] == "reopened"
        bad = await fail(s, "show", rev="no-such-rev")
        assert bad["exit_code"] == 1

    run_with(tmp_path, vault_dir, "planner")(scenario)


def test_checkout_with_wait_queues_for_an_exclusive_lease(tmp_path: Path, vault_dir: Path) -> None:
    async def scenario(planner: ClientSession, coder: ClientSession) -> None:
        await call(planner, "checkout", exclusive=True, ttl_sec=1)  # expires, never released
        refused = await fail(coder, "checkout", exclusive=True)
        assert refused["exit_code"] == 4
        granted = await call(coder, "checkout", exclusive=True, wait=30)
        assert granted["lease"]["mode"] == "exclusive"
        gave_up = await fail(planner, "checkout", exclusive=True, wait=0.1)
        assert gave_up["exit_code"] == 4 and "gave up" in gave_up["message"]

    run_with(tmp_path, vault_dir, "planner", "coder")(scenario)


def test_a_wrong_vault_path_fails_when_the_server_is_built(tmp_path: Path) -> None:
    with pytest.raises(VaultNotFound):
        build_server(str(tmp_path / "missing.git"), agent="planner")
