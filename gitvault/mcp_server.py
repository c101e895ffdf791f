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

import functools
import inspect
import json
import os
from collections.abc import Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from . import __version__, codec
from .errors import GitVaultError, InputError, StorageError
from .leases import Lease
from .provenance import check_agent
from .vault import CheckinResult, Vault

Transport = Literal["stdio", "streamable-http"]
Side = Literal["ours", "theirs"]

INSTRUCTIONS = """\
gitvault is shared, versioned JSON memory for a team of agents.
Work cycle: `checkout` (takes a lease, returns the document), edit, `checkin` the whole new
document or an RFC 6902 `patch` against what you checked out, with your source, confidence
(0..1) and justification. If others checked in meanwhile, your change is merged; a true
conflict is refused with a JSON report (exit_code 3): re-checkout and redo the change, or
`resolve` it. Errors are JSON objects with `error`, `message` and `exit_code`
(1 input, 3 conflict, 4 lease: run `checkout` again).
History: `log`, `show`, `diff`, `blame`. Read-only views: resources gitvault://main and
gitvault://main/{key}.
"""

_READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                             open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                         open_world_hint=False)

P = ParamSpec("P")
R = TypeVar("R")


# -- results (their JSON Schemas are the tools' outputSchema) -------------------------------
class LeaseInfo(BaseModel):
    agent: str
    token: int = Field(description="Fencing token; pass it as `lease` to checkin to pin it.")
    mode: Literal["shared", "exclusive"]
    base: str = Field(description="Commit the document was checked out at.")
    acquired: str
    expires: str
    ttl: int
    live: bool
    seconds_left: float

    @classmethod
    def of(cls, lease: Lease, now: float) -> "LeaseInfo":
        return cls.model_validate(lease.to_json(now))


class CheckoutResult(BaseModel):
    document: dict[str, Any] = Field(description="The whole memory at the lease's base.")
    lease: LeaseInfo


class CheckinOutcome(BaseModel):
    commit: str | None = Field(description="New head of main; null when nothing changed.")
    changed: list[str] = Field(description="Top-level keys this checkin changed.")
    merged: bool = Field(description="True when main had moved and the change was merged.")
    noop: bool
    strategy: dict[str, str] = Field(description="Per merged key: git or structural.")
    resolved: list[str] = Field(description="Conflicts decided automatically (on_conflict).")
    lease: int | None = Field(description="The lease token, still held after checkin.")
    base: str | None = Field(description="The lease's base now (the new head).")

    @classmethod
    def of(cls, result: CheckinResult) -> "CheckinOutcome":
        return cls.model_validate(result.to_json())


class ReleaseResult(BaseModel):
    agent: str
    released: bool = Field(description="False when the agent held no lease.")
    lease: LeaseInfo | None


class KeySize(BaseModel):
    size: int
    blob: str


class StatusResult(BaseModel):
    vault: str
    head: str | None
    commits: int
    keys: dict[str, KeySize]
    leases: list[LeaseInfo]
    conflicts: list[str] = Field(description="Refs of kept conflicting proposals.")


class Entries(BaseModel):
    entries: list[dict[str, Any]]


class ShowResult(BaseModel):
    value: Any = Field(description="The document, or the value at `path`.")


class DiffResult(BaseModel):
    patch: list[dict[str, Any]] = Field(description="RFC 6902 JSON Patch from rev1 to rev2.")
    text: str = Field(description="Human-readable summary.")


class ConflictList(BaseModel):
    conflicts: list[dict[str, Any]]


