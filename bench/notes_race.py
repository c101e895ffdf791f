#!/usr/bin/env python3
"""Do concurrent note writers lose notes? pygit2's ``create_note`` against gitvault's leases.

    python bench/notes_race.py [--procs 16] [--rounds 10] [--dir TMPDIR]

Round after round, ``--procs`` processes (spawned, released together by a barrier) each add one
note to a distinct object on the same notes ref with ``Repository.create_note``. Afterwards the
real ``git notes list`` counts the notes that survived. A note is *lost* when its
``create_note`` call returned normally but the note is not there; a call that raised is *failed*
(its caller knows, but the note is not there either).

Then the same with gitvault: ``--procs`` agents take their leases at once (every lease is a note
in ``refs/notes/leases``), for the same number of rounds, and the notes are counted the same way.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pygit2

from gitvault import Vault
from gitvault.errors import GitVaultError

CTX = multiprocessing.get_context("spawn")
Report = tuple[int, int, str]  # round, worker, "ok" or the error text


def git_notes(git_dir: Path, ref: str) -> int:
    """How many notes ``ref`` holds, by the git binary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    r = subprocess.run(
        ["git", f"--git-dir={git_dir}", "notes", f"--ref={ref}", "list"],
        capture_output=True,
        text=True,
        env=env,
    )
    if r.returncode != 0:
        if "not a valid ref" in r.stderr or "does not exist" in r.stderr:
            return 0
        raise SystemExit(f"git notes list failed: {r.stderr.strip()}")
    return len(r.stdout.splitlines())


# -- the workers (module level, for 'spawn') -------------------------------------------------
def pygit2_worker(
    repo_path: str, worker: int, rounds: int, barrier: Barrier, out: Queue[Report]
) -> None:
    repo = pygit2.Repository(repo_path)
    sig = pygit2.Signature(f"racer-{worker}", f"racer-{worker}@example.com")
    for rnd in range(rounds):
        target = repo.create_blob(f"object of worker {worker} in round {rnd}\n".encode())
        barrier.wait(timeout=120)
        try:
            repo.create_note(
                f"note {worker}/{rnd}", sig, sig, str(target), f"refs/notes/race-{rnd}"
            )
            out.put((rnd, worker, "ok"))
        except (pygit2.GitError, OSError) as e:  # pygit2 raises OSError for a held lock
            out.put((rnd, worker, f"{type(e).__name__}: {e}"))


def gitvault_worker(
    vaults: Sequence[str], worker: int, rounds: int, barrier: Barrier, out: Queue[Report]
) -> None:
    for rnd in range(rounds):
        vault = Vault.open(vaults[rnd])
        barrier.wait(timeout=120)
        try:
            vault.checkout(f"agent-{worker}")
            out.put((rnd, worker, "ok"))
        except GitVaultError as e:
            out.put((rnd, worker, f"{type(e).__name__}: {e}"))


def run(target: object, args: tuple[object, ...], procs: int, rounds: int) -> list[Report]:
    barrier = CTX.Barrier(procs)
    out: Queue[Report] = CTX.Queue()
    workers = [
        CTX.Process(
            target=target,  # type: ignore[arg-type]
            args=(*args, i, rounds, barrier, out),
        )
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    reports: list[Report] = []
    deadline = time.monotonic() + 300
    while len(reports) < procs * rounds:
        try:
            reports.append(out.get(timeout=0.5))
        except queue.Empty:
            if time.monotonic() > deadline or not all(w.is_alive() for w in workers):
                for w in workers:
                    if w.is_alive():
                        w.kill()
                raise SystemExit("a worker died or hung; see its traceback above") from None
    for w in workers:
        w.join()
    return reports


def tally(name: str, counts: list[int], reports: list[Report], procs: int) -> tuple[int, int]:
    """Print one line per round and the totals; returns (lost, failed)."""
    lost_total = failed_total = 0
    print(f"\n{name}: {procs} processes x {len(counts)} rounds")
    for rnd, survived in enumerate(counts):
        ok = sum(1 for r in reports if r[0] == rnd and r[2] == "ok")
        failed = procs - ok
        lost = ok - survived
        lost_total += lost
        failed_total += failed
        print(
            f"  round {rnd + 1:2}: {survived:2}/{procs} notes survived, "
            f"{lost} lost silently, {failed} failed with an error"
        )
    errors = sorted({re.sub(r"'[^']*'", "<path>", r[2]) for r in reports if r[2] != "ok"})
    for e in errors[:3]:
        print(f"  error seen: {e}")
    print(
        f"  total: {lost_total} lost silently, {failed_total} failed, "
        f"{procs * len(counts) - lost_total - failed_total} of {procs * len(counts)} kept"
    )
    return lost_total, failed_total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--procs", type=int, default=16, help="concurrent writers")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of the race")
    parser.add_argument("--dir", default=None, help="where to make the scratch repositories")
    args = parser.parse_args(argv)
    procs, rounds = args.procs, args.rounds
    if procs < 2 or rounds < 1:
        parser.error("--procs must be at least 2 and --rounds at least 1")

    with tempfile.TemporaryDirectory(prefix="gitvault-notes-race-", dir=args.dir) as tmp:
        root = Path(tmp)

        repo_path = root / "plain.git"
        pygit2.init_repository(str(repo_path), bare=True)
        reports = run(pygit2_worker, (str(repo_path),), procs, rounds)
        counts = [git_notes(repo_path, f"refs/notes/race-{rnd}") for rnd in range(rounds)]
        raw_lost, raw_failed = tally("pygit2 Repository.create_note", counts, reports, procs)

        vaults = []
        for rnd in range(rounds):
            path = root / f"vault-{rnd}.git"
            Vault.init(path)
            subprocess.run(
                ["git", "config", "-f", str(path / "config"), "gitvault.fsync", "false"], check=True
            )
            vaults.append(str(path))
        reports = run(gitvault_worker, (vaults,), procs, rounds)
        counts = [git_notes(Path(v), "refs/notes/leases") for v in vaults]
        gv_lost, gv_failed = tally("gitvault lease acquire", counts, reports, procs)

    print(f"\npygit2 create_note: lost = {raw_lost} (and {raw_failed} failed with an error)")
    print(f"gitvault leases:    lost = {gv_lost} (and {gv_failed} failed with an error)")
    return 1 if gv_lost or gv_failed else 0


if __name__ == "__main__":
    sys.exit(main())
