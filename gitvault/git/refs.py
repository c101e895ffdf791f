"""Refs under a lock: what a :meth:`~gitvault.git.storage.Store.transact` callback reads and
changes (:class:`RefTx`), and the writers' turn it may hold."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Sequence

import pygit2


def target_of(repo: pygit2.Repository, name: str) -> pygit2.Oid | None:
    """What ref ``name`` points at (through symbolic refs), or None."""
    ref = repo.references.get(name)
    if ref is None:
        return None
    target = ref.resolve().target
    assert isinstance(target, pygit2.Oid)
    return target


def wait_flock(path: str, deadline: float) -> int | None:
    """A descriptor of ``path`` holding an exclusive flock, or None if ``deadline`` (a
    :func:`time.monotonic` time) passed first.

    Why a thread: ``flock`` either fails at once or blocks with no time limit. Polling it
    with short sleeps (what gitvault did before) kept every waiting writer waking up about
    a thousand times a second; with eight writers on two cores that took CPU from the one
    whose turn it was, and the turn sat idle until a sleeper woke. A blocked ``flock`` costs
    nothing and the kernel wakes the waiters the moment the lock is free. The caller waits
    for the helper thread only until ``deadline``; if it gives up, the thread keeps the
    descriptor, and once it gets the lock it closes it at once, which frees the lock for
    the next writer. So a writer stopped with the lock held (SIGSTOP) still ends in a
    timeout, never in a hang, and a wait given up on never keeps the lock.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    guard = threading.Lock()
    done = threading.Event()
    state = {"locked": False, "gave_up": False}

    def wait() -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state["locked"] = True
        except OSError:
            pass  # not for a descriptor we opened; the caller then sees no lock
        with guard:
            if state["gave_up"]:
                os.close(fd)  # releases the lock (if taken) along with the descriptor
            done.set()

    try:
        threading.Thread(target=wait, name="gitvault-turn-wait", daemon=True).start()
    except BaseException:  # no thread to be had (RuntimeError): the lock was never taken
        os.close(fd)
        raise
    held: int | None = None
    waited = False
    try:
        done.wait(max(0.0, deadline - time.monotonic()))
        waited = True
    finally:  # also on KeyboardInterrupt: a lock nobody will release must not stay held
        with guard:
            if not done.is_set():
                state["gave_up"] = True  # the thread closes fd when its flock returns
            elif waited and state["locked"]:
                held = fd
            else:
                os.close(fd)
    return held


class Turn:
    """A held turn (see :meth:`Store._turn`); released once, early or at the end."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.fd = None


class RefTx:
    """The refs locked by one :meth:`Store.transact` call: read them, then set or delete."""

    def __init__(
        self,
        repo: pygit2.Repository,
        tx: pygit2.transaction.ReferenceTransaction,
        locked: Sequence[str],
    ) -> None:
        self._repo, self._tx, self._locked = repo, tx, set(locked)
        self.changed: dict[str, pygit2.Oid | None] = {}
        self.deleted: dict[str, pygit2.Oid] = {}  # name -> the value it had

    def get(self, name: str) -> pygit2.Oid | None:
        """The ref's value as it is on disk now (we hold its lock, so it stays so)."""
        if name in self.changed:
            return self.changed[name]
        return target_of(self._repo, name)

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