class PatchOperation(BaseModel):
    """One RFC 6902 operation."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str = Field(description="JSON Pointer of the target, e.g. /tasks/0/status.")
    value: Any = Field(default=None, description="For add, replace, test.")
    from_: str | None = Field(default=None, alias="from", description="For move, copy.")


# -- plumbing --------------------------------------------------------------------------------
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
            where = f"{e.filename}: " if e.filename else ""
            return _error_result(StorageError(f"{where}{e.strerror or e}"))

    return wrapper


def _plain(value: Any) -> Any:
    """History results are objects with ``to_json`` or plain JSON already."""
    to_json = getattr(value, "to_json", None)
    return to_json() if callable(to_json) else value


# -- the server ------------------------------------------------------------------------------
def build_server(vault_path: str, agent: str | None = None) -> MCPServer:
    """An MCP server for the vault at ``vault_path``, acting as ``agent`` when given.

    Opens the vault once up front so a wrong path fails at start, not at the first call.
    """
    path = os.path.abspath(vault_path)
    Vault.open(path)
    configured = check_agent(agent) if agent is not None else None

    def vault() -> Vault:
        return Vault.open(path)

    def who(given: str | None) -> str:
        if configured is None:
            if not given:
                raise InputError("no agent id: this server was started without --agent, "
                                 "so pass `agent` (e.g. planner-1)")
            return check_agent(given)
        if given and given != configured:
            raise InputError(f"this server acts as agent {configured!r} and cannot act as "
                             f"{given!r}; leave `agent` out or start a server with --agent")
        return configured

    agent_help = (f"Leave out: this server acts as {configured!r}." if configured
                  else "Your agent id, e.g. planner-1 (required: the server has no --agent).")
    AgentArg = Annotated[str | None, Field(description=agent_help)]
    RevArg = Annotated[str | None, Field(description="A git revision (default main), e.g. "
                                                      "main~2 or a commit id.")]
    PathArg = Annotated[str | None, Field(description="JSON Pointer, e.g. /tasks/0/status or "
                                                       "/tasks/[id=T-004]/status.")]

    server = MCPServer(
        name="gitvault", title="gitvault", version=__version__, instructions=INSTRUCTIONS,
        description="Versioned, shared JSON memory for AI agents, kept in a bare git repository",
    )

    def tool(annotations: ToolAnnotations) -> Callable[[Callable[P, R]], Callable[P, R]]:
        def register(fn: Callable[P, R]) -> Callable[P, R]:
            server.add_tool(_structured_errors(fn), name=fn.__name__,
                            description=inspect.cleandoc(fn.__doc__ or ""),
                            annotations=annotations, structured_output=True)
            return fn

        return register

    @tool(_WRITE)
    def checkout(
        agent: AgentArg = None,
        ttl_sec: Annotated[int | None, Field(ge=1, description="Lease length in seconds "
                                             "(default: the vault's, 900).")] = None,
        exclusive: Annotated[bool, Field(description="Refuse while others hold leases and "
                                         "block them while held.")] = False,
        wait: Annotated[float | None, Field(ge=0, le=86400, description="Seconds to wait "
                                            "in the vault's first-come-first-served queue "
                                            "for the lease instead of being refused.")] = None,
    ) -> CheckoutResult:
        """Take or renew your lease and get the whole memory document.

        Check out before every checkin; your edits are merged against this version.
        """
        v = vault()
        co = v.checkout(who(agent), ttl_sec, exclusive, wait)
        return CheckoutResult(document=co.document, lease=LeaseInfo.of(co.lease, v.clock()))

    @tool(_WRITE)
    def checkin(
        source: Annotated[str, Field(min_length=1, description="Where the change comes from, "
                                     "e.g. web-research, user, ci-logs.")],
        confidence: Annotated[float, Field(ge=0, le=1, description="How sure you are, 0..1.")],
        justification: Annotated[str, Field(description="Why; one line, may be empty.")],
        document: Annotated[dict[str, Any] | None,
                            Field(description="The whole new document (a JSON object).")] = None,
        patch: Annotated[list[PatchOperation] | None,
                         Field(description="RFC 6902 JSON Patch against the document you "
                                           "checked out (instead of `document`).")] = None,
        on_conflict: Annotated[Literal["fail", "ours", "theirs", "confidence"] | None,
                               Field(description="Decide conflicts: ours = main wins, theirs = "
                                     "you win, confidence = higher confidence wins; default "
                                     "fail.")] = None,
        lease: Annotated[int | None, Field(description="Lease token from checkout; refuses if "
                                           "the lease was renewed since.")] = None,
        agent: AgentArg = None,
    ) -> CheckinOutcome:
        """Commit your change to the memory: give `document` (whole) or `patch`.

        Needs your lease (checkout first). If others checked in meanwhile, the change is
        merged; a true conflict is refused (exit_code 3) with each conflicting pointer, and
        main is left unchanged.
        """
        name = who(agent)
        if (document is None) == (patch is None):
            raise InputError("give exactly one of `document` (the whole new document) or "
                             "`patch` (RFC 6902 operations)")
        v = vault()
        if patch is not None:
            ops = [o.model_dump(by_alias=True, exclude_unset=True) for o in patch]
            result = v.checkin_patch(name, ops, source, confidence, justification, lease,
                                     on_conflict)
        else:
            assert document is not None
            result = v.checkin(name, document, source, confidence, justification, lease=lease,
                               on_conflict=on_conflict)
        return CheckinOutcome.of(result)

    @tool(_WRITE)
    def release(agent: AgentArg = None) -> ReleaseResult:
        """Drop your lease when you are done (no lease is fine)."""
        name = who(agent)
        v = vault()
        dropped = v.release(name)
        return ReleaseResult(agent=name, released=dropped is not None,
                             lease=LeaseInfo.of(dropped, v.clock()) if dropped else None)

    @tool(_READ_ONLY)
    def status() -> StatusResult:
        """Head, commit count, keys with sizes, leases, pending conflicts."""
        return StatusResult.model_validate(vault().status().to_json())

    @tool(_READ_ONLY)
    def log(
        agent: Annotated[str | None, Field(description="Only commits by this agent (a filter, "
                                           "any agent).")] = None,
        key: Annotated[str | None, Field(description="Only commits that changed this "
                                         "top-level key.")] = None,
        path: Annotated[str | None, Field(description="Only commits that changed the value at "
                                          "this JSON Pointer.")] = None,
        source: Annotated[str | None, Field(description="Only commits with this Source.")] = None,
        since: Annotated[str | None, Field(description="Not before this time, e.g. "
                                           "2025-01-31T12:00:00Z.")] = None,
        until: Annotated[str | None, Field(description="Not after this time.")] = None,
        rev: RevArg = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many.")] = 20,
    ) -> Entries:
        """Checkins and merges, newest first, with agent, source, confidence, justification."""
        found = vault().log(rev, agent=agent, key=key, path=path, source=source, since=since,
                            until=until, limit=limit)
        return Entries(entries=[_plain(e) for e in found])

    @tool(_READ_ONLY)
    def show(
        rev: RevArg = None,
        at: Annotated[str | None, Field(description="A point in time instead of rev, e.g. "
                                        "2025-01-31T12:00:00Z or '2 hours ago'.")] = None,
        path: PathArg = None,
    ) -> ShowResult:
        """The document, or one value, as it was at a revision or a time."""
        return ShowResult(value=_plain(vault().show(rev, at=at, path=path)))

    @tool(_READ_ONLY)
    def diff(
        rev1: Annotated[str | None, Field(description="From this revision.")] = None,
        rev2: Annotated[str | None, Field(description="To this revision.")] = None,
        path: PathArg = None,
    ) -> DiffResult:
        """What changed between two revisions, as a JSON Patch and a summary."""
        d = vault().diff(rev1, rev2, path=path)
        return DiffResult(patch=[_plain(op) for op in d.patch], text=d.text)

    @tool(_READ_ONLY)
    def blame(
        path: Annotated[str, Field(description="JSON Pointer, e.g. /tasks or "
                                   "/tasks/[id=T-004]/status.")],
        rev: RevArg = None,
    ) -> Entries:
        """Who last set the value at `path` (or each value under it), from what source, why."""
        return Entries(entries=[_plain(e) for e in vault().blame(path, rev)])

    @tool(_READ_ONLY)
    def conflicts() -> ConflictList:
        """Kept conflicting proposals, each with what still conflicts against main."""
        return ConflictList(conflicts=vault().pending_conflicts())

    @tool(_WRITE)
    def resolve(
        conflict_id: Annotated[str, Field(description="As `conflicts` lists it, e.g. coder/1.")],
        take: Annotated[Side | None, Field(description="Decide every conflict: ours = main, "
                                           "theirs = the proposal.")] = None,
        picks: Annotated[dict[str, Side] | None,
                         Field(description="Per JSON Pointer: ours or theirs; wins over "
                               "`take`.")] = None,
        document: Annotated[dict[str, Any] | None,
                            Field(description="The whole resolved document.")] = None,
        agent: AgentArg = None,
    ) -> CheckinOutcome:
        """Merge a kept conflicting proposal into main with your decisions.

        Give `take`, `picks`, or the whole resolved `document`; anything left undecided
        refuses (exit_code 3) and changes nothing.
        """
        result = vault().resolve(conflict_id, take=take, picks=picks, document=document,
                                 agent=who(agent))
        return CheckinOutcome.of(result)

    @server.resource("gitvault://main", name="main", title="The whole memory",
                     description="The current document on main, as canonical JSON.",
                     mime_type="application/json")
    def main_document() -> str:
        try:
            return codec.dumps_document(vault().read()).decode()
        except GitVaultError as e:
            raise ResourceError(json.dumps(e.to_json(), ensure_ascii=False)) from None

    @server.resource("gitvault://main/{key}", name="key", title="One key of the memory",
                     description="The current value of one top-level key, as canonical JSON.",
                     mime_type="application/json")
    def main_key(key: str) -> str:
        try:
            document = vault().read()
        except GitVaultError as e:
            raise ResourceError(json.dumps(e.to_json(), ensure_ascii=False)) from None
        if key not in document:
            raise ResourceNotFoundError(f"no key {key!r} on main; keys: {', '.join(document)}")
        return codec.dumps(document[key]).decode()

    return server


def run(vault_path: str, agent: str | None = None, transport: Transport = "stdio",
        host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until the client hangs up (stdio) or the process is stopped (HTTP)."""
    server = build_server(vault_path, agent)
    if transport == "stdio":
        server.run("stdio")
    elif transport == "streamable-http":
        server.run("streamable-http", host=host, port=port)
    else:
        raise InputError(f"transport {transport!r}: use stdio or streamable-http")
