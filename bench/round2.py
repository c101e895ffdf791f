"""Issue 19's targets measured alone, one scenario at a time, each against its alternative in
the same run (the full ``make bench`` takes ~10 minutes; these take one to three each).

    python bench/round2.py concurrency [--seconds 8]   # 8 shared agents vs the old design
    python bench/round2.py sessions [--seconds 8]      # the same, each agent keeping its lease
    python bench/round2.py queue                       # 8 exclusive writers x 20 with --wait
    python bench/round2.py cycle [--runs 15]           # default CLI cycle vs the old CLI
    python bench/round2.py floor [--runs 30]           # library checkin vs write+fsync+rename

Each prints a JSON object; ``--out FILE`` also writes it there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import queue_bench
import scenarios


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _old_rate(root: Path, items: int, runs: int) -> tuple[float, float]:
    """Checkins/s of the old design's in-process cycle (its global lease allows one at a
    time), and its CPU in ms per cycle (the set-up of its files included)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    s = scenarios.one_cycle_bench("old file-based", root / f"old-{items}", items, runs, True)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return 1000.0 / statistics.median(s["cycle"]), cpu * 1000 / len(s["cycle"])


def concurrency(root: Path, seconds: float, sessions: bool = False) -> dict[str, Any]:
    """Shared agents against the old design's one-at-a-time cycle; with ``sessions`` each agent
    keeps its lease and only checks in (one ref transaction per cycle instead of two)."""
    out: dict[str, Any] = {"sessions": sessions}
    for items, levels in ((1_000, (1, 8)), (10_000, (8,))):
        old, old_cpu = _old_rate(root, items, 10)
        rows = scenarios.concurrency(root, levels, seconds, items, _log, sessions)
        out[str(items)] = {
            "old_design_per_s": round(old, 1),
            "old_design_cpu_ms_per_cycle": round(old_cpu, 2),
            "rows": [
                {
                    "agents": r["agents"],
                    "per_s": round(r["throughput"], 1),
                    "lost": r["lost_updates"],
                    "strategies": r["strategies"],
                    "ratio_vs_old": round(r["throughput"] / old, 2),
                    "cpu_ms_per_checkin": r["cpu_ms_per_checkin"],
                    "sys_ms_per_checkin": r["sys_ms_per_checkin"],
                    "context_switches_per_checkin": r["context_switches_per_checkin"],
                }
                for r in rows
            ],
        }
    return out


def _default_cli(vault: Path, workdir: Path) -> scenarios.CliStore:
    """The gitvault CLI as a first-time user has it: nothing set, the daemon starts itself
    (on a socket of the benchmark's own, stopped afterwards)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GITVAULT_DAEMON", "CI")}
    env["GITVAULT_DAEMON_SOCKET"] = str(workdir / "d" / "daemon.sock")
    return scenarios.CliStore(
        "gitvault CLI (default)", [*scenarios.gitvault_cli(), "--vault", str(vault)], workdir, env
    )


def cycle(root: Path, runs: int) -> dict[str, Any]:
    """CLI checkout + edit + checkin cycles: the old CLI, gitvault cold (GITVAULT_DAEMON=0),
    and gitvault as installed (the first cycle starts the daemon; it is in the samples)."""
    out: dict[str, Any] = {}
    for items in (100, 10_000):
        row: dict[str, Any] = {}
        for impl in ("old file-based CLI", "gitvault CLI"):
            s = scenarios.one_cycle_bench(
                impl, root / f"cycle-{items}-{impl}".replace(" ", "-"), items, runs, True
            )
            row[impl + (" (cold, GITVAULT_DAEMON=0)" if impl == "gitvault CLI" else "")] = round(
                statistics.median(s["cycle"]), 1
            )
        work = root / f"cycle-{items}-default"
        work.mkdir()
        scenarios.make_vault(work / "vault.git", scenarios.make_document(items), True)
        store = _default_cli(work / "vault.git", work)
        try:
            s = scenarios.cycle_samples(store, runs)
        finally:
            assert store.env is not None
            st = scenarios.stop_daemon(store.env)
        row["gitvault CLI (default: self-started daemon)"] = round(statistics.median(s["cycle"]), 1)
        row["first timed cycle (after the warm-up that started the daemon)"] = round(
            s["cycle"][0], 1
        )
        row["daemon served"] = st.get("served")
        row["ratio default / old"] = round(
            row["gitvault CLI (default: self-started daemon)"] / row["old file-based CLI"], 2
        )
        out[str(items)] = row
    return out


def floor(root: Path, runs: int, rounds: int = 3) -> dict[str, Any]:
    """Library checkin vs the floor, in ``rounds`` alternating rounds per size (a fresh vault
    and folder each), medians over all samples: this VM's speed drifts by 2-4x within seconds,
    and one block of each would compare two different machines."""
    out: dict[str, Any] = {}
    for items in (100, 1_000, 10_000):
        lib: list[float] = []
        fl: list[float] = []
        for r in range(rounds):
            lib += scenarios.one_cycle_bench(
                "gitvault library", root / f"lib-{items}-{r}", items, runs, True
            )["checkin"]
            fl += scenarios.one_cycle_bench(
                "floor", root / f"floor-{items}-{r}", items, runs, True
            )["checkin"]
        a, b = statistics.median(lib), statistics.median(fl)
        out[str(items)] = {
            "library_checkin_ms": round(a, 2),
            "floor_ms": round(b, 2),
            "ratio": round(a / b, 1),
            "rounds": rounds,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("what", choices=["concurrency", "sessions", "queue", "cycle", "floor"])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    # cold rows must start Python every time (as run.py does); the default-CLI rows unset it
    os.environ["GITVAULT_DAEMON"] = "0"
    with tempfile.TemporaryDirectory(prefix="gitvault-round2-") as tmp:
        root = Path(tmp)
        if args.what in ("concurrency", "sessions"):
            res = concurrency(root, args.seconds, sessions=args.what == "sessions")
        elif args.what == "queue":
            res = queue_bench.exclusive_queue(root)
        elif args.what == "cycle":
            res = cycle(root, args.runs)
        else:
            res = floor(root, args.runs)
    res = {"what": args.what, "loadavg_end": list(os.getloadavg()), **res}
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
