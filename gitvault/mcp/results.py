"""The MCP tools' results: their JSON Schemas are the tools' ``outputSchema``."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gitvault.api.vault import CheckinResult
from gitvault.model.leases import Lease


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
    document: dict[str, Any] | None = Field(
        description="The whole memory at the lease's base; null when max_bytes cut it into parts."
    )
    lease: LeaseInfo
    parts: list[dict[str, Any]] | None = Field(
        default=None, description="When cut: whole values as {pointer, value}."
    )
    next_offset: int | None = Field(
        default=None, description="When cut: where the rest starts (see note)."
    )
    note: str = ""


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
    value: Any = Field(
        default=None,
        description="The document, or the value at `path`; null when max_bytes cut it into parts.",
    )
    parts: list[dict[str, Any]] | None = Field(
        default=None, description="When cut: whole values as {pointer (relative to path), value}."
    )
    next_offset: int | None = Field(default=None, description="When cut: pass as offset.")
    note: str = ""


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
