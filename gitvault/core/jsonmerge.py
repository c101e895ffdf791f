"""Structural three-way merge of parsed JSON values.

Git merges text line by line, which is the wrong granularity for JSON memory files: two agents
editing different fields of one record would conflict, and two agents appending to one list
would produce invalid JSON.  This module merges the *parsed* values instead: objects key by
key, arrays of ``{"id": ...}`` records item by item (matched by id, not by position), and
everything else as an atomic value.  Only a location changed differently on both sides is a
conflict, and each conflict is reported with a JSON Pointer so callers can show or resolve it.

Equality is strict JSON equality (``True != 1``, ``1 != 1.0``, ``0.0 != -0.0``), because a
value that changed type is a change an agent made and must not be silently merged away.

The merged value never shares mutable containers with the inputs or with reported conflicts,
so callers may mutate any of them freely.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "MISSING",
    "Conflict",
    "MergeResult",
    "Resolver",
    "is_id_array",
    "json_equal",
    "merge3",
    "pointer_escape",
]


class _Missing(enum.Enum):
    """Type of the :data:`MISSING` sentinel; an enum so it survives pickle/copy as a singleton
    and so type checkers can narrow on ``x is MISSING``."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""Marks an absent key or array item (distinct from JSON ``null``)."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """One location changed differently on both sides.

    ``pointer`` is an RFC 6901 pointer in ours' layout (theirs' index for an id-array item that
    ours lacks); ``path`` is the same location with id-array items written ``[id=...]``, which
    stays meaningful when items move.  ``base``/``ours``/``theirs`` may be :data:`MISSING`.
    ``kind`` is one of ``"modify/modify"``, ``"delete/modify"``, ``"modify/delete"``,
    ``"add/add"`` or ``"array"``.
    """

    pointer: str
    path: str
    base: Any
    ours: Any
    theirs: Any
    kind: str


@dataclass(frozen=True, slots=True)
class MergeResult:
    """Merged value plus every conflict found, in traversal order.

    At each conflict ``value`` holds ours' value, or the resolver's choice if one was given;
    conflicts are reported either way so callers can record the decisions.
    """

    value: Any
    conflicts: tuple[Conflict, ...]

    @property
    def clean(self) -> bool:
        """True when no location was changed differently on both sides."""
        return not self.conflicts


Resolver: TypeAlias = Callable[[Conflict], Any]
"""Returns the value to use for a conflict (:data:`MISSING` drops the key/item), or raises."""

_Kind = Literal["modify/modify", "delete/modify", "modify/delete", "add/add", "array"]


def pointer_escape(token: str) -> str:
    """Escape one reference token per RFC 6901 (``~`` -> ``~0``, ``/`` -> ``~1``)."""
    return token.replace("~", "~0").replace("/", "~1")


def json_equal(a: Any, b: Any) -> bool:
    """Strict JSON equality: bool, int, float, str and null never equal each other, floats
    compare by value and sign (``-0.0 != 0.0``), objects ignore key order, arrays do not.
    :data:`MISSING` equals only itself."""
    if a is b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        if not isinstance(b, dict) or len(a) != len(b):
            return False
        return all(k in b and json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return False
        return all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        if not isinstance(b, float):
            return False
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, int):
        return isinstance(b, int) and a == b
    if isinstance(a, str):
        return isinstance(b, str) and a == b
    if a is None or b is None or a is MISSING or b is MISSING:
        return False  # identical objects were handled by the `is` check above
    return type(a) is type(b) and bool(a == b)


def is_id_array(*lists: list[Any]) -> bool:
    """True if every item of every list is an object with a str/int (not bool) ``"id"``, ids
    are unique within each list, and at least one item exists.

    Such arrays are merged as maps keyed by id.  All-empty input returns False because there is
    no evidence the array holds records rather than, say, tags.
    """
    found = False
    for items in lists:
        if not isinstance(items, list):
            return False
        seen: set[str | int] = set()
        for item in items:
            if not isinstance(item, dict) or "id" not in item:
                return False
            key = item["id"]
            if isinstance(key, bool) or not isinstance(key, str | int) or key in seen:
                return False
            seen.add(key)
            found = True
    return found


