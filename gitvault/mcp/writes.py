"""The tools that write: checkout, checkin, release and resolve."""

from typing import Annotated, Any

from pydantic import Field

from gitvault.errors import InputError
from gitvault.history import reading
from gitvault.mcp.common import _READ_ONLY, _WRITE, Side, Tools
from gitvault.mcp.results import (
    CheckinOutcome,
    CheckoutResult,
    ConflictList,
    LeaseInfo,
    PatchOperation,
    ReleaseResult,
)
from gitvault.model.policy import ConflictPolicy


def register(t: Tools) -> None:
    """Add the writing tools to ``t``'s server."""
    AgentArg = Annotated[str | None, Field(description=t.agent_help)]

    @t.tool(_WRITE)
    def checkout(
        agent: AgentArg = None,
        ttl_sec: Annotated[
            int | None,
            Field(ge=1, description="Lease length in seconds (default: the vault's, 900)."),
        ] = None,
        exclusive: Annotated[
            bool, Field(description="Refuse while others hold leases and block them while held.")
        ] = False,
        wait: Annotated[
            float | None,
            Field(
                ge=0,
                le=86400,
                description="Seconds to wait "
                "in the vault's first-come-first-served queue "
                "for the lease instead of being refused.",
            ),
        ] = None,
        max_bytes: Annotated[
            int | None,
            Field(
                ge=200,
                description="Cut the document at a whole value to fit about this many bytes.",
            ),
        ] = None,
    ) -> CheckoutResult:
        """Take or renew your lease and get the whole memory document.

        Check out before every checkin; your edits are merged against this version.
        Example for a large memory: max_bytes=20000 (or read parts with `query`/`search`).
        """
        v = t.vault()
        co = v.checkout(t.who(agent), ttl_sec, exclusive, wait)
        lease = LeaseInfo.of(co.lease, v.clock())
        if max_bytes is None or reading.size_of(co.document) <= max_bytes:
            return CheckoutResult(document=co.document, lease=lease)
        page = reading.cut_value(co.document, max_bytes)
        return CheckoutResult(
            document=None,
            lease=lease,
            parts=page.items,
            next_offset=page.next_offset,
            note=page.note(f"call show with rev={co.lease.base}, max_bytes={max_bytes},"),
        )

    @t.tool(_WRITE)
    def checkin(
        source: Annotated[
            str,
            Field(
                min_length=1,
                description="Where the change comes from, e.g. web-research, user, ci-logs.",
            ),
        ],
        confidence: Annotated[float, Field(ge=0, le=1, description="How sure you are, 0..1.")],
        justification: Annotated[str, Field(description="Why; one line, may be empty.")],
        document: Annotated[
            dict[str, Any] | None, Field(description="The whole new document (a JSON object).")
        ] = None,
        patch: Annotated[
            list[PatchOperation] | None,
            Field(
                description="RFC 6902 JSON Patch against the document you "
                "checked out (instead of `document`)."
            ),
        ] = None,
        on_conflict: Annotated[
            ConflictPolicy | None,
            Field(
                description="Decide conflicts: ours = main wins, theirs = "
                "you win, confidence = higher confidence wins; default "
                "fail."
            ),
        ] = None,
        lease: Annotated[
            int | None,
            Field(description="Lease token from checkout; refuses if the lease was renewed since."),
        ] = None,
        agent: AgentArg = None,
    ) -> CheckinOutcome:
        """Commit your change to the memory: give `document` (whole) or `patch`.

        Needs your lease (checkout first). If others checked in meanwhile, the change is
        merged; a true conflict is refused (exit_code 3) with each conflicting pointer, and
        main is left unchanged.
        """
        name = t.who(agent)
        if (document is None) == (patch is None):
            raise InputError(
                "give exactly one of `document` (the whole new document) or "
                "`patch` (RFC 6902 operations)"
            )
        v = t.vault()
        if patch is not None:
            ops = [o.model_dump(by_alias=True, exclude_unset=True) for o in patch]
            result = v.checkin_patch(
                name, ops, source, confidence, justification, lease, on_conflict
            )
        else:
            assert document is not None
            result = v.checkin(
                name,
                document,
                source,
                confidence,
                justification,
                lease=lease,
                on_conflict=on_conflict,
            )
        return CheckinOutcome.of(result)

    @t.tool(_WRITE)
    def release(agent: AgentArg = None) -> ReleaseResult:
        """Drop your lease when you are done (no lease is fine)."""
        name = t.who(agent)
        v = t.vault()
        dropped = v.release(name)
        return ReleaseResult(
            agent=name,
            released=dropped is not None,
            lease=LeaseInfo.of(dropped, v.clock()) if dropped else None,
        )

    @t.tool(_READ_ONLY)
    def conflicts() -> ConflictList:
        """Kept conflicting proposals, each with what still conflicts against main."""
        return ConflictList(conflicts=t.vault().pending_conflicts())

    @t.tool(_WRITE)
    def resolve(
        conflict_id: Annotated[str, Field(description="As `conflicts` lists it, e.g. coder/1.")],
        take: Annotated[
            Side | None,
            Field(description="Decide every conflict: ours = main, theirs = the proposal."),
        ] = None,
        picks: Annotated[
            dict[str, Side] | None,
            Field(description="Per JSON Pointer: ours or theirs; wins over `take`."),
        ] = None,
        document: Annotated[
            dict[str, Any] | None, Field(description="The whole resolved document.")
        ] = None,
        agent: AgentArg = None,
    ) -> CheckinOutcome:
        """Merge a kept conflicting proposal into main with your decisions.

        Give `take`, `picks`, or the whole resolved `document`; anything left undecided
        refuses (exit_code 3) and changes nothing.
        """
        result = t.vault().resolve(
            conflict_id, take=take, picks=picks, document=document, agent=t.who(agent)
        )
        return CheckinOutcome.of(result)
