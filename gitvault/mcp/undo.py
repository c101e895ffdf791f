"""The MCP server's undo tools: revert, restore, exposure, and (behind a flag) quarantine.

Registered by :func:`gitvault.mcp.server.build_server`. The agent who undoes is the server's
agent (``--agent``), as for every other write. Quarantine is an admin action: it is offered
only when the server was started with ``--allow-quarantine``; once the vault has admin rules,
it will be offered to admins only, and the flag will go.

No ``from __future__ import annotations``: the SDK reads these tools' ``Annotated`` hints.
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from gitvault.api.vault import Vault
from gitvault.mcp.common import _READ_ONLY, _WRITE

Policy = Literal["fail", "ours", "theirs", "confidence"]


class UndoOutcome(BaseModel):
    commit: str | None = Field(description="New head of main; null for a dry run or no change.")
    reverted: list[str] = Field(description="Commits undone, newest first.")
    changed: list[str] = Field(description="Top-level keys changed.")
    patch: list[dict[str, Any]] = Field(description="RFC 6902 patch from main to the result.")
    conflicts: list[dict[str, Any]] = Field(description="Values changed since (dry run).")
    resolved: list[str]
    dry_run: bool
    kept: str | None
    quarantine: dict[str, Any] | None
    noop: bool


class ExposureList(BaseModel):
    commits: list[dict[str, Any]] = Field(
        description="Later commits whose writer's base held "
        "the bad change: kind derived or exposed."
    )


Register = Callable[[Any], Callable[[Callable[..., Any]], Callable[..., Any]]]


def register(
    tool: Register,
    vault: Callable[[], Vault],
    who: Callable[[str | None], str],
    agent_arg: Any,
    path_arg: Any,
    allow_quarantine: bool,
) -> None:
    """Add the tools to the server (``tool`` is build_server's registering decorator)."""

    source_arg = Annotated[
        str,
        Field(
            min_length=1,
            description="Why this undo, where the finding came from, e.g. incident-42.",
        ),
    ]
    why_arg = Annotated[str, Field(description="One line, may be empty.")]
    policy_arg = Annotated[
        Policy | None,
        Field(description="Decide values changed since: ours = keep main's, theirs = undo anyway."),
    ]

    @tool(_WRITE)
    def revert(
        revisions: Annotated[list[str], Field(min_length=1, description="Commits to undo.")],
        source: source_arg,
        justification: why_arg = "",
        path: path_arg = None,
        on_conflict: policy_arg = None,
        dry_run: Annotated[bool, Field(description="Only show what would change.")] = False,
        agent: agent_arg = None,
    ) -> UndoOutcome:
        """Undo the changes of commits as one new commit on main (history is kept).

        A value someone changed since is a conflict (exit_code 3), kept for `resolve`.
        """
        r = vault().revert(
            revisions, who(agent), source, None, justification, path, on_conflict, dry_run
        )
        return UndoOutcome.model_validate(r.to_json())

    @tool(_WRITE)
    def restore(
        source: source_arg,
        rev: Annotated[str | None, Field(description="The past revision.")] = None,
        at: Annotated[str | None, Field(description="Or a time, e.g. 2025-01-31T12:00Z.")] = None,
        justification: why_arg = "",
        path: path_arg = None,
        dry_run: Annotated[bool, Field(description="Only show what would change.")] = False,
        agent: agent_arg = None,
    ) -> UndoOutcome:
        """Put the document, a key or a value back as it was, as one new commit."""
        r = vault().restore(
            rev,
            at=at,
            by=who(agent),
            source=source,
            justification=justification,
            path=path,
            dry_run=dry_run,
        )
        return UndoOutcome.model_validate(r.to_json())

    @tool(_READ_ONLY)
    def exposure(
        rev: Annotated[str | None, Field(description="The bad commit.")] = None,
        writer: Annotated[str | None, Field(description="Or every commit of this agent.")] = None,
        since: Annotated[str | None, Field(description="With writer: from this time.")] = None,
        until: Annotated[str | None, Field(description="With writer: up to this time.")] = None,
    ) -> ExposureList:
        """Later commits whose writers had the bad change checked out, and what they changed."""
        found = vault().exposure(rev, agent=writer, since=since, until=until)
        return ExposureList(commits=[e.to_json() for e in found])

    if not allow_quarantine:
        return

    @tool(_WRITE)
    def quarantine(
        target: Annotated[str, Field(description="The agent to quarantine (or lift).")],
        source: source_arg,
        justification: why_arg = "",
        since: Annotated[str | None, Field(description="Undo its writes from then.")] = None,
        until: Annotated[str | None, Field(description="Up to then.")] = None,
        dry_run: Annotated[bool, Field(description="Only show the patch and conflicts.")] = False,
        with_derived: Annotated[
            bool, Field(description="Also undo commits that built on its values.")
        ] = False,
        lift: Annotated[bool, Field(description="End the quarantine instead.")] = False,
        agent: agent_arg = None,
    ) -> UndoOutcome:
        """Admin: undo what an agent wrote and refuse its writes until lifted."""
        v = vault()
        by = who(agent)
        if lift:
            entry = v.lift_quarantine(target, by=by, source=source, justification=justification)
            return UndoOutcome(
                commit=v.head(),
                reverted=[],
                changed=[],
                patch=[],
                conflicts=[],
                resolved=[],
                dry_run=False,
                kept=None,
                quarantine=entry.to_json() if entry else None,
                noop=entry is None,
            )
        r = v.quarantine(
            target,
            by=by,
            source=source,
            since=since,
            until=until,
            justification=justification,
            dry_run=dry_run,
            with_derived=with_derived,
        )
        return UndoOutcome.model_validate(r.to_json())
