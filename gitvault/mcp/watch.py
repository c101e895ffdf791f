"""MCP resource subscriptions, fed by :class:`gitvault.history.watch.Watcher`.

A client that sends ``resources/subscribe`` for ``gitvault://main/tasks`` gets
``notifications/resources/updated`` for that URI each time a commit that changed ``tasks``
lands on main, whoever made it (another agent's server, the CLI, a push): agents stop polling
``status``. ``gitvault://main`` is updated by every commit that changed a key. Clients on the
newer protocol that listen with ``subscriptions/listen`` get the same events through the SDK's
subscription bus.

One watcher per server process runs on the server's event loop (its ``poll`` only stats the
ref until main moves), from the server's lifespan; it uses a store of its own, so it never
shares a pygit2 repository with the tools' worker threads.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from gitvault.git.storage import Store
from gitvault.history.watch import INTERVAL, Watcher

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext
    from mcp.server.mcpserver import MCPServer
    from mcp.server.session import ServerSession

ROOT_URI = "gitvault://main"
log = logging.getLogger(__name__)


def uris_of(keys: tuple[str, ...] | list[str]) -> set[str]:
    """The resource URIs a commit that changed ``keys`` updates."""
    return {ROOT_URI, *(f"{ROOT_URI}/{k}" for k in keys)} if keys else set()


class Feed:
    """Who subscribed to what, and the loop that tells them."""

    def __init__(self, vault_path: str, interval: float = INTERVAL) -> None:
        self.path, self.interval = vault_path, interval
        self.subscribers: dict[str, list[ServerSession]] = {}
        self.server: MCPServer[Any] | None = None

    def install(self, server: MCPServer[Any]) -> None:
        """Serve ``resources/subscribe`` and ``resources/unsubscribe`` on ``server``.

        Registering the handler is also what makes the server announce
        ``resources.subscribe`` in its capabilities.
        """
        self.server = server
        low = server._lowlevel_server
        low.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        low.add_request_handler(
            "resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe
        )

    async def _subscribe(
        self, ctx: ServerRequestContext[Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        sessions = self.subscribers.setdefault(str(params.uri), [])
        if ctx.session not in sessions:
            sessions.append(ctx.session)
        return EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        sessions = self.subscribers.get(str(params.uri), [])
        if ctx.session in sessions:
            sessions.remove(ctx.session)
        return EmptyResult()

    @contextlib.asynccontextmanager
    async def lifespan(self, _server: object) -> AsyncIterator[dict[str, Any]]:
        """Run the loop for as long as the server runs."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.run)
            yield {}
            tg.cancel_scope.cancel()

    async def run(self) -> None:
        watcher = Watcher(Store.open(self.path), interval=self.interval)
        while True:
            await anyio.sleep(self.interval)
            for change in watcher.poll():
                await self.notify(uris_of(change.entry.changed))

    async def notify(self, uris: set[str]) -> None:
        for uri in sorted(uris):
            if self.server is not None:
                await self.server._subscriptions.publish(ResourceUpdated(uri=uri))
            for session in list(self.subscribers.get(uri, [])):
                try:
                    await session.send_resource_updated(uri)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    self.subscribers[uri].remove(session)  # that client has gone
