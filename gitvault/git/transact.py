"""Compare-and-swap ref transactions: locks, the writers' turn, durability, stale-lock recovery.

:class:`Transactions` is the half of :class:`~gitvault.git.storage.Store` that moves refs; the
other half reads and writes objects. Kept apart because every rule about concurrency and crash
safety lives here, and nowhere else.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TypeVar

import pygit2

from gitvault.errors import StorageError, VaultBusy
from gitvault.git.durability import LIBC, boot_id, fsync_path, set_fsync, syncfs_honest
from gitvault.git.refs import RefTx, Turn, target_of, wait_flock

T = TypeVar("T")
WRITERS = "gitvault-writers"  # flock'ed by every writer while it holds ref locks
TURN = "gitvault-turn"  # flock'ed by the one writer whose turn it is (see Store._turn)
BOOT = "gitvault-boot"  # the boot id of the last check for a power cut's empty objects
LOCK_TIMEOUT = 60.0  # seconds of lost lock races before VaultBusy; enough for 16+ busy writers


class Transactions:
    """Ref transactions of a bare repository (mixed into :class:`~gitvault.git.storage.Store`)."""

    repo: pygit2.Repository
    path: str
    fsync: bool
    stale_lock_seconds: float
    _syncfs: bool | None
    _turn_held: bool

    def ref(self, name: str) -> pygit2.Oid | None:
        return target_of(self.repo, name)

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

    def _lock_refs(
        self, names: Sequence[str], what: str
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
    def _turn(self, deadline: float) -> Iterator[Turn | None]:
        """Wait for this writer's turn: an exclusive flock on ``gitvault-turn`` (None: timed out).

        Every ref transaction of a vault locks main or the lease notes, so writers run one at
        a time anyway. Before this queue they found out by failing to create git's lock files
        and backed off with growing sleeps, which left the vault idle while they slept (eight
        agents: 24 checkins/s, 38 s asleep in 6 s). The wait blocks in the kernel
        (:func:`~gitvault.git.refs.wait_flock`), so it costs no CPU and the next writer runs the
        moment the last one lets go, but it still ends at ``deadline``: a stopped writer keeps
        its flock, and waits must end in VaultBusy. Re-entrant within one Store (a transaction
        inside another).
        """
        if self._turn_held:
            yield Turn(None)
            return
        fd = wait_flock(os.path.join(self.path, TURN), deadline)
        if fd is None:
            yield None
            return
        self._turn_held = True
        turn = Turn(fd)
        try:
            yield turn
        finally:
            self._turn_held = False
            turn.release()
            os.close(fd)

    # -- durability ------------------------------------------------------------------------
    def _batched(self) -> bool:
        """Whether this vault's flushes are batched with syncfs (else fsync per file)."""
        if self._syncfs is None:
            self._syncfs = all(self._with_fds(syncfs_honest))
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
        boot = boot_id()
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
        set_fsync(self.fsync and not self._batched())

    def _syncfs_all(self, what: str) -> None:
        """One syncfs per file system: one journal commit for all that was written so far."""
        assert LIBC is not None

        def flush(fd: int) -> None:
            if LIBC.syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise StorageError(f"{what}: cannot flush the vault to disk: {os.strerror(err)}")

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
                fsync_path(p)
            fsync_path(self.path)
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
        flags = (
            pygit2.enums.RepositoryOpenFlag.FROM_ENV
            if env
            else (pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        )
        self.repo = pygit2.Repository(self.repo.path, flags)

    def _finish_deletes(self, deleted: dict[str, pygit2.Oid], deadline: float, what: str) -> None:
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
