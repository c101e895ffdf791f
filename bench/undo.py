"""Time `quarantine --dry-run` and `exposure` on a long history (library and CLI).

    python bench/undo.py [--commits 10000] [--items 300] [--runs 3] [--dir TMPDIR] [--keep DIR]

The history is written directly through pygit2 (fsync off) with the commits gitvault itself
writes: one key ``tasks`` of ITEMS items with ids, four agents taking turns at random, each
commit changing one field of one item, with its provenance trailers, ``Base:`` (the parent)
and the ``Changed:`` index. One agent in four (``mallory``) is quarantined; an early commit of
hers is the one ``exposure`` is asked about. Prints a JSON line per measurement and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import FileMode

from gitvault import Vault
from gitvault.core import codec
from gitvault.git.storage import MAIN
from gitvault.history.exposure import commits_by
from gitvault.model import changes
from gitvault.model.provenance import Provenance, checkin_trailers, identity, message, subject_for

AGENTS = ["alice", "bob", "carol", "mallory"]


def build(path: Path, commits: int, items: int, seed: int) -> tuple[Vault, str]:
    """A vault with ``commits`` checkins; returns it and an early commit of mallory's."""
    Vault.init(path)
    subprocess.run(
        ["git", "config", "-f", str(path / "config"), "gitvault.fsync", "false"], check=True
    )
    repo = pygit2.Repository(str(path))
    rng = random.Random(seed)
    tasks = [{"id": f"T-{i:05d}", "status": "todo", "owner": "", "n": 0} for i in range(items)]
    head = repo[repo.references[MAIN].target].peel(pygit2.Commit)
    old: bytes | None = None
    first_bad = ""
    now = int(time.time()) - commits
    for i in range(commits + 1):
        agent = "seed" if i == 0 else rng.choice(AGENTS)
        if i:
            item = tasks[rng.randrange(items)]
            item[rng.choice(["status", "owner", "n"])] = f"{agent} {i}"
        data = codec.dumps(tasks)
        tb = repo.TreeBuilder(head.tree)
        tb.insert("tasks.json", repo.create_blob(data), FileMode.BLOB)
        index = changes.key_changes("tasks", old, data)
        old = data
        prov = Provenance(agent, "bench", 0.5, f"step {i}")
        msg = message(
            subject_for(agent, "checkin", ["tasks"]),
            checkin_trailers(prov, i, str(head.id)) + changes.trailers(index),
        )
        who = identity(agent)
        sig = pygit2.Signature(who.name, who.email, now + i, 0)
        oid = repo.create_commit(None, sig, sig, msg, tb.write(), [head.id])
        head = repo[oid].peel(pygit2.Commit)
        if agent == "mallory" and not first_bad and i > commits // 10:
            first_bad = str(oid)
    repo.references.create(MAIN, head.id, force=True)
    subprocess.run(["git", "--git-dir", str(path), "gc", "-q"], check=True)
    return Vault.open(path), first_bad


CPU: list[float] = []  # the CPU milliseconds of the last timed() call (this process + children)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn: Any, runs: int) -> tuple[float, Any]:
    """Median wall milliseconds (and in CPU, the median CPU ms: the machine is shared, and
    CPU time is what does not depend on how many others run at the same time)."""
    samples, cpu, out = [], [], None
    for _ in range(runs):
        t, c = time.perf_counter(), _cpu()
        out = fn()
        samples.append((time.perf_counter() - t) * 1000)
        cpu.append((_cpu() - c) * 1000)
    CPU[:] = [statistics.median(cpu)]
    return statistics.median(samples), out


def cli(path: Path, *args: str) -> Any:
    env = {**os.environ, "GITVAULT_DAEMON": "0"}
    r = subprocess.run(
        [sys.executable, "-m", "gitvault", "--vault", str(path), *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    if r.returncode not in (0, 3):
        raise SystemExit(f"gitvault {' '.join(args)} failed: {r.stderr}")
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--keep", default=None, help="Build into (or reuse from) this folder.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(args.keep or tmp) / f"v-{args.commits}-{args.items}.git"
        t = time.perf_counter()
        if path.exists():  # --keep: measure again on the history built before
            vault = Vault.open(path)
            head = vault.store.ref(MAIN)
            assert head is not None
            early = commits_by(vault.store, head, "mallory")
            bad = str(early[len(early) * 9 // 10].id)
        else:
            vault, bad = build(path, args.commits, args.items, 17)
        print(f"built {args.commits} commits in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        results: dict[str, tuple[float, float]] = {}

        def record(name: str, ms: float, detail: str) -> None:
            results[name] = (ms, CPU[0])
            print(
                json.dumps(
                    {
                        "measure": name,
                        "ms": round(ms, 1),
                        "cpu_ms": round(CPU[0], 1),
                        "detail": detail,
                    }
                )
            )

        ms, r = timed(
            lambda: vault.quarantine("mallory", by="admin", source="bench", dry_run=True), args.runs
        )
        record(
            "library quarantine --dry-run",
            ms,
            f"{len(r.reverted)} commits undone, {len(r.conflicts)} conflicts",
        )
        ms, r = timed(lambda: vault.exposure(bad), args.runs)
        record("library exposure REV", ms, f"{len(r)} commits listed")
        ms, r = timed(lambda: vault.exposure(agent="mallory", since="2000-01-01"), args.runs)
        record("library exposure --agent", ms, f"{len(r)} commits listed")
        ms, r = timed(
            lambda: cli(path, "quarantine", "mallory", "--by", "admin", "--dry-run"), args.runs
        )
        record("CLI quarantine --dry-run", ms, f"{len(r['reverted'])} commits undone")
        ms, r = timed(lambda: cli(path, "exposure", bad), args.runs)
        record("CLI exposure REV", ms, f"{len(r)} commits listed")
        ms, r = timed(
            lambda: cli(path, "exposure", "--agent", "mallory", "--since", "2000-01-01"), args.runs
        )
        record("CLI exposure --agent", ms, f"{len(r)} commits listed")
        print(
            f"\n{args.commits} commits, {args.items} items (median of {args.runs}):",
            file=sys.stderr,
        )
        for name, (wall, cpu) in results.items():
            print(f"  {name:<32} {wall:>8.0f} ms wall {cpu:>8.0f} ms CPU", file=sys.stderr)


if __name__ == "__main__":
    main()
