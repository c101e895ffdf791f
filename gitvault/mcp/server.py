"""gitvault as an MCP server: the :class:`Vault` API as tools and resources for AI agents.

``gitvault mcp`` runs it over stdio (or streamable HTTP on 127.0.0.1). It is a thin layer like
the CLI: every rule lives in :class:`Vault`. The vault is opened per call, so the server sees
what other processes did, and sync tools (which the SDK runs in worker threads) never share a
pygit2 repository.

The agent id is server configuration (``--agent``): an MCP client talks to one server per
agent, so a model cannot write under another agent's name. Only a server started without an
agent takes it from the tools' ``agent`` argument.

A :class:`GitVaultError` becomes an ``isError`` tool result whose text is exactly
``json.dumps(error.to_json())`` (for a conflict: the full report), so a client can parse it.

Written for the MCP Python SDK 2.x (``MCPServer``, formerly ``FastMCP``). No
``from __future__ import annotations`` here: the SDK reads the tools' ``Annotated`` hints at
registration, and they refer to names local to :func:`build_server`.
"""

import os
from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from gitvault import __version__
from gitvault.api.vault import Vault
from gitvault.errors import InputError
from gitvault.mcp import query as mcp_query
from gitvault.mcp import reads, resources, writes
from gitvault.mcp import undo as mcp_undo
from gitvault.mcp.common import _READ_ONLY, PathArg, Tools
from gitvault.mcp.watch import Feed
from gitvault.model.provenance import check_agent

Transport = Literal["stdio", "streamable-http"]

INSTRUCTIONS = """\
gitvault is shared, versioned JSON memory for a team of agents.
Work cycle: `checkout` (takes a lease, returns the document), edit, `checkin` the whole new
document or an RFC 6902 `patch` against what you checked out, with your source, confidence
(0..1) and justification. If others checked in meanwhile, your change is merged; a true
conflict is refused with a JSON report (exit_code 3): re-checkout and redo the change, or
`resolve` it. Errors are JSON objects with `error`, `message` and `exit_code`
(1 input, 3 conflict, 4 lease: run `checkout` again).
History: `log`, `show`, `diff`, `blame`. Read-only views: resources gitvault://main and
gitvault://main/{key}; subscribe to one to be told when another agent changes it.
A large memory: read only what you need with `query` (JMESPath) and `search` (words); pass
`max_bytes` to any read and continue a cut answer with its `next_offset`.
"""


def build_server(
    vault_path: str, agent: str | None = None, allow_quarantine: bool = False
) -> MCPServer:
    """An MCP server for the vault at ``vault_path``, acting as ``agent`` when given.

    Opens the vault once up front so a wrong path fails at start, not at the first call.
    """
    path = os.path.abspath(vault_path)
    Vault.open(path)
    configured = check_agent(agent) if agent is not None else None
    feed = Feed(path)  # resource subscriptions (gitvault.mcp.watch)
    server = MCPServer(
        name="gitvault",
        title="gitvault",
        version=__version__,
        instructions=INSTRUCTIONS,
        description="Versioned, shared JSON memory for AI agents, kept in a bare git repository",
        lifespan=feed.lifespan,
    )
    feed.install(server)
    t = Tools(server, path, configured, allow_quarantine)
    writes.register(t)  # checkout, checkin, release, conflicts, resolve
    reads.register(t)  # status, log, show, diff, blame
    mcp_query.register(t.tool, t.vault, _READ_ONLY)  # query and search
    mcp_undo.register(
        t.tool,
        t.vault,
        t.who,
        Annotated[str | None, Field(description=t.agent_help)],
        PathArg,
        allow_quarantine,
    )
    resources.register(t)
    return server


def run(
    vault_path: str,
    agent: str | None = None,
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8765,
    allow_quarantine: bool = False,
) -> None:
    """Serve until the client hangs up (stdio) or the process is stopped (HTTP)."""
    server = build_server(vault_path, agent, allow_quarantine)
    if transport == "stdio":
        server.run("stdio")
    elif transport == "streamable-http":
        server.run("streamable-http", host=host, port=port)
    else:
        raise InputError(f"transport {transport!r}: use stdio or streamable-http")
