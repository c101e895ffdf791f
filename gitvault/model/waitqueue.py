"""A first-come, first-served queue of agents waiting for a lease (``checkout --wait``).

Why refs: every other piece of lease state is a ref moved by compare-and-swap under the lease
mutex (``refs/notes/leases``), readable with plain git and surviving any crash. A waiter is one
more such ref::

    refs/gitvault/queue/<seq>-<escaped agent>   ->  blob {"agent", "mode", "pid", "start",
                                                      "boot", "host", "deadline", "seq"}

``seq`` is 20 digits, so ref names sort in arrival order. A waiter joins by creating its ref
under the lease mutex with ``seq`` = max(now in ns, the last seq + 1), so no two waiters share
a place and none gets ahead of one already queued. The grant happens in the same locked
transaction as the lease itself (:meth:`LeaseBook.acquire` with a *gate*): the gate checks
that the waiter is first among the live entries, and deletes its entry as the lease is taken.

Liveness without a heartbeat: the entry names its process (pid and that process's start time
from ``/proc``, which tells a reused pid apart) on this machine (boot id and host name), and
when the waiter gives up (``deadline``). An entry is *stale* when its deadline is past, or when
it is from this machine and that process is gone. Stale entries are skipped by everyone and
deleted (CAS: only if unchanged) by the next waiter that sees them, so ``kill -9`` of any
member costs the queue nothing: a killed holder's lease expires by its TTL, as it always did,
and a killed waiter's entry is skipped at once. Entries from another machine (a vault on a
shared file system) are trusted until their deadline; a remote vault's waiters run in the
vault's own hooks, on its machine.

Who waits for whom (the rule the README documents):
- an exclusive waiter gets the lease when no other agent holds a live lease *and* it is the
  first live entry of the queue;
- a shared waiter gets it when no other agent holds a live exclusive lease and no live
  exclusive entry is ahead of it;
- a checkout without ``--wait`` never joins: a shared one ignores the queue (as before, only a
  live exclusive lease refuses it); an exclusive one is refused while other agents queue, so it
  cannot jump ahead of them;
- an agent renewing the live lease it already holds never queues.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import pygit2

from gitvault.errors import LeaseHeld, LeaseWaitTimeout
from gitvault.git.refs import RefTx
from gitvault.git.storage import Store
from gitvault.model.leases import EXCLUSIVE, NOTES, SHARED, Lease, LeaseBook, NotesState, lease_ref
from gitvault.model.provenance import escape_agent

PREFIX = "refs/gitvault/queue/"
POLL = 0.003  # how often a waiter stats the lease files (microseconds each)
LOOK = 0.2  # and reads the queue and the leases even when no file changed (expiries)
MAX_WAIT = 86_400.0


def _boot() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


_BOOT, _HOST = _boot(), socket.gethostname()


def process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot), "" if it does not exist.

    The pair (pid, start) names one process for the life of the machine: a pid reused by a
    newer process has a later start.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else ""


@dataclass(frozen=True)
class Waiter:
    """One queue entry as read from its ref."""

    ref: str
    oid: pygit2.Oid
    seq: int
    agent: str
    mode: str
    pid: int
    start: str
    boot: str
    host: str
    deadline: float
    ttl: int

    def alive(self, now: float) -> bool:
        if now > self.deadline:
            return False
        if self.boot == _BOOT and self.host == _HOST and self.boot:
            return process_start(self.pid) == self.start
        return True  # another machine's waiter: its deadline bounds it

    @classmethod
    def read(cls, store: Store, ref: str, oid: pygit2.Oid) -> Waiter | None:
        try:
            d = json.loads(store.blob(oid))
            return cls(
                ref,
                oid,
                int(d["seq"]),
                str(d["agent"]),
                str(d["mode"]),
                int(d["pid"]),
                str(d["start"]),
                str(d["boot"]),
                str(d["host"]),
                float(d["deadline"]),
                int(d.get("ttl", 0)),
            )
        except (ValueError, KeyError, TypeError):
            return None  # not ours (written by hand): never counts as a waiter


class _Moved(Exception):
    """Someone joined between our read and our lock: take the next seq."""


class WaitQueue:
    """Reads and changes the waiters of one vault."""

    def __init__(self, store: Store, lease_clock: Callable[[], float] = time.time) -> None:
        self.store, self.lease_clock = store, lease_clock
        self.clock = time.time  # entries' deadlines are wall-clock times of their processes

    def entries(self) -> list[Waiter]:
        """Every readable entry, in arrival order (live or stale)."""
        out = [Waiter.read(self.store, r, o) for r, o in self.store.refs_under(PREFIX).items()]
        return sorted((w for w in out if w is not None), key=lambda w: w.seq)

    def live(self) -> list[Waiter]:
        now = self.clock()
        return [w for w in self.entries() if w.alive(now)]

    # -- joining and leaving -------------------------------------------------------------
    def join(self, agent: str, mode: str, deadline: float, ttl: int) -> Waiter:
        """Take the last place in the queue (one CAS ref creation under the lease mutex)."""
        pid = os.getpid()
        for _ in range(1000):
            last = max((w.seq for w in self.entries()), default=0)
            seq = max(time.time_ns(), last + 1)
            ref = f"{PREFIX}{seq:020d}-{escape_agent(agent)}"
            body = {
                "agent": agent,
                "mode": mode,
                "pid": pid,
                "start": process_start(pid),
                "boot": _BOOT,
                "host": _HOST,
                "deadline": deadline,
                "seq": seq,
                "ttl": ttl,
            }
            data = (json.dumps(body, sort_keys=True, ensure_ascii=False) + "\n").encode()

            def fn(rtx: RefTx, ref: str = ref, seq: int = seq, data: bytes = data) -> Waiter:
                now_last = max((w.seq for w in self.entries()), default=0)
                if rtx.get(ref) is not None or now_last >= seq:
                    raise _Moved
                oid = self.store.write_blob(data)
                rtx.set(ref, oid, f"queue: {agent} waits")
                w = Waiter.read(self.store, ref, oid)
                assert w is not None
                return w

            try:
                return self.store.transact([NOTES, ref], fn, f"queue {agent}")
            except _Moved:
                continue
        raise LeaseWaitTimeout(agent, 0.0, "could not join the queue")

    def leave(self, waiter: Waiter) -> None:
        """Drop our entry if it is still there (it is gone once the lease was granted)."""

        def fn(rtx: RefTx) -> None:
            if rtx.get(waiter.ref) == waiter.oid:
                rtx.delete(waiter.ref)

        if self.store.ref(waiter.ref) == waiter.oid:
            self.store.transact([NOTES, waiter.ref], fn, f"leave queue {waiter.agent}")

    def prune(self, stale: list[Waiter]) -> None:
        """Delete entries seen stale, each only if unchanged and still stale under the lock."""
        if not stale:
            return

        def fn(rtx: RefTx) -> None:
            now = self.clock()
            for w in stale:
                if rtx.get(w.ref) == w.oid and not w.alive(now):
                    rtx.delete(w.ref)

        self.store.transact([NOTES, *(w.ref for w in stale)], fn, "prune the lease queue")

    # -- the rule ------------------------------------------------------------------------
    @staticmethod
    def blockers(
        me: Waiter | None, agent: str, exclusive: bool, live: list[Waiter]
    ) -> list[Waiter]:
        """The live entries that must be served before ``me`` (or before a non-waiter)."""
        ahead = [w for w in live if w.agent != agent and (me is None or w.seq < me.seq)]
        if exclusive:
            return ahead
        if me is None:
            return []  # a shared checkout without --wait ignores the queue
        return [w for w in ahead if w.mode == EXCLUSIVE]

    def gate(
        self, me: Waiter | None, agent: str, exclusive: bool
    ) -> Callable[[RefTx, list[Lease], Lease | None], None]:
        """The check :meth:`LeaseBook.acquire` runs under its lock before granting."""

        def check(rtx: RefTx, others: list[Lease], own: Lease | None) -> None:
            renewal = own is not None and own.live(self.lease_clock())
            if renewal or (me is None and not exclusive):
                return  # renewing one's live lease, or a shared checkout without --wait
            ahead = self.blockers(me, agent, exclusive, self.live())
            if ahead:
                raise LeaseHeld(
                    agent, sorted({w.agent for w in ahead}), exclusive=False, queued=True
                )
            if me is not None and rtx.get(me.ref) == me.oid:
                rtx.delete(me.ref)

        return check


def _signature(store: Store) -> tuple[tuple[int, int, int] | None, ...]:
    """What changes whenever a lease or the queue changes: the notes ref (every grant and
    release writes it), packed-refs (where gc may have put it) and the queue's folder (an
    entry added or removed). Polling these with ``stat`` costs microseconds, so a waiter can
    notice a release within milliseconds without reading refs all the time."""
    out: list[tuple[int, int, int] | None] = []
    for name in (NOTES, "packed-refs", PREFIX.rstrip("/")):
        try:
            st = os.stat(os.path.join(store.path, name))
            out.append((st.st_mtime_ns, st.st_ino, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def acquire(
    book: LeaseBook,
    agent: str,
    ttl: int | None,
    exclusive: bool,
    wait: float | None,
    on_wait: Callable[[Waiter, int], None] | None = None,
) -> Lease:
    """Take ``agent``'s lease, waiting up to ``wait`` seconds in the queue for its turn.

    ``wait`` None: no waiting (a shared checkout ignores the queue, an exclusive one respects
    it). ``on_wait(entry, position)`` is called after joining and then about every 2 s while
    waiting (the CLI says once that it waits; a hook's message to a pusher who is gone fails
    there, which ends the wait).
    """
    queue = WaitQueue(book.store, book.clock)
    if wait is None:
        return book.acquire(agent, ttl, exclusive, gate=queue.gate(None, agent, exclusive))
    if not 0 <= wait <= MAX_WAIT:
        from gitvault.errors import InputError

        raise InputError(f"--wait {wait:g} must be between 0 and {MAX_WAIT:g} seconds")
    ttl = book.check_ttl(ttl)
    started = time.monotonic()
    end = started + wait
    held = book.get(agent)
    if not queue.live() or (held is not None and held.live(book.clock())):
        # nobody queues, or a renewal: try at once, join only when refused
        try:
            return book.acquire(agent, ttl, exclusive, gate=queue.gate(None, agent, exclusive))
        except LeaseHeld:
            pass
    mode = EXCLUSIVE if exclusive else SHARED
    before = held.token if held is not None else 0
    me = queue.join(agent, mode, time.time() + wait + 1.0, ttl)
    granted = False
    try:
        told = -1e9
        while True:
            entries = queue.entries()
            if not any(w.ref == me.ref for w in entries):
                lease = _handed_over(book, agent, before)
                if lease is not None:
                    granted = True
                    return lease
                me = queue.join(
                    agent, mode, time.time() + max(0.0, end - time.monotonic()) + 1.0, ttl
                )
                continue
            lease, live, busy = _try_turn(queue, book, me, agent, exclusive, ttl, entries)
            if lease is not None:
                granted = True
                return lease
            position = 1 + sum(1 for w in live if w.seq < me.seq)
            if on_wait is not None and time.monotonic() - told >= 2.0:
                on_wait(me, position)
                told = time.monotonic()
            if end - time.monotonic() <= 0:
                holders = [x.agent for x in busy]
                raise LeaseWaitTimeout(
                    agent,
                    wait,
                    f"position {position} in the queue"
                    + (f", held by {', '.join(map(repr, holders))}" if holders else ""),
                )
            _pause(book.store, end)
    finally:
        if not granted:
            queue.leave(me)


def _handed_over(book: LeaseBook, agent: str, before: int) -> Lease | None:
    """Our entry is gone: the releaser handed us the lease (a newer live token), or (rarely)
    it was judged stale and we must take a new place (None). Read under the lease mutex: a
    hand-over's refs land one after another, entry first."""
    lease = book.store.transact([NOTES], lambda _rtx: book.get(agent), f"lease of {agent}")
    if lease is not None and lease.token > before and lease.live(book.clock()):
        return lease
    return None


