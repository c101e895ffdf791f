"""History walks that stop early, in exactly the order libgit2 gives today.

``log`` lists commits in libgit2's ``TOPOLOGICAL | TIME`` order. libgit2 computes that order
up front: it parses every reachable commit, counts each one's children, and only then runs
Kahn's algorithm with a binary heap keyed on committer time. Among commits of the same second
the order is whatever that heap's sift steps make of them, so a plain time sort (even a stable
one) gives a different order: the previous round found that out.

This module replays the same algorithm lazily. The heap is libgit2's own (``pqueue.c``: the
same sift-up and sift-down comparisons), fed the same inserts and pops, so ties come out the
same. What needs the whole history in libgit2 is the child count: a commit enters the heap
when its last child has been emitted. Here a child count is finished on demand, the way git's
own ``--topo-order`` does it: every child of a commit has a larger *generation number*
(topological level) than the commit, so once every reachable commit above that level has been
expanded, the count is complete. Generation numbers come from git's commit-graph file
(``objects/info/commit-graph``, written by ``git gc`` and ``gitvault gc``), read here directly;
commits made since it was written are read from their objects and given their levels by a walk
that ends where the graph begins (a bounded number: gc rewrites the graph).

``--since`` stops the walk once no commit still to come can be that new: every commit yet to
be emitted is an ancestor of (or is) a commit in the heap, and the graph's corrected commit
dates (GDA2) bound the committer times of all of a commit's ancestors.

Without a usable commit-graph (none written yet, a split chain, an unknown version, a file
that does not add up) the walk is libgit2's own, as before: slower, same answer.
"""

from __future__ import annotations

import heapq
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pygit2
from pygit2.enums import SortMode

from gitvault.git.storage import Store

GRAPH_FILE = os.path.join("objects", "info", "commit-graph")
LOOSE_LIMIT = 20_000  # commits newer than the graph read one by one; past this, libgit2 walks
_NO_PARENT = 0x70000000
_OCTOPUS = 0x80000000
_LAST_EDGE = 0x80000000
_OID = 20


