"""The public API: ``from gitvault import Vault``.

A :class:`Vault` composes the layers (codec, storage, leases, provenance, merge). Everything the
CLI and the MCP server do goes through it, so every rule lives here once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pygit2
from pygit2.enums import FileMode

from . import changes, codec, integrate, schemas, settings, shards, signing, trust, upkeep
from .codec import Document
from .conflicts import ConflictStore
from .errors import (
    ConflictError,
    GitVaultError,
    InputError,
    LeaseExpired,
    LeaseFenced,
    NoLease,
    VaultBusy,
    VaultExists,
    VaultNotFound,
)
from .importer import read_legacy
from .jsonmerge import Conflict
from .leases import NOTES, Lease, LeaseBook, lease_ref
from .merge import merge_trees
from .provenance import (
    Provenance,
    check_agent,
    checkin_trailers,
    identity,
    message,
    parse_confidence,
    parse_trailers,
    subject_for,
)
from .storage import MAIN, Identity, RefTx, Store

OPTIMISTIC_PLANS = 1  # merges planned outside the lock before planning under it
CHECKIN_ATTEMPTS = 200  # lost races for main, each followed by a jittered wait


@dataclass(frozen=True)
class Checkout:
    """What ``checkout`` hands an agent: the document at the lease's base, and the lease."""

    document: Document
    lease: Lease


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
    def landed(cls, plan: integrate.Plan, changed: list[str], lease: Lease | None
               ) -> CheckinResult:
        """The result of a plan that is now on main."""
        outcome = plan.outcome
        return cls(str(plan.target), changed, lease, plan.merged,
                   dict(outcome.how) if outcome else {},
                   [f"{c.path} -> {side} ({why})" for c, side, why in outcome.decisions]
                   if outcome else [])

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "changed": self.changed, "merged": self.merged,
                "noop": self.noop, "strategy": self.strategy, "resolved": self.resolved,
                "lease": self.lease.token if self.lease else None,
                "base": self.lease.base if self.lease else None}


@dataclass(frozen=True)
class KeyInfo:
    key: str
    size: int
    blob: str


@dataclass(frozen=True)
class Status:
    path: str
    head: str | None
    commits: int
    keys: list[KeyInfo]
    leases: list[Lease]
    conflicts: list[str]
    now: float = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "vault": self.path,
            "head": self.head,
            "commits": self.commits,
            "keys": {k.key: {"size": k.size, "blob": k.blob} for k in self.keys},
            "leases": [x.to_json(self.now) for x in self.leases],
            "conflicts": self.conflicts,
        }


class Session:
    """One agent's working copy under a lease (see :meth:`Vault.lease`).

    ``doc`` is the document at the lease's base; change it in place and :meth:`commit`. After a
    commit the lease stands on the new head, so the session can keep working.
    """

    def __init__(self, vault: Vault, checkout: Checkout) -> None:
        self.vault, self.doc, self.lease = vault, checkout.document, checkout.lease

    def commit(self, source: str, confidence: float | None = None, justification: str = "",
               on_conflict: str | None = None) -> CheckinResult:
        """Check ``doc`` in with this lease's token (a newer checkout fences it)."""
        r = self.vault.checkin(self.lease.agent, self.doc, source, confidence, justification,
                               lease=self.lease.token, on_conflict=on_conflict)
        if r.lease is not None:
            self.lease = r.lease
        if r.merged:
            self.doc = self.vault.read(r.commit)
        return r


