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
word index (:mod:`gitvault.wordindex`) rules most out without inflating them, the others'
bytes are tested before parsing. Any other expression reads the sharded key whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from jmespath import exceptions as jexc
from jmespath import parser as jparser
from jmespath import visitor as jvisitor

from gitvault.core import codec, pointers
from gitvault.core.jsonmerge import MISSING
from gitvault.errors import InputError, QueryError
from gitvault.git.storage import Store
from gitvault.history.reading import IdNamer, IdPaths, Snapshot, page
from gitvault.history.wordindex import Want, words

Node = dict[str, Any]
Step = str | int  # a field name or an array index


@dataclass(frozen=True)
class Match:
    """One matched value and where it is (None: a computed value with no one place)."""

    value: Any
    pointer: str | None = None  # RFC 6901, indexes: feeds `checkin --patch`
    path: str | None = None  # the same with id steps where items have ids
    computed: bool = False  # the value was computed from the item at `pointer`

    def to_json(self) -> dict[str, Any]:
        out = {"value": self.value, "pointer": self.pointer, "path": self.path}
        if self.computed:
            out["computed"] = True
        return out


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


def _true(value: Any) -> bool:
    """JMESPath truthiness: null, false, "", [] and {} are false (0 is true)."""
    return not (
        value is None or value is False or (isinstance(value, str | list | dict) and not value)
    )


def _rel(node: Node) -> list[Step] | None:
    """A node that is a plain path from the current value (fields and indexes), as steps."""
    t = node["type"]
    if t in ("identity", "current"):
        return []
    if t == "field":
        return [node["value"]]
    if t == "subexpression":
        out: list[Step] = []
        for child in node["children"]:
            steps = _rel(child)
            if steps is None:
                return None
            out += steps
        return out
    if t == "index_expression" and node["children"][1]["type"] == "index":
        a = _rel(node["children"][0])
        return [*a, int(node["children"][1]["value"])] if a is not None else None
    return None


def _walk(value: Any, steps: list[Step], tokens: list[str]) -> tuple[Any, list[str]]:
    """Follow ``steps`` as JMESPath does (None when absent), keeping the pointer tokens."""
    tokens = list(tokens)
    for s in steps:
        if isinstance(s, str):
            value = value.get(s) if isinstance(value, dict) else None
            tokens.append(s)
        elif isinstance(value, list) and -len(value) <= s < len(value):
            i = s % len(value)
            value = value[i]
            tokens.append(str(i))
        else:
            value = None
        if value is None:
            break
    return value, tokens


def _slice(node: Node) -> tuple[int, int | None] | None:
    """``[a:b]`` with bounds >= 0 and step 1, which can be read front to back."""
    start, stop, step = node["children"]
    if step not in (None, 1) or (start or 0) < 0 or (stop is not None and stop < 0):
        return None
    return start or 0, stop


@dataclass
class _Plan:
    """A path to an array or value, then maybe a projection over it, then maybe a pipe."""

    key: str
    steps: list[Step]  # after the key
    projection: bool
    cond: Node | None = None
    right: Node | None = None  # the projected expression (None: the item itself)
    right_steps: list[Step] | None = None  # when it is a plain path
    lo: int = 0
    hi: int | None = None
    post: Node | None = None  # a pipe's right side, other than a slice or an index
    post_slice: tuple[int, int | None] | None = None
    single: bool = False  # the pipe takes one hit (`| [n]`)
    needles: list[bytes] = field(default_factory=list)


def _set_post(plan: _Plan, node: Node) -> None:
    t = node["type"]
    if (
        t == "index_expression"
        and node["children"][0]["type"] == "identity"
        and node["children"][1]["type"] == "index"
        and node["children"][1]["value"] >= 0
    ):
        n = int(node["children"][1]["value"])
        plan.post_slice, plan.single = (n, n + 1), True
        return
    if (
        t == "projection"
        and node["children"][1]["type"] == "identity"
        and node["children"][0]["type"] == "index_expression"
    ):
        inner = node["children"][0]["children"]
        if inner[0]["type"] == "identity" and inner[1]["type"] == "slice":
            s = _slice(inner[1])
            if s is not None:
                plan.post_slice = s
                return
    plan.post = node


