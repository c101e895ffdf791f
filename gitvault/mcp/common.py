"""What every group of MCP tools shares: the client-side hints, errors as parseable results,
and :class:`Tools`, the handle each group registers its tools through.

No ``from __future__ import annotations`` in the tool modules: the SDK reads the tools'
``Annotated`` hints at registration.
"""

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from gitvault.api.vault import Vault
from gitvault.errors import GitVaultError, InputError, from_os_error
from gitvault.model import quarantine
from gitvault.model.provenance import check_agent

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
WRITE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
_READ_ONLY, _WRITE = READ_ONLY, WRITE

P = ParamSpec("P")
R = TypeVar("R")
Side = Literal["ours", "theirs"]
RevArg = Annotated[
    str | None, Field(description="A git revision (default main), e.g. main~2 or a commit id.")
]
PathArg = Annotated[
    str | None, Field(description="JSON Pointer, e.g. /tasks/0/status or /tasks/[id=T-004]/status.")
]


def _error_result(e: GitVaultError) -> CallToolResult:
    """An ``isError`` result whose text is the error's JSON, unprefixed, so clients parse it."""
    text = json.dumps(e.to_json(), ensure_ascii=False, sort_keys=True)
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def _structured_errors(fn: Callable[P, R]) -> Callable[P, R | CallToolResult]:
    """Turn vault errors into parseable ``isError`` results instead of SDK-prefixed text.

    The SDK reads the signature through ``__wrapped__`` (so schemas come from ``fn``) and
    passes a returned ``CallToolResult`` through unchanged.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | CallToolResult:
        try:
            return fn(*args, **kwargs)
        except GitVaultError as e:
            return _error_result(e)
        except OSError as e:  # the disk refused: same shape, exit code 1
            return _error_result(from_os_error(e))

    return wrapper


def _plain(value: Any) -> Any:
    """History results are objects with ``to_json`` or plain JSON already."""
    to_json = getattr(value, "to_json", None)
    return to_json() if callable(to_json) else value


@dataclass(frozen=True)
class Tools:
    """One server's vault and agent, and the decorator that adds a tool to it.

    The vault is opened per call, so the server sees what other processes did, and sync
    tools (run by the SDK in worker threads) never share a pygit2 repository.
    """

    server: MCPServer
    path: str
    configured: str | None  # the server's --agent, if any
    allow_quarantine: bool = False

    def vault(self) -> Vault:
        v = Vault.open(self.path)
        if self.configured is not None:  # a quarantined agent's server refuses every call
            quarantine.check(v.store, self.configured)
        return v

    def who(self, given: str | None) -> str:
        """The agent a call acts as: the server's own, or (without --agent) the caller's."""
        if self.configured is None:
            if not given:
                raise InputError(
                    "no agent id: this server was started without --agent, "
                    "so pass `agent` (e.g. planner-1)"
                )
            return check_agent(given)
        if given and given != self.configured:
            raise InputError(
                f"this server acts as agent {self.configured!r} and cannot act as "
                f"{given!r}; leave `agent` out or start a server with --agent"
            )
        return self.configured

    @property
    def agent_help(self) -> str:
        return (
            f"Leave out: this server acts as {self.configured!r}."
            if self.configured
            else "Your agent id, e.g. planner-1 (required: the server has no --agent)."
        )

    def tool(self, annotations: ToolAnnotations) -> Callable[[Callable[P, R]], Callable[P, R]]:
        def register(fn: Callable[P, R]) -> Callable[P, R]:
            self.server.add_tool(
                _structured_errors(fn),
                name=fn.__name__,
                description=inspect.cleandoc(fn.__doc__ or ""),
                annotations=annotations,
                structured_output=True,
            )
            return fn

        return register
