"""The MCP tools ``query`` and ``search``, and the byte budget answers share.

Why a budget: a model's context is the scarce thing, so every read tool can be told
``max_bytes``. An answer over it is cut at a whole value (a whole match, hit, array item or
object member, never inside one), says so in ``note``, and gives ``next_offset``: the same call
with ``offset=next_offset`` and ``rev=commit`` continues exactly where it stopped, even if
others check in meanwhile.

Registered by :func:`gitvault.mcp.server.build_server` (one call); every rule lives in the
library (:mod:`gitvault.history.query`, :mod:`~gitvault.history.search`,
:mod:`~gitvault.history.reading`).
"""

# No `from __future__ import annotations`: the SDK reads the tools' Annotated hints.

from collections.abc import Callable
from typing import Annotated, Any

from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from gitvault.api.vault import Vault

MaxBytes = Annotated[
    int | None,
    Field(
        ge=200,
        description="Cut the answer at a whole value to "
        "fit about this many bytes; see next_offset.",
    ),
]
Offset = Annotated[
    int,
    Field(ge=0, description="Continue a cut answer: pass its next_offset (and its commit as rev)."),
]
Rev = Annotated[
    str | None,
    Field(
        description="A git revision (default main), e.g. main~2 or the commit of an earlier answer."
    ),
]
At = Annotated[
    str | None, Field(description="A point in time instead of rev, e.g. 2025-01-31T12:00:00Z.")
]


class Paged(BaseModel):
    commit: str = Field(description="The commit answered from; pass it as rev to continue.")
    next_offset: int | None = Field(description="Where the rest starts; null: nothing more.")
    cut: bool = Field(description="True when max_bytes cut the answer.")
    note: str = Field(description="How to get the rest, when there is more.")


class QueryAnswer(Paged):
    matches: list[Any] = Field(
        description="The matches; with pointers, each is {value, "
        "pointer, path}: pointer feeds a checkin patch."
    )
    more: bool = Field(description="True when limit stopped the answer.")


class SearchAnswer(Paged):
    hits: list[dict[str, Any]] = Field(
        description="Best first: pointer, path, where, text, "
        "score, changed (unix time), writer with blame."
    )
    total: int = Field(description="All hits, before limit and offset.")


Tool = Callable[[ToolAnnotations], Callable[[Callable[..., Any]], Callable[..., Any]]]


def register(tool: Tool, vault: Callable[[], Vault], read_only: ToolAnnotations) -> None:
    """Add ``query`` and ``search`` to a server (``tool`` is its registering decorator)."""

    @tool(read_only)
    def query(
        expression: Annotated[
            str,
            Field(
                min_length=1,
                description="JMESPath over the document, e.g. tasks[?status=='blocked'].title.",
            ),
        ],
        rev: Rev = None,
        at: At = None,
        limit: Annotated[int | None, Field(ge=1, description="At most this many.")] = None,
        pointers: Annotated[
            bool, Field(description="Give each match's pointer and id path.")
        ] = True,
        max_bytes: MaxBytes = None,
        offset: Offset = 0,
    ) -> QueryAnswer:
        """Get only the values you need, with a JMESPath expression; [] when nothing matches.

        Example: expression="tasks[?status=='blocked'].{id: id, title: title}".
        Each match's `pointer` can go straight into a checkin `patch`.
        """
        r = vault().query(expression, rev, at, limit, pointers, max_bytes, offset)
        j = r.to_json(pointers)
        return QueryAnswer(
            commit=r.commit,
            next_offset=r.next_offset,
            cut=r.cut,
            note=r.note,
            matches=j["matches"],
            more=r.more,
        )

    @tool(read_only)
    def search(
        text: Annotated[
            str,
            Field(
                min_length=1,
                description="Words to find (any order, "
                "case-insensitive), or a regex with regex=true.",
            ),
        ],
        key: Annotated[str | None, Field(description="Only in this top-level key.")] = None,
        path: Annotated[
            str | None, Field(description="Only under this JSON Pointer, e.g. /tasks/[id=T-004].")
        ] = None,
        rev: Rev = None,
        at: At = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many.")] = 20,
        regex: bool = False,
        width: Annotated[
            int, Field(ge=10, description="Trim each text to this many characters.")
        ] = 80,
        blame: Annotated[bool, Field(description="Add who last wrote each hit.")] = False,
        max_bytes: MaxBytes = None,
        offset: Offset = 0,
    ) -> SearchAnswer:
        """Find words in the memory's text and names, best matches first.

        Example: text="database decision" finds strings holding either word, both first.
        Each hit has a `pointer` for a checkin `patch`.
        """
        r = vault().search(
            text,
            key=key,
            path=path,
            rev=rev,
            at=at,
            limit=limit,
            regex=regex,
            width=width,
            blame=blame,
            max_bytes=max_bytes,
            offset=offset,
        )
        return SearchAnswer(
            commit=r.commit,
            next_offset=r.next_offset,
            cut=r.cut,
            note=r.note,
            hits=[h.to_json() for h in r.hits],
            total=r.total,
        )
