#!/usr/bin/env python3
"""gitvault's benchmark (issue 8): every scenario in one run, against the alternatives.

    python bench/run.py [--quick | --full] [--dir TMPDIR] [--out bench/results]

Writes ``summary.md`` (tables, issue 8's targets with pass/fail), ``results.json`` (all
samples), ``profile.txt`` (cProfile of the library checkin) and PNG plots to ``--out``.
``--quick`` takes about a minute, the default run a few minutes, ``--full`` adds the 100,000-item
cycle and 100,000 commits of history (tens of minutes). See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import pygit2
import queue_bench
import scenarios
import summary

from gitvault import __version__

T = TypeVar("T")


@dataclass(frozen=True)
class Mode:
    name: str
    sizes: tuple[int, ...]  # (i) document sizes
    runs: int  # (i) cycles per size up to 10,000 items
    big_runs: int  # (i) cycles at 100,000 items
    history: tuple[int, ...]  # (ii) commit counts
    history_runs: int
    size_at: int  # (vi) checkins before measuring the repository
    agents: tuple[int, ...]  # (iii)
    agent_seconds: float
    agent_items: int
    startup_runs: int  # (iv)
    big: int  # (v), --patch and the second profile: the largest document
    patch_runs: int
    profile: tuple[int, ...]

    def runs_for(self, items: int) -> int:
        if items >= 100_000:
            return self.big_runs
        return self.runs if items < 10_000 else max(3, self.runs // 2)


QUICK = Mode(
    "quick",
    (100, 10_000),
    5,
    3,
    (10, 1_000),
    5,
    1_000,
    (1, 2, 4, 8),
    1.5,
    1_000,
    5,
    10_000,
    3,
    (10_000,),
)
DEFAULT = Mode(
    "default",
    (100, 1_000, 10_000),
    20,
    5,
    (10, 1_000, 10_000),
    20,
    10_000,
    (1, 2, 4, 8),
    8.0,
    1_000,
    10,
    100_000,
    5,
    (10_000, 100_000),
)
FULL = Mode(
    "full",
    (100, 1_000, 10_000, 100_000),
    20,
    5,
    (10, 1_000, 10_000, 100_000),
    20,
    10_000,
    (1, 2, 4, 8),
    20.0,
    1_000,
    10,
    100_000,
    10,
    (10_000, 100_000),
)


def meta(mode: Mode, scratch: Path) -> dict[str, Any]:
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    fs = subprocess.run(["df", "-T", str(scratch)], capture_output=True, text=True).stdout
    fs_line = fs.splitlines()[-1].split() if fs else []
    return {
        "mode": mode.name,
        "gitvault": __version__,
        "pygit2": metadata.version("pygit2"),
        "libgit2": pygit2.LIBGIT2_VERSION,
        "git": git,
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "scratch_fs": f"{fs_line[1]} {fs_line[0]}" if len(fs_line) > 1 else "?",
        "command": "python bench/run.py" + ("" if mode.name == "default" else f" --{mode.name}"),
        "argv": shlex.join(sys.argv),
        "loadavg_start": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true", help="about a minute, smaller sizes")
    speed.add_argument("--full", action="store_true", help="adds 100,000 items and commits")
    parser.add_argument(
        "--dir",
        default=None,
        help="where to make scratch stores (default: "
        "the system temp dir; keep it on the disk you care about)",
    )
    parser.add_argument("--out", type=Path, default=summary.RESULTS, help="results folder")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL if args.full else DEFAULT
    t_start = time.perf_counter()
    # Cold CLI rows must start Python every time, even if a developer left `gitvault daemon`
    # running; the daemon rows start their own daemon and pass its socket explicitly.
    os.environ["GITVAULT_DAEMON"] = "0"

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {}
    took: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], T]) -> T:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            took[name] = round(time.perf_counter() - t0, 1)

    profiles: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gitvault-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        res["meta"] = meta(mode, root)
        log(f"{mode.name} run in {root}")
        res["startup"] = timed("start-up", lambda: scenarios.startup(root, mode.startup_runs, log))
        res["cycles"] = timed(
            "cycles", lambda: scenarios.cycles(root, mode.sizes, mode.runs_for, log)
        )
        res["history"] = timed(
            "history",
            lambda: scenarios.history(
                root, mode.history, mode.history_runs, mode.size_at, 100, 5, log
            ),
        )
        res["alternative_sizes"] = timed(
            "sizes",
            lambda: scenarios.alternative_sizes(root, res["history"]["size"]["checkins"], 100, log),
        )
        res["concurrency"] = timed(
            "concurrency",
            lambda: scenarios.concurrency(
                root, mode.agents, mode.agent_seconds, mode.agent_items, log
            ),
        )
        # the same at the largest size of scenario (i): a sharded key, merged chunk by chunk
        res["concurrency_large"] = timed(
            "concurrency-large",
            lambda: scenarios.concurrency(
                root, (1, 8), mode.agent_seconds, max(s for s in mode.sizes if s <= 10_000), log
            ),
        )
        log("exclusive writers queueing with --wait")
        res["exclusive_queue"] = timed("queue", lambda: queue_bench.exclusive_queue(root))
        log(f"building the {mode.big:,}-item vault")
        big = root / "big.git"
        scenarios.make_vault(big, scenarios.make_document(mode.big), fsync=True)
        res["rss"] = timed("rss", lambda: scenarios.peak_rss(root, big, mode.big, log))

        def profile() -> None:
            for items in mode.profile:
                log(f"profile: {items:,} items")
                vault = big
                if items != mode.big:
                    vault = root / f"profile-{items}.git"
                    scenarios.make_vault(vault, scenarios.make_document(items), fsync=True)
                profiles.append(
                    scenarios.profile_checkin(vault, items, 3 if items < 100_000 else 2)
                )

        timed("profile", profile)
        res["patch"] = timed(
            "patch", lambda: scenarios.patch(root, big, mode.big, mode.patch_runs, 3, log)
        )
    res["meta"]["scenario_seconds"] = took
    res["meta"]["seconds"] = time.perf_counter() - t_start
    res["meta"]["loadavg_end"] = list(os.getloadavg())
    (args.out / "profile.txt").write_text(
        f"cProfile of gitvault's library checkin ({res['meta']['when']}, "
        f"{mode.name} run; python bench/run.py)\n\n" + "\n\n".join(profiles),
        encoding="utf-8",
    )
    summary.write_all(res, args.out, log)
    failed = [t["target"] for t in res["targets"] if t["pass"] is False]
    log(f"done in {res['meta']['seconds']:.0f} s; {len(failed)} target(s) missed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
