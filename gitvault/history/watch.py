"""Follow main as it moves: the one watcher behind ``gitvault watch``, MCP resource
subscriptions and the review page's live timeline.

Why one watcher: the three consumers ask the same question ("what landed on main since I last
looked, and did it touch what I care about?") and must agree on the answer. Asking it must be
cheap enough to do several times a second without a daemon:

- the ref is *stat*-ed (``refs/heads/main`` and ``packed-refs``: inode, size, mtime); the ref
  is read only when that changed, and in any case every few seconds (a coarse clock could hide
  two writes in one tick);
- new commits are walked along *first parents* from the new head back to the last seen one:
  each step main took, once (an agent's own commit that a merge brought in is reported as the
  merge, whose ``Changed:`` lines say what changed on main);
- whether a commit touches the selection is read from its ``Changed:`` lines (see
  :mod:`gitvault.model.changes`); a commit without them (pushed by hand) is judged by the ids of its
  top-level key blobs. No blob, let alone the whole document, is read.

A selection is a top-level key (``--key``) and/or a JSON Pointer (``--path``). The index is two
levels deep, so a deeper pointer (``/tasks/[id=T-4]/status``) matches every commit that changed
that item (``/tasks/[id=T-4]``): a commit too many, never one too few.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pygit2
from pygit2.enums import SortMode

from gitvault.core import codec, pointers
from gitvault.errors import InputError
from gitvault.git.storage import MAIN, Store
from gitvault.history.log import LogEntry, entry_of
from gitvault.model import changes
from gitvault.model.provenance import trailer_values

INTERVAL = 0.2  # seconds between two stats of the ref
REREAD = 2.0  # read the ref at least this often, whatever the stats say
MAX_BATCH = 1000  # at most this many commits reported per poll (a huge push: the newest)


@dataclass(frozen=True)
class Change:
    """One commit that main moved to (or through), with what it changed."""

    entry: LogEntry
    pointers: tuple[str, ...]  # its Changed: lines; the changed keys when it has none
    head: str  # main when this change was seen

    @property
    def commit(self) -> str:
        assert self.entry.commit is not None
        return self.entry.commit

    def to_json(self) -> dict[str, Any]:
        return {**self.entry.to_json(), "pointers": list(self.pointers), "head": self.head}


@dataclass(frozen=True)
class Selection:
    """What a watcher reports: commits touching ``key`` and/or ``path`` (None: everything)."""

    key: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.key is not None:
            codec.check_key(self.key)
        if self.path is not None:
            tokens = pointers.split(self.path)
            if tokens:
                codec.check_key(tokens[0])
            if self.key is not None and tokens and tokens[0] != self.key:
                raise InputError(
                    f"--path {self.path} is not under --key {self.key}; give one, "
                    "or a path that starts with /" + self.key
                )

    def _tokens(self) -> list[str]:
        return pointers.split(self.path) if self.path is not None else []

    def matches(self, entry: LogEntry, index: changes.Index | None, message: str) -> bool:
        """Whether a commit may have touched the selection (by its index, else its keys)."""
        tokens = self._tokens()
        key = self.key or (tokens[0] if tokens else None)
        if key is None:
            return True
        if key not in entry.changed:
            return False
        if len(tokens) < 2 or index is None:
            return True
        return not changes.Probe(tokens).rules_out(message)


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class Watcher:
    """Reports each new commit of main that touches a selection, oldest first.

    Starts after ``since`` (a revision; default: main as it is now), so only what lands from
    then on is reported. :meth:`poll` answers at once; :meth:`follow` blocks.
    """

    def __init__(
        self,
        store: Store,
        selection: Selection | None = None,
        since: str | None = None,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.selection = selection or Selection()
        self.interval = interval
        self.clock = clock
        self._files = [
            os.path.join(store.path, *MAIN.split("/")),
            os.path.join(store.path, "packed-refs"),
        ]
        self._seen_sig = self._stat()
        self._read_at = clock()
        start = store.resolve(since).id if since is not None else store.ref(MAIN)
        self.last: pygit2.Oid | None = start
        if since is not None:
            self._seen_sig = ()  # the first poll reads the ref: main may be past ``since``

    def _stat(self) -> tuple[tuple[int, int, int] | None, ...]:
        return tuple(_signature(p) for p in self._files)

    def moved(self) -> bool:
        """Cheap: whether main may have moved since the last look (stats, then the ref)."""
        sig = self._stat()
        now = self.clock()
        if sig == self._seen_sig and now - self._read_at < REREAD:
            return False
        self._seen_sig, self._read_at = sig, now
        return self.store.ref(MAIN) != self.last

    def poll(self) -> list[Change]:
        """The changes since the last poll that touch the selection (maybe none)."""
        if not self.moved():
            return []
        head = self.store.ref(MAIN)
        if head is None or head == self.last:
            return []
        found = self._walk(head)
        self.last = head
        return found

    def _walk(self, head: pygit2.Oid) -> list[Change]:
        walker = self.store.repo.walk(head, SortMode.TOPOLOGICAL)
        walker.simplify_first_parent()
        if self.last is not None and self.last in self.store.repo:
            walker.hide(self.last)
        picked: list[Change] = []
        for n, commit in enumerate(walker):
            if n >= MAX_BATCH:
                break
            index = changes.index_of(commit.message) if commit.parent_ids else None
            entry = entry_of(self.store, commit, index)
            if not self.selection.matches(entry, index, commit.message):
                continue
            lines = trailer_values(commit.message, changes.TRAILER) or tuple(
                pointers.join([k]) for k in entry.changed
            )
            picked.append(Change(entry, tuple(lines), str(head)))
        picked.reverse()
        return picked

    def follow(
        self, stop: threading.Event | None = None, limit: int | None = None
    ) -> Iterator[Change]:
        """Yield changes as they land until ``stop`` is set or ``limit`` were yielded."""
        stop = stop or threading.Event()
        count = 0
        while not stop.is_set():
            for change in self.poll():
                yield change
                count += 1
                if limit is not None and count >= limit:
                    return
            stop.wait(self.interval)


def watcher(
    store: Store,
    key: str | None = None,
    path: str | None = None,
    since: str | None = None,
    interval: float = INTERVAL,
) -> Watcher:
    return Watcher(store, Selection(key, path), since, interval)


__all__ = ["Change", "Selection", "Watcher", "watcher"]
