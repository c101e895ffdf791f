"""The public API: ``from gitvault import Vault``.

A :class:`Vault` composes the layers (codec, storage, leases, provenance, merge). Everything the
CLI and the MCP server do goes through it, so every rule lives here once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pygit2
from pygit2.enums import FileMode

from gitvault.api.governance import Governance
from gitvault.api.reading import Reading
from gitvault.api.results import Checkout, KeyInfo, Session, Status
from gitvault.api.undoing import Undoing
from gitvault.core import codec
from gitvault.core.codec import Document
from gitvault.core.jsonmerge import Conflict
from gitvault.engine import integrate, signing, trust, upkeep
from gitvault.engine.advance import Done, Step, advance, move_main
from gitvault.engine.checkin import CheckinResult, Checkins
from gitvault.engine.importer import read_legacy
from gitvault.engine.install import install_server
from gitvault.engine.merge import merge_trees
from gitvault.errors import (
    ConflictError,
    InputError,
    SchemaError,
    VaultExists,
    VaultNotFound,
)
from gitvault.git.refs import RefTx
from gitvault.git.storage import MAIN, Identity, Store
from gitvault.model import changes, quarantine, schemas, settings, waitqueue
from gitvault.model.branches import agent_of
from gitvault.model.conflicts import ConflictStore
from gitvault.model.leases import NOTES, Lease, LeaseBook, lease_ref
from gitvault.model.provenance import (
    Provenance,
    check_agent,
    checkin_trailers,
    identity,
    message,
    parse_confidence,
    parse_trailers,
    subject_for,
)
from gitvault.model.waitqueue import Waiter

__all__ = ["CheckinResult", "Checkout", "KeyInfo", "Session", "Status", "Vault"]


class Vault(Reading, Undoing, Governance):
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
        self.checkins = Checkins(store, self.leases, self.conflicts, self.clock)

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
            doc[key] = codec.loads_trusted(self.checkins.blob(oid), name)
        return doc

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
                      conflicts, self.clock(), list(quarantine.on_main(self.store).values()))

    # -- the four commands -----------------------------------------------------------------
    def checkout(self, agent: str, ttl: int | None = None, exclusive: bool = False,
                 wait: float | None = None,
                 on_wait: Callable[[Waiter, int], None] | None = None) -> Checkout:
        """Take or renew ``agent``'s lease on the current main and return the document there.

        ``wait``: seconds to wait for the turn in the vault's FIFO queue (see
        :mod:`gitvault.model.waitqueue`) instead of being refused at once.
        """
        quarantine.check(self.store, agent)
        lease = waitqueue.acquire(self.leases, check_agent(agent), ttl, exclusive, wait, on_wait)
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
        return waitqueue.release(self.leases, check_agent(agent))

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
        files = codec.encode_document(document, self.limits, self.checkins.at_hand(agent))
        return self.checkins.commit_files(agent, files, prov, policy, lease)

    def _who_and_how(self, agent: str, source: str, confidence: float | str | None,
                     justification: str, on_conflict: str | None) -> tuple[Provenance, str]:
        """A checkin's checked provenance and conflict policy (refused before any work)."""
        prov = Provenance(agent, source, parse_confidence(confidence), justification).check()
        return prov, integrate.check_policy(
            on_conflict or settings.value(self.store, "onConflict"))

    # -- upkeep ----------------------------------------------------------------------------
    def doctor(self, fix: bool = False) -> upkeep.Report:
        """Check the vault (refs, JSON, leases, hooks, locks, loose objects); repair if asked."""
        return upkeep.doctor(self, fix)

    def gc(self) -> dict[str, Any]:
        """Prune expired leases and pack the repository (git gc)."""
        return upkeep.gc(self)

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
                agent: str | None = None, source: str | None = None) -> CheckinResult:
        """Finish a kept proposal: merge it into main with the given choices.

        ``take`` (``ours``/``theirs``) decides every conflict, ``picks`` maps a pointer (id
        form or positional, as the report shows) to a side and wins over ``take``;
        ``document`` instead gives the whole resolved document. A conflict left undecided
        refuses (exit 3) and changes nothing. The merge commit keeps the proposal's
        provenance and records each decision in ``Resolved`` trailers; with ``source`` it is
        instead the resolver's own write (``Agent-Id`` = ``agent``, that ``Source``,
        confidence 1), as a person's decision in the review page is.
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
        quarantine.check(self.store, resolver)
        quarantine.check(self.store, kept.agent)
        if source is not None:  # the resolver's own write (the review page): its provenance
            prov = Provenance(resolver, source, 1.0, f"resolved {kept.id} of {kept.agent}"
                              ).check()
        extra = [("Resolved-By", resolver), ("Conflict", kept.id)]

        def attempt(_n: int) -> Step[CheckinResult]:
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

            def step(rtx: RefTx) -> CheckinResult | None:
                if rtx.get(kept.ref) is None:
                    raise InputError(f"conflict {kept.id} was resolved or dropped meanwhile")
                if not move_main(rtx, main.id, target, f"resolve {kept.id}"):
                    return None
                rtx.delete(kept.ref)
                changed = codec.changed_keys(self._encoded(main), self._encoded(target))
                return CheckinResult(str(target), changed, None, True)  # no lease involved

            return step

        return advance(self.store, f"resolve {kept.id}", [MAIN, kept.ref], attempt)

    def _resolve_with(self, document: Mapping[str, Any], main: pygit2.Commit,
                      proposal: pygit2.Commit, prov: Provenance, t: Mapping[str, str],
                      extra: list[tuple[str, str]]) -> pygit2.Oid:
        files = codec.encode_document(document, self.limits)
        tree = self.store.build_tree(main.tree, files)
        tree_obj = self._tree(tree)
        problems = schemas.validate_tree(self.store, tree_obj, [k[:-5] for k in files])
        if problems:
            raise SchemaError(f"the resolved document fails its schema at "
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

        def attempt(_n: int) -> Step[str]:
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
                raise SchemaError(
                    f"main's {key} fails this schema at {problems[0]['pointer']}: "
                    f"{problems[0]['message']}; fix the data first", problems)
            trailers = [("Agent-Id", check_agent(agent)), ("Source", "schema"),
                        ("Confidence", "1.0"), ("Justification", f"schema for {key}"),
                        ("Lease", "none"), ("Base", str(main.id))]
            commit = self.store.write_commit(tree_oid, [main.id], self._who(agent),
                                             message(f"schema {key}", trailers), self.clock())

            return lambda rtx: str(commit) if move_main(rtx, main.id, commit,
                                                        f"schema {key}") else None

        return advance(self.store, f"schema set {key}", [MAIN], attempt)

    # -- helpers ---------------------------------------------------------------------------
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
        agent = agent_of(ref)
        tip_oid = self.store.ref(ref)
        if agent is None or tip_oid is None:
            raise InputError(f"{ref} is not a pushed agent branch of this vault")
        quarantine.check(self.store, agent)
        tip = self.store.commit(tip_oid)
        t = parse_trailers(tip.message)
        prov = Provenance(agent, t.get("Source") or "push", parse_confidence(t.get("Confidence")),
                          t.get("Justification", ""))
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
                plan = integrate.plan(self.store, base, main, tip, prov, t.get("Lease", "none"),
                                      changed, decide, self.clock(), [("Pushed-Branch", ref)])
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

    def checkin_patch(self, agent: str, patch: list[dict[str, Any]], source: str,
                      confidence: float | str | None = None, justification: str = "",
                      lease: int | None = None, on_conflict: str | None = None
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

            files = patching.sparse(self.store, self.store.commit(held.base).tree, patch,
                                    self.limits)
            if files is not None:  # only the chunks of large keys around the edits were read
                prov, policy = self._who_and_how(agent, source, confidence, justification,
                                                 on_conflict)
                return self.checkins.commit_files(agent, files, prov, policy, held.token)
        document = self._apply_patch(agent, held, patch)
        return self.checkin(agent, document, source, confidence, justification, held.token,
                            on_conflict)

    def patched(self, agent: str, patch: list[dict[str, Any]],
                lease: int | None = None) -> Document:
        """The document at ``agent``'s lease base with ``patch`` applied."""
        return self._apply_patch(agent, self.checkins.held(agent, lease), patch)

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
        from gitvault import history

        codec.encode_document(document, self.limits)
        held = self.checkins.held(agent, lease)
        return history.diff_documents(self.read(held.base), dict(document))
