"""Structured queries over the memory with JMESPath, at any revision, with the pointers of
what they found.

Why: an agent that wants "the blocked tasks" should get those and nothing else, and be able to
patch exactly what it found. The language is JMESPath (the ``jmespath`` package, which
evaluates every expression here), not a hand-written one.

**The answer is always a JSON array of matches**: the items of the result when JMESPath's result
is an array, ``[]`` when it is null (nothing matched), else the one value. ``limit`` and byte
budgets cut between matches.

**Pointers.** JMESPath returns values, not where they came from, so the locations are tracked
here, honestly and only where they are known:

- For the shapes agents use most, a *path* to an array followed by a projection
  (``tasks[?status=='blocked']``, ``tasks[?cond].title``, ``tasks[*].{id: id}``, ``tasks[:50]``,
  optionally piped into ``| [:N]``, ``| [N]`` or any expression), the array is walked here and
  jmespath evaluates the condition and the projected expression on each item. Each match's
  ``pointer`` is the item's (plus the field steps when the projected expression is a plain
  path, ``.title`` -> ``/tasks/7/title``); when the projected value is computed
  (``{id: id}``, ``length(tags)``) the pointer is the item's and the match says ``computed``.
  A plain path (``roadmap.vision``, ``tasks[3].status``) has its own pointer.
- Any other expression is evaluated by jmespath on the keys it names (the whole document if it
  starts at ``@`` or ``*``); matches that are objects or arrays of the document are found by
  identity (jmespath hands back the document's own objects), other matches have no pointer.

``pointer`` is RFC 6901 with array indexes, what ``checkin --patch`` (RFC 6902) accepts, valid
at the revision queried (query the lease's base before patching). ``path`` is the same place
with id steps (``/tasks/[id=T-004]/status``), which ``show``, ``blame`` and ``log --path`` take.

**Sharded keys** (arrays of 1 MiB or more) are read chunk by chunk for a projection over the
key itself (``tasks[?cond]``, ``tasks[?cond].field``, ``tasks[?cond] | [:N]``, ``tasks[:N]``,
``tasks[5]``), keeping one chunk in memory besides the matches, and stopping at the last chunk
needed when the answer is cut (``limit``, ``| [:N]``). A condition that requires a field to equal
a string (``status=='blocked'``, also inside ``&&``) skips every chunk that cannot hold it: the
word index (:mod:`gitvault.history.wordindex`) rules most out without inflating them, the others'
bytes are tested before parsing. Any other expression reads the sharded key whole.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, cast

from jmespath import exceptions as jexc
from jmespath import parser as jparser

from gitvault.core import pointers
from gitvault.errors import InputError, QueryError
from gitvault.git.storage import Store
from gitvault.history.queryplan import Match, _items_of, _needed, _Plan, _plan, _post, _Run
from gitvault.history.reading import IdPaths, Snapshot, page

Node = dict[str, Any]
Step = str | int  # a field name or an array index


@dataclass(frozen=True)
class QueryResult:
    expression: str
    rev: str
    commit: str
    matches: list[Match]
    more: bool  # `limit` cut the answer
    read: str  # chunks (one chunk at a time), keys (the keys named, whole) or document
    chunks_read: int = 0
    chunks_skipped: int = 0
    offset: int = 0  # matches skipped before these
    next_offset: int | None = None  # where the rest starts (None: nothing more)
    cut: bool = False  # `max_bytes` cut the answer

    @property
    def values(self) -> list[Any]:
        return [m.value for m in self.matches]

    @property
    def note(self) -> str:
        """What an agent needs to ask for the rest ("" when it has everything)."""
        if self.next_offset is None:
            return ""
        why = "cut to fit max_bytes" if self.cut else "limit reached"
        return (
            f"{why}: {len(self.matches)} matches from offset {self.offset}; for the rest "
            f"ask again with offset={self.next_offset} and rev={self.commit}"
        )

    def to_json(self, with_pointers: bool = False) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "rev": self.rev,
            "commit": self.commit,
            "count": len(self.matches),
            "more": self.more,
            "read": self.read,
            "chunks_read": self.chunks_read,
            "chunks_skipped": self.chunks_skipped,
            "offset": self.offset,
            "next_offset": self.next_offset,
            "cut": self.cut,
            "note": self.note,
            "matches": [m.to_json() for m in self.matches] if with_pointers else self.values,
        }


def compile_expression(expression: str) -> Node:
    """The AST of a JMESPath expression; a bad one is a :class:`QueryError` with its position."""
    try:
        ast: Node = cast(Node, jparser.Parser().parse(expression).parsed)
    except RecursionError:
        raise QueryError(
            f"the expression nests too deeply ({len(expression)} characters); write it flatter"
        ) from None
    except jexc.JMESPathError as e:
        pos = getattr(e, "lex_position", getattr(e, "lexer_position", None))
        detail = str(e).split("\n")[0].rstrip(": ")
        where = f" at position {pos}" if pos is not None else ""
        raise QueryError(
            f"{detail}{where} of {expression!r}; e.g. tasks[?status=='blocked'].title", pos
        ) from None
    return ast


def _index(doc: Any) -> dict[int, list[str]]:
    """Pointer tokens of every object and array of ``doc``, by identity."""
    out: dict[int, list[str]] = {}
    stack: list[tuple[Any, list[str]]] = [(doc, [])]
    while stack:
        value, tokens = stack.pop()
        if isinstance(value, dict):
            out[id(value)] = tokens
            stack += [(v, [*tokens, k]) for k, v in value.items()]
        elif isinstance(value, list):
            out[id(value)] = tokens
            stack += [(v, [*tokens, str(i)]) for i, v in enumerate(value)]
    return out


def _root_keys(node: Node) -> set[str] | None:
    """Top-level keys an expression reads (None: it may read any)."""
    t = node["type"]
    if t == "field":
        return {node["value"]}
    if t in (
        "subexpression",
        "index_expression",
        "projection",
        "filter_projection",
        "pipe",
        "flatten",
        "value_projection",
    ):
        return _root_keys(node["children"][0])
    if t in ("literal", "expref"):
        return set()
    if t in (
        "comparator",
        "and_expression",
        "or_expression",
        "not_expression",
        "function_expression",
        "multi_select_list",
        "multi_select_dict",
        "key_val_pair",
    ):
        out: set[str] = set()
        for child in node["children"]:
            keys = _root_keys(child)
            if keys is None:
                return None
            out |= keys
        return out
    return None


def _fallback(ast: Node, snap: Snapshot, with_pointers: bool) -> list[Match]:
    """Any other expression: jmespath on the keys it names; places found by identity."""
    keys = _root_keys(ast)
    if keys is None:
        doc = snap.document()
    else:
        for k in sorted(keys):
            snap.require(k)
        doc = {k: snap.value(k) for k in sorted(keys)}
    result = _Run(_Plan("", [], False), snap, with_pointers).visit(ast, doc)
    if result is None:
        return []
    index = _index(doc) if with_pointers and isinstance(result, dict | list) else {}
    if isinstance(result, list) and (id(result) in index or not with_pointers):
        return _items_of(result, index.get(id(result)), doc, with_pointers)
    ids = IdPaths(doc)
    out = []
    for v in result if isinstance(result, list) else [result]:
        t = index.get(id(v)) if isinstance(v, dict | list) else None
        out.append(Match(v) if t is None else Match(v, pointers.join(t), ids.path(t)))
    return out


def _value(run: _Run) -> list[Match]:
    """A plain path (maybe piped): the value there, or an array's items, with pointers."""
    doc, value, tokens = run.base()
    if value is None:
        return []
    if isinstance(value, list):
        return _post(run, value, _items_of(value, tokens, doc, run.with_pointers))
    here = (
        Match(value, pointers.join(tokens), IdPaths(doc).path(tokens))
        if (run.with_pointers)
        else Match(value)
    )
    if run.plan.post is None and run.plan.post_slice is None:
        return [here]
    return _post(run, value, [here])


