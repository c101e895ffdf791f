"""What every group of MCP tools shares: the hints a client shows before it calls a tool."""

from __future__ import annotations

from mcp_types import ToolAnnotations

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                             open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                         open_world_hint=False)
_READ_ONLY, _WRITE = READ_ONLY, WRITE
