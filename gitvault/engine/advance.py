"""Moving main: the one compare-and-swap loop every write to main goes through.

Checkins, resolves, schema changes and folded branches all do the same thing: read main, plan a
new commit outside any lock, then, under the lock of main (and of whatever else the write
moves), check that main is still what the plan was made on and move it. When another writer won
the race the plan is made again. One loop with one retry budget and one backoff policy means a
fix to either reaches every writer.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import pygit2

from gitvault.errors import VaultBusy
from gitvault.git.refs import RefTx
from gitvault.git.storage import MAIN, Store

T = TypeVar("T")

ATTEMPTS = 200  # lost races before giving up with VaultBusy
PATIENT_AFTER = 1  # lost races retried at once before each retry waits (jittered, exponential)

Step = Callable[[RefTx], "T | None"]  # under the lock: the result, or None when the race is lost


@dataclass(frozen=True)
class Done(Generic[T]):
    """An attempt that finished without moving main (nothing to do)."""

    value: T


Attempt = Callable[[int], "Step[T] | Done[T] | None"]  # None: look again at once


def backoff(lost: int) -> None:
    """Wait before retry ``lost``: a few ms, doubling, capped, jittered so writers spread out."""
    if lost >= PATIENT_AFTER:
        time.sleep(random.uniform(0, min(0.002 * 2**lost, 0.05)))


def advance(store: Store, what: str, names: Sequence[str], attempt: Attempt[T]) -> T:
    """Run ``attempt(n)`` until its step lands under the lock of ``names`` (main among them).

    ``attempt`` plans without holding any lock and returns the step to run under it, a
    :class:`Done` when there is nothing to land, or None to be asked again at once (it found
    that something it read had changed). A step returning None lost the race: the attempt is
    made again after :func:`backoff`. Errors raised by either pass through unchanged.
    """
    for n in range(ATTEMPTS):
        step = attempt(n)
        if isinstance(step, Done):
            return step.value
        if step is None:
            continue
        result = store.transact(names, step, what)
        if result is not None:
            return result
        backoff(n)
    raise VaultBusy(what, ATTEMPTS)


def move_main(rtx: RefTx, expected: pygit2.Oid, target: pygit2.Oid, reflog: str) -> bool:
    """Under the lock: point main at ``target`` if it is still ``expected``."""
    if rtx.get(MAIN) != expected:
        return False
    rtx.set(MAIN, target, reflog)
    return True


def commit_on_main(
    store: Store, what: str, build: Callable[[pygit2.Commit], tuple[pygit2.Oid, T]]
) -> tuple[str, T]:
    """Land a commit made on main as it is (``build(main)`` gives the commit and a value to
    hand back), re-building it whenever main moved first: vault files changed by a command
    (access rules, allowed signers) go to main this way."""

    def attempt(_n: int) -> Step[tuple[str, T]]:
        main = store.resolve(MAIN)
        commit, value = build(main)
        return lambda rtx: (str(commit), value) if move_main(rtx, main.id, commit, what) else None

    return advance(store, what, [MAIN], attempt)
