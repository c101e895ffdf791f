"""Merging an agent's commit into a main that moved: git first, then JSON structure.

1. libgit2's 3-way merge of the trees (``Repository.merge_trees``, renames off: a key is a file
   name, never "moved"). Its result for a key file is accepted only if it parses as JSON (it
   is then re-encoded canonically; duplicate keys from two adjacent inserts fail the parse).
2. Every key file git could not merge, or merged into invalid JSON, goes through
   :func:`gitvault.core.jsonmerge.merge3` on the parsed values.
3. What still conflicts is handed to the resolver of the chosen policy; what the resolver
   leaves undecided is returned as conflicts, and no tree is written.

Files under ``.gitvault/`` (schemas, legacy log) are not JSON documents of the memory: git's
result is taken, and a conflict there is reported as a conflict on that file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pygit2
from pygit2.enums import FileMode, MergeFlag

from gitvault.core import codec, splice
from gitvault.core.jsonmerge import MISSING, Conflict, merge3
from gitvault.errors import CodecError
from gitvault.git import shards
from gitvault.git.storage import Store

# A decision for one conflict: ("ours" | "theirs", why) or None to leave it unresolved.
Decide = Callable[[Conflict], tuple[str, str] | None]


@dataclass
class MergeOutcome:
    tree: pygit2.Oid | None  # None while conflicts remain
    conflicts: list[Conflict] = field(default_factory=list)
    decisions: list[tuple[Conflict, str, str]] = field(default_factory=list)  # (c, side, why)
    how: dict[str, str] = field(default_factory=dict)  # key -> git | structural | ...
    stats: Counter[str] = field(default_factory=Counter)

    @property
    def clean(self) -> bool:
        return not self.conflicts


def _blob_value(store: Store, entry: pygit2.IndexEntry | None, name: str) -> Any:
    if entry is None:
        return MISSING
    return codec.loads_trusted(store.blob(entry.id), name)


def _decider(
    decide: Decide | None, outcome: MergeOutcome, undecided: list[Conflict]
) -> Callable[[Conflict], Any]:
    def resolve(c: Conflict) -> Any:
        choice = decide(c) if decide is not None else None
        if choice is None:
            undecided.append(c)
            return c.ours
        side, why = choice
        outcome.decisions.append((c, side, why))
        return c.ours if side == "ours" else c.theirs

    return resolve


def merge_trees(
    store: Store,
    base: pygit2.Tree,
    ours: pygit2.Tree,
    theirs: pygit2.Tree,
    decide: Decide | None = None,
) -> MergeOutcome:
    """Merge ``theirs`` (the agent's tree) into ``ours`` (main) from ``base``."""
    spliced = _splice_trees(store, base, ours, theirs)
    if spliced is not None:
        return spliced
    repo = store.repo
    index = store.objects(lambda: repo.merge_trees(base, ours, theirs, flags=MergeFlag(0)))
    outcome = MergeOutcome(tree=None)
    conflicted: dict[str, tuple[Any, Any, Any]] = {}
    if index.conflicts is not None:
        for anc, our, their in list(index.conflicts):
            entry = anc or our or their
            assert entry is not None
            conflicted[entry.path] = (anc, our, their)
    sides = [store.key_blobs(t) for t in (base, ours, theirs)]
    base_blobs, our_blobs, their_blobs = sides
    both = {
        n
        for n in set(our_blobs) | set(their_blobs)
        if our_blobs.get(n) != base_blobs.get(n)
        and their_blobs.get(n) != base_blobs.get(n)
        and our_blobs.get(n) != their_blobs.get(n)
    }
    # a sharded key changed on both sides is merged whole (below), never chunk by chunk:
    # chunk names shift when items are added or removed, so git's union of two sides' chunk
    # files could put items out of order
    sharded = {
        n
        for n in both
        if any(o is not None and store.is_tree(o) for o in (b.get(n) for b in sides))
    }
    for path in list(conflicted):  # K/chunk files, or K.json when one side sharded it
        head, sep, _ = path.partition("/")
        if (head + codec.BLOB_SUFFIX if sep else path) in sharded:
            del conflicted[path], index.conflicts[path]
    undecided: list[Conflict] = []
    resolve = _decider(decide, outcome, undecided)
    for name in sorted(both | set(conflicted)):
        key = codec.key_of(name)
        if name in sharded:
            assert key is not None
            oids = [blobs.get(name) for blobs in sides]
            _drop(index, name)
            if _chunkwise(store, index, name, oids):
                outcome.how[key] = "chunks"
                outcome.stats["chunks"] += 1
                continue
            outcome.stats["sharded"] += 1
            _structural(store, index, outcome, name, key, _values(store, oids, name), resolve)
            continue
        if key is None or "/" in name:  # a file of .gitvault/: no JSON merge for it
            outcome.conflicts.append(Conflict("/" + name, "/" + name, None, None, None, "file"))
            continue
        _merge_file(store, index, outcome, name, key, conflicted.get(name), sides, resolve)
    outcome.conflicts += undecided
    if outcome.conflicts:
        return outcome
    outcome.tree = store.objects(lambda: index.write_tree(repo))
    return outcome


def _merge_file(
    store: Store,
    index: pygit2.Index,
    outcome: MergeOutcome,
    name: str,
    key: str,
    conflicted: tuple[Any, Any, Any] | None,
    sides: list[dict[str, pygit2.Oid]],
    resolve: Decide,
) -> None:
    """One key file both sides changed: git's merge when it gave canonical JSON, else the
    structural merge of the three values."""
    if conflicted is None:
        try:
            data = store.blob(index[name].id)
            if not codec.is_canonical(data):  # usual: both sides were, and so is the merge
                _put(store, index, name, codec.canonical(data, name))
            elif shards.wanted(data):  # the two sides' additions made it a large array
                _put(store, index, name, data)
            outcome.how[key] = "git"
            outcome.stats["git"] += 1
            return
        except CodecError:
            outcome.stats["git-invalid"] += 1
        except KeyError:  # both deleted: nothing to do
            return
        values = _values(store, [blobs.get(name) for blobs in sides], name)
    else:
        outcome.stats["git-conflict"] += 1
        values = [_blob_value(store, e, name) for e in conflicted]
        del index.conflicts[name]
    _structural(store, index, outcome, name, key, values, resolve)


def _splice_trees(
    store: Store, base: pygit2.Tree, ours: pygit2.Tree, theirs: pygit2.Tree
) -> MergeOutcome | None:
    """The merge without git when every key changed on both sides can be spliced
    (:mod:`gitvault.core.splice`: different items or members changed); None otherwise."""
    sides = [store.key_blobs(t) for t in (base, ours, theirs)]
    b, o, t = sides
    rest = [
        {
            e.name: e.id
            for e in tree
            if e.name is not None
            and e.name + ("" if e.type_str == "blob" else codec.BLOB_SUFFIX) not in keys
        }
        for tree, keys in zip((base, ours, theirs), sides, strict=True)
    ]
    if rest[2] != rest[0] and rest[2] != rest[1]:
        return None  # the proposal changed .gitvault/ (schemas) as well: merge it as before
    both = [
        n
        for n in set(o) | set(t)
        if o.get(n) != b.get(n) and t.get(n) != b.get(n) and o.get(n) != t.get(n)
    ]
    if not both:
        return None
    files: dict[str, bytes | pygit2.Oid] = dict(o)
    for name in set(b) | set(t):
        if t.get(name) != b.get(name) and o.get(name) == b.get(name):
            if name in t:
                files[name] = t[name]
            else:
                files.pop(name, None)
    outcome = MergeOutcome(tree=None)
    for name in both:
        oids = [x.get(name) for x in sides]
        if any(oid is None or store.is_tree(oid) for oid in oids):
            return None  # added or removed on one side, or sharded: as before
        data = splice.splice(*(store.blob(oid) for oid in oids if oid is not None))
        if data is None:
            return None
        files[name] = data
        key = codec.key_of(name)
        assert key is not None
        outcome.how[key] = "splice"
        outcome.stats["splice"] += 1
    unchanged = {n: oid for n, oid in o.items() if files.get(n) == oid}
    outcome.tree = store.build_tree(ours, files, ids=unchanged)
    return outcome


def _chunkwise(store: Store, index: pygit2.Index, name: str, oids: list[pygit2.Oid | None]) -> bool:
    """Merge a key sharded on all three sides chunk by chunk, if the edits do not overlap."""
    if not all(o is not None and store.is_tree(o) for o in oids):
        return False  # (headers only: loading a large blob just to see its type inflates it)
    trees = [store.repo[o] for o in oids if o is not None]
    base, ours, theirs = (shards.entries(t) for t in trees)  # type: ignore[arg-type]
    merged = store.objects(
        lambda: shards.merge(
            base,
            ours,
            theirs,
            store.blob,
            store.repo.create_blob,
            lambda *texts: _text_merge(store, *texts),
        )
    )
    if merged is None:
        return False
    folder = name[: -len(codec.BLOB_SUFFIX)]
    for chunk, oid in merged:
        index.add(pygit2.IndexEntry(f"{folder}/{chunk}", oid, FileMode.BLOB))
    return True


def _text_merge(store: Store, base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """git's 3-way merge of three stretches of a sharded key (canonical JSON arrays): the
    merged array, or None on a conflict or when the result is not a JSON array."""
    repo = store.repo
    a, o, t = (
        pygit2.IndexEntry("k.json", repo.create_blob(x), FileMode.BLOB)
        for x in (base, ours, theirs)
    )
    result = repo.merge_file_from_index(a, o, t)
    if not result.automergeable or result.contents is None:
        return None
    data = result.contents.encode("utf-8")
    try:
        data = data if codec.is_canonical(data) else codec.canonical(data)
    except CodecError:
        return None
    return data if data.startswith(b"[\n") else None


def _values(store: Store, oids: list[pygit2.Oid | None], name: str) -> list[Any]:
    return [codec.loads_trusted(store.blob(o), name) if o is not None else MISSING for o in oids]


def _structural(
    store: Store,
    index: pygit2.Index,
    outcome: MergeOutcome,
    name: str,
    key: str,
    values: list[Any],
    resolve: Callable[[Conflict], Any],
) -> None:
    result = merge3(values[0], values[1], values[2], resolve, prefix="/" + key)
    outcome.how[key] = "structural"
    outcome.stats["structural"] += 1
    if result.value is MISSING:
        _drop(index, name)
    else:
        _put(store, index, name, codec.dumps(result.value))


def _drop(index: pygit2.Index, name: str) -> None:
    """Remove a key from the merge's index, as a file or as a sharded key's chunks."""
    if name in index:
        index.remove(name)
    folder = name[: -len(codec.BLOB_SUFFIX)] + "/"
    for entry in [e.path for e in index if e.path.startswith(folder)]:
        index.remove(entry)


def _put(store: Store, index: pygit2.Index, name: str, data: bytes) -> None:
    """Put a key's canonical bytes in the merge's index: one file, or chunks when large."""
    _drop(index, name)
    if not shards.wanted(data):
        index.add(pygit2.IndexEntry(name, store.write_blob(data), FileMode.BLOB))
        return
    folder = name[: -len(codec.BLOB_SUFFIX)]
    writer = shards.ChunkWriter(store.repo, store.blob)
    for chunk, oid, _ in store.objects(lambda: writer.full(data)):
        index.add(pygit2.IndexEntry(f"{folder}/{chunk}", oid, FileMode.BLOB))
