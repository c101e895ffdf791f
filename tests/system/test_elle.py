"""Concurrency at scale, checked like Elle checks a history.

N processes (``tests/system/elle_worker.py``) each make M read-modify-write checkins under SHARED
leases, all on the same keys: each appends ``{"id": "<agent>-<i>"}`` to the id-array ``log``
(appends to one id-array merge structurally) and adds one to its own field of the object
``counters``. A conflict or a busy vault is retried; every acknowledged write is recorded by
its process (item, the commit ``checkin`` returned, times) and fsynced before the next one.

Then the history is checked with the real git binary, not through gitvault:

- exact counts: N*M items on main, each once; every counter is M; N*M agent commits on main;
- every acknowledged commit is an ancestor of main (``git merge-base --is-ancestor``), and
  indeed on main's first-parent chain (it was main's head when it was acknowledged);
- monotonic visibility: along main's first-parent history (oldest to newest), an acknowledged
  item, once it appears, is in every later state; a counter never goes down;
- read-your-writes and real time: a write is visible in the state its own checkin produced,
  and a write acknowledged before another write's checkout began appears no later than it;
- every kept conflict (``refs/conflicts/``) is one that a worker saw and retried.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitvault import Vault

WORKER = Path(__file__).with_name("elle_worker.py")
NAMES = ["p0", "p1/x", "p2.lock", "p3 ☕", "p4..", "p5%2F", "p6", "p7-é"]


def _git_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


def git(
    vault: Path, *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        ["git", f"--git-dir={vault}", *args],
        input=input,
        capture_output=True,
        text=True,
        env=_git_env(),
    )
    if check:
        assert r.returncode == 0, f"git {' '.join(args)}: {r.stderr}"
    return r


@dataclass(frozen=True)
class Write:
    agent: str
    item: str
    i: int
    commit: str
    merged: bool
    counter: int
    t_checkout: float
    t_ack: float
    attempts: int


@dataclass(frozen=True)
class Run:
    vault: Path
    writes: list[Write]
    summaries: list[dict[str, Any]]
    seconds: float


def agents(n: int) -> list[str]:
    return [NAMES[k] if k < len(NAMES) else f"p{k}" for k in range(n)]


def run_workers(tmp: Path, n: int, m: int, timeout: float) -> Run:
    vault = tmp / "vault.git"
    Vault.init(vault)
    git(vault, "config", "gitvault.fsync", "false")
    seed = Vault.open(vault)
    seed.checkout("seed", 60)
    seed.checkin("seed", {"log": [], "counters": {}}, "seed", 1.0, "empty log and counters")
    seed.release("seed")
    go = tmp / "go"
    procs: list[tuple[str, subprocess.Popen[str]]] = []
    for k, agent in enumerate(agents(n)):
        history = tmp / f"history-{k}.jsonl"
        procs.append(
            (
                agent,
                subprocess.Popen(
                    [sys.executable, str(WORKER), str(vault), agent, str(m), str(history), str(go)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    time.sleep(0.2)
    start = time.monotonic()
    go.touch()
    deadline = start + timeout
    errors = []
    try:
        for agent, p in procs:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if p.returncode != 0:
                errors.append(f"worker {agent!r} exit {p.returncode}: {err[-3000:]}")
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    seconds = time.monotonic() - start
    assert errors == [], "\n".join(errors)
    writes: list[Write] = []
    summaries: list[dict[str, Any]] = []
    for k in range(n):
        for line in (tmp / f"history-{k}.jsonl").read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry.get("done"):
                summaries.append(entry)
            else:
                writes.append(Write(**entry))
    return Run(vault, writes, summaries, seconds)


def first_parent_states(vault: Path) -> tuple[list[str], list[list[str]], list[dict[str, int]]]:
    """Main's first-parent chain, oldest first, with the log ids and counters at each commit."""
    chain = git(vault, "rev-list", "--first-parent", "--reverse", "refs/heads/main").stdout.split()
    specs = "".join(f"{c}:log.json\n{c}:counters.json\n" for c in chain)
    out = subprocess.run(
        ["git", f"--git-dir={vault}", "cat-file", "--batch"],
        input=specs.encode(),
        capture_output=True,
        env=_git_env(),
        check=True,
    )
    data, pos = out.stdout, 0
    values: list[Any] = []
    while pos < len(data):
        end = data.index(b"\n", pos)
        header = data[pos:end].decode()
        pos = end + 1
        if header.endswith(" missing"):
            values.append(None)
            continue
        size = int(header.split()[2])
        values.append(json.loads(data[pos : pos + size]))
        pos += size + 1
    assert len(values) == 2 * len(chain)
    logs = [[str(x["id"]) for x in v] if v is not None else [] for v in values[0::2]]
    counters = [dict(v) if v is not None else {} for v in values[1::2]]
    return chain, logs, counters


