"""Leases: one ref per agent, details in a git note, fencing tokens across the vault.

``refs/leases/<escaped agent>`` points at a small blob naming the agent and its token (so each
lease instance is a distinct object); its note in ``refs/notes/leases`` holds mode, token, base,
acquired, expires and ttl as JSON, so ``git notes --ref=leases show refs/leases/<x>`` shows it.

We write the notes commits ourselves instead of ``Repository.create_note``: that call moves the
notes ref without compare-and-swap and loses notes when processes race. Every lease change is
one :meth:`Store.transact` that locks ``refs/notes/leases`` (the vault's lease mutex) and the
agent's lease ref, so checks such as "no other live lease" hold when the write lands. The
highest token ever issued is carried in each notes commit as a ``Fencing-Counter`` trailer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pygit2
from pygit2.enums import FileMode

from gitvault.errors import InputError, LeaseExpired, LeaseFenced, LeaseHeld, NoLease
from gitvault.git.refs import RefTx
from gitvault.git.storage import MAIN, Identity, Store
from gitvault.model import settings
from gitvault.model.provenance import escape_agent

NOTES = "refs/notes/leases"
PREFIX = "refs/leases/"
SHARED, EXCLUSIVE = "shared", "exclusive"
_COUNTER_RE = re.compile(r"^Fencing-Counter: (\d+)$", re.M)


def lease_ref(agent: str) -> str:
    return PREFIX + escape_agent(agent)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _ref_blob(agent: str, token: int) -> bytes:
    """What a lease ref points at: a blob naming agent and token (one per lease instance)."""
    return json.dumps({"agent": agent, "token": token}, ensure_ascii=False).encode() + b"\n"


@dataclass(frozen=True)
class Lease:
    agent: str
    token: int
    mode: str
    base: str
    acquired: float
    expires: float
    ttl: int

    def live(self, now: float) -> bool:
        return now < self.expires

    def to_note(self) -> bytes:
        d: dict[str, Any] = asdict(self)
        d["acquired"], d["expires"] = iso(self.acquired), iso(self.expires)
        return (json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_note(cls, data: bytes) -> Lease:
        d = json.loads(data)
        return cls(
            agent=d["agent"],
            token=int(d["token"]),
            mode=d["mode"],
            base=d["base"],
            acquired=parse_iso(d["acquired"]),
            expires=parse_iso(d["expires"]),
            ttl=int(d["ttl"]),
        )

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            **asdict(self),
            "acquired": iso(self.acquired),
            "expires": iso(self.expires),
            "live": self.live(now),
            "seconds_left": max(0.0, round(self.expires - now, 3)),
        }


@dataclass
class _NotesState:
    tip: pygit2.Oid | None
    entries: dict[str, pygit2.Oid]  # annotated object hex -> note blob
    counter: int


NotesState = _NotesState  # the lease notes as read under the lock (for the wait queue)


class LeaseBook:
    """Reads and changes leases of one vault."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store, self.clock = store, clock

    # -- settings --------------------------------------------------------------------------
    def check_ttl(self, ttl: int | None) -> int:
        max_ttl = int(settings.value(self.store, "maxTtl"))
        if ttl is None:
            return min(int(settings.value(self.store, "defaultTtl")), max_ttl)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise InputError(f"TTL {ttl!r} must be a whole number of seconds, at least 1")
        if ttl > max_ttl:
            raise InputError(f"TTL {ttl} exceeds the maximum of {max_ttl} s (gitvault.maxTtl)")
        return ttl

    # -- reading ---------------------------------------------------------------------------
    def _notes(self, tip: pygit2.Oid | None) -> _NotesState:
        if tip is None:
            return _NotesState(None, {}, 0)
        commit = self.store.commit(tip)
        entries = {e.name: e.id for e in commit.tree if e.name is not None}
        counter = 0
        c: pygit2.Commit | None = commit
        for _ in range(64):  # a foreign notes commit (git notes add) lacks the trailer
            assert c is not None
            if m := _COUNTER_RE.search(c.message):
                counter = int(m.group(1))
                break
            c = c.parents[0] if c.parents else None
            if c is None:
                break
        return _NotesState(tip, entries, counter)

    def _lease_at(self, target: pygit2.Oid | None, notes: _NotesState) -> Lease | None:
        if target is None:
            return None
        note = notes.entries.get(str(target))
        if note is None:
            return None  # orphaned lease ref: no details, never counts as held
        try:
            return Lease.from_note(self.store.blob(note))
        except (ValueError, KeyError, TypeError):
            return None

    def past(self, agent: str, token: int, depth: int = 100_000) -> Lease | None:
        """``agent``'s lease with ``token`` as it last stood, from the notes' history.

        A fenced checkin (a newer checkout of the same agent replaced its lease) still
        deserves to have its work kept, and that needs the base it was made on. Each lease
        instance is a distinct blob, so its note is found by that blob's id.
        """
        ref_blob = str(pygit2.hash(_ref_blob(agent, token)))
        tip = self.store.ref(NOTES)
        commit = self.store.commit(tip) if tip is not None else None
        for _ in range(depth):
            if commit is None:
                return None
            try:
                note = commit.tree[ref_blob]
            except KeyError:
                commit = commit.parents[0] if commit.parents else None
                continue
            try:
                return Lease.from_note(self.store.blob(note.id))
            except (ValueError, KeyError, TypeError):
                return None
        return None

    def all(self) -> list[Lease]:
        """Every lease with readable details, live or expired, ordered by agent."""
        notes = self._notes(self.store.ref(NOTES))
        out = [self._lease_at(t, notes) for t in self.store.refs_under(PREFIX).values()]
        return sorted((x for x in out if x is not None), key=lambda x: x.agent)

    def get(self, agent: str) -> Lease | None:
        return self._lease_at(self.store.ref(lease_ref(agent)), self._notes(self.store.ref(NOTES)))

    # -- changing (each under the notes lock) ----------------------------------------------
    def _commit_notes(self, rtx: RefTx, notes: _NotesState, counter: int, subject: str) -> None:
        tb = self.store.repo.TreeBuilder()
        for name, oid in sorted(notes.entries.items()):
            tb.insert(name, oid, FileMode.BLOB)
        parents = [notes.tip] if notes.tip is not None else []
        msg = f"{subject}\n\nFencing-Counter: {counter}\n"
        who = Identity("gitvault", "leases@gitvault")
        oid = self.store.write_commit(self.store.objects(tb.write), parents, who, msg)
        rtx.set(NOTES, oid, subject)

    def acquire(
        self,
        agent: str,
        ttl: int | None = None,
        exclusive: bool = False,
        gate: Callable[[RefTx, list[Lease], Lease | None], None] | None = None,
        also: Sequence[str] = (),
    ) -> Lease:
        """Take or renew ``agent``'s lease on the current main; a new token every time.

        ``gate`` (the wait queue's turn check, :mod:`gitvault.model.waitqueue`) runs under the same
        lock with the other agents' live leases and the agent's own lease, and may refuse;
        ``also`` are refs it may change (the waiter's own queue entry, deleted as the lease
        is granted).
        """
        ttl = self.check_ttl(ttl)
        ref = lease_ref(agent)

        def fn(rtx: RefTx) -> Lease:
            notes = self._notes(rtx.get(NOTES))
            now = self.clock()
            others = self.live_others(notes, now, agent)
            if held := [x.agent for x in others if x.mode == EXCLUSIVE]:
                raise LeaseHeld(agent, held, exclusive=True)
            if exclusive and others:
                raise LeaseHeld(agent, [x.agent for x in others], exclusive=False)
            if gate is not None:
                gate(rtx, others, self._lease_at(rtx.get(ref), notes))
            lease = self.grant(rtx, notes, agent, ttl, exclusive, now)
            self._commit_notes(
                rtx, notes, lease.token, f"lease: checkout {agent} (token {lease.token})"
            )
            return lease

        return self.store.transact([NOTES, ref, *also], fn, f"checkout {agent}")

    def live_others(self, notes: _NotesState, now: float, agent: str) -> list[Lease]:
        """The live leases of every agent but ``agent``, as ``notes`` has them."""
        return [
            x
            for t in self.store.refs_under(PREFIX).values()
            if (x := self._lease_at(t, notes)) is not None and x.agent != agent and x.live(now)
        ]

    def grant(
        self, rtx: RefTx, notes: _NotesState, agent: str, ttl: int, exclusive: bool, now: float
    ) -> Lease:
        """Write ``agent``'s new lease into ``notes`` and its ref (the caller commits the
        notes, and has checked that the lease may be granted)."""
        ref = lease_ref(agent)
        main = rtx.get(MAIN)
        token = notes.counter = notes.counter + 1
        lease = Lease(
            agent,
            token,
            EXCLUSIVE if exclusive else SHARED,
            str(main) if main else "",
            now,
            now + ttl,
            ttl,
        )
        obj = self.store.write_blob(_ref_blob(agent, token))
        old = rtx.get(ref)
        if old is not None:
            notes.entries.pop(str(old), None)
        notes.entries[str(obj)] = self.store.write_blob(lease.to_note())
        rtx.set(ref, obj, f"lease: checkout token {token}")
        return lease

    def release(
        self,
        agent: str,
        handover: Callable[[RefTx, _NotesState], str | None] | None = None,
        also: Sequence[str] = (),
    ) -> Lease | None:
        """Drop ``agent``'s lease; None when it held none.

        ``handover`` (the wait queue's) may grant the next waiter its lease in the same
        transaction, so the hand-over costs one ref transaction instead of two; ``also`` are
        the refs it may change.
        """
        ref = lease_ref(agent)

        def fn(rtx: RefTx) -> Lease | None:
            target = rtx.get(ref)
            if target is None:
                return None
            notes = self._notes(rtx.get(NOTES))
            lease = self._lease_at(target, notes)
            notes.entries.pop(str(target), None)
            to = handover(rtx, notes) if handover is not None else None
            self._commit_notes(
                rtx,
                notes,
                notes.counter,
                f"lease: release {agent}"
                + (f", hand over to {to} (token {notes.counter})" if to else ""),
            )
            rtx.delete(ref)
            return lease

        return self.store.transact([NOTES, ref, *also], fn, f"release {agent}")

    def revoke(self, rtx: RefTx, agent: str, why: str) -> Lease | None:
        """Inside a caller's transaction (holding NOTES and the agent's ref): drop its lease,
        so that a checkin already past its checks cannot land afterwards."""
        ref = lease_ref(agent)
        target = rtx.get(ref)
        if target is None:
            return None
        notes = self._notes(rtx.get(NOTES))
        lease = self._lease_at(target, notes)
        notes.entries.pop(str(target), None)
        self._commit_notes(rtx, notes, notes.counter, f"lease: revoke {agent} ({why})")
        rtx.delete(ref)
        return lease

    def release_if_expired(self, agent: str, token: int) -> bool:
        """Drop a lease only if it is still that (expired) token: a renewal meanwhile wins."""
        ref = lease_ref(agent)

        def fn(rtx: RefTx) -> bool:
            notes = self._notes(rtx.get(NOTES))
            target = rtx.get(ref)
            lease = self._lease_at(target, notes)
            if lease is None or lease.token != token or lease.live(self.clock()):
                return False
            notes.entries.pop(str(target), None)
            self._commit_notes(rtx, notes, notes.counter, f"lease: prune expired {agent}")
            rtx.delete(ref)
            return True

        return self.store.transact([NOTES, ref], fn, f"prune lease of {agent}")

    def verify(self, rtx: RefTx, agent: str, token: int | None) -> Lease:
        """The agent's live lease, read under the lock; raises the matching LeaseError."""
        notes = self._notes(rtx.get(NOTES))
        lease = self._lease_at(rtx.get(lease_ref(agent)), notes)
        if lease is None:
            raise NoLease(agent)
        if token is not None and token != lease.token:
            raise LeaseFenced(agent, token, lease.token)
        if not lease.live(self.clock()):
            raise LeaseExpired(agent, datetime.fromtimestamp(lease.expires, UTC))
        return lease

    def move_base(self, rtx: RefTx, lease: Lease, base: pygit2.Oid) -> Lease:
        """After a checkin: the lease now stands on the commit the agent just made."""
        notes = self._notes(rtx.get(NOTES))
        target = rtx.get(lease_ref(lease.agent))
        assert target is not None
        moved = Lease(
            lease.agent,
            lease.token,
            lease.mode,
            str(base),
            lease.acquired,
            lease.expires,
            lease.ttl,
        )
        notes.entries[str(target)] = self.store.write_blob(moved.to_note())
        self._commit_notes(
            rtx, notes, notes.counter, f"lease: {lease.agent} checked in {str(base)[:12]}"
        )
        return moved
