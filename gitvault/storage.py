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
missing or not known to be honest for the file system (see :data:`_SYNCFS_FILE_SYSTEMS`),
libgit2 fsyncs each object and :meth:`Store.transact` fsyncs the ref files it touched.
Unflushed objects can be left empty by a power cut; the first store opened after a reboot
deletes them before anything can reuse them (:meth:`Store._clean_after_power_cut`).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TypeVar

import pygit2
from pygit2.enums import FileMode, Option

from . import shards
from .codec import BLOB_SUFFIX, RESERVED, key_of
from .errors import StorageError, VaultBusy, VaultNotFound

MAIN = "refs/heads/main"
WRITERS = "gitvault-writers"  # flock'ed by every writer while it holds ref locks
TURN = "gitvault-turn"  # flock'ed by the one writer whose turn it is (see Store._turn)
BOOT = "gitvault-boot"  # the boot id of the last check for a power cut's empty objects
T = TypeVar("T")
V = TypeVar("V")

LOCK_TIMEOUT = 60.0  # seconds of lost lock races before VaultBusy; enough for 16+ busy writers


def _target(repo: pygit2.Repository, name: str) -> pygit2.Oid | None:
    """What ref ``name`` points at (through symbolic refs), or None."""
    ref = repo.references.get(name)
    if ref is None:
        return None
    target = ref.resolve().target
    assert isinstance(target, pygit2.Oid)
    return target


def _set_fsync(enabled: bool) -> None:
    """libgit2's per-file fsync, for the objects it writes (a global switch of the process).

    Its loose-ref backend reads the switch only once, when a repository handle first touches
    its refs, so refs are not reliably fsynced by it: :meth:`Store._flush_refs` does that.
    """
    pygit2.option(Option.ENABLE_FSYNC_GITDIR, 1 if enabled else 0)


# File systems (statfs f_type) whose syncfs(2) writes back every dirty inode and commits the
# journal with a cache flush, i.e. is at least as strong as fsync of each file and directory.
# Others (NFS, FUSE, overlayfs over an unknown upper layer, ...) keep per-file fsync.
_SYNCFS_FILE_SYSTEMS = {
    0xEF53: "ext2/3/4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0xF2F52010: "f2fs",
    0x2FC12FC1: "zfs",
    0x01021994: "tmpfs",  # nothing survives a power cut anyway; syncfs costs nothing there
}


def _load_libc() -> ctypes.CDLL | None:
    """libc, if it has ``syncfs`` (Linux 2.6.39+, glibc 2.14+, musl) and ``fstatfs``."""
    if not sys.platform.startswith("linux"):
        return None  # macOS and the BSDs have no syncfs, and their sync(2) need not wait
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syncfs.argtypes, libc.syncfs.restype = [ctypes.c_int], ctypes.c_int
        libc.fstatfs.argtypes, libc.fstatfs.restype = [ctypes.c_int, ctypes.c_void_p], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


def _syncfs_honest(fd: int) -> bool:
    """Whether the file system holding ``fd`` is one of :data:`_SYNCFS_FILE_SYSTEMS`."""
    if _LIBC is None:
        return False
    buf = ctypes.create_string_buffer(512)  # struct statfs is 120 bytes on 64-bit Linux
    if _LIBC.fstatfs(fd, buf) != 0:
        return False
    # f_type is the first field: a long (an int on 32-bit); magics are 32-bit values
    return (ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF) in _SYNCFS_FILE_SYSTEMS


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def _fsync_path(path: str) -> None:
    """fsync a file or directory if it exists."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _keep(cache: dict[pygit2.Oid, V], oid: pygit2.Oid, value: V, size: int) -> None:
    """Remember ``value`` in a small cache, dropping the oldest entries beyond ``size``."""
    cache[oid] = value
    while len(cache) > size:
        del cache[next(iter(cache))]


class _Turn:
    """A held turn (see :meth:`Store._turn`); released once, early or at the end."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.fd = None


