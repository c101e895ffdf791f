"""Large array keys stored sharded: a tree ``K/`` of chunk blobs instead of one ``K.json``.

Why: one blob per key means a one-value change of a 100,000-item key re-encodes, hashes and
compresses 19 MB (~400 ms), and a ``--patch`` checkin cannot beat that however small the patch.
A key whose value is an array of at least :data:`SHARD_BYTES` canonical bytes is therefore
stored as a tree of chunks, each a canonical JSON array of consecutive items, named by the
index of its first item (``K/00000000.json``, ``K/00000097.json``, ...). Concatenating the
chunks' items in name order gives the key's canonical bytes exactly, so ``jq -s add K/*.json``
(or ``gitvault show``) reads it back with plain tools.

Where a chunk ends depends only on the items' bytes (content-defined chunking, as in rsync,
restic or Dolt): a chunk ends after an item whose CRC-32 has its low 6 bits zero, once the chunk
holds :data:`MIN_CHUNK` bytes, or at :data:`MAX_CHUNK` bytes. So one value has one layout (the
tree id still says whether two versions are equal), and an edit changes only the chunk that
holds it: after the edited run the old boundaries come back, and the chunks from there on are
reused (renamed when the item count before them changed).

Above storage, a sharded key reads like any other: :meth:`Store.blob` of its tree id returns the
assembled canonical bytes. Only writing (this module), merging both sides' changes of the same
key, ``Changed:`` lines and the push checks look inside.
"""

from __future__ import annotations

import bisect
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pygit2
from pygit2.enums import FileMode

from gitvault.core.codec import common_prefix, common_suffix

SHARD_BYTES = 1 << 20  # an array key this big (canonical bytes) or bigger is stored sharded
MIN_CHUNK = 8 << 10
MAX_CHUNK = 256 << 10
_MASK = 63  # a boundary after ~1 item in 64 (once MIN_CHUNK is reached)
_HEAD, _SEP, _TAIL = b"[\n  ", b",\n  ", b"\n]\n"
_SEPARATOR = re.compile(rb",\n  (?! )")  # between two items of a canonical array
_NAME = re.compile(r"[0-9]{8}\.json")
MAX_ITEMS = 10**8  # names have 8 digits; the document size limit keeps arrays far below


def wanted(data: bytes) -> bool:
    """Whether canonical bytes of a key are stored sharded (an array that large)."""
    return len(data) >= SHARD_BYTES and data.startswith(_HEAD)


def chunk_name(start: int) -> str:
    return f"{start:08d}.json"


def items(chunk: bytes) -> list[bytes]:
    """The items of one canonical array (a chunk or a whole key), each as its own bytes."""
    body = chunk[len(_HEAD) : -len(_TAIL)]
    return _SEPARATOR.split(body) if chunk.startswith(_HEAD) else []


def encode(run: Sequence[bytes]) -> bytes:
    return _HEAD + _SEP.join(run) + _TAIL


def cut(run: Sequence[bytes]) -> tuple[list[list[bytes]], list[bytes]]:
    """Split items into whole chunks, plus the items after the last boundary (open chunk)."""
    chunks: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for item in run:
        current.append(item)
        size += len(item) + 4
        if size >= MAX_CHUNK or (size >= MIN_CHUNK and zlib.crc32(item) & _MASK == 0):
            chunks.append(current)
            current, size = [], 0
    return chunks, current


def split(data: bytes) -> list[tuple[str, bytes]]:
    """The canonical layout of a key's canonical array bytes: ``[(chunk name, blob bytes)]``."""
    chunks, rest = cut(items(data))
    if rest:
        chunks.append(rest)
    out, start = [], 0
    for run in chunks:
        out.append((chunk_name(start), encode(run)))
        start += len(run)
    return out


Chunk = tuple[str, pygit2.Oid, int]  # name, blob id, length of the chunk's bytes


@dataclass(frozen=True)
class Layout:
    """A sharded key read whole: its bytes, its chunks, and where their items start."""

    data: bytes
    chunks: list[Chunk]
    offsets: list[int]  # byte offset of each chunk's first item in ``data``

    @classmethod
    def of(cls, data: bytes, chunks: list[Chunk]) -> Layout:
        offsets, at = [], len(_HEAD)
        for _, _, size in chunks:
            offsets.append(at)
            at += size - len(_HEAD) - len(_TAIL) + len(_SEP)
        return cls(data, chunks, offsets)


def entries(tree: pygit2.Tree) -> list[tuple[str, pygit2.Oid]]:
    """The chunk entries of a sharded key's tree, in order (names sort as their indexes)."""
    return sorted((e.name, e.id) for e in tree if e.name is not None)


def assemble(chunks: Sequence[tuple[str, pygit2.Oid, bytes]]) -> Layout:
    data = _HEAD + _SEP.join(c[len(_HEAD) : -len(_TAIL)] for _, _, c in chunks) + _TAIL
    return Layout.of(data, [(n, o, len(c)) for n, o, c in chunks])