def _check_json(value: Any) -> None:
    """Refuse a result that is not JSON: an expression reference (``&field``) on its own."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack += v.values()
        elif isinstance(v, list):
            stack += v
        elif not (v is None or isinstance(v, str | int | float | bool)):
            raise InputError(
                "the expression returns an expression reference (&...), which is "
                "not a value; use it inside sort_by(), max_by() or min_by()"
            )


def query(
    store: Store,
    expression: str,
    rev: str | None = None,
    at: str | float | None = None,
    limit: int | None = None,
    with_pointers: bool = False,
    max_bytes: int | None = None,
    offset: int = 0,
) -> QueryResult:
    """The matches of a JMESPath ``expression`` at ``rev`` (default main) or time ``at``.

    ``offset`` skips that many matches, ``limit`` returns at most that many after them, and
    ``max_bytes`` cuts the answer at a whole match so that the matches' compact JSON fits
    (at least one match is always returned); ``next_offset`` then says where the rest starts.
    """
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: give 1 or more")
    if offset < 0 or (max_bytes is not None and max_bytes < 1):
        raise InputError("offset must be 0 or more and max_bytes 1 or more")
    upto = None if limit is None else offset + limit
    ast = compile_expression(expression)
    snap = Snapshot.at(store, rev, at)
    plan = _plan(ast)
    if plan is None:
        matches = _fallback(ast, snap, with_pointers)
    else:
        snap.require(plan.key)
        run = _Run(plan, snap, with_pointers)
        if plan.projection or (not plan.steps and snap.sharded(plan.key) is not None):
            hits = list(itertools.islice(run.items(), _needed(plan, upto)))
            matches = _post(run, [h.value for h in hits], hits)
        else:
            matches = _value(run)
    more = upto is not None and len(matches) > upto
    window = matches[offset:upto]
    for m in window:
        _check_json(m.value)
    fit = page([m.to_json() if with_pointers else m.value for m in window], max_bytes)
    shown = window[: len(fit.items)]
    cut = len(shown) < len(window)
    rest = offset + len(shown) if cut or more else None
    return QueryResult(
        expression,
        snap.rev,
        str(snap.commit.id),
        shown,
        more,
        snap.how,
        snap.chunks_read,
        snap.chunks_skipped,
        offset,
        rest,
        cut,
    )
