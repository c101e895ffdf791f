"""MCP resource subscriptions over stdio: a subscribed agent hears of another agent's checkin.

Each agent has its own server subprocess (what a client config runs); the subscriber's server
learns of the other server's checkin only from the vault on disk. Waits are on notifications
with a timeout, never sleeps.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import ResourceUpdatedNotification, TextResourceContents

from gitvault import Vault
from gitvault.core import codec

from .test_mcp import ROOT, call, vault_dir

__all__ = ["vault_dir"]  # the fixture, imported for pytest
# the SDK marks resources/subscribe as removed from the 2026-07-28 protocol; clients of the
# handshake era (what `initialize` negotiates) still use it
pytestmark = pytest.mark.filterwarnings("ignore:resources/subscribe is removed")


@asynccontextmanager
async def listening(
    vault: Path, agent: str, log: Path
) -> AsyncIterator[tuple[ClientSession, asyncio.Queue[str]]]:
    """A session whose ``notifications/resources/updated`` URIs arrive on a queue."""
    updates: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updates.put_nowait(str(message.params.uri))

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gitvault", "mcp", "--vault", str(vault), "--agent", agent],
        cwd=ROOT,
    )
    with log.open("a", encoding="utf-8") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, read_timeout_seconds=30, message_handler=on_message) as s,
        ):
            await s.initialize()
            yield s, updates


def run(coro: Any, log: Path) -> None:
    try:
        asyncio.run(asyncio.wait_for(coro, timeout=60))
    except BaseException:
        print(log.read_text(encoding="utf-8") if log.exists() else "(no server log)")
        raise


def test_the_server_announces_resource_subscriptions(tmp_path: Path, vault_dir: Path) -> None:
    log = tmp_path / "servers.log"

    async def scenario() -> None:
        async with listening(vault_dir, "planner", log) as (s, _updates):
            caps = s.server_capabilities
            assert caps is not None and caps.resources is not None
            assert caps.resources.subscribe is True

    run(scenario(), log)


def test_a_subscriber_to_tasks_is_told_when_another_agent_changes_tasks(
    tmp_path: Path, vault_dir: Path
) -> None:
    log = tmp_path / "servers.log"

    async def scenario() -> None:
        async with (
            listening(vault_dir, "planner", log) as (planner, updates),
            listening(vault_dir, "coder", log) as (coder, _),
        ):
            await planner.subscribe_resource("gitvault://main/tasks")
            await planner.subscribe_resource("gitvault://main/bugs")
            await call(coder, "checkout")
            await call(
                coder,
                "checkin",
                source="ci",
                confidence=0.9,
                justification="B-9",
                patch=[
                    {
                        "op": "add",
                        "path": "/bugs/-",
                        "value": {"id": "B-9", "title": "x", "open": True},
                    }
                ],
            )
            # bugs changed, tasks did not: the one update is for bugs
            assert await asyncio.wait_for(updates.get(), 30) == "gitvault://main/bugs"
            await call(
                coder,
                "checkin",
                source="ci",
                confidence=0.9,
                justification="T-001",
                patch=[{"op": "replace", "path": "/tasks/0/status", "value": "in-review"}],
            )
            assert await asyncio.wait_for(updates.get(), 30) == "gitvault://main/tasks"
            assert updates.empty()
            contents = (await planner.read_resource("gitvault://main/tasks")).contents[0]
            assert isinstance(contents, TextResourceContents)
            assert codec.loads(contents.text.encode())[0]["status"] == "in-review"

    run(scenario(), log)


def test_a_checkin_from_another_process_reaches_a_subscriber_of_the_whole_memory(
    tmp_path: Path, vault_dir: Path
) -> None:
    log = tmp_path / "servers.log"

    async def scenario() -> None:
        async with listening(vault_dir, "planner", log) as (planner, updates):
            await planner.subscribe_resource("gitvault://main")
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "import sys; from gitvault import Vault\n"
                "v = Vault.open(sys.argv[1])\n"
                "with v.lease('reviewer', ttl=60) as co:\n"
                "    co.doc['roadmap']['vision'] = 'seen'\n"
                "    co.commit(source='review', confidence=1)\n",
                str(vault_dir),
                cwd=ROOT,
            )
            assert await proc.wait() == 0
            assert await asyncio.wait_for(updates.get(), 30) == "gitvault://main"

    run(scenario(), log)
    assert Vault.open(vault_dir).read()["roadmap"]["vision"] == "seen"