class Vault:
    """A gitvault: a bare git repository holding one JSON document with its history."""

    def __init__(self, store: Store, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        store.fsync = bool(settings.value(store, "fsync"))
        store.stale_lock_seconds = float(settings.value(store, "staleLockSeconds"))
        self.limits = codec.Limits(*(int(settings.value(store, n)) for n in (
            "maxDocumentBytes", "maxDepth", "maxStringBytes", "maxKeys")))
        self.clock = clock or time.time
        self.leases = LeaseBook(store, self.clock)
        self.conflicts = ConflictStore(store)
        own = signing.vault_signer(store.path) if settings.value(store, "vaultSigning") else None
        store.sign = signing.CommitSigner(own,
                                          signing.make_signer(os.environ.get(
                                              "GITVAULT_SIGNING_KEY"), check=False))
        # bytes of the key blobs this handle read or wrote last: a checkin compares its new
        # blobs with the base's (the Changed: index), which are usually the ones read at
        # checkout or written by the previous checkin
        self._recent: dict[pygit2.Oid, bytes] = {}

    @property
    def path(self) -> str:
        return self.store.path

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], clock: Callable[[], float] | None = None) -> Vault:
        return cls(Store.open(os.fspath(path)), clock)

    @classmethod
    def init(cls, path: str | os.PathLike[str], import_dir: str | os.PathLike[str] | None = None,
             clock: Callable[[], float] | None = None) -> Vault:
        """Create a bare vault with a first commit; refuses a non-empty path.

        With ``import_dir`` the first commit holds the legacy folder. The folder is read and
        checked first, and a failure part-way removes what was created: no half vault.
        """
        target = os.fspath(path)
        if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
            raise VaultExists(target)
        legacy = read_legacy(import_dir) if import_dir is not None else None
        existed = os.path.isdir(target)
        try:
            store = Store.create(target)
            pub = signing.create_vault_key(target)
            vault = cls(store, clock)
            vault._first_commit(legacy, os.fspath(import_dir) if import_dir else "",
                                None if pub is None else signing.vault_signers_file(pub))
            vault.install_hooks()
        except BaseException:
            if existed:
                for name in os.listdir(target):
                    p = os.path.join(target, name)
                    shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
            else:
                shutil.rmtree(target, ignore_errors=True)
            raise
        return vault

    def _first_commit(self, legacy: Any, source_dir: str, signers: bytes | None = None) -> None:
        store = self.store
        extra: dict[str, pygit2.Oid] = {}
        files: dict[str, bytes] = {}
        reserved: dict[str, Any] = {} if signers is None else {"allowed_signers": signers}
        if legacy is None:
            subject, source, why = "init: empty vault", "init", "new vault"
        else:
            files = codec.encode_document(legacy.document)
            if legacy.eventlog:
                reserved["legacy-eventlog"] = legacy.eventlog
            if legacy.schemas:
                reserved["schemas"] = {f"{k}.schema.json": v for k, v in legacy.schemas.items()}
            subject = subject_for("legacy-import", "import", sorted(legacy.document))
            source, why = "legacy-import", f"imported from {os.path.abspath(source_dir)}"
        if reserved:
            extra[codec.RESERVED] = store.build_subtree(reserved)
        tree = store.build_tree(None, files, extra)
        trailers = [("Agent-Id", "gitvault"), ("Source", source), ("Confidence", "1.0"),
                    ("Justification", why), ("Lease", "none"), ("Base", "none")]
        commit = store.write_commit(tree, [], identity("gitvault"),
                                    message(subject, trailers), self.clock())

        def fn(rtx: RefTx) -> None:
            if rtx.get(MAIN) is not None:
                raise VaultExists(store.path)
            rtx.set(MAIN, commit, "init")

        store.transact([MAIN], fn, "init")

    # -- reading ---------------------------------------------------------------------------
    def head(self) -> str | None:
        oid = self.store.ref(MAIN)
        return str(oid) if oid is not None else None

    def _files(self, rev: str | None) -> tuple[pygit2.Commit, dict[str, pygit2.Oid]]:
        commit = self.store.resolve(rev or "refs/heads/main")
        return commit, self.store.key_blobs(commit.tree)

    def read(self, rev: str | None = None) -> Document:
        """The document at a revision (default: main)."""
        _, blobs = self._files(rev)
        doc: Document = {}
        for name, oid in sorted(blobs.items()):
            key = codec.key_of(name)
            assert key is not None
            doc[key] = codec.loads_trusted(self._blob(oid), name)
        return doc

    def _blob(self, oid: pygit2.Oid) -> bytes:
        data = self._recent.get(oid)
        if data is None:
            data = self.store.blob(oid)
            self._remember({oid: data})
        return data

    def _remember(self, blobs: Mapping[pygit2.Oid, bytes], budget: int = 64 << 20) -> None:
        """Keep ``blobs`` in the recent cache, dropping the oldest beyond ``budget`` bytes."""
        self._recent.update(blobs)
        total = sum(map(len, self._recent.values()))
        for oid in list(self._recent):
            if total <= budget:
                break
            total -= len(self._recent.pop(oid))

    def status(self) -> Status:
        head = self.store.ref(MAIN)
        keys: list[KeyInfo] = []
        commits = 0
        if head is not None:
            commit = self.store.commit(head)
            for name, oid in sorted(self.store.key_blobs(commit.tree).items()):
                keys.append(KeyInfo(name[: -len(codec.BLOB_SUFFIX)], self.store.key_size(oid),
                                    str(oid)))
            commits = self.store.count_commits(head)
        conflicts = sorted(self.store.refs_under("refs/conflicts/"))
        return Status(self.path, str(head) if head else None, commits, keys, self.leases.all(),
                      conflicts, self.clock())

    # -- the four commands -----------------------------------------------------------------
    def checkout(self, agent: str, ttl: int | None = None, exclusive: bool = False) -> Checkout:
        """Take or renew ``agent``'s lease on the current main and return the document there."""
        lease = self.leases.acquire(agent, ttl, exclusive)
        return Checkout(self.read(lease.base) if lease.base else {}, lease)

    @contextlib.contextmanager
    def lease(self, agent: str, ttl: int | None = None,
              exclusive: bool = False) -> Iterator[Session]:
        """Check out, yield a :class:`Session`, release on the way out (even on error).

        >>> import tempfile, os
        >>> v = Vault.init(os.path.join(tempfile.mkdtemp(), "v.git"))
        >>> with v.lease("planner", ttl=60) as co:
        ...     co.doc["tasks"] = [{"id": "T-1", "status": "todo"}]
        ...     r = co.commit(source="planning", confidence=0.8, justification="kick-off")
        >>> v.read()["tasks"][0]["status"], v.leases.get("planner") is None
        ('todo', True)
        """
        session = Session(self, self.checkout(agent, ttl, exclusive))
        try:
            yield session
        finally:
            self.release(agent)

    def release(self, agent: str) -> Lease | None:
        """Drop ``agent``'s lease. Returns the lease dropped, or None if there was none."""
        check_agent(agent)
        return self.leases.release(agent)

    def checkin(self, agent: str, document: Mapping[str, Any], source: str,
                confidence: float | str | None = None, justification: str = "",
                lease: int | None = None, on_conflict: str | None = None) -> CheckinResult:
        """Commit ``document`` as ``agent``'s new version of the memory.

        Needs the agent's live lease (``lease`` pins its token: a newer checkout fences this
        one). A document equal to the lease's base commits nothing. When main has moved past
        the base, the agent's commit is made on the base and merged into main; true conflicts
        raise :class:`ConflictError` (exit 3) after keeping the proposal under
        ``refs/conflicts/``. ``on_conflict`` (default ``gitvault.onConflict``, else ``fail``)
        may resolve them: ``ours`` (main wins), ``theirs`` (this proposal wins),
        ``confidence`` (the higher Confidence trailer wins; a tie refuses).
        """
        prov, policy = self._who_and_how(agent, source, confidence, justification, on_conflict)
        files = codec.encode_document(document, self.limits, self._at_hand(agent))
        return self._checkin_files(agent, files, prov, policy, lease)

    def _at_hand(self, agent: str) -> dict[str, bytes] | None:
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

    def _who_and_how(self, agent: str, source: str, confidence: float | str | None,
                     justification: str, on_conflict: str | None) -> tuple[Provenance, str]:
        """A checkin's checked provenance and conflict policy (refused before any work)."""
        prov = Provenance(agent, source, parse_confidence(confidence), justification).check()
        return prov, integrate.check_policy(
            on_conflict or settings.value(self.store, "onConflict"))

    def _checkin_files(self, agent: str, files: Mapping[str, bytes | pygit2.Oid],
                       prov: Provenance, policy: str, lease: int | None) -> CheckinResult:
        made: tuple[tuple[int, str], list[str], pygit2.Commit | None] | None = None
        for _attempt in range(CHECKIN_ATTEMPTS):
            current = self.leases.get(agent)
            if current is not None and lease in (None, current.token) and not current.live(
                self.clock()
            ):
                raise self._keep_expired(agent, current, files, prov)
            if current is None or lease not in (None, current.token) or not current.live(
                self.clock()
            ):
                # under the lock, verify raises the precise lease error; if it does not, the
                # lease changed between our two reads: look again
                try:
                    self.store.transact([NOTES, lease_ref(agent)],
                                        lambda rtx: self.leases.verify(rtx, agent, lease),
                                        "checkin")
                except LeaseFenced as fenced:
                    raise self._keep_fenced(fenced, files, prov) from None
                continue
            if made is None or made[0] != (current.token, current.base):
                # the agent's own commit on its base; a lost race for main keeps it
                made = ((current.token, current.base),
                        *self._propose(agent, current, files, prov))
                trust.guard_checkin(self, agent, made[2])  # signatures, path rules (exit 5)
            _key, changed, proposal = made
            if proposal is None:
                return CheckinResult(None, [], current)
            base = proposal.parents[0]
            # Plan the merge without holding any lock (main rarely moves meanwhile); after
            # OPTIMISTIC_PLANS lost races, plan it under the lock of main, so that it cannot be
            # lost again. Measured (2/4/8 agents, 1,000 items, checkins/s): after 1 lost race
            # 73/62/56, after 2 78/58/45, after 3 90/57/41: more optimism helps two agents and
            # wastes merges with eight, so under-lock planning starts at the first lost race.
            land = functools.partial(self._land, agent=agent, token=lease, read=current,
                                     base=base, proposal=proposal, prov=prov, changed=changed,
                                     policy=policy, plan=None)
            if _attempt < OPTIMISTIC_PLANS:
                main = self.store.commit(self._main())
                decide = integrate.decider(self.store, policy, base.id, main.id, prov.confidence)
                try:
                    plan = integrate.plan(self.store, base, main, proposal, prov, current.token,
                                          changed, decide, self.clock())
                except integrate.Refused as refused:
                    raise self._refuse(agent, base.id, main.id, proposal.id, refused) from None
                land = functools.partial(land, plan=plan, main=main.id)
            try:
                landed = self.store.transact([MAIN, NOTES, lease_ref(agent)], land,
                                             f"checkin {agent}")
            except LeaseExpired:
                raise self._keep_expired(agent, current, files, prov) from None
            except integrate.Refused as refused:
                raise self._refuse(agent, base.id, refused.main or self._main(), proposal.id,
                                   refused) from None
            if landed is None:  # lost the race for main (or the lease changed): try again
                if _attempt >= OPTIMISTIC_PLANS:
                    time.sleep(random.uniform(0, min(0.002 * 2 ** _attempt, 0.05)))
                continue
            moved, plan = landed
            upkeep.maybe_gc(self)
            return CheckinResult.landed(plan, changed, moved)
        raise VaultBusy(f"checkin {agent}", CHECKIN_ATTEMPTS)

    def _held(self, agent: str, lease: int | None) -> Lease:
        """``agent``'s current lease (not checked for expiry), with ``lease`` as its token."""
        held = self.leases.get(agent)
        if held is None:
            raise NoLease(agent)
        if lease is not None and lease != held.token:
            raise LeaseFenced(agent, lease, held.token)
        return held

    def _propose(self, agent: str, held: Lease, files: Mapping[str, bytes | pygit2.Oid],
                 prov: Provenance) -> tuple[list[str], pygit2.Commit | None]:
        """The agent's own commit of ``files`` on its lease's base, with its trailers.

        Returns the changed keys and the commit (None when nothing changed).
        """
        base = self.store.commit(held.base)
        old = self.store.key_blobs(base.tree)
        same = {n: old[n] for n, content in files.items()
                if n in old and self._same(old[n], content)}
        changed = sorted(n[: -len(codec.BLOB_SUFFIX)] for n in set(old) | set(files)
                         if n not in same)
        if not changed:
            return changed, None
        tree = self._tree(self.store.build_tree(base.tree, files, ids=same))
        new = {n: d for n, d in files.items() if isinstance(d, bytes)}
        index = changes.between(self.store, base.tree, tree, new, self._blob)
        written = self.store.key_blobs(tree)
        self._remember({written[n]: data for n, data in new.items()
                        if n not in same and not shards.wanted(data)})
        msg = message(subject_for(agent, "checkin", changed),
                      checkin_trailers(prov, held.token, str(base.id)) + changes.trailers(index))
        oid = self.store.write_commit(tree.id, [base.id], self._who(agent), msg, self.clock())
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
            return shards.wanted(content) and self._blob(old) == content
        if shards.wanted(content):
            return self._blob(old) == content
        return pygit2.hash(content) == old

    def _keep_expired(self, agent: str, held: Lease, files: Mapping[str, bytes | pygit2.Oid],
                      prov: Provenance) -> LeaseExpired:
        """An expired lease refuses the checkin, but the work is kept, not lost.

        The proposal is committed on the lease's base and kept under ``refs/conflicts/`` so
        ``gitvault resolve`` can still merge it after a look at what changed meanwhile.
        """
        expired_at = datetime.fromtimestamp(held.expires, UTC)
        _changed, proposal = self._propose(agent, held, files, prov)
        if proposal is None:
            return LeaseExpired(agent, expired_at)
        return LeaseExpired(agent, expired_at, self.conflicts.keep(agent, proposal.id).id)

    def _keep_fenced(self, fenced: LeaseFenced, files: Mapping[str, bytes | pygit2.Oid],
                     prov: Provenance) -> LeaseFenced:
        """A stale token refuses the checkin, but as with expiry the work is kept: committed on
        the base the old lease last stood on (found in the notes' history)."""
        old = self.leases.past(fenced.agent, fenced.given)
        if old is None or self.store.ref(MAIN) is None:
            return fenced
        try:
            _changed, proposal = self._propose(fenced.agent, old, files, prov)
        except GitVaultError:
            return fenced  # the old base is gone (pruned): refuse as before
        if proposal is None:
            return fenced
        kept = self.conflicts.keep(fenced.agent, proposal.id).id
        return LeaseFenced(fenced.agent, fenced.given, fenced.current, kept)

    # -- upkeep ----------------------------------------------------------------------------
    def doctor(self, fix: bool = False) -> upkeep.Report:
        """Check the vault (refs, JSON, leases, hooks, locks, loose objects); repair if asked."""
        return upkeep.doctor(self, fix)

    def gc(self) -> dict[str, Any]:
        """Prune expired leases and pack the repository (git gc)."""
        return upkeep.gc(self)

    def _land(self, rtx: RefTx, agent: str, token: int | None, read: Lease,
              base: pygit2.Commit, proposal: pygit2.Commit, prov: Provenance,
              changed: list[str], policy: str, plan: integrate.Plan | None,
              main: pygit2.Oid | None = None) -> tuple[Lease, integrate.Plan] | None:
        """Under the lock: the lease is still the one we read; move main and the lease base.

        With ``plan`` (made before locking, against ``main``), main must not have moved;
        without, the merge is planned here against the locked main.
        """
        held = self.leases.verify(rtx, agent, token)
        if held.token != read.token or held.base != read.base:
            return None  # re-checked-out meanwhile: the caller starts again
        current = rtx.get(MAIN)
        if plan is None:
            assert current is not None
            head = self.store.commit(current)
            decide = integrate.decider(self.store, policy, base.id, head.id, prov.confidence)
            try:
                plan = integrate.plan(self.store, base, head, proposal, prov, read.token,
                                      changed, decide, self.clock())
            except integrate.Refused as refused:
                refused.main = head.id
                raise
        elif current != main:
            return None
        rtx.set(MAIN, plan.target, f"checkin {agent}" + (" (merge)" if plan.merged else ""))
        return self.leases.move_base(rtx, held, plan.target), plan

    def _refuse(self, agent: str, base: pygit2.Oid, main: pygit2.Oid, proposal: pygit2.Oid,
                refused: integrate.Refused) -> ConflictError:
        kept = self.conflicts.keep(agent, proposal)
        report = {"id": kept.id, "ref": kept.ref, "agent": agent, "proposal": str(proposal),
                  "base": str(base), "main": str(main), "conflicts": refused.entries}
        what = ", ".join(e["path"] for e in refused.entries[:3])
        more = f" and {len(refused.entries) - 3} more" if len(refused.entries) > 3 else ""
        return ConflictError(
            f"conflict at {what}{more}; main unchanged, proposal kept as {kept.ref}; "
            f"resolve with `gitvault resolve {kept.id} --take ours|theirs|FILE`", report)

    # -- conflicts -------------------------------------------------------------------------
    def pending_conflicts(self) -> list[dict[str, Any]]:
        """Kept proposals, each with what conflicts now against main."""
        out = []
        main = self.store.commit(self._main())
        for k in self.conflicts.all():
            proposal = self.store.commit(k.commit)
            base = proposal.parents[0] if proposal.parents else proposal
            trailers = parse_trailers(proposal.message)
            outcome = merge_trees(self.store, base.tree, main.tree, proposal.tree)
            out.append({
                "id": k.id, "ref": k.ref, "agent": k.agent, "proposal": k.commit,
                "base": str(base.id), "time": proposal.commit_time,
                "source": trailers.get("Source", ""), "confidence": trailers.get("Confidence"),
                "conflicts": integrate.conflict_entries(self.store, base.id, main.id,
                                                        outcome.conflicts),
            })
        return out

    def drop_conflict(self, conflict_id: str) -> str:
        """Forget a kept proposal (its commit stays reachable from the reflog until gc)."""
        return self.conflicts.drop(conflict_id).ref

    def resolve(self, conflict_id: str, take: str | None = None,
                picks: Mapping[str, str] | None = None, document: Mapping[str, Any] | None = None,
                agent: str | None = None) -> CheckinResult:
        """Finish a kept proposal: merge it into main with the given choices.

        ``take`` (``ours``/``theirs``) decides every conflict, ``picks`` maps a pointer (id
        form or positional, as the report shows) to a side and wins over ``take``;
        ``document`` instead gives the whole resolved document. A conflict left undecided
        refuses (exit 3) and changes nothing. The merge commit keeps the proposal's
        provenance and records each decision in ``Resolved`` trailers.
        """
        kept = self.conflicts.get(conflict_id)
        if take not in (None, "ours", "theirs"):
            raise InputError(f"--take {take!r}: use ours, theirs or a FILE")
        for ptr, side in (picks or {}).items():
            if side not in ("ours", "theirs"):
                raise InputError(f"{ptr}={side}: choose ours or theirs")
        proposal = self.store.commit(kept.commit)
        base = proposal.parents[0]
        t = parse_trailers(proposal.message)
        prov = Provenance(kept.agent, t.get("Source") or "resolve",
                          parse_confidence(t.get("Confidence")), t.get("Justification", ""))
        resolver = check_agent(agent or kept.agent)
        extra = [("Resolved-By", resolver), ("Conflict", kept.id)]
        for _attempt in range(CHECKIN_ATTEMPTS):
            main = self.store.commit(self._main())
            if document is not None:
                target = self._resolve_with(document, main, proposal, prov, t, extra)
            else:
                def decide(c: Conflict) -> tuple[str, str] | None:
                    side = (picks or {}).get(c.path) or (picks or {}).get(c.pointer) or take
                    return (side, f"by {resolver}") if side else None

                try:
                    target = integrate.plan(self.store, base, main, proposal, prov,
                                            t.get("Lease", ""), [], decide, self.clock(),
                                            extra).target
                except integrate.Refused as refused:
                    raise ConflictError(
                        f"{len(refused.entries)} conflict(s) of {kept.id} left undecided; "
                        "nothing changed", {"id": kept.id, "ref": kept.ref,
                                            "conflicts": refused.entries}) from None

            trust.guard_resolve(self, kept, resolver, main, proposal, target)

            def fn(rtx: RefTx, main_id: pygit2.Oid = main.id, target: pygit2.Oid = target) -> bool:
                if rtx.get(kept.ref) is None:
                    raise InputError(f"conflict {kept.id} was resolved or dropped meanwhile")
                if rtx.get(MAIN) != main_id:
                    return False
                rtx.set(MAIN, target, f"resolve {kept.id}")
                rtx.delete(kept.ref)
                return True

            if self.store.transact([MAIN, kept.ref], fn, f"resolve {kept.id}"):
                changed = codec.changed_keys(self._encoded(main), self._encoded(target))
                return CheckinResult(str(target), changed, None, True)  # no lease involved
        raise VaultBusy(f"resolve {kept.id}", CHECKIN_ATTEMPTS)

    def _resolve_with(self, document: Mapping[str, Any], main: pygit2.Commit,
                      proposal: pygit2.Commit, prov: Provenance, t: Mapping[str, str],
                      extra: list[tuple[str, str]]) -> pygit2.Oid:
        files = codec.encode_document(document, self.limits)
        tree = self.store.build_tree(main.tree, files)
        tree_obj = self._tree(tree)
        problems = schemas.validate_tree(self.store, tree_obj, [k[:-5] for k in files])
        if problems:
            raise schemas.SchemaError(f"the resolved document fails its schema at "
                                      f"{problems[0]['pointer']}: {problems[0]['message']}",
                                      problems)
        trailers = checkin_trailers(prov, t.get("Lease", ""), str(proposal.parents[0].id))
        trailers += [("Merged-Commit", str(proposal.id)), ("Resolved", "all -> file"), *extra]
        trailers += changes.trailers(changes.between(self.store, main.tree, tree_obj, files))
        msg = message(subject_for(prov.agent, "merge", sorted(k[:-5] for k in files)), trailers)
        return self.store.write_commit(tree, [main.id, proposal.id], self._who(prov.agent), msg,
                                       self.clock())

    # -- schemas ---------------------------------------------------------------------------
    def schema(self, key: str) -> Any | None:
        """The JSON Schema of ``key`` on main, or None."""
        return schemas.read_schema(self.store, self.store.commit(self._main()).tree, key)

    def set_schema(self, key: str, schema: Any, agent: str = "gitvault") -> str:
        """Store ``schema`` for ``key`` in a commit on main; refuses if main's value fails it."""
        schemas.check_schema(schema, f"schema for {key}")
        path = schemas.schema_path(key)
        for _attempt in range(CHECKIN_ATTEMPTS):
            main = self.store.commit(self._main())
            index = pygit2.Index()
            index.read_tree(main.tree)
            index.add(pygit2.IndexEntry(path, self.store.write_blob(codec.dumps(schema)),
                                        FileMode.BLOB))
            tree_oid = self.store.objects(functools.partial(index.write_tree, self.store.repo))
            tree = self.store.repo[tree_oid]
            assert isinstance(tree, pygit2.Tree)
            problems = schemas.validate_tree(self.store, tree, [key])
            if problems:
                raise schemas.SchemaError(
                    f"main's {key} fails this schema at {problems[0]['pointer']}: "
                    f"{problems[0]['message']}; fix the data first", problems)
            trailers = [("Agent-Id", check_agent(agent)), ("Source", "schema"),
                        ("Confidence", "1.0"), ("Justification", f"schema for {key}"),
                        ("Lease", "none"), ("Base", str(main.id))]
            commit = self.store.write_commit(tree_oid, [main.id], self._who(agent),
                                             message(f"schema {key}", trailers), self.clock())

            def fn(rtx: RefTx, m: pygit2.Oid = main.id, c: pygit2.Oid = commit) -> bool:
                if rtx.get(MAIN) != m:
                    return False
                rtx.set(MAIN, c, f"schema {key}")
                return True

            if self.store.transact([MAIN], fn, f"schema set {key}"):
                return str(commit)
        raise VaultBusy(f"schema set {key}", CHECKIN_ATTEMPTS)

    def access(self) -> Any:
        """The access rules on main (:class:`gitvault.access.Rules`)."""
        from . import access

        return access.load_main(self.store)

    def change_access(self, change: Callable[[Any], Any], by: str = "gitvault",
                      what: str = "access") -> str:
        """Commit ``change(rules)`` as main's new access rules (compare-and-swap on main)."""
        from . import access

        return access.commit_change(self.store, change, by, what, self.clock)[0]

    # -- signatures (see gitvault.signing, gitvault.trust) ---------------------------------
    def sign_with(self, key: str | None) -> None:
        """Sign this handle's agent commits with ``key`` (a private key, or a .pub that
        ssh-agent holds); None: leave them unsigned."""
        assert isinstance(self.store.sign, signing.CommitSigner)
        self.store.sign.agent = signing.make_signer(key)

    def allowed_signers(self) -> list[signing.SignerLine]:
        """The allowed signers on main."""
        from . import signers

        return signers.load_main(self.store)

    def add_key(self, agent: str, pub: str, valid_after: str | None = None,
                by: str = "gitvault") -> str:
        """Allow ``agent`` to sign with the public key in file ``pub`` (a commit on main)."""
        from . import signers

        change = signers.add(agent, pub, valid_after, self.clock())
        return signers.commit_change(self.store, change, by, f"add key of {agent}",
                                     self.clock)[0]

    def revoke_key(self, agent: str, key: str, by: str = "gitvault") -> str:
        """End ``agent``'s key now: older commits stay verified, newer ones are refused."""
        from . import signers

        change = signers.revoke(agent, key, self.clock())
        return signers.commit_change(self.store, change, by, f"revoke key of {agent}",
                                     self.clock)[0]

    def verdict(self, rev: str | None = None, at: str | None = None) -> signing.Verdict:
        """What the signature of one commit proves (main's allowed signers)."""
        from .history import revision

        with trust.verifier(self.store) as ver:
            return ver.check(revision(self.store, rev, at))

    def verify(self, rev: str | None = None, require: str = "all",
               fresh: bool = False) -> trust.VerifyReport:
        """Check every commit reachable from ``rev`` (see :func:`gitvault.trust.verify`)."""
        return trust.verify(self.store, rev, require, fresh)

    # -- helpers ---------------------------------------------------------------------------
    def config(self) -> list[dict[str, Any]]:
        """Every setting with its effective value and where it came from."""
        return settings.all_settings(self.store)

    def config_get(self, name: str) -> Any:
        return settings.value(self.store, name)

    def config_set(self, name: str, value: str) -> Any:
        """Store a setting in the vault's git config (checked against its type first)."""
        return settings.set_value(self.store, name, value)

    def _main(self) -> pygit2.Oid:
        oid = self.store.ref(MAIN)
        if oid is None:
            raise VaultNotFound(self.path)
        return oid

    def _who(self, agent: str) -> Identity:
        return identity(agent)

    def _tree(self, oid: pygit2.Oid) -> pygit2.Tree:
        tree = self.store.repo[oid]
        assert isinstance(tree, pygit2.Tree)
        return tree

    def _encoded(self, commit: pygit2.Oid | pygit2.Commit) -> dict[str, bytes]:
        c = commit if isinstance(commit, pygit2.Commit) else self.store.commit(commit)
        return {n: self.store.blob(o) for n, o in self.store.key_blobs(c.tree).items()}

    # -- pushed branches (see gitvault.hooks) ----------------------------------------------
    def fold_branch(self, ref: str, on_conflict: str | None = None,
                    lease: int | None = None) -> CheckinResult:
        """Merge a pushed ``refs/heads/agents/<agent>`` into main, like that agent's checkin.

        The merge base is that of the branch and main; provenance comes from the branch tip's
        trailers. A conflict keeps the tip under ``refs/conflicts/`` and raises
        :class:`ConflictError`; main is unchanged.
        """
        from .hooks import agent_of

        agent = agent_of(ref)
        tip_oid = self.store.ref(ref)
        if agent is None or tip_oid is None:
            raise InputError(f"{ref} is not a pushed agent branch of this vault")
        tip = self.store.commit(tip_oid)
        t = parse_trailers(tip.message)
        prov = Provenance(agent, t.get("Source") or "push", parse_confidence(t.get("Confidence")),
                          t.get("Justification", ""))
        policy = integrate.check_policy(on_conflict or settings.value(self.store, "onConflict"))
        repo = self.store.repo
        for _attempt in range(CHECKIN_ATTEMPTS):
            main = self.store.commit(self._main())
            if main.id == tip.id or repo.descendant_of(main.id, tip.id):
                return CheckinResult(None, [], None)  # already on main
            base = self.store.commit(repo.merge_base(main.id, tip.id))
            trust.guard_fold(self, agent, ref, base, tip)  # path rules, propose-only (exit 5)
            changed = codec.changed_keys(self._encoded(base), self._encoded(tip))
            decide = integrate.decider(self.store, policy, base.id, main.id, prov.confidence)
            try:
                plan = integrate.plan(self.store, base, main, tip, prov, t.get("Lease", "none"),
                                      changed, decide, self.clock(), [("Pushed-Branch", ref)])
            except integrate.Refused as refused:
                raise self._refuse(agent, base.id, main.id, tip.id, refused) from None

            def fn(rtx: RefTx, m: pygit2.Oid = main.id, target: pygit2.Oid = plan.target
                   ) -> tuple[bool, Lease | None]:
                held = self.leases.verify(rtx, agent, lease) if lease is not None else None
                if rtx.get(MAIN) != m:
                    return False, None
                rtx.set(MAIN, target, f"push {ref}")
                return True, self.leases.move_base(rtx, held, target) if held else None

            names = [MAIN, NOTES, lease_ref(agent)] if lease is not None else [MAIN]
            done, moved = self.store.transact(names, fn, f"merge {ref}")
            if done:
                return CheckinResult.landed(plan, changed, moved)
        raise VaultBusy(f"merge {ref}", CHECKIN_ATTEMPTS)

    def install_hooks(self) -> list[str]:
        """(Re)install the server hooks that guard pushes and fold agent branches into main."""
        from .hooks import install_server

        return install_server(self.store)

    # -- history (see gitvault.history) ----------------------------------------------------
    def log(self, rev: str | None = None, *, agent: str | None = None, key: str | None = None,
            path: str | None = None, source: str | None = None, since: str | None = None,
            until: str | None = None, limit: int | None = None,
            verify: bool = True) -> list[Any]:
        """Checkins and merges, newest first, then the imported legacy events; ``verify``:
        with each commit's signature verdict (``verified``, ``fingerprint``, ``signer``)."""
        from . import history

        entries = history.log(self.store, rev or MAIN, agent=agent, key=key, path=path,
                              source=source, since=since, until=until, limit=limit)
        return trust.annotate(self.store, entries) if verify else entries

    def show(self, rev: str | None = None, at: str | None = None, path: str | None = None) -> Any:
        """The document (or the value at ``path``) at a revision or a point in time."""
        from . import history

        return history.show(self.store, rev, at=at, path=path)

    def diff(self, rev1: str | None = None, rev2: str | None = None,
             path: str | None = None) -> Any:
        """RFC 6902 patch (``.patch``) and summary (``.text``) between two states."""
        from . import history

        return history.diff(self.store, rev1, rev2, path=path)

    def blame(self, path: str, rev: str | None = None, verify: bool = True) -> list[Any]:
        """Who last set the value at ``path`` (or each leaf under it), with signature
        verdicts unless ``verify`` is False."""
        from . import history

        entries = history.blame(self.store, path, rev or MAIN)
        return trust.annotate(self.store, entries) if verify else entries

    def checkin_patch(self, agent: str, patch: list[dict[str, Any]], source: str,
                      confidence: float | str | None = None, justification: str = "",
                      lease: int | None = None, on_conflict: str | None = None
                      ) -> CheckinResult:
        """Check in an RFC 6902 JSON Patch against the lease's base (send kilobytes, not the
        document); provenance and merging are those of :meth:`checkin`.

        The checkin is pinned to the lease the patch was applied to: if the agent renews its
        lease meanwhile (moving the base), it is fenced rather than applied to the wrong base.
        """
        held = self._held(agent, lease)
        if held.base is not None:
            from . import patching

            files = patching.sparse(self.store, self.store.commit(held.base).tree, patch,
                                    self.limits)
            if files is not None:  # only the chunks of large keys around the edits were read
                prov, policy = self._who_and_how(agent, source, confidence, justification,
                                                 on_conflict)
                return self._checkin_files(agent, files, prov, policy, held.token)
        document = self._apply_patch(agent, held, patch)
        return self.checkin(agent, document, source, confidence, justification, held.token,
                            on_conflict)

    def patched(self, agent: str, patch: list[dict[str, Any]],
                lease: int | None = None) -> Document:
        """The document at ``agent``'s lease base with ``patch`` applied."""
        return self._apply_patch(agent, self._held(agent, lease), patch)

    def _apply_patch(self, agent: str, held: Lease, patch: list[dict[str, Any]]) -> Document:
        import jsonpatch

        if not isinstance(patch, list):
            raise InputError("a JSON Patch is a JSON array of operations (RFC 6902)")
        try:
            # in place: the document was just read for us, so no deep copy is needed
            result = jsonpatch.apply_patch(self.read(held.base), patch, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError,
                KeyError, ValueError) as e:
            raise InputError(f"the patch does not apply to {agent}'s base: {e}") from None
        return codec.check_document(result, "patched document")

    def parse(self, data: bytes, name: str = "proposal") -> Document:
        """Parse a proposal from bytes, within this vault's limits."""
        return codec.loads_document(data, name, self.limits)

    def preview(self, agent: str, document: Mapping[str, Any], lease: int | None = None) -> Any:
        """What a checkin of ``document`` would change against the agent's lease base."""
        from . import history

        codec.encode_document(document, self.limits)
        held = self._held(agent, lease)
        return history.diff_documents(self.read(held.base), dict(document))

    def export(self, rev: str | None = None, fmt: str = "json", history: bool = False) -> str:
        from . import history as h

        return h.export(self.store, rev, fmt=fmt, history=history)
