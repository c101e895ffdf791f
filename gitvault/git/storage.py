"""The git layer: objects, trees, commits and compare-and-swap ref updates (pygit2).

Every ref change goes through :meth:`Store.transact`: it locks the refs it will touch (git's own
``.lock`` files, so the git CLI respects them too), lets the caller read their current values
under the lock, decide, and set targets; libgit2 writes them when the callback returns. A lost
lock race is retried with backoff a bounded number of times, then :class:`VaultBusy`.

Durability (``gitvault.fsync``, on by default): every object a ref will point at is on disk
before the ref moves, and the ref move is on disk before the write call returns, so an
acknowledged checkin survives a power cut. libgit2 can fsync every file it writes, but a
checkin writes six loose objects and several refs and reflogs, and each fsync of a file and of
its directory is a journal commit and a disk cache flush of its own. Instead libgit2 writes
without fsync and :meth:`Store.transact` flushes the vault's file system twice with
``syncfs(2)``: once after the caller wrote its objects and before the refs are committed, and
once after. Each is one journal commit that covers everything written before it, including
objects a ``git push`` or another writer left in the page cache (the price: a checkin also
waits for whatever other programs left dirty on that file system). Where ``syncfs`` is
missing or not known to be honest for the file system (see :data:`SYNCFS_FILE_SYSTEMS`),
libgit2 fsyncs each object and :meth:`Store.transact` fsyncs the ref files it touched.
Unflushed objects can be left empty by a power cut; the first store opened after a reboot
deletes them before anything can reuse them (:meth:`Store._clean_after_power_cut`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import pygit2
from pygit2.enums import FileMode

from gitvault.core.codec import BLOB_SUFFIX, RESERVED, key_of
from gitvault.errors import StorageError, VaultNotFound
from gitvault.git import shards
from gitvault.git.refs import target_of
from gitvault.git.transact import Transactions

MAIN = "refs/heads/main"
T = TypeVar("T")
V = TypeVar("V")


def _keep(cache: dict[pygit2.Oid, V], oid: pygit2.Oid, value: V, size: int) -> None:
    """Remember ``value`` in a small cache, dropping the oldest entries beyond ``size``."""
    cache[oid] = value
    while len(cache) > size:
        del cache[next(iter(cache))]


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


class Store(Transactions):
    """A bare vault repository."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self.path = repo.path.rstrip("/")
        self.fsync = True  # the Vault applies the gitvault.fsync setting
        self.stale_lock_seconds = 2.0  # and gitvault.staleLockSeconds
        self._syncfs: bool | None = None  # can flushes be batched with syncfs? (asked once)
        self._turn_held = False
        self._layouts: dict[pygit2.Oid, shards.Layout] = {}  # sharded keys read or written last
        self._chunks: dict[pygit2.Oid, list[shards.Chunk]] = {}  # their chunks' sizes
        self._blobs: dict[pygit2.Oid, bytes] = {}  # the last key blobs read or written
        # signs a commit's buffer (content, message, number of parents) or returns None:
        # set by the Vault from its keys (gitvault.engine.signing.CommitSigner)
        self.sign: Callable[[str, str, int], str | None] | None = None
        if self._batched():
            self._clean_after_power_cut()

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str) -> Store:
        if not os.path.isdir(path):
            raise VaultNotFound(path)
        try:
            repo = pygit2.Repository(path, pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        except pygit2.GitError:
            raise VaultNotFound(path) from None
        if not repo.is_bare:
            raise VaultNotFound(path)
        return cls(repo)

    @classmethod
    def open_env(cls) -> Store:
        """The repository a git hook runs in, with pushed (quarantined) objects visible."""
        try:
            repo = pygit2.Repository(
                os.environ.get("GIT_DIR", "."), pygit2.enums.RepositoryOpenFlag.FROM_ENV
            )
        except pygit2.GitError:
            raise VaultNotFound(os.environ.get("GIT_DIR", ".")) from None
        return cls(repo)

    @classmethod
    def create(cls, path: str) -> Store:
        repo = pygit2.init_repository(path, bare=True, initial_head="main")
        # reflog of main for `git show main@{...}` ("always" would also log refs/leases/*,
        # which point at blobs, and make git gc print errors)
        repo.config["core.logAllRefUpdates"] = "true"
        return cls(repo)

    # -- config ----------------------------------------------------------------------------
    def config_get(self, name: str) -> str | None:
        try:
            value = self.repo.config[name]
        except KeyError:
            return None
        return str(value)

    # -- reading ---------------------------------------------------------------------------
    def ref(self, name: str) -> pygit2.Oid | None:
        return target_of(self.repo, name)

    def refs_under(self, prefix: str) -> dict[str, pygit2.Oid]:
        out: dict[str, pygit2.Oid] = {}
        for name in self.repo.references:
            if name.startswith(prefix):
                try:
                    target = self.repo.references[name].target
                except KeyError:  # deleted by another process since it was listed
                    continue
                if isinstance(target, pygit2.Oid):
                    out[name] = target
        return out

    def commit(self, oid: pygit2.Oid | str) -> pygit2.Commit:
        try:
            obj = self.repo[oid]
        except (KeyError, ValueError):
            raise StorageError(f"no object {oid} in the vault") from None
        commit = obj.peel(pygit2.Commit)
        return commit

    def resolve(self, rev: str) -> pygit2.Commit:
        """A commit from any git revision expression (``main``, ``HEAD~2``, a hash)."""
        try:
            obj = self.repo.revparse_single(rev)
            return obj.peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            from gitvault.errors import InputError

            raise InputError(f"unknown revision {rev!r}; try `git -C {self.path} log`") from None

    def key_blobs(self, tree: pygit2.Tree) -> dict[str, pygit2.Oid]:
        """``{file name: id}`` of the keys at the root of a tree.

        A sharded key (see :mod:`gitvault.git.shards`) is listed under its ``K.json`` name too,
        with its tree's id: :meth:`blob` reads either kind back as the key's bytes.
        """
        out = {}
        for e in tree:
            name = e.name
            if name is None or name.startswith("."):
                continue
            if e.type_str == "blob":
                if key_of(name) is not None:
                    out[name] = e.id
            elif e.type_str == "tree" and name != RESERVED:
                out[name + BLOB_SUFFIX] = e.id
        return out

    def count_commits(self, head: pygit2.Oid) -> int:
        """Commits reachable from ``head``; git's rev-list is far faster than a pygit2 walk."""
        import subprocess

        r = subprocess.run(
            ["git", f"--git-dir={self.path}", "rev-list", "--count", str(head)],
            capture_output=True,
            text=True,
        )
        if r.returncode == 0 and r.stdout.strip().isdigit():
            return int(r.stdout)
        return sum(1 for _ in self.repo.walk(head))

    def blob(self, oid: pygit2.Oid) -> bytes:
        """A blob's bytes; for a sharded key's tree, the key's bytes assembled.

        The last few key blobs read or written are kept: a merge reads main's, the base's
        and the proposal's version of a key, then the merged one again for its ``Changed:``
        lines, and inflating a 190 KB blob costs ~1.5 ms each time.
        """
        hit = self._blobs.get(oid)
        if hit is not None:
            return hit
        obj = self.repo[oid]
        if isinstance(obj, pygit2.Tree):
            return self.layout(obj).data
        assert isinstance(obj, pygit2.Blob)
        data: bytes = obj.data
        self.keep_blob(oid, data)
        return data

    def keep_blob(self, oid: pygit2.Oid, data: bytes) -> None:
        if len(data) >= 4096:  # small blobs inflate faster than the cache would save
            _keep(self._blobs, oid, data, 8)

    def cached_any(self) -> bool:
        return bool(self._layouts)

    def cached(self, oid: pygit2.Oid) -> bytes | None:
        """A sharded key's bytes if this store has them at hand (None: not without reading)."""
        found = self._layouts.get(oid)
        return found.data if found is not None else None

    def layout(self, tree: pygit2.Tree) -> shards.Layout:
        """A sharded key read whole (the last few are kept: a checkin edits its base's)."""
        found = self._layouts.get(tree.id)
        if found is None:
            chunks = []
            for name, oid in shards.entries(tree):
                blob = self.repo[oid]
                assert isinstance(blob, pygit2.Blob)
                chunks.append((name, oid, blob.data))
            found = shards.assemble(chunks)
            self._keep_layout(tree.id, found)
        return found

    def _keep_layout(self, oid: pygit2.Oid, layout: shards.Layout) -> None:
        _keep(self._layouts, oid, layout, 4)

    def is_tree(self, oid: pygit2.Oid) -> bool:
        """Whether a key's id is a sharded key's tree (object header only)."""
        return self.repo.odb.read_header(oid)[0] == pygit2.enums.ObjectType.TREE

    def key_size(self, oid: pygit2.Oid) -> int:
        """Bytes of a key without reading it (object headers only)."""
        kind, size = self.repo.odb.read_header(oid)
        if kind == pygit2.enums.ObjectType.TREE:
            tree = self.repo[oid]
            assert isinstance(tree, pygit2.Tree)
            return shards.size_of(self.chunk_sizes(tree))
        return int(size)

    def chunk_sizes(self, tree: pygit2.Tree) -> list[shards.Chunk]:
        """A sharded key's chunks with their sizes (from the object headers, or remembered)."""
        found = self._chunks.get(tree.id)
        if found is None:
            layout = self._layouts.get(tree.id)
            odb = self.repo.odb
            found = (
                layout.chunks
                if layout is not None
                else [(n, o, odb.read_header(o)[1]) for n, o in shards.entries(tree)]
            )
            self.keep_chunks(tree.id, found)
        return found

    def keep_chunks(self, oid: pygit2.Oid, chunks: list[shards.Chunk]) -> None:
        _keep(self._chunks, oid, chunks, 8)

    # -- writing ---------------------------------------------------------------------------
    def objects(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, which writes objects, again if git's prune removed a folder under it.

        ``git gc`` (the automatic one too) deletes empty ``objects/xx/`` folders. libgit2
        makes the folder, writes a temporary file in it and renames it into place; when prune
        removed the folder in between, the rename fails with ENOENT. git retries in that case,
        and so do we: writing an object again is harmless.
        """
        self._object_fsync()
        for attempt in range(5):
            try:
                return fn()
            except (OSError, pygit2.GitError) as e:
                if attempt < 4 and "No such file or directory" in str(e):
                    time.sleep(0.001 * (attempt + 1))
                    continue
                raise StorageError(f"cannot write to the vault: {e}") from None
        raise AssertionError("unreachable")

    def write_blob(self, data: bytes) -> pygit2.Oid:
        return self.objects(lambda: self.repo.create_blob(data))

    def build_tree(
        self,
        base: pygit2.Tree | None,
        files: Mapping[str, bytes | pygit2.Oid],
        extra: Mapping[str, pygit2.Oid] | None = None,
        ids: Mapping[str, pygit2.Oid] | None = None,
    ) -> pygit2.Oid:
        """A root tree holding exactly ``files`` as keys, keeping ``.gitvault/`` of base.

        A file is given by its canonical bytes, or by the id of a blob or sharded tree
        already written. Bytes already stored are not written again; a large array is stored
        sharded, rewriting only the chunks around its edits (:mod:`gitvault.git.shards`).
        ``extra`` inserts subtrees (``.gitvault``) by id; ``ids`` are the ids of files the
        caller knows to be unchanged (not even hashed again).
        """
        old = self.key_blobs(base) if base is not None else {}

        def write() -> pygit2.Oid:
            tb = self.repo.TreeBuilder(base) if base is not None else self.repo.TreeBuilder()
            for name in old:
                if name not in files:
                    self._drop(tb, name)
            for name, content in files.items():
                if ids is not None and name in ids and old.get(name) == ids[name]:
                    continue  # unchanged: the base's entry stays
                if isinstance(content, pygit2.Oid):
                    oid, tree = content, self.is_tree(content)
                elif shards.wanted(content):
                    oid, tree = self._sharded(old.get(name), content), True
                else:  # an existing blob costs only its hash (libgit2 does not rewrite it)
                    oid, tree = self.repo.create_blob(content), False
                    self.keep_blob(oid, content)
                if old.get(name) != oid:
                    self._drop(tb, name)
                    tb.insert(
                        name[: -len(BLOB_SUFFIX)] if tree else name,
                        oid,
                        FileMode.TREE if tree else FileMode.BLOB,
                    )
            for name, oid in (extra or {}).items():
                tb.insert(name, oid, FileMode.TREE)
            return tb.write()

        return self.objects(write)

    @staticmethod
    def _drop(tb: pygit2.TreeBuilder, name: str) -> None:
        for entry in (name, name[: -len(BLOB_SUFFIX)]):
            if tb.get(entry) is not None:
                tb.remove(entry)

    def _sharded(self, base: pygit2.Oid | None, data: bytes) -> pygit2.Oid:
        """Write ``data`` sharded, editing the base's layout when the base was sharded too."""
        writer = shards.ChunkWriter(self.repo, self.blob)
        prior = self.repo[base] if base is not None and self.is_tree(base) else None
        if isinstance(prior, pygit2.Tree):  # (a blob base is not loaded: it is laid out anew)
            layout = self.layout(prior)
            if layout.data == data:
                return prior.id
            chunks = writer.update(layout, data)
            oid = writer.tree(chunks, prior)
        else:
            chunks = writer.full(data)
            oid = writer.tree(chunks)
        self._keep_layout(oid, shards.Layout.of(data, chunks))
        return oid

    def build_subtree(self, files: Mapping[str, bytes | Mapping[str, bytes]]) -> pygit2.Oid:
        """A tree from nested ``{name: bytes | {name: ...}}`` (for ``.gitvault/``)."""

        def write() -> pygit2.Oid:
            tb = self.repo.TreeBuilder()
            for name, content in sorted(files.items()):
                if isinstance(content, bytes):
                    tb.insert(name, self.repo.create_blob(content), FileMode.BLOB)
                else:
                    tb.insert(name, self.build_subtree(content), FileMode.TREE)
            return tb.write()

        return self.objects(write)

    def write_commit(
        self,
        tree: pygit2.Oid,
        parents: list[pygit2.Oid],
        author: Identity,
        message: str,
        when: float | None = None,
    ) -> pygit2.Oid:
        """Write a commit object (no ref moves: that is :meth:`transact`'s job)."""
        t = int(when if when is not None else time.time())
        try:
            sig = pygit2.Signature(author.name, author.email, t, 0)
            committer = pygit2.Signature("gitvault", "gitvault@localhost", t, 0)
        except ValueError as e:
            raise StorageError(f"cannot write to the vault: {e}") from None
        if self.sign is not None:
            named: list[str | pygit2.Oid] = list(parents)
            content: str = self.repo.create_commit_string(  # type: ignore[assignment]
                sig, committer, message, tree, named
            )  # (its stub says Oid; it is the text)
            signature = self.sign(content, message, len(parents))
            if signature is not None:
                return self.objects(
                    lambda: self.repo.create_commit_with_signature(content, signature, "gpgsig")
                )
        return self.objects(
            lambda: self.repo.create_commit(None, sig, committer, message, tree, parents)
        )