def size_of(chunks: Sequence[Chunk]) -> int:
    """The length of the key's canonical bytes, from its chunks' lengths."""
    return (
        sum(c[2] - len(_HEAD) - len(_TAIL) + len(_SEP) for c in chunks)
        - len(_SEP)
        + len(_HEAD)
        + len(_TAIL)
    )


def problems(tree: pygit2.Tree, layout_of: Callable[[pygit2.Tree], Layout], name: str) -> list[str]:
    """Why a pushed ``K/`` tree is not the canonical layout of its content (empty: it is).

    ``layout_of`` reads it whole (``Store.layout``, which keeps it for the JSON checks next).
    """
    bad = [e.name for e in tree if e.type_str != "blob" or not _NAME.fullmatch(e.name or "")]
    if bad:
        return [f"{name}/: only chunk files NNNNNNNN.json may be in a sharded key ({bad[0]})"]
    layout = layout_of(tree)
    if not wanted(layout.data):
        return [
            f"{name}/: smaller than {SHARD_BYTES} bytes or not an array: store it as {name}.json"
        ]
    expected = [(n, pygit2.hash(data)) for n, data in split(layout.data)]
    if expected != [(n, o) for n, o, _ in layout.chunks]:
        return [
            f"{name}/: chunks are not where gitvault puts them; check the key in with "
            "gitvault (or push it as one file) to lay it out again"
        ]
    return []


def _edits(base: list[pygit2.Oid], side: list[pygit2.Oid]) -> list[tuple[int, int, int, int]]:
    """How ``side`` differs from ``base`` by chunk ids: runs ``base[b0:b1]`` that became
    ``side[s0:s1]``, in order (difflib's matching blocks; chunk ids rarely repeat)."""
    import difflib

    ops = difflib.SequenceMatcher(None, base, side, autojunk=False).get_opcodes()
    return [(b0, b1, s0, s1) for tag, b0, b1, s0, s1 in ops if tag != "equal"]


Entry = tuple[str, pygit2.Oid]  # a chunk's name and blob id, as in a tree
TextMerge = Callable[[bytes, bytes, bytes], "bytes | None"]


class _Merge:
    """The state of one chunk-by-chunk merge (see :func:`merge`)."""

    def __init__(
        self,
        sides: Sequence[Sequence[Entry]],
        read: Callable[[pygit2.Oid], bytes],
        write: Callable[[bytes], pygit2.Oid],
    ) -> None:
        self.sides, self.read, self.write = sides, read, write

    def count(self, side: int, k: int) -> int:
        chunks = self.sides[side]
        if k + 1 < len(chunks):
            return int(chunks[k + 1][0][:8]) - int(chunks[k][0][:8])
        return len(items(self.read(chunks[k][1])))

    def region(self, side: int, lo: int, hi: int) -> bytes | None:
        found = [i for _, oid in self.sides[side][lo:hi] for i in items(self.read(oid))]
        return encode(found) if found else None


def merge(
    base: Sequence[Entry],
    ours: Sequence[Entry],
    theirs: Sequence[Entry],
    read: Callable[[pygit2.Oid], bytes],
    write: Callable[[bytes], pygit2.Oid],
    text_merge: TextMerge,
) -> list[Entry] | None:
    """Merge two sides' edits of a sharded key chunk by chunk; None: merge it whole instead.

    Each side replaced some runs of the base's chunks, and each run starts and ends at a
    boundary (chunking restarts at a chunk's start, and the chunks around a run are the
    base's). Runs of one side that overlap no run of the other are taken as they are, without
    reading an item. Where runs of both sides overlap, only that stretch of chunks is merged
    as text (``text_merge``: git's 3-way merge of the three stretches, None on a conflict or
    if it is not a JSON array), and chunked again until the boundaries are back in step. The
    result is the layout chunking the merged items afresh would give.
    """
    m = _Merge([base, ours, theirs], read, write)
    b = [o for _, o in base]
    runs = sorted(
        (b0, b1, side, (s1 - s0) - (b1 - b0))
        for side, chunks in ((1, ours), (2, theirs))
        for b0, b1, s0, s1 in _edits(b, [o for _, o in chunks])
    )
    clusters: list[list[tuple[int, int, int, int]]] = []
    for run in runs:  # runs that overlap, or two insertions at one place, go together
        last = clusters[-1] if clusters else None
        if last and (
            run[0] < max(r[1] for r in last) or run[0] == run[1] == last[-1][0] == last[-1][1]
        ):
            last.append(run)
        else:
            clusters.append([run])
    segments: list[tuple[pygit2.Oid, int] | list[bytes]] = []  # chunks kept, or items
    shift = {1: 0, 2: 0}  # how far each side's chunks have moved against the base's so far
    at = 0
    for cluster in clusters:
        lo, hi = cluster[0][0], max(r[1] for r in cluster)
        segments += [(b[k], m.count(0, k)) for k in range(at, lo)]
        at = hi
        span = {}  # each side's chunks for base chunks lo..hi-1
        for side in (1, 2):
            moved = sum(r[3] for r in cluster if r[2] == side)
            span[side] = (lo + shift[side], hi + shift[side] + moved)
            shift[side] += moved
        sides = {r[2] for r in cluster}
        if len(sides) == 1:
            side = sides.pop()
            segments += [(m.sides[side][k][1], m.count(side, k)) for k in range(*span[side])]
            continue
        texts = [m.region(0, lo, hi), m.region(1, *span[1]), m.region(2, *span[2])]
        merged = text_merge(*texts) if all(t is not None for t in texts) else None  # type: ignore[arg-type]
        if merged is None:
            return None
        segments.append(items(merged))
    segments += [(b[k], m.count(0, k)) for k in range(at, len(b))]
    return _lay_out(segments, m)