def _try_turn(
    queue: WaitQueue,
    book: LeaseBook,
    me: Waiter,
    agent: str,
    exclusive: bool,
    ttl: int,
    entries: list[Waiter],
) -> tuple[Lease | None, list[Waiter], list[Lease]]:
    """Prune the dead ahead of us, and take the lease if it is our turn. Returns the lease
    (or None), the live entries and the leases that block us."""
    now = queue.clock()
    queue.prune([w for w in entries if w.seq < me.seq and not w.alive(now)])
    live = [w for w in entries if w.alive(now) or w.ref == me.ref]
    ahead = queue.blockers(me, agent, exclusive, live)
    clock = book.clock()
    busy = [
        x
        for x in book.all()
        if x.agent != agent and x.live(clock) and (exclusive or x.mode == EXCLUSIVE)
    ]
    if not ahead and not busy:
        try:
            lease = book.acquire(
                agent, ttl, exclusive, gate=queue.gate(me, agent, exclusive), also=[me.ref]
            )
            return lease, live, busy
        except LeaseHeld:
            pass
    return None, live, busy


def _pause(store: Store, end: float) -> None:
    """Sleep until the lease files change, a full look is due, or the wait ends."""
    seen, looked = _signature(store), time.monotonic()
    while time.monotonic() < min(end, looked + LOOK) and _signature(store) == seen:
        time.sleep(POLL)


