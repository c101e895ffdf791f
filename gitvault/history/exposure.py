"""What a bad write reached: the later commits whose writers had it in their lease base.

A checkin records in ``Base:`` the commit its agent had checked out (a pushed branch's merge
records the merge base), so a later commit whose base contains the bad commit was written by
someone who may have read the bad values. Each such commit is listed with the pointers it
changed (its ``Changed:`` index, or a blob diff when it has none) and classified:

- ``derived``: it changed a value the bad change had written (or one inside or around it), so
  it may have built on it; ``quarantine --with-derived`` reverts these too;
- ``exposed``: it only changed other values; a person decides.

Only main's first-parent chain is walked: each checkin, merge or push is on it exactly once,
and a merge's index is what it brought in. One walk, then a dictionary probe per pointer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pygit2
from pygit2.enums import SortMode

from gitvault.core import pointers
from gitvault.errors import GitVaultError, InputError
from gitvault.git.storage import Store
from gitvault.history.common import _iso, parse_time
from gitvault.model import changes
from gitvault.model.provenance import parse_trailers, trailer_values


@dataclass(frozen=True)
class Exposed:
    commit: str
    agent: str
    time: int
    iso: str
    base: str
    kind: str  # "derived" | "exposed"
    pointers: list[str]  # what it changed
    touched: list[str]  # of those, the ones overlapping what the bad change wrote

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "agent": self.agent,
            "time": self.time,
            "iso": self.iso,
            "base": self.base,
            "kind": self.kind,
            "pointers": self.pointers,
            "touched": self.touched,
        }


def changed_pointers(store: Store, commit: pygit2.Commit) -> list[str]:
    """The commit's ``Changed:`` index, or the same computed from its blobs."""
    found = list(trailer_values(commit.message, changes.TRAILER))
    if found:
        return found
    parent = commit.parents[0].tree if commit.parents else None
    return changes.between(store, parent, commit.tree)


_NEVER = 1 << 62


def _array_step(token: str) -> bool | None:
    """True for an id step, False for a positional one, None for an object member."""
    if token.startswith("[id="):
        return True
    return False if token.isdigit() else None


class _Written:
    """Where the bad commits wrote, each place with the earliest chain position that wrote it:
    a pointer overlaps when one names a value inside (or equal to) the other. A positional
    step and an id step of one array cannot be told apart from the index: they overlap."""

    def __init__(self) -> None:
        self.exact: dict[tuple[str, ...], int] = {}
        self.under: dict[tuple[str, ...], int] = {}  # some write strictly inside this
        self.kind: dict[tuple[tuple[str, ...], bool], int] = {}  # (prefix, id step?) written

    @staticmethod
    def _min(table: dict[Any, int], key: Any, at: int) -> None:
        if at < table.get(key, _NEVER):
            table[key] = at

    def add(self, tokens: list[str], at: int) -> None:
        t = tuple(tokens)
        self._min(self.exact, t, at)
        for j, token in enumerate(t):
            if j:
                self._min(self.under, t[:j], at)
            kind = _array_step(token)
            if kind is not None:
                self._min(self.kind, (t[:j], kind), at)

    def first(self, tokens: list[str]) -> int:
        """The earliest position of a write overlapping ``tokens`` (_NEVER when none)."""
        t = tuple(tokens)
        best = self.under.get(t, _NEVER)
        for j, token in enumerate(t):
            best = min(best, self.exact.get(t[: j + 1], _NEVER))
            kind = _array_step(token)
            if kind is not None:
                best = min(best, self.kind.get((t[:j], not kind), _NEVER))
        return best


def _base_of(store: Store, commit: pygit2.Commit, t: dict[str, str]) -> pygit2.Oid | None:
    raw = t.get("Base", "")
    try:
        oid = pygit2.Oid(hex=raw)
        store.commit(oid)
        return oid
    except (ValueError, GitVaultError):  # "none", or not a commit of this vault
        pass
    if len(commit.parents) > 1:
        return store.repo.merge_base(commit.parent_ids[0], commit.parent_ids[1])
    return commit.parent_ids[0] if commit.parent_ids else None


