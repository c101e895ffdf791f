"""Exclusive writers queueing with ``checkout --exclusive --wait`` (issue 19, item 3).

Eight writer processes x 20 rounds on one vault (fsync on): each round checks out exclusively
with ``wait``, adds 1 to ``counter``, checks in and releases. Per round we record how long the
writer waited for its grant (from calling checkout to the grant time its lease records) and
how long it then held the lease (from that grant until its release returned; a lease handed
over by the previous holder's release is held from that moment, even before the waiter has
noticed). The target: every round
finishes, 0 lost updates, and no wait longer than 1.5 x (writers - 1) x the median hold time
(a FIFO queue makes a writer wait for at most everyone else once).

    python bench/queue_bench.py [--writers 8] [--rounds 20] [--cli]

``--cli`` runs each round as three ``gitvault`` commands (checkout --wait, checkin,
release) instead of library calls, so hold times include process start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from gitvault import Vault


def writer(path: str, agent: str, rounds: int, cli: bool) -> list[dict[str, float]]:
    v = Vault.open(path)
    out: list[dict[str, float]] = []
    gv = [sys.executable, "-m", "gitvault", "--vault", path]
    for _ in range(rounds):
        t0 = time.time()
        if cli:
            r = subprocess.run(
                [*gv, "checkout", agent, "60", "--exclusive", "--wait", "600", "--json"],
                capture_output=True,
                text=True,
                check=True,
            )
            got = json.loads(r.stdout)
            doc, token = got["document"], got["lease"]["token"]
            granted = datetime.fromisoformat(got["lease"]["acquired"].replace("Z", "+00:00"))
            t1 = granted.timestamp()
        else:
            co = v.checkout(agent, 60, exclusive=True, wait=600)
            doc, token = co.document, co.lease.token
            t1 = co.lease.acquired  # the grant, as the lease records it (wall clock)
        doc["counter"] = int(doc.get("counter", 0)) + 1
        if cli:
            subprocess.run(
                [*gv, "checkin", agent, "-", "queue-bench", "0.5", "--lease", str(token)],
                input=json.dumps(doc),
                capture_output=True,
                text=True,
                check=True,
            )
            subprocess.run([*gv, "release", agent], capture_output=True, check=True)
        else:
            v.checkin(agent, doc, "queue-bench", 0.5, lease=token)
            v.release(agent)
        t2 = time.time()
        out.append({"wait_ms": (t1 - t0) * 1000, "hold_ms": (t2 - t1) * 1000, "round": len(out)})
    return out


def exclusive_queue(
    root: Path, writers: int = 8, rounds: int = 20, cli: bool = False
) -> dict[str, Any]:
    path = root / "queue.git"
    Vault.init(path)
    here = str(Path(__file__).resolve())
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, here, "--child", str(path), f"w{i}", str(rounds), "1" if cli else "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(writers)
    ]
    samples: list[dict[str, float]] = []
    finished = 0
    for p in procs:
        out, _ = p.communicate(timeout=1800)
        if p.returncode == 0:
            finished += 1
            samples += json.loads(out)
    elapsed = time.perf_counter() - t0
    counter = Vault.open(path).read().get("counter", 0)
    holds = [s["hold_ms"] for s in samples]
    waits = [s["wait_ms"] for s in samples]
    median_hold = statistics.median(holds) if holds else 0.0
    bound = 1.5 * (writers - 1) * median_hold
    return {
        "writers": writers,
        "rounds": rounds,
        "mode": "cli" if cli else "library",
        "rounds_finished": len(samples),
        "writers_finished": finished,
        "lost_updates": writers * rounds - int(counter),
        "elapsed_s": round(elapsed, 2),
        "median_hold_ms": round(median_hold, 1),
        "max_wait_ms": round(max(waits), 1),
        "median_wait_ms": round(statistics.median(waits), 1),
        "bound_ms": round(bound, 1),
        "p90_wait_ms": round(sorted(waits)[int(len(waits) * 0.9)], 1) if waits else 0.0,
        "slowest_waits": [
            [s["round"], round(s["wait_ms"])]
            for s in sorted(samples, key=lambda s: -s["wait_ms"])[:6]
        ],
        "loadavg": list(os.getloadavg()),
        "pass": len(samples) == writers * rounds
        and int(counter) == writers * rounds
        and max(waits) <= bound,
    }


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        path, agent, rounds, cli = sys.argv[2:6]
        print(json.dumps(writer(path, agent, int(rounds), cli == "1")))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cli", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("GITVAULT_DAEMON", "0")
    with tempfile.TemporaryDirectory(prefix="gitvault-queue-") as tmp:
        print(json.dumps(exclusive_queue(Path(tmp), args.writers, args.rounds, args.cli), indent=2))


if __name__ == "__main__":
    main()
