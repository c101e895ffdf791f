"""What a commit changed, value by value, for people: ``/tasks/[id=T-4]/status: 'todo' → 'done'``.

The JSON Patch of :func:`gitvault.history.diff` is exact but reads like a machine's: moves,
positional indexes, whole records added. A reviewer wants one line per value that changed,
named the way the merge report names it (items of arrays of id'd objects by id). deepdiff
gives that report; before asking it, arrays of uniquely id'd objects become maps keyed by
``[id=...]`` (so a reordered array is not a wall of changes) and parts that are equal on both
sides are pruned (so a 10,000-item key with one changed item costs one comparison per item,
not a deep walk of both).

Used by the review page (:mod:`gitvault.web`); the CLI or the MCP server may show the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pygit2
from deepdiff import DeepDiff

from gitvault.core import codec, pointers
from gitvault.core.jsonmerge import MISSING, is_id_array, json_equal
from gitvault.git.storage import Store

#: deepdiff's report kinds, as the words a reader sees
KINDS = {
    "values_changed": "changed",
    "type_changes": "changed",
    "dictionary_item_added": "added",
    "iterable_item_added": "added",
    "dictionary_item_removed": "removed",
    "iterable_item_removed": "removed",
}
MAX_LINES = 500  # past this a summary says how many more there are


def render(value: Any, width: int = 120) -> str:
    """A value as a reader sees it: strings in single quotes, the rest as JSON."""
    if isinstance(value, str):
        quoted = json.dumps(value, ensure_ascii=False)  # escapes controls, quotes, backslashes
        text = quoted if "'" in value else "'" + quoted[1:-1].replace('\\"', '"') + "'"
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) <= width:
        return text
    if isinstance(value, dict):
        return f"{{…{len(value)} keys}}"
    if isinstance(value, list):
        return f"[…{len(value)} items]"
    return text[: width - 1] + "…"


@dataclass(frozen=True)
class Line:
    """One changed value: where (id form), how, and before/after (MISSING when absent)."""

    path: str
    kind: str  # changed | added | removed
    old: Any
    new: Any

    @property
    def text(self) -> str:
        if self.kind == "added":
            return f"{self.path}: added {render(self.new)}"
        if self.kind == "removed":
            return f"{self.path}: removed (was {render(self.old)})"
        return f"{self.path}: {render(self.old)} → {render(self.new)}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind, "text": self.text}
        if self.old is not MISSING:
            out["old"] = self.old
        if self.new is not MISSING:
            out["new"] = self.new
        return out


def _keyed(value: Any) -> Any:
    """Arrays of uniquely id'd objects as ``{"[id=X]": item}``, all the way down."""
    if isinstance(value, dict):
        return {k: _keyed(v) for k, v in value.items()}
    if isinstance(value, list):
        if is_id_array(value):
            keyed = {f"[id={x['id']}]": _keyed(x) for x in value}
            if len(keyed) == len(value):
                return keyed
        return [_keyed(v) for v in value]
    return value


def _pruned(old: Any, new: Any) -> tuple[Any, Any]:
    """Both sides without the members of maps that are equal on both (order kept)."""
    if isinstance(old, dict) and isinstance(new, dict):
        a: dict[str, Any] = {}
        b: dict[str, Any] = {}
        for k in old.keys() | new.keys():
            if k in old and k in new:
                if json_equal(old[k], new[k]):
                    continue
                a[k], b[k] = _pruned(old[k], new[k])
            elif k in old:
                a[k] = old[k]
            else:
                b[k] = new[k]
        return a, b
    return old, new


def summarize(old: Any, new: Any, prefix: str = "") -> list[Line]:
    """The changed values between ``old`` and ``new`` (MISSING: absent), paths under
    ``prefix``, in document order of the paths."""
    if old is MISSING and new is MISSING:
        return []
    if old is MISSING:
        return [Line(prefix or "/", "added", MISSING, new)]
    if new is MISSING:
        return [Line(prefix or "/", "removed", old, MISSING)]
    if json_equal(old, new):
        return []
    a, b = _pruned(_keyed(old), _keyed(new))
    base = pointers.split(prefix) if prefix else []
    lines: list[Line] = []
    report = DeepDiff(a, b, view="tree", verbose_level=2)
    for kind, items in report.items():
        word = KINDS.get(kind)
        if word is None:
            continue
        for item in items:
            steps = [str(s) for s in item.path(output_format="list")]
            t1 = MISSING if word == "added" else item.t1
            t2 = MISSING if word == "removed" else item.t2
            lines.append(Line(pointers.join(base + steps) or "/", word, t1, t2))
    lines.sort(key=lambda x: x.path)
    return lines


def documents(old: dict[str, Any], new: dict[str, Any]) -> list[Line]:
    """Key by key, so that each line's path starts at its key."""
    out: list[Line] = []
    for k in sorted(old.keys() | new.keys()):
        out += summarize(old.get(k, MISSING), new.get(k, MISSING), pointers.join([k]))
    return out


def between(store: Store, old: pygit2.Commit | None, new: pygit2.Commit) -> list[Line]:
    """The summary from commit ``old`` (None: nothing) to ``new``; only keys whose blobs
    differ are read."""
    before = store.key_blobs(old.tree) if old is not None else {}
    after = store.key_blobs(new.tree)
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    for name in sorted(before.keys() | after.keys()):
        if before.get(name) == after.get(name):
            continue
        key = codec.key_of(name)
        assert key is not None
        if name in before:
            a[key] = codec.loads_trusted(store.blob(before[name]), name)
        if name in after:
            b[key] = codec.loads_trusted(store.blob(after[name]), name)
    return documents(a, b)


@dataclass(frozen=True)
class MergeSides:
    """A merge commit read as a reviewer wants it: what each side changed since their common
    base, and how each key was merged."""

    base: str
    ours: list[Line]  # main's side (first parent) since the base
    theirs: list[Line]  # the merged agent's commit since the base
    result: list[Line]  # what the merge changed on main
    strategy: dict[str, str]  # key -> git | structural | chunks ...


def strategy_of(trailer: str | None) -> dict[str, str]:
    """``Merge-Strategy: tasks=git, bugs=structural`` as a map."""
    out: dict[str, str] = {}
    for part in (trailer or "").split(","):
        k, sep, v = part.strip().partition("=")
        if sep:
            out[k] = v
    return out


def merge_sides(store: Store, commit: pygit2.Commit, strategy: str | None) -> MergeSides | None:
    """Both sides of a two-parent commit (None for any other commit)."""
    if len(commit.parent_ids) != 2:
        return None
    ours, theirs = commit.parents
    base_id = store.repo.merge_base(ours.id, theirs.id)
    base = store.commit(base_id) if base_id is not None else None
    return MergeSides(
        str(base_id),
        between(store, base, ours),
        between(store, base, theirs),
        between(store, ours, commit),
        strategy_of(strategy),
    )


__all__ = [
    "Line",
    "MergeSides",
    "between",
    "documents",
    "merge_sides",
    "render",
    "strategy_of",
    "summarize",
]
