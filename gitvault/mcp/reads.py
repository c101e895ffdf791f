"""The tools that read: status, log, show, diff and blame."""

from typing import Annotated

from pydantic import Field

from gitvault import history
from gitvault.history import reading
from gitvault.mcp.common import _READ_ONLY, PathArg, RevArg, Tools, _plain
from gitvault.mcp.results import DiffResult, Entries, ShowResult, StatusResult


def register(t: Tools) -> None:
    """Add the reading tools to ``t``'s server."""

    @t.tool(_READ_ONLY)
    def status() -> StatusResult:
        """Head, commit count, keys with sizes, leases, pending conflicts."""
        return StatusResult.model_validate(t.vault().status().to_json())

    @t.tool(_READ_ONLY)
    def log(
        agent: Annotated[
            str | None, Field(description="Only commits by this agent (a filter, any agent).")
        ] = None,
        key: Annotated[
            str | None, Field(description="Only commits that changed this top-level key.")
        ] = None,
        path: Annotated[
            str | None,
            Field(description="Only commits that changed the value at this JSON Pointer."),
        ] = None,
        source: Annotated[str | None, Field(description="Only commits with this Source.")] = None,
        since: Annotated[
            str | None, Field(description="Not before this time, e.g. 2025-01-31T12:00:00Z.")
        ] = None,
        until: Annotated[str | None, Field(description="Not after this time.")] = None,
        rev: RevArg = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many.")] = 20,
    ) -> Entries:
        """Checkins and merges, newest first, with agent, source, confidence, justification."""
        found = t.vault().log(
            rev,
            agent=agent,
            key=key,
            path=path,
            source=source,
            since=since,
            until=until,
            limit=limit,
        )
        return Entries(entries=[_plain(e) for e in found])

    @t.tool(_READ_ONLY)
    def show(
        rev: RevArg = None,
        at: Annotated[
            str | None,
            Field(
                description="A point in time instead of rev, e.g. "
                "2025-01-31T12:00:00Z or '2 hours ago'."
            ),
        ] = None,
        path: PathArg = None,
        max_bytes: Annotated[
            int | None,
            Field(
                ge=200, description="Cut the answer at a whole value to fit about this many bytes."
            ),
        ] = None,
        offset: Annotated[
            int,
            Field(
                ge=0,
                description="Continue a cut answer: its "
                "next_offset, with the same rev and max_bytes.",
            ),
        ] = 0,
    ) -> ShowResult:
        """The document, or one value, as it was at a revision or a time.

        Example: path="/tasks/[id=T-004]/status".
        """
        v = t.vault()
        if max_bytes is not None:  # pin the commit, so that the rest comes from it too
            rev, at = str(history.revision(v.store, rev, at).id), None
        value = _plain(v.show(rev, at=at, path=path))
        if max_bytes is None or (offset == 0 and reading.size_of(value) <= max_bytes):
            return ShowResult(value=value)
        page = reading.cut_value(value, max_bytes, offset)
        return ShowResult(
            parts=page.items,
            next_offset=page.next_offset,
            note=page.note(f"call show with rev={rev}, the same path and max_bytes={max_bytes},"),
        )

    @t.tool(_READ_ONLY)
    def diff(
        rev1: Annotated[str | None, Field(description="From this revision.")] = None,
        rev2: Annotated[str | None, Field(description="To this revision.")] = None,
        path: PathArg = None,
    ) -> DiffResult:
        """What changed between two revisions, as a JSON Patch and a summary."""
        d = t.vault().diff(rev1, rev2, path=path)
        return DiffResult(patch=[_plain(op) for op in d.patch], text=d.text)

    @t.tool(_READ_ONLY)
    def blame(
        path: Annotated[
            str, Field(description="JSON Pointer, e.g. /tasks or /tasks/[id=T-004]/status.")
        ],
        rev: RevArg = None,
    ) -> Entries:
        """Who last set the value at `path` (or each value under it), from what source, why."""
        return Entries(entries=[_plain(e) for e in t.vault().blame(path, rev)])