def _needles(node: Node | None) -> list[bytes]:
    """Strings a match's bytes must contain: ``path == 'text'`` (also under ``&&``)."""
    if node is None:
        return []
    if node["type"] == "and_expression":
        return _needles(node["children"][0]) + _needles(node["children"][1])
    if node["type"] == "comparator" and node["value"] == "eq":
        a, b = node["children"]
        for p, lit in ((a, b), (b, a)):
            if lit["type"] == "literal" and isinstance(lit["value"], str) and _rel(p):
                return [codec.dumps(lit["value"])[:-1]]
    return []


def _plan(ast: Node) -> _Plan | None:
    left, post = (ast["children"][0], ast["children"][1]) if ast["type"] == "pipe" else (ast, None)
    cond = right = None
    projection = left["type"] in ("filter_projection", "projection")
    base = left
    if left["type"] == "filter_projection":
        base, right, cond = left["children"]
    elif left["type"] == "projection":
        base, right = left["children"]
    lo, hi = 0, None
    if projection and base["type"] == "index_expression" and base["children"][1]["type"] == "slice":
        s = _slice(base["children"][1])
        if s is None:
            return None
        (lo, hi), base = s, base["children"][0]
    steps = _rel(base)
    if not steps or not isinstance(steps[0], str):
        return None
    assert isinstance(steps[0], str)
    if right is not None and right["type"] == "identity":
        right = None
    plan = _Plan(
        steps[0],
        steps[1:],
        projection,
        cond,
        right,
        _rel(right) if right is not None else [],
        lo,
        hi,
    )
    plan.needles = _needles(cond)
    if post is not None:
        _set_post(plan, post)
    return plan


class _Run:
    """One evaluation of an expression against a snapshot."""

    def __init__(self, plan: _Plan, snap: Snapshot, with_pointers: bool) -> None:
        self.plan, self.snap, self.with_pointers = plan, snap, with_pointers
        self.interp = jvisitor.TreeInterpreter(jvisitor.Options())

    def visit(self, node: Node, value: Any) -> Any:
        try:
            return self.interp.visit(cast(Any, node), value)
        except (jexc.JMESPathError, TypeError, ValueError) as e:  # e.g. 1 > 'x', [::0]
            raise InputError(f"the expression fails on the data: {e}") from None
        except RecursionError:
            raise InputError("the expression nests too deeply for the data") from None

    def hit(self, item: Any, tokens: list[str], id_tokens: list[str]) -> Match | None:
        """The match an item of the projected array gives (None: filtered out, or null)."""
        p = self.plan
        if p.cond is not None and not _true(self.visit(p.cond, item)):
            return None
        rel: list[str] = []
        if p.right is None:
            value = item
        elif p.right_steps is not None:
            value, rel = _walk(item, p.right_steps, [])
        else:
            value = self.visit(p.right, item)
        if value is None and p.projection:
            return None  # a projection drops nulls; the items of a plain array stay
        if not self.with_pointers:
            return Match(value)
        path = pointers.join(id_tokens) + (IdPaths(item).path(rel) if rel else "")
        return Match(value, pointers.join(tokens + rel), path, p.right_steps is None)

    def base(self) -> tuple[dict[str, Any], Any, list[str]]:
        """``({key: value}, the value at the plan's path, its pointer tokens)``; one chunk is
        read when the path starts with an index into a sharded key, else the key whole."""
        p, snap = self.plan, self.snap
        first = p.steps[0] if p.steps else None
        if isinstance(first, int) and first >= 0 and snap.sharded(p.key) is not None:
            item = snap.item(p.key, first)
            if item is MISSING:
                return {}, None, []
            value, tokens = _walk(item, p.steps[1:], [p.key, str(first)])
            return {p.key: _Sparse(first, item)}, value, tokens
        doc = {p.key: snap.value(p.key)}
        value, tokens = _walk(doc[p.key], p.steps, [p.key])
        return doc, value, tokens

    def items(self) -> Iterator[Match]:
        """The matches of the projection over the array at the plan's path, in order."""
        p = self.plan
        if not p.steps and self.snap.sharded(p.key) is not None:
            yield from self._streamed()
            return
        doc, base, tokens = self.base()
        if not isinstance(base, list):
            return
        prefix = pointers.split(IdPaths(doc).path(tokens)) if self.with_pointers else []
        namer = IdNamer() if self.with_pointers else None
        stop = len(base) if p.hi is None else min(p.hi, len(base))
        for i in range(stop):
            token = namer.token(i, base[i]) if namer is not None else ""
            if i >= p.lo:
                found = self.hit(base[i], [*tokens, str(i)], [*prefix, token])
                if found is not None:
                    yield found

    def _streamed(self) -> Iterator[Match]:
        p, snap = self.plan, self.snap
        namer = IdNamer() if self.with_pointers else None
        if namer is not None and p.lo > 0:  # ids before the slice still count for id steps
            for ids in snap.ids_before(p.key, p.lo):
                namer.seen.update(ids)
        want = Want([words(orjson.loads(n)) for n in p.needles]) if p.needles else None
        for start, data, entry in snap.scan_chunks(p.key, want, p.lo, p.hi):
            if data is None or (p.needles and not all(n in data for n in p.needles)):
                if data is not None:
                    snap.chunks_skipped += 1
                if namer is not None:
                    namer.skip(data or b"", entry)
                continue
            for j, item in enumerate(snap.parse_chunk(data)):
                i = start + j
                token = namer.token(i, item) if namer is not None else ""
                if i >= p.lo and (p.hi is None or i < p.hi):
                    found = self.hit(item, [p.key, str(i)], [p.key, token])
                    if found is not None:
                        yield found


