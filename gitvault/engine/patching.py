"""Applying an RFC 6902 JSON Patch to the vault's document, reading only what it touches.

Why: ``checkin --patch`` exists so that an agent changing one value of a large memory sends
kilobytes; applying the patch must not then cost the whole document. When every operation
names an item of a sharded key by index (``/tasks/5/status``, ``/tasks/-``) or a path in an
ordinary key, only the chunks around those items and the ordinary keys named are read and
parsed; the patch is applied to that window with jsonpatch, and the sharded key's layout is
rewritten around it (:meth:`gitvault.git.shards.ChunkWriter.replace`). Anything else (a pointer to a
whole sharded key, a patch that fails on the window) goes through the whole document, with
the same result and the same errors.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

import pygit2

from gitvault.core import codec, pointers
from gitvault.errors import InputError
from gitvault.git import shards
from gitvault.git.storage import Store

Files = dict[str, bytes | pygit2.Oid]


def _index(token: str) -> int | None:
    """An array index token (``-`` counts as past the end); None if it is not one."""
    if token == "-":
        return shards.MAX_ITEMS
    if token.isdigit() and (token == "0" or not token.startswith("0")):
        return int(token)
    return None


def sparse(store: Store, tree: pygit2.Tree, patch: list[Any], limits: codec.Limits) -> Files | None:
    """The files of ``tree``'s document with ``patch`` applied, or None: use the whole path.

    Keys the patch does not touch are passed on by id (nothing is read or written for them).
    """
    import jsonpatch

    if not isinstance(patch, list) or not patch:
        return None
    files: Files = dict(store.key_blobs(tree))
    sharded = {
        n[: -len(codec.BLOB_SUFFIX)]: o
        for n, o in files.items()
        if isinstance(o, pygit2.Oid) and store.is_tree(o)
    }
    if not sharded:
        return None
    targets = _targets(patch, sharded)
    if targets is None:
        return None
    wanted, plain = targets
    if not wanted:
        return None
    doc: dict[str, Any] = {}
    for key in plain:
        oid = files.get(key + codec.BLOB_SUFFIX)
        if isinstance(oid, pygit2.Oid):
            doc[key] = codec.loads_trusted(store.blob(oid), key)
    windows = {
        key: _Window(store, store.repo[sharded[key]], at, len(patch))  # type: ignore[arg-type]
        for key, at in wanted.items()
    }
    for key, window in windows.items():
        doc[key] = window.items
    moved = [_shifted(op, windows) for op in patch]
    try:
        jsonpatch.apply_patch(doc, moved, in_place=True)
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        TypeError,
        KeyError,
        ValueError,
        IndexError,
    ):
        return None  # maybe outside the window: the whole document decides (and explains)
    for key in plain:
        files.pop(key + codec.BLOB_SUFFIX, None)
    for key in windows:
        files.pop(key + codec.BLOB_SUFFIX, None)
    codec.check_document(doc, "patched document")
    if len(files) + len(doc) > limits.max_keys:
        return None  # the whole path words the refusal
    for key, value in doc.items():
        if key in windows:
            if not isinstance(value, list):
                return None
            files[key + codec.BLOB_SUFFIX] = windows[key].write(value, limits)
        else:
            files.update(codec.encode_document({key: value}, limits))
    codec.check_size(
        sum(len(v) if isinstance(v, bytes) else store.key_size(v) for v in files.values()),
        limits,
        "document",
    )
    return files


def _targets(
    patch: list[Any], sharded: Mapping[str, Any]
) -> tuple[dict[str, list[int]], set[str]] | None:
    """The item indexes each op names in each sharded key, and the plain keys it names; None
    when an op is not one the sparse path can place (the whole document then decides)."""
    wanted: dict[str, list[int]] = {}  # sharded key -> item indexes named
    plain: set[str] = set()
    for op in patch:
        if not isinstance(op, dict):
            return None
        for field in ("path", "from"):
            if field not in op:
                continue
            try:
                tokens = pointers.split(op[field]) if isinstance(op[field], str) else []
            except InputError:
                return None
            if not tokens:
                return None
            if tokens[0] not in sharded:
                plain.add(tokens[0])
                continue
            at = _index(tokens[1]) if len(tokens) > 1 else None
            if at is None:
                return None
            wanted.setdefault(tokens[0], []).append(at)
    return wanted, plain


def _shifted(op: Mapping[str, Any], windows: Mapping[str, _Window]) -> dict[str, Any]:
    """``op`` with item indexes of sharded keys made relative to their windows."""
    out = dict(op)
    for field in ("path", "from"):
        if field in out:
            tokens = pointers.split(out[field])
            window = windows.get(tokens[0])
            if window is not None and tokens[1] != "-":
                tokens[1] = str(int(tokens[1]) - window.start)
                out[field] = pointers.join(tokens)
    return out


class _Window:
    """The chunks of one sharded key around the items a patch names, parsed.

    It reaches ``reach`` items beyond the named ones on each side (one patch operation adds or
    removes at most one item, so indexes drift at most that far), and to the end of the array
    when ``-`` is named.
    """

    def __init__(self, store: Store, tree: pygit2.Tree, named: list[int], reach: int) -> None:
        self.store, self.tree = store, tree
        self.chunks = store.chunk_sizes(tree)
        starts = [int(n[:8]) for n, _, _ in self.chunks]
        low, high = max(0, min(named) - reach), max(named) + reach
        self.first = max(0, bisect.bisect_right(starts, low) - 1)
        self.last = max(self.first + 1, bisect.bisect_right(starts, high))
        self.start = starts[self.first]
        self.items: list[Any] = [
            item
            for _, oid, _ in self.chunks[self.first : self.last]
            for item in codec.loads_trusted(store.blob(oid), "chunk")
        ]

    def write(self, value: list[Any], limits: codec.Limits) -> bytes | pygit2.Oid:
        """Store the window's new items: the key's new tree, or its bytes when it shrank
        below the sharding size."""
        codec.check_limits({"k": value}, limits)  # as the whole document's check words it
        data = codec.dumps(value) if value else b""
        run = shards.items(data) if value else []
        writer = shards.ChunkWriter(self.store.repo, self.store.blob)
        chunks = self.store.objects(lambda: writer.replace(self.chunks, self.first, self.last, run))
        if shards.size_of(chunks) >= shards.SHARD_BYTES:
            oid = self.store.objects(lambda: writer.tree(chunks, self.tree))
            self.store.keep_chunks(oid, chunks)
            return oid
        whole = [i for _, oid, _ in chunks for i in shards.items(self.store.blob(oid))]
        return shards.encode(whole) if whole else b"[]\n"