def release(book: LeaseBook, agent: str) -> Lease | None:
    """Drop ``agent``'s lease and, in the same transaction, grant it to the first waiter
    when the rule allows (the waiter finds it holds the lease: one transaction per hand-over
    instead of two, the waiter's own ``checkout`` never on the critical path)."""
    queue = WaitQueue(book.store, book.clock)
    entries, seen = queue.entries(), queue.clock()
    nxt = next((w for w in entries if w.alive(seen) and w.agent != agent and w.ttl > 0), None)
    if nxt is None:
        return book.release(agent)
    # the dead ahead of the one served: the waiters that prune them are the ones served here,
    # who never look again, so the hand-over deletes them (each only if unchanged and still dead)
    dead = [w for w in entries if w.seq < nxt.seq and not w.alive(seen)]

    def handover(rtx: RefTx, notes: NotesState) -> str | None:
        if rtx.get(nxt.ref) != nxt.oid or not nxt.alive(queue.clock()):
            return None
        first = next((w for w in queue.live() if w.agent != agent), None)
        if first is None or first.ref != nxt.ref:
            return None
        now = book.clock()
        others = book.live_others(notes, now, nxt.agent)
        exclusive = nxt.mode == EXCLUSIVE
        if any(x.mode == EXCLUSIVE for x in others) or (exclusive and others):
            return None
        book.grant(rtx, notes, nxt.agent, nxt.ttl, exclusive, now)
        rtx.delete(nxt.ref)
        for w in dead:
            if rtx.get(w.ref) == w.oid and not w.alive(queue.clock()):
                rtx.delete(w.ref)
        return nxt.agent

    names = [lease_ref(nxt.agent), nxt.ref, *(w.ref for w in dead)]
    return book.release(agent, handover, names)