class CommitGraph:
    """git's commit-graph file (format version 1, SHA-1, no base graphs), read in place.

    Positions index its commits in hash order; parents are positions too, so a walk inside
    the graph never looks an object id up. Every field read is bounds-checked at open: a file
    that does not add up is not used.
    """

    def __init__(
        self, data: bytes | mmap.mmap, count: int, chunks: dict[bytes, tuple[int, int]]
    ) -> None:
        self.data, self.count = data, count
        self.fanout = chunks[b"OIDF"][0]
        self.oidl = chunks[b"OIDL"][0]
        self.cdat = chunks[b"CDAT"][0]
        self.edge = chunks.get(b"EDGE")
        self.gda2 = chunks[b"GDA2"][0] if b"GDA2" in chunks else None
        self.gdo2 = chunks.get(b"GDO2")
        self.checksum = bytes(data[len(data) - _OID :])

    @classmethod
    def open(cls, git_dir: str) -> CommitGraph | None:
        """The vault's commit-graph, or None when there is none git and libgit2 would read."""
        try:
            with open(os.path.join(git_dir, GRAPH_FILE), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < 8 + 12 + 256 * 4 + _OID:
                    return None
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        return cls.parse(data)

    @classmethod
    def parse(cls, data: bytes | mmap.mmap) -> CommitGraph | None:
        size = len(data)
        if size < 8 + 12 + 256 * 4 + _OID or data[:4] != b"CGPH":
            return None
        version, hash_version, nchunks, bases = data[4], data[5], data[6], data[7]
        if version != 1 or hash_version != 1 or bases != 0:
            return None
        chunks: dict[bytes, tuple[int, int]] = {}
        table = 8
        if table + 12 * (nchunks + 1) > size:
            return None
        for i in range(nchunks):
            cid = bytes(data[table + 12 * i : table + 12 * i + 4])
            start = struct.unpack_from(">Q", data, table + 12 * i + 4)[0]
            end = struct.unpack_from(">Q", data, table + 12 * (i + 1) + 4)[0]
            if not table + 12 * (nchunks + 1) <= start <= end <= size - _OID:
                return None
            chunks[cid] = (start, end - start)
        if any(c not in chunks for c in (b"OIDF", b"OIDL", b"CDAT")):
            return None
        if chunks[b"OIDF"][1] != 256 * 4:
            return None
        count = struct.unpack_from(">I", data, chunks[b"OIDF"][0] + 255 * 4)[0]
        if (
            chunks[b"OIDL"][1] != count * _OID
            or chunks[b"CDAT"][1] != count * (_OID + 16)
            or (b"GDA2" in chunks and chunks[b"GDA2"][1] != count * 4)
        ):
            return None
        return cls(data, count, chunks)

    def find(self, raw: bytes) -> int | None:
        """The position of commit ``raw`` (20 bytes), or None if the graph lacks it."""
        first = raw[0]
        lo = struct.unpack_from(">I", self.data, self.fanout + 4 * (first - 1))[0] if first else 0
        hi = struct.unpack_from(">I", self.data, self.fanout + 4 * first)[0]
        data, base = self.data, self.oidl
        if hi > self.count:
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            here = data[base + mid * _OID : base + (mid + 1) * _OID]
            if here < raw:
                lo = mid + 1
            elif here > raw:
                hi = mid
            else:
                return int(mid)
        return None

    def oid(self, pos: int) -> bytes:
        return bytes(self.data[self.oidl + pos * _OID : self.oidl + (pos + 1) * _OID])

    def entry(self, pos: int) -> tuple[list[int], int, int]:
        """(parent positions, topological level, committer time) of the commit at ``pos``."""
        p1, p2, hi, lo = struct.unpack_from(">IIII", self.data, self.cdat + pos * 36 + _OID)
        parents: list[int] = []
        if p1 != _NO_PARENT:
            parents.append(p1)
        if p2 & _OCTOPUS and p2 != _NO_PARENT:
            parents += self._edges(p2 & ~_OCTOPUS)
        elif p2 != _NO_PARENT:
            parents.append(p2)
        if any(p >= self.count for p in parents):
            raise GraphError("a parent position outside the commit-graph")
        return parents, hi >> 2, ((hi & 3) << 32) | lo

    def _edges(self, start: int) -> list[int]:
        if self.edge is None:
            raise GraphError("an octopus merge without an EDGE chunk")
        base, length = self.edge
        out = []
        for off in range(base + 4 * start, base + length, 4):
            value = struct.unpack_from(">I", self.data, off)[0]
            out.append(value & ~_LAST_EDGE)
            if value & _LAST_EDGE:
                return out
        raise GraphError("an unterminated EDGE list")

    def roots(self) -> list[int]:
        """Positions of the commits without parents.

        Their first-parent field is ``0x70000000``, the only value whose top byte is 0x70 in a
        graph of fewer than 2^28 commits: one strided slice of those bytes and a byte search,
        about a millisecond for 100,000 commits.
        """
        start = self.cdat + _OID
        tops = bytes(self.data[start : start + 36 * self.count : 36])
        out: list[int] = []
        at = tops.find(b"\x70")
        while at != -1:
            if not self.entry(at)[0]:
                out.append(at)
            at = tops.find(b"\x70", at + 1)
        return out

    def corrected(self, pos: int, time: int) -> int | None:
        """The corrected commit date (generation v2), or None when the graph has none."""
        if self.gda2 is None:
            return None
        offset = struct.unpack_from(">I", self.data, self.gda2 + 4 * pos)[0]
        if offset & 0x80000000:
            if self.gdo2 is None or 8 * ((offset & 0x7FFFFFFF) + 1) > self.gdo2[1]:
                raise GraphError("a generation overflow outside GDO2")
            offset = struct.unpack_from(">Q", self.data, self.gdo2[0] + 8 * (offset & 0x7FFFFFFF))[
                0
            ]
        return int(time + offset)


class GraphError(Exception):
    """The commit-graph does not add up; the caller walks with libgit2 instead."""


Key = int | bytes  # a graph position, or the raw id of a commit the graph lacks


@dataclass
class _Node:
    parents: list[Key]
    level: int
    time: int
    corrected: int | None


@dataclass
class _Dag:
    """What the walk knows of the commits it has met, graph or not."""

    store: Store
    graph: CommitGraph
    nodes: dict[Key, _Node] = field(default_factory=dict)

    def key(self, oid: pygit2.Oid) -> Key:
        raw = oid.raw
        pos = self.graph.find(raw)
        return raw if pos is None else pos

    def node(self, key: Key) -> _Node:
        found = self.nodes.get(key)
        if found is None:
            if isinstance(key, bytes):  # _loose() met every such commit first
                raise GraphError("a commit outside the graph that the loose walk missed")
            parents, level, time = self.graph.entry(key)
            found = self.nodes[key] = _Node(
                list(parents), level, time, self.graph.corrected(key, time)
            )
        return found

    def oid(self, key: Key) -> pygit2.Oid:
        return pygit2.Oid(raw=key if isinstance(key, bytes) else self.graph.oid(key))

    def loose(self, start: Key) -> None:
        """Levels and corrected dates of the commits above the graph, read from objects."""
        if not isinstance(start, bytes):
            return
        stack: list[tuple[bytes, bool]] = [(start, False)]
        pending: dict[bytes, tuple[list[Key], int]] = {}
        while stack:
            raw, ready = stack.pop()
            if raw in self.nodes:
                continue
            if not ready:
                if raw in pending:
                    continue
                commit = self.store.repo[pygit2.Oid(raw=raw)].peel(pygit2.Commit)
                parents = [self.key(p) for p in commit.parent_ids]
                pending[raw] = (parents, commit.commit_time)
                if len(pending) > LOOSE_LIMIT:
                    raise GraphError("too many commits newer than the commit-graph")
                stack.append((raw, True))
                stack.extend(
                    (p, False) for p in parents if isinstance(p, bytes) and p not in self.nodes
                )
                continue
            parents, time = pending[raw]
            above = [self.node(p) for p in parents]
            level = 1 + max((n.level for n in above), default=0)
            dates = [n.corrected for n in above]
            corrected: int | None
            if any(d is None for d in dates):
                corrected = None
            else:
                corrected = max([time, *(d + 1 for d in dates if d is not None)])
            self.nodes[raw] = _Node(parents, level, time, corrected)


class _Heap:
    """libgit2's ``git_pqueue`` with ``git_commit_list_time_cmp``, step for step.

    Newest first; the tie-breaking between commits of the same second is a property of these
    exact sift loops, so they are copied, not replaced by :mod:`heapq`.
    """

    def __init__(self, time: dict[Key, int]) -> None:
        self.items: list[Key] = []
        self.time = time

    def __len__(self) -> int:
        return len(self.items)

    def _cmp(self, a: Key, b: Key) -> int:  # > 0 when a is older than b
        ta, tb = self.time[a], self.time[b]
        return 1 if ta < tb else -1 if ta > tb else 0

    def insert(self, item: Key) -> None:
        items = self.items
        items.append(item)
        el = len(items) - 1
        while el > 0:
            parent_el = (el - 1) >> 1
            parent = items[parent_el]
            if self._cmp(parent, item) <= 0:
                break
            items[el] = parent
            el = parent_el
        items[el] = item

    def pop(self) -> Key:
        items = self.items
        top = items[0]
        if len(items) > 1:
            items[0] = items.pop()
            self._down(0)
        else:
            items.pop()
        return top

    def _down(self, el: int) -> None:
        items = self.items
        parent = items[el]
        n = len(items)
        while True:
            kid_el = 2 * el + 1
            if kid_el >= n:
                break
            kid = items[kid_el]
            if kid_el + 1 < n and self._cmp(kid, items[kid_el + 1]) > 0:
                kid_el += 1
                kid = items[kid_el]
            if self._cmp(parent, kid) <= 0:
                break
            items[el] = kid
            el = kid_el
        items[el] = parent


class Walk:
    """Commits reachable from one start, newest first in libgit2's topological-time order.

    Iterate it; stop whenever the caller has what it needs. ``since`` (unix seconds) ends the
    walk once no commit still to come can be at or after it (needs the graph's corrected
    dates; without them the walk goes on to the end, and the caller's filter decides).
    ``finished`` says whether the walk went to the end, ``lazy`` whether it used the graph.
    """

    def __init__(
        self,
        store: Store,
        start: pygit2.Oid,
        since: float | None = None,
        stop_ok: Callable[[list[pygit2.Commit]], bool] | None = None,
        lazy: bool = True,
    ) -> None:
        self.store, self.start, self.since = store, start, since
        self.want_lazy = lazy  # False: the caller reads it all; libgit2 does that faster
        self.stop_ok = stop_ok  # asked once, with every root the graph and walk know of
        self.finished = False
        self.lazy = False

    def __iter__(self) -> Iterator[pygit2.Commit]:
        graph = CommitGraph.open(self.store.path) if self.want_lazy else None
        dag = _Dag(self.store, graph) if graph is not None else None
        if dag is not None:
            try:
                head = dag.key(self.start)
                dag.loose(head)
                dag.node(head)
            except GraphError:
                dag = None
        if dag is None:
            yield from self._libgit2()
            return
        self.lazy = True
        done = 0
        try:
            for commit in self._lazy(dag, head):
                yield commit
                done += 1
        except GraphError:
            # a graph that stops adding up mid-walk: libgit2's order is the same, so carry on
            # from there with libgit2 (whose own reading of the graph git would have to fix)
            self.lazy = False
            for i, commit in enumerate(self._libgit2()):
                if i >= done:
                    yield commit

    def _libgit2(self) -> Iterator[pygit2.Commit]:
        yield from self.store.repo.walk(self.start, SortMode.TOPOLOGICAL | SortMode.TIME)
        self.finished = True

    def _lazy(self, dag: _Dag, head: Key) -> Iterator[pygit2.Commit]:
        time: dict[Key, int] = {}
        indegree: dict[Key, int] = {head: 1}
        # discovered, not yet expanded: highest level first (the kind keeps keys comparable)
        explore: list[tuple[int, int, Key]] = []

        def discover(key: Key) -> None:
            node = dag.node(key)
            time[key] = node.time
            heapq.heappush(explore, (-node.level, isinstance(key, bytes), key))

        def expand_above(level: int) -> None:
            """Count the children of every commit at ``level`` or below: expand all above."""
            while explore and -explore[0][0] > level:
                key = heapq.heappop(explore)[2]
                for p in dag.node(key).parents:
                    if p not in indegree:
                        indegree[p] = 1
                        discover(p)
                    indegree[p] += 1

        discover(head)
        ready = _Heap(time)
        ready.insert(head)
        repo = self.store.repo
        may_stop: bool | None = None
        while len(ready):
            if self.since is not None and self._all_older(dag, ready.items):
                if may_stop is None:
                    may_stop = self.stop_ok is None or self.stop_ok(self._roots(dag))
                if may_stop:
                    return
            nxt = ready.pop()
            node = dag.node(nxt)
            for p in node.parents:
                expand_above(dag.node(p).level)
                degree = indegree.get(p, 0)
                if degree == 0:
                    continue
                degree -= 1
                indegree[p] = degree
                if degree == 1:
                    ready.insert(p)
            indegree[nxt] = 0
            commit = repo[dag.oid(nxt)]
            assert isinstance(commit, pygit2.Commit)
            yield commit
        self.finished = True

    def _roots(self, dag: _Dag) -> list[pygit2.Commit]:
        """Every commit without parents that the walk could still end on: a superset."""
        keys: list[Key] = [k for k, n in dag.nodes.items() if not n.parents]
        keys += dag.graph.roots()
        repo = self.store.repo
        return [repo[dag.oid(k)].peel(pygit2.Commit) for k in dict.fromkeys(keys)]

    def _all_older(self, dag: _Dag, waiting: list[Key]) -> bool:
        """True when every commit still to come is older than ``since``."""
        assert self.since is not None
        for key in waiting:
            bound = dag.node(key).corrected
            if bound is None or bound >= self.since:
                return False
        return True


__all__ = ["CommitGraph", "Walk"]


def first_parent_at(store: Store, start: pygit2.Commit, when: float) -> pygit2.Commit | None:
    """The first commit along ``start``'s first parents made at or before ``when``.

    What libgit2's first-parent topological walk finds, read from the commit-graph where it
    can be: commits newer than the graph from their objects, then positions and times from
    the graph, so only the answer's own object is opened.
    """
    commit: pygit2.Commit | None = start
    graph = CommitGraph.open(store.path)
    while commit is not None:
        if graph is not None and (pos := graph.find(commit.id.raw)) is not None:
            try:
                return _graph_first_parent_at(store, graph, pos, when)
            except GraphError:
                graph = None
        if commit.commit_time <= when:
            return commit
        commit = commit.parents[0] if commit.parent_ids else None
    return None


def _graph_first_parent_at(
    store: Store, graph: CommitGraph, pos: int, when: float
) -> pygit2.Commit | None:
    data, cdat, count = graph.data, graph.cdat, graph.count
    unpack = struct.Struct(">I4xII").unpack_from  # first parent, (second), level+time, time
    seen = 0
    while True:
        p1, hi, lo = unpack(data, cdat + pos * 36 + _OID)
        if ((hi & 3) << 32) | lo <= when:
            return store.repo[pygit2.Oid(raw=graph.oid(pos))].peel(pygit2.Commit)
        if p1 == _NO_PARENT:
            return None
        seen += 1
        if p1 >= count or seen > count:
            raise GraphError("a first-parent chain leaves the commit-graph")
        pos = p1