def check(run: Run, n: int, m: int) -> dict[str, Any]:
    """Every check of the module docstring; returns the figures for the report."""
    vault, writes = run.vault, run.writes
    names = agents(n)
    expected = {f"{a}-{i}" for a in names for i in range(m)}

    # the workers' own records: every write acknowledged once, with a commit
    assert len(writes) == n * m, f"{len(writes)} acknowledged writes, expected {n * m}"
    assert {w.item for w in writes} == expected
    assert all(len(w.commit) == 40 for w in writes)
    assert len(run.summaries) == n

    # exact counts on main
    main = git(vault, "rev-parse", "refs/heads/main").stdout.strip()
    log = json.loads(git(vault, "show", "refs/heads/main:log.json").stdout)
    ids = [str(x["id"]) for x in log]
    dup = [i for i, c in Counter(ids).items() if c > 1]
    assert dup == [], f"items on main more than once: {dup[:10]}"
    assert set(ids) == expected, (
        f"lost: {sorted(expected - set(ids))[:10]}, unexpected: {sorted(set(ids) - expected)[:10]}"
    )
    counters = json.loads(git(vault, "show", "refs/heads/main:counters.json").stdout)
    assert counters == dict.fromkeys(names, m), f"lost updates in counters: {counters}"
    authors = Counter(
        git(
            vault,
            "log",
            "--no-merges",
            "--format=%(trailers:key=Agent-Id,valueonly,separator=)",
            "refs/heads/main",
        ).stdout.split("\n")
    )
    for a in names:
        assert authors[a] == m, f"{a} has {authors[a]} commits on main, expected {m}"
    merges = int(git(vault, "rev-list", "--merges", "--count", "refs/heads/main").stdout)
    assert merges == sum(w.merged for w in writes)

    # every acknowledged commit is an ancestor of main, and was main's head
    for w in writes:
        r = git(vault, "merge-base", "--is-ancestor", w.commit, main, check=False)
        assert r.returncode == 0, f"acknowledged {w.item} at {w.commit}: not an ancestor of main"
    chain, logs, counter_states = first_parent_states(vault)
    at = {c: k for k, c in enumerate(chain)}
    assert all(w.commit in at for w in writes), "an acknowledged commit left the first parents"

    # monotonic visibility along the first-parent history
    first_seen: dict[str, int] = {}
    for k, state in enumerate(logs):
        assert len(state) == len(set(state)), f"{chain[k]} holds an item twice"
        now = set(state)
        gone = [x for x in first_seen if x not in now]
        assert gone == [], f"{chain[k]}: acknowledged items disappeared: {gone[:10]}"
        for x in state:
            first_seen.setdefault(x, k)
    for a in names:
        seq = [c.get(a, 0) for c in counter_states]
        assert seq == sorted(seq), f"counter {a} went down along main: {seq}"

    # read-your-writes, and real-time order
    for w in writes:
        k = at[w.commit]
        assert first_seen.get(w.item, k + 1) <= k, f"{w.item} not visible at its ack {w.commit}"
        assert counter_states[k].get(w.agent, 0) >= w.counter, (w, counter_states[k])
    by_ack = sorted(writes, key=lambda w: w.t_ack)
    by_start = sorted(writes, key=lambda w: w.t_checkout)
    latest, j, stale = -1, 0, []
    for w in by_start:  # every write acked before w's checkout began must appear no later
        while j < len(by_ack) and by_ack[j].t_ack < w.t_checkout:
            latest = max(latest, first_seen[by_ack[j].item])
            j += 1
        if latest > first_seen[w.item]:
            stale.append(w.item)
    assert stale == [], f"writes that missed an earlier acknowledged write: {stale[:10]}"

    # kept conflicts: exactly the ones the workers retried
    kept = git(vault, "for-each-ref", "--format=%(refname)", "refs/conflicts/").stdout.split()
    conflicts = sum(s["conflicts"] for s in run.summaries)
    assert len(kept) == conflicts, (kept, conflicts)
    fsck = git(vault, "fsck", "--strict", "--no-dangling", check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr

    retries = sum(w.attempts - 1 for w in writes)
    return {
        "processes": n,
        "writes_each": m,
        "items": len(ids),
        "commits": len(chain),
        "merges": merges,
        "retries": retries,
        "conflicts": conflicts,
        "busy": sum(s["busy"] for s in run.summaries),
        "busy_messages": sorted({m for s in run.summaries for m in s["busy_messages"]})[:3],
        "max_attempts": max(w.attempts for w in writes),
        "seconds": round(run.seconds, 1),
        "writes_per_second": round(n * m / run.seconds, 1),
        "packed_refs": (vault / "packed-refs").exists(),
    }


def assert_leases_released(run: Run) -> None:
    """Each worker released its lease at the end (checked after the history checks)."""
    failed = {s["agent"]: s["release_error"] for s in run.summaries if s["release_error"]}
    assert failed == {}, f"release failed: {failed}"
    assert git(run.vault, "for-each-ref", "refs/leases/").stdout == ""
    assert git(run.vault, "notes", "--ref=leases", "list").stdout == ""


def test_eight_processes_times_ten_shared_lease_checkins_lose_nothing_and_stay_visible(
    tmp_path: Path,
) -> None:
    run = run_workers(tmp_path, 8, 10, timeout=150)
    figures = check(run, 8, 10)
    print(f"\nelle 8x10: {figures}")
    assert_leases_released(run)


@pytest.mark.stress
@pytest.mark.timeout(1200)
def test_sixteen_processes_times_fifty_shared_lease_checkins_lose_nothing_and_stay_visible(
    tmp_path: Path,
) -> None:
    run = run_workers(tmp_path, 16, 50, timeout=1100)
    figures = check(run, 16, 50)
    print(f"\nelle 16x50: {figures}")
    assert_leases_released(run)


def test_a_release_waits_out_a_briefly_held_packed_refs_lock_as_git_does(tmp_path: Path) -> None:
    """After `git gc` (which checkin starts by itself past gitvault.gcLooseObjects) the lease
    refs are packed; deleting one rewrites packed-refs under packed-refs.lock, which another
    release or a running `git pack-refs` may hold for a moment. git waits for it
    (core.packedRefsTimeout, 1 s by default); the stress run above lost releases to it."""
    vault = tmp_path / "vault.git"
    Vault.init(vault)
    git(vault, "config", "gitvault.fsync", "false")
    v = Vault.open(vault)
    v.checkout("a", 60)
    git(vault, "pack-refs", "--all")
    lock = vault / "packed-refs.lock"
    lock.touch()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time; time.sleep(0.3); os.remove(sys.argv[1])",
            str(lock),
        ]
    )
    try:
        v.release("a")
    finally:
        holder.wait()
    assert git(vault, "for-each-ref", "refs/leases/").stdout == ""
