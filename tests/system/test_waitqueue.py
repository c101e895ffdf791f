"""``checkout --wait``: exclusive writers queue first come, first served, and the queue survives
``kill -9`` of any member. Real processes on a real vault; no sleeps for synchronisation (each
test reads a process's own "waiting" or "held" line before acting)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitvault import Vault
from gitvault.errors import LeaseHeld, LeaseWaitTimeout
from gitvault.model.waitqueue import PREFIX, WaitQueue

from ..conftest import Git

WORKER = str(Path(__file__).with_name("queue_worker.py"))


def gitvault(vault: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gitvault", "--vault", str(vault), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def waiting(proc: subprocess.Popen[str]) -> str:
    """Block until the process says it waits in the queue (its first stderr line)."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "waiting for the lease" in line, line + proc.stderr.read()
    return line


def holder(vault: Path, agent: str, ttl: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, WORKER, "hold", str(vault), agent, str(ttl)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("held "), "the holder took no lease"
    return proc


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def queued(vault: Vault) -> list[str]:
    return sorted(vault.store.refs_under(PREFIX))


def test_exclusive_waiter_gets_the_lease_when_the_holder_releases(
    empty_vault: Vault, vault_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    empty_vault.checkout("holder", 60, exclusive=True)
    waiter = gitvault(vault_path, "checkout", "waiter", "60", "--exclusive", "--wait", "120")
    procs.append(waiter)
    waiting(waiter)
    empty_vault.release("holder")
    assert waiter.wait(120) == 0
    lease = empty_vault.leases.get("waiter")
    assert lease is not None and lease.mode == "exclusive"
    assert queued(empty_vault) == []


def test_waiters_are_served_in_arrival_order(
    empty_vault: Vault, vault_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    empty_vault.checkout("holder", 60, exclusive=True)
    order = []
    for name in ("first", "second", "third"):
        p = gitvault(vault_path, "checkout", name, "60", "--exclusive", "--wait", "120", "--json")
        procs.append(p)
        waiting(p)
        order.append((name, p))
    empty_vault.release("holder")
    tokens = []
    for name, p in order:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        tokens.append(json.loads(out)["lease"]["token"])
        if name != "third":
            empty_vault.release(name)  # only now may the next one go
    assert tokens == sorted(tokens)


def test_a_waiter_that_gives_up_leaves_the_queue(empty_vault: Vault, vault_path: Path) -> None:
    empty_vault.checkout("holder", 60, exclusive=True)
    p = gitvault(vault_path, "checkout", "impatient", "--exclusive", "--wait", "0.3")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 4, err
    assert "gave up" in err and "'holder'" in err
    assert queued(empty_vault) == []
    assert empty_vault.leases.get("impatient") is None


def test_killed_waiter_is_skipped_and_the_next_one_served(
    empty_vault: Vault, vault_path: Path, git: Git, procs: list[subprocess.Popen[str]]
) -> None:
    empty_vault.checkout("holder", 60, exclusive=True)
    dead = gitvault(vault_path, "checkout", "dead", "--exclusive", "--wait", "600")
    procs.append(dead)
    waiting(dead)
    later = gitvault(vault_path, "checkout", "later", "--exclusive", "--wait", "120")
    procs.append(later)
    waiting(later)
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait()
    assert any(r.endswith("-dead") for r in queued(empty_vault))  # left behind by kill -9
    empty_vault.release("holder")
    assert later.wait(120) == 0
    assert empty_vault.leases.get("later") is not None
    assert empty_vault.leases.get("dead") is None
    assert queued(empty_vault) == []  # the stale entry was pruned by the waiter behind it
    git("fsck", "--no-progress")


def test_killed_holder_lease_expires_and_the_first_waiter_gets_it(
    empty_vault: Vault, vault_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    hold = holder(vault_path, "holder", 1)
    procs.append(hold)
    waiter = gitvault(vault_path, "checkout", "waiter", "--exclusive", "--wait", "120")
    procs.append(waiter)
    waiting(waiter)
    os.kill(hold.pid, signal.SIGKILL)
    assert waiter.wait(120) == 0
    assert empty_vault.leases.get("waiter") is not None


def test_exclusive_checkout_without_wait_cannot_jump_the_queue(
    empty_vault: Vault, vault_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    empty_vault.checkout("holder", 60, exclusive=True)
    waiter = gitvault(vault_path, "checkout", "waiter", "--exclusive", "--wait", "120")
    procs.append(waiter)
    waiting(waiter)
    empty_vault.release("holder")
    # the lease may already be the waiter's; either way the newcomer is refused
    with pytest.raises(LeaseHeld):
        empty_vault.checkout("newcomer", 60, exclusive=True)
    assert waiter.wait(120) == 0


def test_shared_checkout_without_wait_ignores_queued_exclusive_waiters(
    empty_vault: Vault, vault_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    empty_vault.checkout("reader", 60)
    waiter = gitvault(vault_path, "checkout", "writer", "--exclusive", "--wait", "120")
    procs.append(waiter)
    waiting(waiter)
    assert empty_vault.checkout("other-reader", 60).lease.mode == "shared"
    empty_vault.release("reader")
    empty_vault.release("other-reader")
    assert waiter.wait(120) == 0


def test_shared_checkout_with_wait_queues_behind_an_exclusive_waiter(
    empty_vault: Vault, vault_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    empty_vault.checkout("reader", 60)
    writer = gitvault(vault_path, "checkout", "writer", "--exclusive", "--wait", "120", "--json")
    procs.append(writer)
    waiting(writer)
    with pytest.raises(LeaseWaitTimeout):
        empty_vault.checkout("patient-reader", 60, wait=0.2)
    empty_vault.release("reader")
    out, _ = writer.communicate(timeout=120)
    assert json.loads(out)["lease"]["mode"] == "exclusive"


def test_renewing_ones_own_lease_never_waits(
    empty_vault: Vault, vault_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    first = empty_vault.checkout("holder", 60, exclusive=True).lease
    waiter = gitvault(vault_path, "checkout", "waiter", "--exclusive", "--wait", "120")
    procs.append(waiter)
    waiting(waiter)
    again = empty_vault.checkout("holder", 60, exclusive=True, wait=0).lease
    assert again.token > first.token
    empty_vault.release("holder")
    assert waiter.wait(120) == 0


def test_queue_entries_are_plain_git_refs(
    empty_vault: Vault, vault_path: Path, git: Git, procs: list[subprocess.Popen[str]]
) -> None:
    empty_vault.checkout("holder", 60, exclusive=True)
    waiter = gitvault(vault_path, "checkout", "w/1", "--exclusive", "--wait", "120")
    procs.append(waiter)
    waiting(waiter)
    (ref,) = git("for-each-ref", "--format=%(refname)", "refs/gitvault/queue/").split()
    assert ref.endswith("-w%2F1")
    entry = json.loads(git("cat-file", "-p", ref))
    assert entry["agent"] == "w/1" and entry["mode"] == "exclusive"
    assert entry["pid"] == waiter.pid
    assert [w.agent for w in WaitQueue(empty_vault.store).live()] == ["w/1"]
    empty_vault.release("holder")
    assert waiter.wait(120) == 0


def test_wait_out_of_range_is_refused(empty_vault: Vault) -> None:
    from gitvault.errors import InputError

    with pytest.raises(InputError):
        empty_vault.checkout("a", 60, exclusive=True, wait=-1)
    assert empty_vault.leases.get("a") is None


def test_eight_exclusive_writers_twenty_rounds_in_fifo_order_lose_nothing(
    empty_vault: Vault, vault_path: Path, git: Git
) -> None:
    writers, rounds = 8, 20
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, "rounds", str(vault_path), f"w{i}", str(rounds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(writers)
    ]
    grants = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0
        grants += [json.loads(line) for line in out.splitlines()]
    assert len(grants) == writers * rounds  # every round finished
    assert empty_vault.read()["counter"] == writers * rounds  # 0 lost updates
    by_token = sorted(grants, key=lambda g: g["token"])
    seqs = [g["seq"] for g in by_token if g["seq"] is not None]
    assert seqs == sorted(seqs)  # granted in the order they queued
    assert queued(empty_vault) == []
    assert int(git("rev-list", "--count", "main")) == 1 + writers * rounds