def _lay_out(segments: Sequence[tuple[pygit2.Oid, int] | list[bytes]], m: _Merge) -> list[Entry]:
    """Name kept chunks by their new first index; chunk merged items until back in step."""
    out: list[Entry] = []
    start = 0
    pending: list[bytes] = []

    def emit(run: list[bytes]) -> None:
        nonlocal start
        out.append((chunk_name(start), m.write(encode(run))))
        start += len(run)

    for seg in segments:
        if isinstance(seg, tuple) and not pending:
            out.append((chunk_name(start), seg[0]))
            start += seg[1]
            continue
        pending += items(m.read(seg[0])) if isinstance(seg, tuple) else seg
        closed, pending = cut(pending)
        for run in closed:
            emit(run)
    if pending:
        emit(pending)
    return out


class ChunkWriter:
    """Writes chunks of a sharded key, reusing a base layout's chunks where they are unchanged."""

    def __init__(self, repo: pygit2.Repository, read: Callable[[pygit2.Oid], bytes]) -> None:
        self.repo, self.read = repo, read

    def _blob(self, start: int, run: Sequence[bytes]) -> Chunk:
        data = encode(run)
        return chunk_name(start), self.repo.create_blob(data), len(data)

    def tree(self, chunks: Sequence[Chunk], base: pygit2.Tree | None = None) -> pygit2.Oid:
        """Write the tree of ``chunks``; given the base's tree, only the entries that changed."""
        if base is None:
            tb = self.repo.TreeBuilder()
            had: dict[str, pygit2.Oid] = {}
        else:
            tb = self.repo.TreeBuilder(base)
            had = dict(entries(base))
        names = set()
        for name, oid, _ in chunks:
            names.add(name)
            if had.get(name) != oid:
                tb.insert(name, oid, FileMode.BLOB)
        for name in had.keys() - names:
            tb.remove(name)
        return tb.write()

    def full(self, data: bytes) -> list[Chunk]:
        return [(n, self.repo.create_blob(c), len(c)) for n, c in split(data)]

    def replace(
        self, base: Sequence[Chunk], first: int, last: int, run: list[bytes]
    ) -> list[Chunk]:
        """The chunks after base chunks ``first..last-1`` came to hold the items ``run``.

        Chunking restarts at chunk ``first`` (its start is a boundary on both sides) and
        pulls in the base's following chunks until a boundary falls where a base chunk
        ends; from there on the base's chunks are the same, only renamed.
        """
        start = int(base[first][0][:8]) if first < len(base) else 0
        out = list(base[:first])
        pending, following = run, last
        while True:
            chunks, rest = cut(pending)
            for c in chunks:
                out.append(self._blob(start, c))
                start += len(c)
            if not rest:
                break  # in step with the base again
            if following == len(base):
                out.append(self._blob(start, rest))
                start += len(rest)
                break
            pending = rest + items(self.read(base[following][1]))
            following += 1
        if following < len(base):
            shift = start - int(base[following][0][:8])
            out += [(chunk_name(int(n[:8]) + shift), o, size) for n, o, size in base[following:]]
        return out

    def update(self, base: Layout, data: bytes) -> list[Chunk]:
        """The chunks of ``data``, given the base's: only the chunks around the edit change."""
        old = base.data
        p = common_prefix(old, data)
        s = common_suffix(old, data, min(len(old), len(data)) - p)
        first = max(0, bisect.bisect_right(base.offsets, p) - 1)
        last = bisect.bisect_right(base.offsets, len(old) - s - 1)
        begin = base.offsets[first]
        if last < len(base.offsets):
            sync = len(data) - (len(old) - base.offsets[last])  # where base chunk `last` is now
            end = sync - len(_SEP)
            aligned = sync == begin or (end > begin and data[end:sync] == _SEP)
        else:
            end = len(data) - len(_TAIL)
            aligned = end > begin
        if not aligned:  # cannot place the edit between whole items: lay it all out again
            return self.full(data)
        return self.replace(
            base.chunks, first, last, _SEPARATOR.split(data[begin:end]) if end > begin else []
        )