class _Sparse(list[Any]):
    """A stand-in for a sharded array of which only item ``index`` was read (id forms then
    stay positional at that level, which is still a valid path)."""

    def __init__(self, index: int, item: Any) -> None:
        super().__init__([None] * index + [item])


def _items_of(
    value: list[Any], tokens: list[str] | None, doc: Any, with_pointers: bool
) -> list[Match]:
    """Each item of an array found at ``tokens`` (None: at no place) as a match."""
    if not with_pointers or tokens is None:
        return [Match(v) for v in value]
    prefix = pointers.split(IdPaths(doc).path(tokens))
    namer = IdNamer()
    return [
        Match(v, pointers.join([*tokens, str(i)]), pointers.join([*prefix, namer.token(i, v)]))
        for i, v in enumerate(value)
    ]


def _post(run: _Run, subject: Any, hits: list[Match]) -> list[Match]:
    """The pipe's right side applied to ``subject`` (the hits' values, or the one value);
    results that are hits' own objects keep their places."""
    p = run.plan
    if p.post_slice is not None:
        if not isinstance(subject, list):
            return []  # a slice or index of a non-array is null
        a, b = p.post_slice
        picked = hits[a:b]
        if not p.single or not picked:
            return picked
        h = picked[0]
        if not isinstance(h.value, list):
            return [h]
        placed = h.pointer is not None and not h.computed
        return [
            Match(
                v,
                f"{h.pointer}/{i}" if placed else None,
                f"{h.path}/{i}" if placed and h.path else None,
            )
            for i, v in enumerate(h.value)
        ]
    if p.post is None:
        return hits
    result = run.visit(p.post, subject)
    by_id = {id(h.value): h for h in hits if isinstance(h.value, dict | list)}
    if result is None:
        return []
    return [
        by_id.get(id(v)) or Match(v) for v in (result if isinstance(result, list) else [result])
    ]


def _needed(plan: _Plan, limit: int | None) -> int | None:
    """How many hits of the projection the answer needs (None: all)."""
    if plan.post is not None:
        return None
    want = None if limit is None else limit + 1  # one more says whether there are more
    if plan.post_slice is not None:
        a, b = plan.post_slice
        if plan.single:
            return b
        return b if want is None else (a + want if b is None else min(b, a + want))
    return want


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
