"""How a query is run over a sharded key chunk by chunk: the shapes recognised (a path to an
array, then a filter or projection, optionally piped), their plan and its run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from jmespath import exceptions as jexc
from jmespath import visitor as jvisitor

from gitvault.core import codec, pointers
from gitvault.core.jsonmerge import MISSING
from gitvault.errors import InputError
from gitvault.history.reading import IdNamer, IdPaths, Snapshot
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