def exposure(store: Store, head: pygit2.Oid, bad: Sequence[pygit2.Commit]) -> list[Exposed]:
    """Later commits of main (oldest first) whose writer's base held a commit of ``bad``."""
    chain = list(reversed(first_parents(store, head)))  # oldest first
    pos = {c.id: i for i, c in enumerate(chain)}
    bad_ids = {c.id for c in bad}
    anchors: set[int] = set()
    written = _Written()
    for c in bad:
        at = pos.get(c.id)
        if at is None:  # merged from a side branch: it reached main with the first merge of it
            lo, hi = 0, len(chain) - 1
            if not chain or not store.repo.descendant_of(chain[hi].id, c.id):
                continue
            while lo < hi:
                mid = (lo + hi) // 2
                if store.repo.descendant_of(chain[mid].id, c.id):
                    hi = mid
                else:
                    lo = mid + 1
            at = lo
        anchors.add(at)
        for p in changed_pointers(store, c):
            tokens = pointers.split(p)
            if tokens:
                written.add(tokens, at)
    if not anchors:
        return []
    start = min(anchors)
    out = []
    for i in range(start + 1, len(chain)):
        commit = chain[i]
        if i in anchors or commit.id in bad_ids:
            continue
        t = parse_trailers(commit.message)
        if "Reverts" in t or "Restores" in t:
            continue  # itself an undo: never withdraw an undo
        base = _base_of(store, commit, t)
        if base is None:
            continue
        base_pos = pos.get(base)
        if base_pos is None:  # a base off the chain: ask git which bad commits it holds
            held = [
                a
                for a in anchors
                if store.repo.descendant_of(base, chain[a].id) or base == chain[a].id
            ]
            base_pos = max(held, default=-1)
        if base_pos < start:
            continue
        changed = changed_pointers(store, commit)
        if not changed:
            continue  # nothing of the memory (a quarantine, a schema)
        touched = [
            p for p in changed if (tk := pointers.split(p)) and written.first(tk) <= base_pos
        ]
        who = t.get("Agent-Id", commit.author.name)
        out.append(
            Exposed(
                str(commit.id),
                who,
                commit.commit_time,
                _iso(commit.commit_time, commit.commit_time_offset),
                str(base),
                "derived" if touched else "exposed",
                changed,
                touched,
            )
        )
    return out


def report(
    store: Store,
    head: pygit2.Oid,
    rev: str | None = None,
    agent: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[Exposed]:
    """Exposure of one commit (``rev``), or of everything ``agent`` wrote in a window."""
    if (rev is None) == (agent is None):
        raise InputError("give a revision or --agent AGENT (with --since TIME), not both")
    bad = (
        [store.resolve(rev)]
        if rev is not None
        else commits_by(store, head, agent or "", since, until)
    )
    return exposure(store, head, bad)


def first_parents(store: Store, head: pygit2.Oid) -> list[pygit2.Commit]:
    """Main's first-parent chain, newest first: each checkin, merge or push exactly once."""
    walker = store.repo.walk(head, SortMode.TOPOLOGICAL)
    walker.simplify_first_parent()
    return list(walker)


def agent_of(commit: pygit2.Commit) -> str:
    return parse_trailers(commit.message).get("Agent-Id", commit.author.name)


def commits_by(
    store: Store, head: pygit2.Oid, agent: str, since: str | None = None, until: str | None = None
) -> list[pygit2.Commit]:
    """``agent``'s commits along main's first parents in the window, newest first.

    A merge counts with what it brought in (its diff from its first parent): that is the
    agent's part of it, and the commits it merged are not counted again.
    """
    lo = parse_time(since) if since is not None else None
    hi = parse_time(until) if until is not None else None
    return [
        c
        for c in first_parents(store, head)
        if c.parents
        and agent_of(c) == agent
        and (lo is None or c.commit_time >= lo)
        and (hi is None or c.commit_time <= hi)
    ]