class RefTx:
    """The refs locked by one :meth:`Store.transact` call: read them, then set or delete."""

    def __init__(self, repo: pygit2.Repository, tx: pygit2.transaction.ReferenceTransaction,
                 locked: Sequence[str]) -> None:
        self._repo, self._tx, self._locked = repo, tx, set(locked)
        self.changed: dict[str, pygit2.Oid | None] = {}
        self.deleted: dict[str, pygit2.Oid] = {}  # name -> the value it had

    def get(self, name: str) -> pygit2.Oid | None:
        """The ref's value as it is on disk now (we hold its lock, so it stays so)."""
        if name in self.changed:
            return self.changed[name]
        return _target(self._repo, name)

    def set(self, name: str, oid: pygit2.Oid, message: str) -> None:
        assert name in self._locked, name
        self._tx.set_target(name, oid, message=message)
        self.changed[name] = oid

    def delete(self, name: str) -> None:
        assert name in self._locked, name
        old = self.get(name)
        self._tx.remove(name)
        self.changed[name] = None
        if old is not None:
            self.deleted[name] = old


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


class Store:
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
        # signs a commit's buffer (content, message, number of parents) or returns None:
        # set by the Vault from its keys (gitvault.signing.CommitSigner)
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
            repo = pygit2.Repository(os.environ.get("GIT_DIR", "."),
                                     pygit2.enums.RepositoryOpenFlag.FROM_ENV)
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
        return _target(self.repo, name)

    def refs_under(self, prefix: str) -> dict[str, pygit2.Oid]:
        out: dict[str, pygit2.Oid] = {}
        for name in self.repo.references:
            if name.startswith(prefix):
                target = self.repo.references[name].target
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
            from .errors import InputError

            raise InputError(f"unknown revision {rev!r}; try `git -C {self.path} log`") from None

    def key_blobs(self, tree: pygit2.Tree) -> dict[str, pygit2.Oid]:
        """``{file name: id}`` of the keys at the root of a tree.

        A sharded key (see :mod:`gitvault.shards`) is listed under its ``K.json`` name too,
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

        r = subprocess.run(["git", f"--git-dir={self.path}", "rev-list", "--count", str(head)],
                           capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip().isdigit():
            return int(r.stdout)
        return sum(1 for _ in self.repo.walk(head))

    def blob(self, oid: pygit2.Oid) -> bytes:
        """A blob's bytes; for a sharded key's tree, the key's bytes assembled."""
        obj = self.repo[oid]
        if isinstance(obj, pygit2.Tree):
            return self.layout(obj).data
        assert isinstance(obj, pygit2.Blob)
        return obj.data

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
            found = layout.chunks if layout is not None else [
                (n, o, odb.read_header(o)[1]) for n, o in shards.entries(tree)]
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

    def build_tree(self, base: pygit2.Tree | None, files: Mapping[str, bytes | pygit2.Oid],
                   extra: Mapping[str, pygit2.Oid] | None = None,
                   ids: Mapping[str, pygit2.Oid] | None = None) -> pygit2.Oid:
        """A root tree holding exactly ``files`` as keys, keeping ``.gitvault/`` of base.

        A file is given by its canonical bytes, or by the id of a blob or sharded tree
        already written. Bytes already stored are not written again; a large array is stored
        sharded, rewriting only the chunks around its edits (:mod:`gitvault.shards`).
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
                if old.get(name) != oid:
                    self._drop(tb, name)
                    tb.insert(name[: -len(BLOB_SUFFIX)] if tree else name, oid,
                              FileMode.TREE if tree else FileMode.BLOB)
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
        writer = shards.Writer(self.repo, self.blob)
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

    def write_commit(self, tree: pygit2.Oid, parents: list[pygit2.Oid], author: Identity,
                     message: str, when: float | None = None) -> pygit2.Oid:
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
                sig, committer, message, tree, named)  # (its stub says Oid; it is the text)
            signature = self.sign(content, message, len(parents))
            if signature is not None:
                return self.objects(lambda: self.repo.create_commit_with_signature(
                    content, signature, "gpgsig"))
        return self.objects(
            lambda: self.repo.create_commit(None, sig, committer, message, tree, parents))

    @contextmanager
    def _locked(self, names: Sequence[str], what: str) -> Iterator[RefTx]:
        """Lock ``names`` (git's ``.lock`` files) while holding the writers' shared flock.

        Every gitvault writer holds a shared ``flock`` on ``gitvault-writers`` for as long as it
        holds ref locks. The kernel drops it when the process dies but keeps it while the
        process is stopped, so a ``.lock`` nobody's flock covers belongs to a dead writer and
        may be broken, and a frozen writer's lock is never broken under it.

        Writers first take turns on an exclusive ``flock`` of ``gitvault-turn`` (see
        :meth:`_turn`), so git's lock files are nearly always free when they are tried.
        """
        delay, deadline, attempts = 0.0005, time.monotonic() + LOCK_TIMEOUT, 0
        while time.monotonic() < deadline:
            attempts += 1
            with self._turn(deadline) as turn:
                held: pygit2.transaction.ReferenceTransaction | str | None = None
                if turn:
                    with self._writer() as inside:
                        held = self._lock_refs(names, what) if inside else None
                        if not isinstance(held, str | None):
                            with held:
                                rtx = RefTx(self.repo, held, names)
                                yield rtx
                                self._flush_objects(rtx, what)  # before the refs move
                            turn.release()  # the refs are written; the next writer may go
                            self._flush_refs(rtx, what)
                            return
                if isinstance(held, str):  # outside the writers' flock, which breaking needs
                    self.break_stale_lock(held, also=names)
            # a git command (or a dead writer) holds a lock: short, jittered waits
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.5, 0.02)
        raise VaultBusy(what, attempts)

    def _lock_refs(self, names: Sequence[str], what: str
                   ) -> pygit2.transaction.ReferenceTransaction | str:
        """A transaction holding every ref lock of ``names``, or the name whose lock was held
        (the locks taken are freed: nothing is committed)."""
        tx = self.repo.transaction()
        for name in names:
            try:
                tx.lock_ref(name)
            except (pygit2.GitError, OSError) as e:
                tx.__exit__(type(e), e, None)
                if "lock" not in str(e).lower():
                    raise StorageError(f"{what}: {e}") from None
                return name
        return tx

    @contextmanager
    def _turn(self, deadline: float) -> Iterator[_Turn | None]:
        """Wait for this writer's turn: an exclusive flock on ``gitvault-turn`` (None: timed out).

        Every ref transaction of a vault locks main or the lease notes, so writers run one at
        a time anyway. Before this queue they found out by failing to create git's lock files
        and backed off with growing sleeps, which left the vault idle while they slept (eight
        agents: 24 checkins/s, 38 s asleep in 6 s). Polling a flock costs a syscall, so the
        wait stays short and tight. Not blocking: a stopped writer keeps its flock, and waits
        must end in VaultBusy. Re-entrant within one Store (a transaction inside another).
        """
        if self._turn_held:
            yield _Turn(None)
            return
        fd = os.open(os.path.join(self.path, TURN), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            delay = 0.00005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        yield None
                        return
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 1.5, 0.001)
            self._turn_held = True
            turn = _Turn(fd)
            try:
                yield turn
            finally:
                self._turn_held = False
                turn.release()
        finally:
            os.close(fd)

    # -- durability ------------------------------------------------------------------------
    def _batched(self) -> bool:
        """Whether this vault's flushes are batched with syncfs (else fsync per file)."""
        if self._syncfs is None:
            self._syncfs = all(self._with_fds(_syncfs_honest))
        return self._syncfs

    def _with_fds(self, fn: Callable[[int], T]) -> list[T]:
        """``fn`` of a descriptor of each file system the vault writes to: the git directory's
        and, if ``objects/`` is a mount or a symlink elsewhere, that one's."""
        out: list[T] = []
        seen: set[int] = set()
        for d in (self.path, os.path.join(self.path, "objects")):
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                dev = os.fstat(fd).st_dev
                if dev not in seen:
                    seen.add(dev)
                    out.append(fn(fd))
            finally:
                os.close(fd)
        return out

    def _clean_after_power_cut(self) -> None:
        """Once per boot, before this process writes: delete empty loose objects.

        With batched flushes a new object's name can reach the disk before its bytes (delayed
        allocation), so a power cut between writing it and the flush leaves an empty file. No
        ref points at it (refs move after the flush), but libgit2 skips writing an object whose
        file exists, so the next checkin of the same content would point main at it. Only a
        crash of the machine leaves such files, hence the scan only when the boot id changed.
        An empty file is never a valid object (a zlib stream has a header).
        """
        boot = _boot_id()
        if boot is None:
            return
        marker = os.path.join(self.path, BOOT)
        try:
            with open(marker, encoding="ascii") as f:
                if f.read().strip() == boot:
                    return
        except OSError:
            pass
        try:
            for d in os.scandir(os.path.join(self.path, "objects")):
                if len(d.name) == 2 and d.is_dir(follow_symlinks=False):
                    for e in os.scandir(d.path):
                        with suppress(FileNotFoundError):  # git gc may prune it meanwhile
                            if e.is_file(follow_symlinks=False) and e.stat().st_size == 0:
                                os.unlink(e.path)
            tmp = f"{marker}.{os.getpid()}"
            with open(tmp, "w", encoding="ascii") as f:
                f.write(boot + "\n")
            os.replace(tmp, marker)
        except OSError:
            pass  # read-only for us: the next writer scans

    def _object_fsync(self) -> None:
        _set_fsync(self.fsync and not self._batched())

    def _syncfs_all(self, what: str) -> None:
        """One syncfs per file system: one journal commit for all that was written so far."""
        assert _LIBC is not None

        def flush(fd: int) -> None:
            if _LIBC.syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise StorageError(f"{what}: cannot flush the vault to disk: "
                                   f"{os.strerror(err)}")

        self._with_fds(flush)

    def _flush_objects(self, rtx: RefTx, what: str) -> None:
        """Make durable every object the refs set in ``rtx`` may point at, before they move.

        Objects are written before and inside the transaction's callback (merge commits are
        made under the lock), so this runs after it. A transaction that only deletes refs
        points at nothing new and skips it; one that changes nothing skips both flushes.
        """
        if self.fsync and self._batched() and any(v is not None for v in rtx.changed.values()):
            self._syncfs_all(what)

    def _flush_refs(self, rtx: RefTx, what: str) -> None:
        """Make the committed ref changes (loose refs, reflogs, packed-refs) durable."""
        if not self.fsync or not rtx.changed:
            return
        if self._batched():
            self._syncfs_all(what)
            return
        paths: set[str] = set()
        for name in rtx.changed:
            for p in (os.path.join(self.path, name), os.path.join(self.path, "logs", name)):
                paths.add(p)
                d = os.path.dirname(p)
                while len(d) > len(self.path):  # a new ref may have made its directories
                    paths.add(d)
                    d = os.path.dirname(d)
        if rtx.deleted:
            paths.add(os.path.join(self.path, "packed-refs"))
        try:
            for p in sorted(paths, key=len, reverse=True):  # files before their directories
                _fsync_path(p)
            _fsync_path(self.path)
        except OSError as e:
            raise StorageError(f"{what}: cannot flush the vault to disk: {e}") from None

    @contextmanager
    def _writer(self) -> Iterator[bool]:
        """Hold the writers' shared flock (False if a lock breaker holds it right now)."""
        fd = os.open(os.path.join(self.path, WRITERS), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the flock

    def lock_path(self, name: str) -> str:
        return os.path.join(self.path, name + ".lock")

    def break_stale_lock(self, name: str, also: Sequence[str] = ()) -> bool:
        """Remove ``name``'s lock file (and those of ``also``) if their owner is gone.

        Gone means: no gitvault writer holds the writers' flock (we can take it exclusively),
        and the file is at least ``stale_lock_seconds`` old, which spares a git command (that
        does not take our flock) in the middle of its own millisecond-long update.
        """
        path = self.lock_path(name)
        fd = os.open(os.path.join(self.path, WRITERS), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a live (perhaps stopped) writer holds locks: never break them
            broke = False
            for p in dict.fromkeys([path, *map(self.lock_path, also)]):
                try:
                    if time.time() - os.stat(p).st_mtime >= self.stale_lock_seconds:
                        os.unlink(p)
                        broke = broke or p == path
                except FileNotFoundError:
                    continue
            return broke
        finally:
            os.close(fd)

    def stale_locks(self) -> list[str]:
        """Lock files under refs/ (and packed-refs.lock) older than the stale threshold."""
        found = []
        now = time.time()
        for root, _dirs, files in os.walk(os.path.join(self.path, "refs")):
            for f in files:
                if f.endswith(".lock"):
                    p = os.path.join(root, f)
                    try:
                        if now - os.stat(p).st_mtime >= self.stale_lock_seconds:
                            found.append(os.path.relpath(p, self.path)[: -len(".lock")])
                    except FileNotFoundError:
                        continue
        packed = os.path.join(self.path, "packed-refs.lock")
        if os.path.exists(packed) and now - os.stat(packed).st_mtime >= self.stale_lock_seconds:
            found.append("packed-refs")
        return sorted(found)

    def _reopen(self) -> None:
        """A fresh libgit2 handle: after a failed packed-refs write, libgit2's cached refdb
        keeps failing deletes silently; a new handle reads packed-refs again."""
        env = os.environ.get("GIT_QUARANTINE_PATH") is not None
        flags = pygit2.enums.RepositoryOpenFlag.FROM_ENV if env else (
            pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        self.repo = pygit2.Repository(self.repo.path, flags)

    def _finish_deletes(self, deleted: dict[str, pygit2.Oid], deadline: float,
                        what: str) -> None:
        """Make sure deleted refs are gone.

        libgit2 deletes a *packed* ref by rewriting packed-refs under packed-refs.lock; when
        git gc or another writer holds that lock, the transaction reports success and the ref
        stays. Delete again (still only if it holds the value we removed) until it is gone.
        """
        left = {n: o for n, o in deleted.items() if self.ref(n) == o}
        while left:
            if time.monotonic() > deadline:
                raise VaultBusy(f"{what}: packed-refs.lock stayed held", len(left))
            time.sleep(0.005 + 0.02 * random.random())
            self._reopen()
            with self._locked(sorted(left), what) as rtx:
                for n, o in left.items():
                    if rtx.get(n) == o:
                        rtx.delete(n)
            left = {n: o for n, o in left.items() if self.ref(n) == o}

    def transact(self, names: Sequence[str], fn: Callable[[RefTx], T], what: str) -> T:
        """Lock ``names``, run ``fn`` with their current values, write what it set.

        If ``fn`` raises, nothing is written and the locks are released. With fsync on, the
        objects are flushed to disk before the refs move and the refs before this returns
        (see the module docstring).
        """
        self._object_fsync()
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                with self._locked(sorted(set(names)), what) as rtx:
                    result = fn(rtx)
                self._finish_deletes(rtx.deleted, deadline, what)
                return result
            except (OSError, pygit2.GitError) as e:
                # committing can need packed-refs.lock (deleting a packed ref) while git gc or
                # another writer holds it for a moment: as git does, wait and try again; fn
                # re-reads every ref under the new locks, so the retry is still a CAS
                if "lock" in str(e).lower() and time.monotonic() < deadline:
                    time.sleep(0.005 + 0.02 * random.random())
                    self._reopen()
                    continue
                raise StorageError(f"{what}: {e}") from None

