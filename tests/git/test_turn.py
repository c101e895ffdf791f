"""The writers' turn: a blocking flock wait that still ends at its deadline (git.refs.wait_flock).

Other processes hold the lock here, as other writers would: real flocks, real processes.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import gitvault.git.transact
from gitvault import Vault
from gitvault.errors import VaultBusy
from gitvault.git.refs import wait_flock
from gitvault.git.transact import TURN

HOLD = (
    "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644); "
    "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.readline()"
)


@contextmanager
def held_by_another_process(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process holding an exclusive flock on ``path`` until its stdin gets a line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    try:
        yield proc
    finally:
        if proc.poll() is None:
            let_go(proc)


def let_go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(timeout=10)


def free_soon(path: Path, within: float = 5.0) -> bool:
    """Whether a fresh descriptor can take the lock (the helper thread of a wait that was
    given up may hold it for a moment before it closes it)."""
    fd = os.open(path, os.O_RDWR)
    try:
        end = time.monotonic() + within
        while time.monotonic() < end:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                time.sleep(0.01)
        return False
    finally:
        os.close(fd)


def test_a_free_lock_is_taken_at_once(tmp_path: Path) -> None:
    path = tmp_path / "turn"
    fd = wait_flock(str(path), time.monotonic())  # a deadline already passed: no waiting
    assert fd is not None
    try:
        probe = os.open(path, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(probe)
    finally:
        os.close(fd)
    assert free_soon(path, 0.1)


def test_a_waiter_gets_the_lock_when_the_holder_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "turn"
    with held_by_another_process(path) as holder:
        asked: list[float] = []

        def later() -> None:
            asked.append(time.monotonic())
            let_go(holder)

        timer = threading.Timer(0.3, later)
        timer.start()
        fd = wait_flock(str(path), time.monotonic() + 30)
        got = time.monotonic()
        timer.join()
        assert fd is not None, "the wait ended although the holder let go well before it"
        try:
            assert asked and got >= asked[0]  # not before the holder was told to let go
            assert not free_soon(path, 0.05)  # and we hold it now
        finally:
            os.close(fd)
    assert free_soon(path)


def test_a_wait_ends_at_its_deadline_and_leaves_no_lock_behind(tmp_path: Path) -> None:
    path = tmp_path / "turn"
    with held_by_another_process(path) as holder:
        start = time.monotonic()
        assert wait_flock(str(path), start + 0.3) is None
        assert time.monotonic() - start >= 0.3
        let_go(holder)
    # the given-up wait's thread gets the lock when the holder goes, and must free it
    assert free_soon(path), "a wait that timed out kept the writers' turn"


def test_a_stopped_turn_holder_makes_writers_busy_not_hung(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer frozen with the turn (SIGSTOP keeps its flock) costs the others a VaultBusy
    at their deadline and changes nothing; once it is gone, writing works again."""
    vault = tmp_path / "vault.git"
    v = Vault.init(vault)
    before = v.store.ref("refs/heads/main")
    monkeypatch.setattr(gitvault.git.transact, "LOCK_TIMEOUT", 0.5)
    with held_by_another_process(vault / TURN) as holder:
        os.kill(holder.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(VaultBusy):
                Vault.open(vault).checkout("agent-a")
            assert time.monotonic() - start < 30
        finally:
            os.kill(holder.pid, signal.SIGCONT)
    again = Vault.open(vault)
    assert again.store.ref("refs/heads/main") == before
    assert again.status().leases == []  # the refused checkout granted nothing
    co = again.checkout("agent-a")
    co.document["k"] = 1
    assert again.checkin("agent-a", co.document, "test", lease=co.lease.token).commit
