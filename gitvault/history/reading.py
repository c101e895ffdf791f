"""Reading a revision of the memory a part at a time, for ``query``, ``search`` and answers
cut to a byte budget.

Why: an agent asking for the blocked tasks must not cost the vault (or the agent's context) the
whole document. A :class:`Snapshot` opens one commit's tree and reads a key only when asked; a
sharded key (see :mod:`gitvault.git.shards`) is read chunk by chunk, each chunk's raw bytes first,
so a caller can skip a chunk that cannot hold what it looks for without parsing it. Memory is
then bounded by the largest chunk (256 KiB), not by the key.

:class:`IdNamer` gives array items id steps (``/tasks/[id=T-004]``) while items stream past, in
fixed memory. :func:`page` cuts a list of whole values to a byte budget and says where the rest
starts.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pygit2

from gitvault import history
from gitvault.core import codec, pointers
from gitvault.core.jsonmerge import MISSING
from gitvault.errors import InputError
from gitvault.git import shards
from gitvault.git.storage import Store
from gitvault.history.wordindex import ITEM_ID, Entry, Want, WordIndex


class Snapshot:
    """One commit's keys, each read only when asked (a sharded one chunk by chunk)."""

    def __init__(self, store: Store, commit: pygit2.Commit, rev: str | None = None) -> None:
        self.store, self.commit = store, commit
        self.rev = rev or "main"
        self.files = {codec.key_of(n) or n: o for n, o in store.key_blobs(commit.tree).items()}
        self.chunks_read = 0
        self.chunks_skipped = 0
        self.whole: set[str] = set()  # keys read whole
        self.index = WordIndex(store.path)

    @classmethod
    def at(cls, store: Store, rev: str | None = None, at: str | float | None = None) -> Snapshot:
        return cls(store, history.revision(store, rev, at), rev)

    @property
    def name(self) -> str:
        return f"{self.rev} ({str(self.commit.id)[:12]})"

    def keys(self) -> list[str]:
        return sorted(self.files)

    def require(self, key: str) -> None:
        """Refuse a key the revision does not have, naming the ones it has."""
        if key not in self.files:
            have = ", ".join(self.keys()) or "none"
            raise InputError(f"no key {key!r} at {self.name}; its keys: {have}")

    def sharded(self, key: str) -> pygit2.Tree | None:
        oid = self.files.get(key)
        if oid is None or not self.store.is_tree(oid):
            return None
        tree = self.store.repo[oid]
        assert isinstance(tree, pygit2.Tree)
        return tree

    def value(self, key: str) -> Any:
        """The whole value of ``key`` (for a sharded key: all its chunks assembled)."""
        self.require(key)
        self.whole.add(key)
        if self.sharded(key) is not None:  # chunk by chunk: no 19 MB string assembled first
            return [x for _, data in self.raw_chunks(key) for x in self.parse_chunk(data)]
        return codec.loads_trusted(self.store.blob(self.files[key]), key)

    def document(self) -> dict[str, Any]:
        return {k: self.value(k) for k in self.keys()}

    def raw_chunks(
        self, key: str, lo: int = 0, hi: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """``(index of its first item, canonical bytes)`` of each chunk of a sharded key that
        holds items ``lo..hi-1``, in order; one chunk in memory at a time."""
        tree = self.sharded(key)
        assert tree is not None
        entries = shards.entries(tree)
        starts = [int(n[:8]) for n, _ in entries]
        first = max(0, bisect.bisect_right(starts, lo) - 1)
        for k in range(first, len(entries)):
            if hi is not None and starts[k] >= hi:
                break
            yield starts[k], self.store.repo.odb.read(entries[k][1])[1]  # no Blob object

    def find_id(self, key: str, ident: str) -> int | None:
        """The index of the item an id step ``[id=ident]`` names in a sharded key (a string
        id first, else an integer one, as :func:`gitvault.core.pointers.step`), reading only the
        chunks whose item ids (from the word index, else their bytes) hold it."""
        tree = self.sharded(key)
        assert tree is not None
        wants: list[str | int] = [ident]
        if re.fullmatch(r"-?\d+", ident):
            wants.append(int(ident))
        for want in wants:
            raw = b"\n" + orjson.dumps(want).split(b",", 1)[0] + b"\n"
            for name, oid in shards.entries(tree):
                entry = self.index.get(oid)
                if entry is None:
                    data = self.store.repo.odb.read(oid)[1]
                    entry = (
                        self.index.put(oid, data)
                        if self.index.writable
                        else Entry(b"", b"\n" + b"\n".join(ITEM_ID.findall(data)) + b"\n")
                    )
                if raw not in entry.ids:
                    continue
                for j, item in enumerate(self.parse_chunk(self.store.repo.odb.read(oid)[1])):
                    found = item.get("id") if isinstance(item, dict) else None
                    if type(found) is type(want) and found == want:
                        return int(name[:8]) + j
        return None

    def ids_before(self, key: str, lo: int) -> Iterator[list[bytes]]:
        """The item ids (as the chunks write them) of each chunk before the one that holds
        item ``lo`` (which a scan from ``lo`` starts with): from the word index, else from
        the chunk's bytes."""
        tree = self.sharded(key)
        assert tree is not None
        entries = shards.entries(tree)
        starts = [int(n[:8]) for n, _ in entries]
        for _, oid in entries[: max(0, bisect.bisect_right(starts, lo) - 1)]:
            entry = self.index.get(oid)
            if entry is None:
                data = self.store.repo.odb.read(oid)[1]
                if not self.index.writable:
                    yield ITEM_ID.findall(data)
                    continue
                entry = self.index.put(oid, data)
            yield entry.id_list()

    def scan_chunks(
        self, key: str, want: Want | None, lo: int = 0, hi: int | None = None
    ) -> Iterator[tuple[int, bytes | None, Entry | None]]:
        """Like :meth:`raw_chunks`, but a chunk whose word index entry rules ``want`` out is
        not read (its bytes come as None, its entry for the ids); entries missing are built
        from the chunks read (see :mod:`gitvault.history.wordindex`)."""
        tree = self.sharded(key)
        assert tree is not None
        entries = shards.entries(tree)
        starts = [int(n[:8]) for n, _ in entries]
        first = max(0, bisect.bisect_right(starts, lo) - 1)
        odb = self.store.repo.odb
        for k in range(first, len(entries)):
            if hi is not None and starts[k] >= hi:
                break
            oid = entries[k][1]
            entry = self.index.get(oid) if want is not None else None
            if entry is not None and want is not None and not want.maybe(entry):
                self.chunks_skipped += 1
                yield starts[k], None, entry
                continue
            data = odb.read(oid)[1]
            if want is not None and entry is None and self.index.writable:
                entry = self.index.put(oid, data)  # for next time (a cache that cannot be
                # written is not rebuilt on every read: the bytes are matched directly)
                if not want.maybe(entry):
                    self.chunks_skipped += 1
                    yield starts[k], None, entry
                    continue
            yield starts[k], data, entry

    def parse_chunk(self, data: bytes) -> list[Any]:
        self.chunks_read += 1
        items = codec.loads_trusted(data, "chunk")
        assert isinstance(items, list)
        return items

    def item(self, key: str, index: int) -> Any:
        """Item ``index`` (>= 0) of a sharded key, reading only its chunk; MISSING if none."""
        for start, data in self.raw_chunks(key, index, index + 1):
            items = self.parse_chunk(data)
            if index - start < len(items):
                return items[index - start]
        return MISSING

    @property
    def how(self) -> str:
        """How the data was read: ``chunks`` (sharded keys one chunk at a time, other keys
        whole), ``keys`` (the keys named, whole) or ``document`` (every key, whole)."""
        sharded_whole = any(self.sharded(k) is not None for k in self.whole)
        if (self.chunks_read or self.chunks_skipped) and not sharded_whole:
            return "chunks"
        return "document" if self.whole >= set(self.files) and len(self.files) > 1 else "keys"


class IdNamer:
    """Id steps for the items of one array, seen in order.

    ``[id=X]`` names the first item whose ``id`` is X (:func:`gitvault.core.pointers.step`), so an
    item gets its id step only if no earlier item had that id (``7`` and ``"7"`` count as
    one); otherwise, and for items without a string or integer ``id``, its index. Items of a
    chunk skipped unparsed still count: :meth:`skip` reads their ids from the chunk's bytes
    (the ids seen are the one thing kept per item: a few dozen bytes each).
    """

    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    def token(self, index: int, item: Any) -> str:
        ident = item.get("id") if isinstance(item, dict) else None
        if isinstance(ident, bool) or not isinstance(ident, str | int):
            return str(index)
        # the id as the chunk's bytes have it, up to a comma (as skip() reads it)
        raw = orjson.dumps(ident).split(b",", 1)[0]
        other = raw[1:-1] if raw[:1] == b'"' else b'"' + raw + b'"'  # 7 and "7" are one
        if raw in self.seen or other in self.seen:
            return str(index)
        self.seen.add(raw)
        return f"[id={ident}]"

    def skip(self, chunk: bytes, entry: Entry | None = None) -> None:
        """Count the ids of a chunk that was not parsed (from its bytes, or from its index
        entry when it was not read at all)."""
        if chunk:
            self.seen.update(ITEM_ID.findall(chunk))
        elif entry is not None:
            self.seen.update(entry.id_list())


class IdPaths:
    """Id forms of positional pointers into one document, each array named once (O(items))."""

    def __init__(self, doc: Any) -> None:
        self.doc = doc
        self.tokens: dict[int, list[str]] = {}

    def _of(self, items: list[Any]) -> list[str]:
        found = self.tokens.get(id(items))
        if found is None:
            namer = IdNamer()
            found = self.tokens[id(items)] = [namer.token(i, x) for i, x in enumerate(items)]
        return found

    def path(self, tokens: Sequence[str]) -> str:
        out: list[str] = []
        value = self.doc
        for token in tokens:
            if isinstance(value, list) and token.isdigit() and int(token) < len(value):
                out.append(self._of(value)[int(token)])
                value = value[int(token)]
            else:
                out.append(token)
                value = value.get(token) if isinstance(value, dict) else None
        return pointers.join(out)


# -- answers cut to a byte budget ---------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """Whole values from ``offset`` on that fit the budget; ``next_offset`` None: no more."""

    items: list[Any]
    offset: int
    next_offset: int | None
    total: int
    size: int  # bytes of the items as compact JSON

    @property
    def cut(self) -> bool:
        return self.next_offset is not None

    def note(self, again: str) -> str:
        if self.next_offset is None:
            return ""
        return (
            f"cut at {len(self.items)} of {self.total} values ({self.size} bytes) to fit "
            f"max_bytes; the rest: {again} offset={self.next_offset}"
        )


def size_of(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def page(items: Sequence[Any], max_bytes: int | None, offset: int = 0) -> Page:
    """The whole items from ``offset`` whose compact JSON fits ``max_bytes`` (at least one,
    so that an answer always moves on)."""
    if offset < 0:
        raise InputError(f"offset {offset}: give 0 or more")
    out: list[Any] = []
    used = 2  # the brackets
    at = offset
    while at < len(items):
        size = size_of(items[at]) + (1 if out else 0)
        if max_bytes is not None and out and used + size > max_bytes:
            break
        out.append(items[at])
        used += size
        at += 1
    return Page(out, offset, at if at < len(items) else None, len(items), used)


def parts(value: Any, max_bytes: int, prefix: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``value`` as ``{"pointer", "value"}`` parts in document order, each within
    ``max_bytes`` where it can be: a container too big is replaced by its members or items
    (recursively); a scalar too big is a part of its own."""
    if size_of(value) <= max_bytes or not isinstance(value, dict | list) or not value:
        return [{"pointer": pointers.join(list(prefix)), "value": value}]
    children = (
        value.items() if isinstance(value, dict) else ((str(i), v) for i, v in enumerate(value))
    )
    return [p for token, child in children for p in parts(child, max_bytes, [*prefix, token])]


def cut_value(value: Any, max_bytes: int, offset: int = 0) -> Page:
    """``value`` as whole parts (:func:`parts`) from ``offset`` on, within ``max_bytes``."""
    if max_bytes < 1:
        raise InputError(f"max_bytes {max_bytes}: give 1 or more")
    return page(parts(value, max_bytes), max_bytes, offset)


# -- checkout of named parts ----------------------------------------------------------------


@dataclass(frozen=True)
class Parts:
    """The parts of a checked-out document that were asked for, by the pointer given."""

    values: dict[str, Any]  # pointer as given -> value
    positions: dict[str, str]  # pointer as given -> positional pointer (for --patch)


def wanted_paths(paths: Sequence[str] = (), keys: Sequence[str] = ()) -> list[str]:
    out = [*paths, *(pointers.join([k]) for k in keys)]
    if not out:
        raise InputError("name what to print: --path POINTER or --keys K1,K2")
    for p in out:
        pointers.top_key(p)
    return list(dict.fromkeys(out))


def check_paths(store: Store, paths: Sequence[str], rev: str | None = None) -> None:
    """Refuse a pointer that names nothing at ``rev`` (before a lease is taken)."""
    for p in paths:
        history.show(store, rev, path=p)


def parts_of(doc: Any, paths: Sequence[str]) -> Parts:
    values, positions = {}, {}
    for p in paths:
        value = pointers.get(doc, p)
        where = history.positional(doc, p)
        if value is MISSING or where is None:
            raise InputError(
                f"{p} does not exist in the checked-out document; check the "
                "pointer against `gitvault show`"
            )
        values[p], positions[p] = value, where
    return Parts(values, positions)
