"""The public API: ``from gitvault import Vault``.

A :class:`Vault` composes the layers (codec, storage, leases, provenance, merge). Everything the
CLI and the MCP server do goes through it, so every rule lives here once.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pygit2

from . import codec
from .codec import Document
from .errors import ConflictError, VaultBusy, VaultExists
from .importer import read_legacy
from .leases import NOTES, Lease, LeaseBook, lease_ref
from .provenance import (
    Provenance,
    check_agent,
    checkin_trailers,
    identity,
    message,
    parse_confidence,
    subject_for,
)
from .storage import MAIN, RefTx, Store

CHECKIN_ATTEMPTS = 50


@dataclass(frozen=True)
class Checkout:
    """What ``checkout`` hands an agent: the document at the lease's base, and the lease."""

    document: Document
    lease: Lease


@dataclass(frozen=True)
class CheckinResult:
    commit: str | None  # the new head of main, None when nothing changed
    changed: list[str]  # keys the checkin changed
    lease: Lease
    merged: bool = False

    @property
    def noop(self) -> bool:
        return self.commit is None

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "changed": self.changed, "merged": self.merged,
                "noop": self.noop, "lease": self.lease.token, "base": self.lease.base}


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


class Vault:
    """A gitvault: a bare git repository holding one JSON document with its history."""

    def __init__(self, store: Store, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.clock = clock or time.time
        self.leases = LeaseBook(store, self.clock)

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
            vault = cls(store, clock)
            vault._first_commit(legacy, os.fspath(import_dir) if import_dir else "")
        except BaseException:
            if existed:
                for name in os.listdir(target):
                    p = os.path.join(target, name)
                    shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
            else:
                shutil.rmtree(target, ignore_errors=True)
            raise
        return vault

    def _first_commit(self, legacy: Any, source_dir: str) -> None:
        store = self.store
        extra: dict[str, pygit2.Oid] = {}
        files: dict[str, bytes] = {}
        if legacy is None:
            subject, source, why = "init: empty vault", "init", "new vault"
        else:
            files = codec.encode_document(legacy.document)
            reserved: dict[str, Any] = {}
            if legacy.eventlog:
                reserved["legacy-eventlog"] = legacy.eventlog
            if legacy.schemas:
                reserved["schemas"] = {f"{k}.schema.json": v for k, v in legacy.schemas.items()}
            if reserved:
                extra[codec.RESERVED] = store.build_subtree(reserved)
            subject = subject_for("legacy-import", "import", sorted(legacy.document))
            source, why = "legacy-import", f"imported from {os.path.abspath(source_dir)}"
        tree = store.build_tree(None, files, extra)
        trailers = [("Agent-Id", "gitvault"), ("Source", source), ("Confidence", "1.0"),
                    ("Justification", why), ("Lease", "none"), ("Base", "none")]
        commit = store.write_commit(tree, [], identity("gitvault", "gitvault"),
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
            doc[key] = codec.loads(self.store.blob(oid), name)
        return doc

    def status(self) -> Status:
        head = self.store.ref(MAIN)
        keys: list[KeyInfo] = []
        commits = 0
        if head is not None:
            commit = self.store.commit(head)
            for name, oid in sorted(self.store.key_blobs(commit.tree).items()):
                obj = self.store.repo[oid]
                assert isinstance(obj, pygit2.Blob)
                keys.append(KeyInfo(name[: -len(codec.BLOB_SUFFIX)], obj.size, str(oid)))
            commits = sum(1 for _ in self.store.repo.walk(head))
        conflicts = sorted(self.store.refs_under("refs/conflicts/"))
        return Status(self.path, str(head) if head else None, commits, keys, self.leases.all(),
                      conflicts, self.clock())

    # -- the four commands -----------------------------------------------------------------
    def checkout(self, agent: str, ttl: int | None = None, exclusive: bool = False) -> Checkout:
        """Take or renew ``agent``'s lease on the current main and return the document there."""
        lease = self.leases.acquire(agent, ttl, exclusive)
        return Checkout(self.read(lease.base) if lease.base else {}, lease)

    def release(self, agent: str) -> Lease | None:
        """Drop ``agent``'s lease. Returns the lease dropped, or None if there was none."""
        check_agent(agent)
        return self.leases.release(agent)

    def checkin(self, agent: str, document: Mapping[str, Any], source: str,
                confidence: float | str | None = None, justification: str = "",
                lease: int | None = None) -> CheckinResult:
        """Commit ``document`` as ``agent``'s new version of the memory.

        Needs the agent's live lease (``lease`` pins its token: a newer checkout fences this
        one). A document equal to the lease's base commits nothing. When main has moved past
        the base, the change is merged (or refused with :class:`ConflictError`).
        """
        prov = Provenance(agent, source, parse_confidence(confidence), justification).check()
        files = codec.encode_document(document)
        for _attempt in range(CHECKIN_ATTEMPTS):
            current = self.leases.get(agent)
            if current is None or lease not in (None, current.token) or not current.live(
                self.clock()
            ):
                # under the lock, verify raises the precise lease error; if it does not, the
                # lease changed between our two reads: look again
                self.store.transact([NOTES, lease_ref(agent)],
                                    lambda rtx: self.leases.verify(rtx, agent, lease), "checkin")
                continue
            base = self.store.commit(current.base)
            old = {n: self.store.blob(o) for n, o in self.store.key_blobs(base.tree).items()}
            changed = codec.changed_keys(old, files)
            if not changed:
                return CheckinResult(None, [], current)
            tree = self.store.build_tree(base.tree, files)
            who = identity(agent, lease_ref(agent).rsplit("/", 1)[1])
            msg = message(subject_for(agent, "checkin", changed),
                          checkin_trailers(prov, current.token, str(base.id)))
            commit = self.store.write_commit(tree, [base.id], who, msg, self.clock())
            token = current.token

            def fn(rtx: RefTx, token: int = token, commit: pygit2.Oid = commit,
                   base_id: pygit2.Oid = base.id) -> Lease | None:
                held = self.leases.verify(rtx, agent, lease)
                if held.token != token or held.base != str(base_id):
                    return None  # re-checked-out meanwhile: start again from the new base
                if rtx.get(MAIN) != base_id:
                    raise ConflictError(
                        f"main has moved since {agent}'s checkout at {str(base_id)[:12]}; "
                        f"run `gitvault checkout {agent}` and apply the change again",
                        {"base": str(base_id), "main": str(rtx.get(MAIN))},
                    )
                rtx.set(MAIN, commit, f"checkin {agent}")
                return self.leases.move_base(rtx, held, commit)

            moved = self.store.transact([MAIN, NOTES, lease_ref(agent)], fn, f"checkin {agent}")
            if moved is not None:
                return CheckinResult(str(commit), changed, moved)
        raise VaultBusy(f"checkin {agent}", CHECKIN_ATTEMPTS)