def merge3(
    base: Any,
    ours: Any,
    theirs: Any,
    resolver: Resolver | None = None,
    *,
    prefix: str = "",
) -> MergeResult:
    """Three-way merge ``ours`` and ``theirs`` against their common ``base``.

    Any argument may be :data:`MISSING` (e.g. a key added on both sides has no base).
    ``prefix`` (an already-escaped JSON Pointer) is prepended to every conflict's ``pointer``
    and ``path`` so a caller merging one sub-document reports document-wide locations.
    ``resolver``, if given, is called once per conflict in traversal order; whatever it raises
    propagates.
    """
    merger = _Merger(resolver)
    value = merger.merge(base, ours, theirs, prefix, prefix)
    return MergeResult(value, tuple(merger.conflicts))


def _clone(value: Any) -> Any:
    """Copy JSON containers so the merge result never aliases its inputs."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _kind(base: Any, ours: Any, theirs: Any) -> _Kind:
    if base is MISSING:
        return "add/add"
    if ours is MISSING:
        return "delete/modify"
    if theirs is MISSING:
        return "modify/delete"
    if isinstance(ours, list) and isinstance(theirs, list):
        return "array"
    return "modify/modify"


class _Merger:
    """Carries the resolver and the conflicts collected during one :func:`merge3` call."""

    def __init__(self, resolver: Resolver | None) -> None:
        self.resolver = resolver
        self.conflicts: list[Conflict] = []

    def merge(self, base: Any, ours: Any, theirs: Any, pointer: str, path: str) -> Any:
        if json_equal(ours, theirs):
            return _clone(ours)
        if json_equal(ours, base):
            return _clone(theirs)
        if json_equal(theirs, base):
            return _clone(ours)
        if isinstance(ours, dict) and isinstance(theirs, dict):
            if base is MISSING:
                return self._merge_dicts({}, ours, theirs, pointer, path)
            if isinstance(base, dict):
                return self._merge_dicts(base, ours, theirs, pointer, path)
        if isinstance(ours, list) and isinstance(theirs, list):
            base_list = [] if base is MISSING else base
            if isinstance(base_list, list) and is_id_array(base_list, ours, theirs):
                return self._merge_id_lists(base_list, ours, theirs, pointer, path)
        conflict = Conflict(
            pointer, path, _clone(base), _clone(ours), _clone(theirs), _kind(base, ours, theirs)
        )
        self.conflicts.append(conflict)
        if self.resolver is None:
            return _clone(ours)
        return _clone(self.resolver(conflict))

    def _merge_dicts(
        self,
        base: dict[str, Any],
        ours: dict[str, Any],
        theirs: dict[str, Any],
        pointer: str,
        path: str,
    ) -> dict[str, Any]:
        """Merge key by key; ours' key order first, then keys new in theirs."""
        merged: dict[str, Any] = {}
        keys = [*ours, *(k for k in theirs if k not in ours)]
        for key in keys:
            token = "/" + pointer_escape(key)
            value = self.merge(
                base.get(key, MISSING),
                ours.get(key, MISSING),
                theirs.get(key, MISSING),
                pointer + token,
                path + token,
            )
            if value is not MISSING:
                merged[key] = value
        return merged

    def _merge_id_lists(
        self,
        base: list[dict[str, Any]],
        ours: list[dict[str, Any]],
        theirs: list[dict[str, Any]],
        pointer: str,
        path: str,
    ) -> list[Any]:
        """Merge arrays of records as maps keyed by id, so moves and concurrent inserts merge.

        Result order: surviving items in ours' order, then items ours lacks (new in theirs, or
        kept by a resolver after ours deleted them) in theirs' order.
        """
        base_by_id = {item["id"]: item for item in base}
        ours_by_id = {item["id"]: item for item in ours}
        theirs_by_id = {item["id"]: item for item in theirs}
        merged: list[Any] = []

        def visit(item_id: str | int, index: int) -> None:
            value = self.merge(
                base_by_id.get(item_id, MISSING),
                ours_by_id.get(item_id, MISSING),
                theirs_by_id.get(item_id, MISSING),
                f"{pointer}/{index}",
                f"{path}/[id={pointer_escape(str(item_id))}]",
            )
            if value is not MISSING:
                merged.append(value)

        for index, item in enumerate(ours):
            visit(item["id"], index)
        for index, item in enumerate(theirs):
            if item["id"] not in ours_by_id:
                visit(item["id"], index)
        return merged
