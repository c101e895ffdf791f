"""Questions about the past: who last wrote a value, what changed when.

Walks commits newest first and compares only the blob of the key concerned: a commit whose
blob for that key equals its first parent's cannot have written the value, so it is skipped
without parsing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pygit2
from pygit2.enums import SortMode

from . import codec, pointers
from .jsonmerge import MISSING, json_equal
from .provenance import parse_trailers
from .storage import Store


@dataclass(frozen=True)
class Writer:
    commit: str
    agent: str
    source: str
    confidence: float | None
    justification: str
    time: int

    @classmethod
    def of(cls, commit: pygit2.Commit) -> Writer:
        t = parse_trailers(commit.message)
        try:
            conf: float | None = float(t.get("Confidence", ""))
        except ValueError:
            conf = None
        return cls(str(commit.id), t.get("Agent-Id", commit.author.name), t.get("Source", ""),
                   conf, t.get("Justification", ""), commit.commit_time)

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "agent": self.agent, "source": self.source,
                "confidence": self.confidence, "justification": self.justification,
                "time": self.time}


def _blob_id(tree: pygit2.Tree, name: str) -> pygit2.Oid | None:
    try:
        return tree[name].id
    except KeyError:
        return None


def value_at(store: Store, tree: pygit2.Tree, path: str) -> Any:
    """The value at a pointer (id steps allowed) in a commit's tree, or MISSING."""
    key = pointers.top_key(path)
    oid = _blob_id(tree, key + codec.BLOB_SUFFIX)
    if oid is None:
        return MISSING
    doc = {key: codec.loads(store.blob(oid), key)}
    return pointers.get(doc, path)


def last_writer(store: Store, head: pygit2.Oid, path: str,
                hide: pygit2.Oid | None = None) -> Writer | None:
    """The commit that last set the value at ``path`` as it is at ``head``."""
    key_file = pointers.top_key(path) + codec.BLOB_SUFFIX
    want = value_at(store, store.commit(head).tree, path)
    walker = store.repo.walk(head, SortMode.TOPOLOGICAL | SortMode.TIME)
    if hide is not None:
        walker.hide(hide)
    for commit in walker:
        blob = _blob_id(commit.tree, key_file)
        parent = commit.parents[0] if commit.parents else None
        if parent is not None and _blob_id(parent.tree, key_file) == blob:
            continue
        changed_here = parent is None or not json_equal(value_at(store, parent.tree, path), want)
        if changed_here and json_equal(value_at(store, commit.tree, path), want):
            return Writer.of(commit)
    return None
