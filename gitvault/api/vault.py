"""The public API: ``from gitvault import Vault``.

A :class:`Vault` composes the layers (codec, storage, leases, provenance, merge). Everything the
CLI and the MCP server do goes through it, so every rule lives here once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pygit2

from gitvault.api.governance import Governance
from gitvault.api.reading import Reading
from gitvault.api.resolving import Resolving
from gitvault.api.results import Checkout, KeyInfo, Session, Status
from gitvault.api.undoing import Undoing
from gitvault.core import codec
from gitvault.core.codec import Document
from gitvault.engine import integrate, signing, trust, upkeep
from gitvault.engine.advance import Done, Step, advance, move_main
from gitvault.engine.checkin import CheckinResult, Checkins
from gitvault.engine.importer import read_legacy
from gitvault.engine.install import install_server
from gitvault.errors import (
    InputError,
    VaultExists,
    VaultNotFound,
)
from gitvault.git.refs import RefTx
from gitvault.git.storage import MAIN, Store
from gitvault.model import quarantine, settings, waitqueue
from gitvault.model.branches import agent_of
from gitvault.model.conflicts import ConflictStore
from gitvault.model.leases import NOTES, Lease, LeaseBook, lease_ref
from gitvault.model.provenance import (
    Provenance,
    check_agent,
    identity,
    message,
    parse_confidence,
    parse_trailers,
    subject_for,
)
from gitvault.model.waitqueue import Waiter

__all__ = ["CheckinResult", "Checkout", "KeyInfo", "Session", "Status", "Vault"]


class Vault(Reading, Undoing, Governance, Resolving):
    """A gitvault: a bare git repository holding one JSON document with its history."""

    def __init__(self, store: Store, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        store.fsync = bool(settings.value(store, "fsync"))
        store.stale_lock_seconds = float(settings.value(store, "staleLockSeconds"))
        self.limits = codec.Limits(
            *(
                int(settings.value(store, n))
                for n in ("maxDocumentBytes", "maxDepth", "maxStringBytes", "maxKeys")
            )
        )
        self.clock = clock or time.time
        self.leases = LeaseBook(store, self.clock)
        self.conflicts = ConflictStore(store)
        own = signing.vault_signer(store.path) if settings.value(store, "vaultSigning") else None
        store.sign = signing.CommitSigner(
            own, signing.make_signer(os.environ.get("GITVAULT_SIGNING_KEY"), check=False)
        )
        self.checkins = Checkins(store, self.leases, self.conflicts, self.clock)

    @property
    def path(self) -> str:
        return self.store.path

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], clock: Callable[[], float] | None = None) -> Vault:
        return cls(Store.open(os.fspath(path)), clock)

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        import_dir: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> Vault:
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
            vault._first_commit(
                legacy,
                os.fspath(import_dir) if import_dir else "",
                None if pub is None else signing.vault_signers_file(pub),
            )
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
        trailers = [
            ("Agent-Id", "gitvault"),
            ("Source", source),
            ("Confidence", "1.0"),
            ("Justification", why),
            ("Lease", "none"),
            ("Base", "none"),
        ]
        commit = store.write_commit(
            tree, [], identity("gitvault"), message(subject, trailers), self.clock()
        )

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
            doc[key] = codec.loads_trusted(self.checkins.blob(oid), name)
        return doc

    def status(self) -> Status:
        head = self.store.ref(MAIN)
        keys: list[KeyInfo] = []
        commits = 0
        if head is not None:
            commit = self.store.commit(head)
            for name, oid in sorted(self.store.key_blobs(commit.tree).items()):
                keys.append(
                    KeyInfo(name[: -len(codec.BLOB_SUFFIX)], self.store.key_size(oid), str(oid))
                )
            commits = self.store.count_commits(head)
        conflicts = sorted(self.store.refs_under("refs/conflicts/"))
        return Status(
            self.path,
            str(head) if head else None,
            commits,
            keys,
            self.leases.all(),
            conflicts,
            self.clock(),
            list(quarantine.on_main(self.store).values()),
        )

    # -- the four commands -----------------------------------------------------------------
    def checkout(
        self,
        agent: str,
        ttl: int | None = None,
        exclusive: bool = False,
        wait: float | None = None,
        on_wait: Callable[[Waiter, int], None] | None = None,
    ) -> Checkout:
        """Take or renew ``agent``'s lease on the current main and return the document there.

        ``wait``: seconds to wait for the turn in the vault's FIFO queue (see
        :mod:`gitvault.model.waitqueue`) instead of being refused at once.
        """
        quarantine.check(self.store, agent)
        lease = waitqueue.acquire(self.leases, check_agent(agent), ttl, exclusive, wait, on_wait)
        return Checkout(self.read(lease.base) if lease.base else {}, lease)

    @contextlib.contextmanager
    def lease(
        self, agent: str, ttl: int | None = None, exclusive: bool = False
    ) -> Iterator[Session]:
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
        return waitqueue.release(self.leases, check_agent(agent))

    def checkin(
        self,
        agent: str,
        document: Mapping[str, Any],
        source: str,
        confidence: float | str | None = None,
        justification: str = "",
        lease: int | None = None,
        on_conflict: str | None = None,
    ) -> CheckinResult:
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
        files = codec.encode_document(document, self.limits, self.checkins.at_hand(agent))
        return self.checkins.commit_files(agent, files, prov, policy, lease)

    def _who_and_how(
        self,
        agent: str,
        source: str,
        confidence: float | str | None,
        justification: str,
        on_conflict: str | None,
    ) -> tuple[Provenance, str]:
        """A checkin's checked provenance and conflict policy (refused before any work)."""
        prov = Provenance(agent, source, parse_confidence(confidence), justification).check()
        return prov, integrate.check_policy(on_conflict or settings.value(self.store, "onConflict"))

    # -- upkeep ----------------------------------------------------------------------------
    def doctor(self, fix: bool = False) -> upkeep.Report:
        """Check the vault (refs, JSON, leases, hooks, locks, loose objects); repair if asked."""
        return upkeep.doctor(self, fix)

    def gc(self) -> dict[str, Any]:
        """Prune expired leases and pack the repository (git gc)."""
        return upkeep.gc(self)

    # -- helpers ---------------------------------------------------------------------------
    def _main(self) -> pygit2.Oid:
        oid = self.store.ref(MAIN)
        if oid is None:
            raise VaultNotFound(self.path)
        return oid

    # -- pushed branches (see gitvault.hooks) ----------------------------------------------
    def fold_branch(
        self, ref: str, on_conflict: str | None = None, lease: int | None = None
    ) -> CheckinResult:
        """Merge a pushed ``refs/heads/agents/<agent>`` into main, like that agent's checkin.

        The merge base is that of the branch and main; provenance comes from the branch tip's
        trailers. A conflict keeps the tip under ``refs/conflicts/`` and raises
        :class:`ConflictError`; main is unchanged.
        """
        agent = agent_of(ref)
        tip_oid = self.store.ref(ref)
        if agent is None or tip_oid is None:
            raise InputError(f"{ref} is not a pushed agent branch of this vault")
        quarantine.check(self.store, agent)
        tip = self.store.commit(tip_oid)
        t = parse_trailers(tip.message)
        prov = Provenance(
            agent,
            t.get("Source") or "push",
            parse_confidence(t.get("Confidence")),
            t.get("Justification", ""),
        )
        policy = integrate.check_policy(on_conflict or settings.value(self.store, "onConflict"))
        repo = self.store.repo

        def attempt(_n: int) -> Step[CheckinResult] | Done[CheckinResult]:
            main = self.store.commit(self._main())
            if main.id == tip.id or repo.descendant_of(main.id, tip.id):
                return Done(CheckinResult(None, [], None))  # already on main
            base = self.store.commit(repo.merge_base(main.id, tip.id))
            trust.guard_fold(self, agent, ref, base, tip)  # path rules, propose-only (exit 5)
            changed = codec.changed_keys(self._encoded(base), self._encoded(tip))
            decide = integrate.decider(self.store, policy, base.id, main.id, prov.confidence)
            try:
                plan = integrate.plan(
                    self.store,
                    base,
                    main,
                    tip,
                    prov,
                    t.get("Lease", "none"),
                    changed,
                    decide,
                    self.clock(),
                    [("Pushed-Branch", ref)],
                )
            except integrate.Refused as refused:
                raise self.checkins.refuse(agent, base.id, main.id, tip.id, refused) from None

            def step(rtx: RefTx) -> CheckinResult | None:
                held = self.leases.verify(rtx, agent, lease) if lease is not None else None
                if not move_main(rtx, main.id, plan.target, f"push {ref}"):
                    return None
                moved = self.leases.move_base(rtx, held, plan.target) if held else None
                return CheckinResult.landed(plan, changed, moved)

            return step

        names = [MAIN, NOTES, lease_ref(agent)] if lease is not None else [MAIN]
        return advance(self.store, f"merge {ref}", names, attempt)

    def install_hooks(self) -> list[str]:
        """(Re)install the server hooks that guard pushes and fold agent branches into main."""
        return install_server(self.store)

    def checkin_patch(
        self,
        agent: str,
        patch: list[dict[str, Any]],
        source: str,
        confidence: float | str | None = None,
        justification: str = "",
        lease: int | None = None,
        on_conflict: str | None = None,
    ) -> CheckinResult:
        """Check in an RFC 6902 JSON Patch against the lease's base (send kilobytes, not the
        document); provenance and merging are those of :meth:`checkin`.

        The checkin is pinned to the lease the patch was applied to: if the agent renews its
        lease meanwhile (moving the base), it is fenced rather than applied to the wrong base.
        """
        quarantine.check(self.store, agent)
        held = self.checkins.held(agent, lease)
        if held.base is not None:
            from gitvault.engine import patching

            files = patching.sparse(
                self.store, self.store.commit(held.base).tree, patch, self.limits
            )
            if files is not None:  # only the chunks of large keys around the edits were read
                prov, policy = self._who_and_how(
                    agent, source, confidence, justification, on_conflict
                )
                return self.checkins.commit_files(agent, files, prov, policy, held.token)
        document = self._apply_patch(agent, held, patch)
        return self.checkin(
            agent, document, source, confidence, justification, held.token, on_conflict
        )

    def patched(
        self, agent: str, patch: list[dict[str, Any]], lease: int | None = None
    ) -> Document:
        """The document at ``agent``'s lease base with ``patch`` applied."""
        return self._apply_patch(agent, self.checkins.held(agent, lease), patch)

    def _apply_patch(self, agent: str, held: Lease, patch: list[dict[str, Any]]) -> Document:
        import jsonpatch

        if not isinstance(patch, list):
            raise InputError("a JSON Patch is a JSON array of operations (RFC 6902)")
        try:
            # in place: the document was just read for us, so no deep copy is needed
            result = jsonpatch.apply_patch(self.read(held.base), patch, in_place=True)
        except (
            jsonpatch.JsonPatchException,
            jsonpatch.JsonPointerException,
            TypeError,
            KeyError,
            ValueError,
        ) as e:
            raise InputError(f"the patch does not apply to {agent}'s base: {e}") from None
        return codec.check_document(result, "patched document")

    def parse(self, data: bytes, name: str = "proposal") -> Document:
        """Parse a proposal from bytes, within this vault's limits."""
        return codec.loads_document(data, name, self.limits)

    def preview(self, agent: str, document: Mapping[str, Any], lease: int | None = None) -> Any:
        """What a checkin of ``document`` would change against the agent's lease base."""
        from gitvault import history

        codec.encode_document(document, self.limits)
        held = self.checkins.held(agent, lease)
        return history.diff_documents(self.read(held.base), dict(document))
