"""Refs under a lock: what a :meth:`~gitvault.git.storage.Store.transact` callback reads and
changes (:class:`RefTx`), and the writers' turn it may hold."""

from __future__ import annotations

import fcntl
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
