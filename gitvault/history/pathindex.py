"""Which commits may have touched an item: an index that lets ``log --path`` and ``blame`` skip.

Both commands ask every commit "could you have changed ``/tasks/[id=T-004]/status``?" and
answer from its ``Changed:`` lines (:class:`changes.Probe`), which still means opening each
commit of the history. This index inverts those lines once: for every line (and for the
prefixes the probe matches: ``/key/`` and ``/key/[id=``) the commits that carry it, plus the
commits the probe can never rule out (no ``Changed:`` lines, or no parent). A query takes the
union for its pointer: a superset of the commits the probe would keep, and those are then
checked exactly as before (probe, blobs), so the index can only save reads, never change an
answer, as long as it is not missing a commit.

It is derived data, kept in one file in the vault's git directory (``gitvault-path-index``)
and written whole by ``gitvault gc``: the commits in ``log``'s order as of one tip, a byte per
commit saying whether it is on that tip's first-parent chain (``blame`` walks those), the
terms, and a SHA-1 of all of it. It is used only when

- its checksum holds (a damaged file is ignored),
- its tip is on the first-parent chain of the commit asked about (the commits newer than the
  tip are walked one by one, as without the index),
- and, for ``log``, the commits newer than the tip form a single chain of one-parent commits
  down to it, which makes ``log``'s order the newer commits then the tip's own order. A merge
  since the index was written means the slow walk until the next gc.

A missing, stale or damaged index gives the same answers, only slower.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pygit2
from pygit2.enums import SortMode

from gitvault.git.storage import Store
from gitvault.model import changes

FILE = "gitvault-path-index"
VERSION = 2
NEW_LIMIT = 10_000
_OID = 20
UNKNOWN = "?"  # commits the probe never rules out


def terms_of(commit: pygit2.Commit) -> list[str]:
    """The index terms of one commit, mirroring what :meth:`changes.Probe.rules_out` reads."""
    lines = changes.raw_lines(commit.message) if commit.parent_ids else []
    if not lines:
        return [UNKNOWN]
    out = []
    for value in lines:
        out.append("=" + value)
        parts = value.split("/", 2)
        if len(parts) == 3 and parts[0] == "":
            out.append("<" + "/" + parts[1] + "/")
            if parts[2].startswith("[id="):
                out.append("[" + "/" + parts[1])
    return out


def query_terms(tokens: Sequence[str]) -> list[str] | None:
    """The terms whose commits the probe for ``tokens`` may keep; None: every commit."""
    if not tokens:
        return None
    probe = changes.Probe(tokens)
    whole = probe.whole.strip("\n").removeprefix(f"{changes.TRAILER}: ")
    out = [UNKNOWN, "=" + whole]
    if len(tokens) == 1:
        return [*out, "<" + whole + "/"]
    out.append("=" + probe.step.strip("\n").removeprefix(f"{changes.TRAILER}: "))
    if probe.positional:
        out.append("[" + whole)
    return out


def build(store: Store, head: pygit2.Oid) -> int:
    """Write the index for ``head`` (what ``gitvault gc`` does); returns the commit count."""
    order: list[bytes] = []
    terms: dict[str, list[int]] = {}
    for rank, commit in enumerate(store.repo.walk(head, SortMode.TOPOLOGICAL | SortMode.TIME)):
        order.append(commit.id.raw)
        for term in dict.fromkeys(terms_of(commit)):
            terms.setdefault(term, []).append(rank)
    chain = bytearray(len(order))
    where = {raw: i for i, raw in enumerate(order)}
    c: pygit2.Commit | None = store.commit(head)
    while c is not None:
        chain[where[c.id.raw]] = 1
        c = c.parents[0] if c.parent_ids else None
    spans: dict[str, list[int]] = {}
    ranks = array("I")
    for term, found in terms.items():
        spans[term] = [len(ranks), len(found)]
        ranks.extend(found)
    if sys.byteorder != "little":
        ranks.byteswap()
    header = json.dumps(
        {
            "version": VERSION,
            "tip": str(head),
            "count": len(order),
            "ranks": len(ranks),
            "terms": spans,
        },
        separators=(",", ":"),
    ).encode()
    body = header + b"\n" + b"".join(order) + bytes(chain) + ranks.tobytes()
    data = body + hashlib.sha1(body).digest()
    fd, tmp = tempfile.mkstemp(dir=store.path, prefix=FILE + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(store.path, FILE))
    except BaseException:
        os.unlink(tmp)
        raise
    return len(order)


@dataclass(frozen=True)
class Index:
    tip: pygit2.Oid
    count: int
    terms: dict[str, list[int]]  # term -> [start, length] in ``rank_bytes`` (uint32 LE)
    order: bytes
    chain: bytes
    rank_bytes: bytes

    @classmethod
    def load(cls, store: Store) -> Index | None:
        """The index, or None when there is none or it does not check out."""
        try:
            with open(os.path.join(store.path, FILE), "rb") as f:
                data = f.read()
        except OSError:
            return None
        body, digest = data[:-_OID], data[-_OID:]
        if len(data) < _OID or hashlib.sha1(body).digest() != digest:
            return None
        header, sep, rest = body.partition(b"\n")
        try:
            meta = json.loads(header)
            tip, count, total, terms = (
                pygit2.Oid(hex=meta["tip"]),
                meta["count"],
                meta["ranks"],
                meta["terms"],
            )
        except (ValueError, KeyError, TypeError):
            return None
        if (
            meta.get("version") != VERSION
            or not sep
            or not isinstance(count, int)
            or not isinstance(total, int)
            or not isinstance(terms, dict)
            or len(rest) != count * (_OID + 1) + 4 * total
        ):
            return None
        return cls(
            tip,
            count,
            terms,
            rest[: count * _OID],
            rest[count * _OID : count * (_OID + 1)],
            rest[count * (_OID + 1) :],
        )

    def ranks(self, terms: Sequence[str]) -> list[int]:
        out: set[int] = set()
        for term in terms:
            span = self.terms.get(term)
            if not (
                isinstance(span, list)
                and len(span) == 2
                and all(isinstance(x, int) and x >= 0 for x in span)
            ):
                continue
            found = array("I")
            found.frombytes(self.rank_bytes[4 * span[0] : 4 * (span[0] + span[1])])
            if sys.byteorder != "little":
                found.byteswap()
            out.update(r for r in found if r < self.count)
        return sorted(out)

    def commit(self, store: Store, rank: int) -> pygit2.Commit:
        return store.commit(pygit2.Oid(raw=self.order[rank * _OID : (rank + 1) * _OID]))


def first_parents(
    store: Store, head: pygit2.Commit, tokens: Sequence[str]
) -> Iterator[pygit2.Commit]:
    """``head``'s first-parent chain, newest first, leaving out stretches the index rules out.

    Every commit yielded is one the plain walk would yield; the ones left out are ones whose
    ``Changed:`` lines rule ``tokens`` out, which the caller would have skipped anyway.
    """
    terms = query_terms(tokens)
    index = Index.load(store) if terms is not None else None
    commit: pygit2.Commit | None = head
    while commit is not None:
        if index is not None and terms is not None and commit.id == index.tip:
            for rank in index.ranks(terms):
                if index.chain[rank]:
                    yield index.commit(store, rank)
            return
        yield commit
        commit = commit.parents[0] if commit.parent_ids else None


def in_log_order(
    store: Store, head: pygit2.Commit, tokens: Sequence[str]
) -> Iterator[pygit2.Commit] | None:
    """The commits of ``log`` from ``head`` the index keeps for ``tokens``, in ``log``'s order,
    or None when the index cannot answer (the caller walks everything)."""
    terms = query_terms(tokens)
    index = Index.load(store) if terms is not None else None
    if index is None or terms is None:
        return None
    newer: list[pygit2.Commit] = []
    commit = head
    while commit.id != index.tip:
        if len(commit.parent_ids) != 1 or len(newer) >= NEW_LIMIT:
            return None  # a merge or a root since the tip: log's order may differ from it
        newer.append(commit)
        commit = commit.parents[0]

    def run() -> Iterator[pygit2.Commit]:
        yield from newer
        for rank in index.ranks(terms):
            yield index.commit(store, rank)

    return run()


__all__ = ["FILE", "Index", "build", "first_parents", "in_log_order", "query_terms", "terms_of"]
