"""A checkin: the agent's own commit on its lease's base, merged into main if main moved.

:class:`Checkins` is the engine behind :meth:`gitvault.api.vault.Vault.checkin` and
``checkin --patch``: it proposes the agent's commit, plans the merge (outside any lock first),
lands it under the lock of main and the lease through :func:`~gitvault.engine.advance.advance`,
and keeps the work under ``refs/conflicts/`` whenever it must refuse. The API only checks the
arguments and hands over encoded files.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pygit2

from gitvault.core import codec
from gitvault.engine import integrate, trust, upkeep
from gitvault.engine.advance import Done, Step, advance
from gitvault.errors import (
    ConflictError,
    GitVaultError,
    LeaseExpired,
    LeaseFenced,
    NoLease,
    VaultNotFound,
)
from gitvault.git import shards
from gitvault.git.refs import RefTx
from gitvault.git.storage import MAIN, Store
from gitvault.model import changes, quarantine
from gitvault.model.conflicts import ConflictStore
from gitvault.model.leases import NOTES, Lease, LeaseBook, lease_ref
from gitvault.model.provenance import Provenance, checkin_trailers, identity, message, subject_for

OPTIMISTIC_PLANS = 1  # merges planned outside the lock before planning under it


@dataclass(frozen=True)
class Landing:
    """One attempt of a checkin: the agent's commit on its base, and what it must find under
    the lock to land (the lease as read, and main as planned against when ``plan`` is set)."""

    agent: str
    token: int | None  # the token the caller pinned, None for "the current lease"
    read: Lease  # the lease as read before locking
    base: pygit2.Commit
    proposal: pygit2.Commit
    prov: Provenance
    changed: list[str]
    policy: str
    plan: integrate.Plan | None = None
    main: pygit2.Oid | None = None


@dataclass(frozen=True)
class CheckinResult:
    commit: str | None  # the new head of main, None when nothing changed
    changed: list[str]  # keys the checkin changed
    lease: Lease | None
    merged: bool = False
    strategy: dict[str, str] = field(default_factory=dict)  # key -> git | structural
    resolved: list[str] = field(default_factory=list)  # decisions taken by a policy

    @property
    def noop(self) -> bool:
        return self.commit is None

    @classmethod
    def landed(cls, plan: integrate.Plan, changed: list[str], lease: Lease | None) -> CheckinResult:
        """The result of a plan that is now on main."""
        outcome = plan.outcome
        return cls(
            str(plan.target),
            changed,
            lease,
            plan.merged,
            dict(outcome.how) if outcome else {},
            [f"{c.path} -> {side} ({why})" for c, side, why in outcome.decisions]
            if outcome
            else [],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "changed": self.changed,
            "merged": self.merged,
            "noop": self.noop,
            "strategy": self.strategy,
            "resolved": self.resolved,
            "lease": self.lease.token if self.lease else None,
            "base": self.lease.base if self.lease else None,
        }


# what a checkin attempt ends with: landed (the moved lease and the plan), an expiry found
# under the lock, or a result without landing (nothing changed)
Landed = tuple[Lease, integrate.Plan] | LeaseExpired
Outcome = Landed | CheckinResult


class Checkins:
    """Checkins into one vault: its store, leases, kept conflicts and clock, plus the bytes of
    the key blobs read or written last (a checkin compares its new blobs with the base's, which
    are usually the ones read at checkout or written by the previous checkin)."""

    def __init__(
        self, store: Store, leases: LeaseBook, conflicts: ConflictStore, clock: Callable[[], float]
    ) -> None:
        self.store, self.leases, self.conflicts, self.clock = store, leases, conflicts, clock
        self._recent: dict[pygit2.Oid, bytes] = {}
        self._contended = False  # this handle's last plan outside the lock was wasted

    def _main(self) -> pygit2.Oid:
        oid = self.store.ref(MAIN)
        if oid is None:
            raise VaultNotFound(self.store.path)
        return oid

    def _tree(self, oid: pygit2.Oid) -> pygit2.Tree:
        tree = self.store.repo[oid]
        assert isinstance(tree, pygit2.Tree)
        return tree

    def blob(self, oid: pygit2.Oid) -> bytes:
        data = self._recent.get(oid)
        if data is None:
            data = self.store.blob(oid)
            self.remember({oid: data})
        return data

    def remember(self, blobs: Mapping[pygit2.Oid, bytes], budget: int = 64 << 20) -> None:
        """Keep ``blobs`` in the recent cache, dropping the oldest beyond ``budget`` bytes."""
        self._recent.update(blobs)
        total = sum(map(len, self._recent.values()))
        for oid in list(self._recent):
            if total <= budget:
                break
            total -= len(self._recent.pop(oid))

    def at_hand(self, agent: str) -> dict[str, bytes] | None:
        """The bytes of the agent's base, by file name, that this handle has in memory (the
        encoder then checks only what differs from them)."""
        if not self._recent and not self.store.cached_any():
            return None  # a fresh handle (a CLI call): nothing to save
        held = self.leases.get(agent)
        if held is None or held.base is None:
            return None
        out = {}
        for name, oid in self.store.key_blobs(self.store.commit(held.base).tree).items():
            data = self._recent.get(oid) or self.store.cached(oid)
            if data is not None:
                out[name] = data
        return out

    def commit_files(
        self,
        agent: str,
        files: Mapping[str, bytes | pygit2.Oid],
        prov: Provenance,
        policy: str,
        lease: int | None,
    ) -> CheckinResult:
        quarantine.check(self.store, agent)
        made: tuple[tuple[int, str], list[str], pygit2.Commit | None] | None = None
        last: Landing | None = None  # the attempt whose step raised, for keeping its work

        def attempt(n: int) -> Step[Outcome] | Done[Outcome] | None:
            nonlocal made, last
            current = self.leases.get(agent)
            ours = current is not None and lease in (None, current.token)
            if current is not None and ours and not current.live(self.clock()):
                raise self._keep_expired(agent, current, files, prov)
            if current is None or not ours:
                # under the lock, verify raises the precise lease error; if it does not, the
                # lease changed between our two reads: look again
                try:
                    self.store.transact(
                        [NOTES, lease_ref(agent)],
                        lambda rtx: self.leases.verify(rtx, agent, lease),
                        "checkin",
                    )
                except LeaseFenced as fenced:
                    raise self._keep_fenced(fenced, files, prov) from None
                return None
            if made is None or made[0] != (current.token, current.base):
                # the agent's own commit on its base; a lost race for main keeps it
                made = ((current.token, current.base), *self.propose(agent, current, files, prov))
                trust.guard_checkin(self, agent, made[2])  # signatures, path rules (exit 5)
            _key, changed, proposal = made
            if proposal is None:
                return Done(CheckinResult(None, [], current))
            last = Landing(
                agent, lease, current, proposal.parents[0], proposal, prov, changed, policy
            )
            # Plan the first merge without holding any lock (main rarely moves meanwhile);
            # after a lost race, plan under the lock of main so it cannot be lost again
            # (bench/README.md has the measurements behind OPTIMISTIC_PLANS). A handle whose
            # last plan outside was thrown away plans its next one under the lock at once:
            # on a busy vault the plan outside nearly always loses, and its merge commit
            # (and the vault's signature) only took CPU from the writer holding the turn.
            if n < OPTIMISTIC_PLANS and not self._contended:
                planned = self._plan_outside(last)
                # main moved while we planned: the plan would lose under the lock, and taking
                # the lock just to learn that costs three lock files; plan under it at once
                if self.store.ref(MAIN) == planned.main:
                    last = planned
                else:
                    self._contended = True
            elif n == 0:
                self._contended = False  # skipped once: the next checkin tries outside again
            return functools.partial(self._land, landing=last)

        try:
            # The agent's lease ref is read under the lock but not locked: a checkin never
            # moves it, and every write of a lease ref (checkout, release, revoke, pruning)
            # holds the notes lock, which this transaction holds. Locking it as well cost a
            # lock file created and deleted per checkin, and on a busy ext4 every deleted
            # file makes the next ones slower to create (bench/README.md, fileops.py).
            landed = advance(self.store, f"checkin {agent}", [MAIN, NOTES], attempt)
        except integrate.Refused as refused:
            assert last is not None
            raise self.refuse(
                agent, last.base.id, refused.main or self._main(), last.proposal.id, refused
            ) from None
        if isinstance(landed, CheckinResult):
            return landed
        assert last is not None
        if isinstance(landed, LeaseExpired):  # found under the lock: keep the work, then refuse
            raise self._keep_expired(agent, last.read, files, prov)
        moved, plan = landed
        upkeep.maybe_gc(self.store)
        return CheckinResult.landed(plan, last.changed, moved)

    def _plan_outside(self, landing: Landing) -> Landing:
        """The landing with its merge planned now, against main as it is (no lock held)."""
        main = self.store.commit(self._main())
        base, prov = landing.base, landing.prov
        decide = integrate.decider(self.store, landing.policy, base.id, main.id, prov.confidence)
        try:
            plan = integrate.plan(
                self.store,
                base,
                main,
                landing.proposal,
                prov,
                landing.read.token,
                landing.changed,
                decide,
                self.clock(),
            )
        except integrate.Refused as refused:
            refused.main = main.id
            raise
        return dataclasses.replace(landing, plan=plan, main=main.id)

    def held(self, agent: str, lease: int | None) -> Lease:
        """``agent``'s current lease (not checked for expiry), with ``lease`` as its token."""
        held = self.leases.get(agent)
        if held is None:
            raise NoLease(agent)
        if lease is not None and lease != held.token:
            raise LeaseFenced(agent, lease, held.token)
        return held

    def propose(
        self, agent: str, held: Lease, files: Mapping[str, bytes | pygit2.Oid], prov: Provenance
    ) -> tuple[list[str], pygit2.Commit | None]:
        """The agent's own commit of ``files`` on its lease's base, with its trailers.

        Returns the changed keys and the commit (None when nothing changed).
        """
        base = self.store.commit(held.base)
        old = self.store.key_blobs(base.tree)
        same = {
            n: old[n] for n, content in files.items() if n in old and self._same(old[n], content)
        }
        changed = sorted(
            n[: -len(codec.BLOB_SUFFIX)] for n in set(old) | set(files) if n not in same
        )
        if not changed:
            return changed, None
        tree = self._tree(self.store.build_tree(base.tree, files, ids=same))
        new = {n: d for n, d in files.items() if isinstance(d, bytes)}
        index = changes.between(self.store, base.tree, tree, new, self.blob)
        written = self.store.key_blobs(tree)
        self.remember(
            {
                written[n]: data
                for n, data in new.items()
                if n not in same and not shards.wanted(data)
            }
        )
        msg = message(
            subject_for(agent, "checkin", changed),
            checkin_trailers(prov, held.token, str(base.id)) + changes.trailers(index),
        )
        oid = self.store.write_commit(tree.id, [base.id], identity(agent), msg, self.clock())
        return changed, self.store.commit(oid)

    def _same(self, old: pygit2.Oid, content: bytes | pygit2.Oid) -> bool:
        """Whether a key is unchanged: by id, by the base's bytes when they are at hand (a
        memcmp), else by hashing the new bytes (a sharded key: by reading the base's)."""
        if isinstance(content, pygit2.Oid):
            return content == old
        known = self._recent.get(old)
        if known is not None:
            return known == content
        if self.store.is_tree(old):  # sharded: always a large array, so compare only those
            return shards.wanted(content) and self.blob(old) == content
        if shards.wanted(content):
            return self.blob(old) == content
        return pygit2.hash(content) == old

    def _keep_expired(
        self, agent: str, held: Lease, files: Mapping[str, bytes | pygit2.Oid], prov: Provenance
    ) -> LeaseExpired:
        """An expired lease refuses the checkin, but the work is kept, not lost.

        The proposal is committed on the lease's base and kept under ``refs/conflicts/`` so
        ``gitvault resolve`` can still merge it after a look at what changed meanwhile.
        """
        expired_at = datetime.fromtimestamp(held.expires, UTC)
        _changed, proposal = self.propose(agent, held, files, prov)
        if proposal is None:
            return LeaseExpired(agent, expired_at)
        return LeaseExpired(agent, expired_at, self.conflicts.keep(agent, proposal.id).id)

    def _keep_fenced(
        self, fenced: LeaseFenced, files: Mapping[str, bytes | pygit2.Oid], prov: Provenance
    ) -> LeaseFenced:
        """A stale token refuses the checkin, but as with expiry the work is kept: committed on
        the base the old lease last stood on (found in the notes' history)."""
        old = self.leases.past(fenced.agent, fenced.given)
        if old is None or self.store.ref(MAIN) is None:
            return fenced
        try:
            _changed, proposal = self.propose(fenced.agent, old, files, prov)
        except GitVaultError:
            return fenced  # the old base is gone (pruned): nothing to keep
        if proposal is None:
            return fenced
        kept = self.conflicts.keep(fenced.agent, proposal.id).id
        return LeaseFenced(fenced.agent, fenced.given, fenced.current, kept)

    def _land(self, rtx: RefTx, landing: Landing) -> Outcome | None:
        """Under the lock: the lease is still the one we read; move main and the lease base.

        With a plan (made before locking, against ``landing.main``), main must not have moved;
        without, the merge is planned here against the locked main. An expired lease is
        returned, not raised, so the caller keeps the work once the lock is released.
        """
        agent, read, plan = landing.agent, landing.read, landing.plan
        try:
            held = self.leases.verify(rtx, agent, landing.token)
        except LeaseExpired as expired:
            return expired
        if held.token != read.token or held.base != read.base:
            return None  # re-checked-out meanwhile: the caller starts again
        current = rtx.get(MAIN)
        if plan is None:
            assert current is not None
            head = self.store.commit(current)
            base, prov = landing.base, landing.prov
            decide = integrate.decider(
                self.store, landing.policy, base.id, head.id, prov.confidence
            )
            try:
                plan = integrate.plan(
                    self.store,
                    base,
                    head,
                    landing.proposal,
                    prov,
                    read.token,
                    landing.changed,
                    decide,
                    self.clock(),
                )
            except integrate.Refused as refused:
                refused.main = head.id
                raise
        elif current != landing.main:
            self._contended = True  # main moved while we waited for the lock
            return None
        rtx.set(MAIN, plan.target, f"checkin {agent}" + (" (merge)" if plan.merged else ""))
        return self.leases.move_base(rtx, held, plan.target), plan

    def refuse(
        self,
        agent: str,
        base: pygit2.Oid,
        main: pygit2.Oid,
        proposal: pygit2.Oid,
        refused: integrate.Refused,
    ) -> ConflictError:
        kept = self.conflicts.keep(agent, proposal)
        report = {
            "id": kept.id,
            "ref": kept.ref,
            "agent": agent,
            "proposal": str(proposal),
            "base": str(base),
            "main": str(main),
            "conflicts": refused.entries,
        }
        what = ", ".join(e["path"] for e in refused.entries[:3])
        more = f" and {len(refused.entries) - 3} more" if len(refused.entries) > 3 else ""
        return ConflictError(
            f"conflict at {what}{more}; main unchanged, proposal kept as {kept.ref}; "
            f"resolve with `gitvault resolve {kept.id} --take ours|theirs|FILE`",
            report,
        )
