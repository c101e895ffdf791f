#!/usr/bin/env python3
"""`query` and `search` on a 100,000-item sharded key, against jq on the same data as one file.

    python bench/query.py [--items 100000] [--runs 5] [--dir TMPDIR] [--keep]

A fresh vault (``gitvault.fsync false``) gets one checkin through the library: a ``tasks``
key of ``--items`` records ``{id, title, status, owner, priority, tags}`` (about 19 MB
canonical, sharded) in which every 10,000th item is ``blocked`` (10 matches) and one title
holds the rare word ``zanzibar``, plus a small ``notes`` key. It is measured twice: as gitvault
wrote it (loose objects) and after ``git gc`` (packed; what a long-lived vault looks like).

Each command runs as its own process (cold, ``GITVAULT_DAEMON=0``), through a small wrapper
that reports the child's wall time and peak RSS (``resource.getrusage(RUSAGE_CHILDREN)``);
median of ``--runs``:

- ``gitvault query "tasks[?status=='blocked']"``: the 10 blocked items;
- ``gitvault search zanzibar``: the rare word;
- ``gitvault query "tasks[5]"``: reads exactly one chunk (checked), the reference for RSS;
- ``jq`` on ``gitvault export`` of the same revision (one 19 MB file) for the same two
  questions, and ``python -c pass`` for the interpreter's own start.

The in-process time of the library call (fresh ``Vault`` per run) is reported too, to separate
the work from Python's start-up. Targets (issue 20): under 300 ms and RSS under 2x that of
reading one chunk. The first read of a new chunk builds its word index entry
(gitvault.history.wordindex); the build is timed once, then the medians are with the index warm, and
once more in-process without it. A Markdown table goes to stdout and to
``bench/results/query.md``, all samples to ``bench/results/query.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))

from gitvault import Vault  # noqa: E402

WRAP = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "wall = time.perf_counter() - t\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(wall, rss, r.returncode)\n"
)


def build(path: Path, items: int) -> None:
    Vault.init(path)
    subprocess.run(
        ["git", "config", "-f", str(path / "config"), "gitvault.fsync", "false"], check=True
    )
    v = Vault.open(path)
    statuses = ["todo", "doing", "done"]
    tasks = [
        {
            "id": f"T-{i:06d}",
            "title": f"Task {i}: item number {i}",
            "status": "blocked" if i % 10_000 == 7 else statuses[i % 3],
            "owner": f"agent-{i % 7}",
            "priority": i % 5,
            "tags": ["core", "cli"],
        }
        for i in range(items)
    ]
    tasks[items * 7 // 9]["title"] = "Ship the zanzibar port"
    v.checkout("bench", 600)
    v.checkin(
        "bench",
        {"tasks": tasks, "notes": {"db": "we chose SQLite for the queue"}},
        "bench",
        1.0,
        "generated",
    )
    v.release("bench")


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one process running ``cmd``."""
    out = subprocess.run(
        [sys.executable, "-c", WRAP, *cmd], capture_output=True, text=True, env=env, check=True
    )
    wall, rss, code = out.stdout.split()
    if code != "0":
        raise SystemExit(f"{cmd} failed ({code})")
    return float(wall), int(rss)


def measure(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    samples = [run(cmd, env) for _ in range(runs)]
    return {
        "cmd": cmd,
        "ms": statistics.median(s[0] for s in samples) * 1000,
        "rss_mib": statistics.median(s[1] for s in samples) / 1024,
        "samples": samples,
    }


def in_process(path: Path, runs: int, rebuild: bool = True) -> dict[str, float]:
    """Library calls, a fresh Vault each; ``rebuild=False`` keeps the word index from being
    written (so every run reads every chunk)."""
    calls: list[tuple[str, Callable[[Vault], Any]]] = [
        ("query", lambda v: v.query("tasks[?status=='blocked']")),
        ("search", lambda v: v.search("zanzibar")),
        ("one chunk", lambda v: v.query("tasks[5]")),
    ]
    out = {}
    for name, fn in calls:
        times = []
        for _ in range(runs):
            if not rebuild:
                (path / "gitvault-cache").write_text("off")  # no folder: nothing is written
            t = time.perf_counter()
            fn(Vault.open(path))
            times.append(time.perf_counter() - t)
            if not rebuild:
                (path / "gitvault-cache").unlink()
        out[name] = statistics.median(times) * 1000
    return out


def with_daemon(gv: str, base: Path, vault: Path, runs: int) -> dict[str, float]:
    """Wall time of the same commands through `gitvault daemon` (a private socket)."""
    env = {
        **os.environ,
        "GITVAULT_DIR": str(vault),
        "GITVAULT_DAEMON_SOCKET": str(base / "d" / "daemon.sock"),
    }
    env.pop("GITVAULT_DAEMON", None)
    subprocess.run(
        [gv, "daemon", "start", "--idle", "120"], env=env, check=True, capture_output=True
    )
    try:
        return {
            name: measure(cmd, env, runs)["ms"]
            for name, cmd in (
                ("query", [gv, "query", "tasks[?status=='blocked']"]),
                ("search", [gv, "search", "zanzibar"]),
                ("one chunk", [gv, "query", "tasks[5]"]),
            )
        }
    finally:
        subprocess.run([gv, "daemon", "stop"], env=env, check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="gv-query-", dir=args.dir))
    vault = base / "vault.git"
    t = time.perf_counter()
    build(vault, args.items)
    print(f"built {args.items} items in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    t = time.perf_counter()
    Vault.open(vault).search("zanzibar")  # the first read builds the word index
    index_ms = (time.perf_counter() - t) * 1000
    gv = str(Path(sys.executable).with_name("gitvault"))
    env = {**os.environ, "GITVAULT_DAEMON": "0", "GITVAULT_DIR": str(vault)}
    one = Vault.open(vault).query("tasks[5]")
    assert one.chunks_read == 1, one
    assert len(Vault.open(vault).query("tasks[?status=='blocked']").values) == 10
    assert Vault.open(vault).search("zanzibar").total == 1
    export = base / "memory.json"
    export.write_text(Vault.open(vault).export(), encoding="utf-8")
    results: dict[str, Any] = {
        "items": args.items,
        "bytes": export.stat().st_size,
        "runs": args.runs,
        "layouts": {},
    }
    results["index build ms"] = index_ms
    for layout in ("loose", "packed"):
        if layout == "packed":
            subprocess.run(["git", "-C", str(vault), "gc", "-q"], check=True)
        print(f"measuring ({layout})", file=sys.stderr)
        results["layouts"][layout] = {
            "query": measure([gv, "query", "tasks[?status=='blocked']"], env, args.runs),
            "search": measure([gv, "search", "zanzibar"], env, args.runs),
            "one chunk": measure([gv, "query", "tasks[5]"], env, args.runs),
            "in-process ms": in_process(vault, args.runs),
        }
    results["daemon ms"] = with_daemon(gv, base, vault, args.runs)
    shutil.rmtree(vault / "gitvault-cache")
    results["in-process ms, no word index"] = in_process(vault, args.runs, rebuild=False)
    results["jq query"] = measure(
        ["jq", '[.tasks[] | select(.status == "blocked")]', str(export)], env, args.runs
    )
    results["jq search"] = measure(
        ["jq", '[.. | strings | select(test("zanzibar"; "i"))]', str(export)], env, args.runs
    )
    results["python -c pass"] = measure([sys.executable, "-c", "pass"], env, args.runs)
    table = report(results)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "query.md").write_text(table, encoding="utf-8")
    (RESULTS / "query.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    if not args.keep:
        shutil.rmtree(base)


def report(r: dict[str, Any]) -> str:
    lines = [
        f"`python bench/query.py`: {r['items']:,} items ({r['bytes'] / 1e6:.1f} MB as one "
        f"file), cold processes, medians of {r['runs']}",
        "",
        "| command | vault | wall | peak RSS | in-process | target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for layout, m in r["layouts"].items():
        chunk = m["one chunk"]["rss_mib"]
        for name in ("query", "search", "one chunk"):
            x = m[name]
            ok = (
                ""
                if name == "one chunk"
                else (
                    f"{'pass' if x['ms'] < 300 else 'FAIL'} time, "
                    f"{'pass' if x['rss_mib'] < 2 * chunk else 'FAIL'} RSS "
                    f"({x['rss_mib'] / chunk:.2f}x one chunk)"
                )
            )
            label = {
                "query": "`query \"tasks[?status=='blocked']\"` (10 matches)",
                "search": "`search zanzibar` (1 hit)",
                "one chunk": '`query "tasks[5]"` (reads one chunk)',
            }[name]
            lines.append(
                f"| {label} | {layout} | {x['ms']:.0f} ms | {x['rss_mib']:.0f} MiB | "
                f"{m['in-process ms'][name]:.0f} ms | {ok} |"
            )
    d, no = r["daemon ms"], r["in-process ms, no word index"]
    lines.append(
        f"| the same through `gitvault daemon` | packed | query {d['query']:.0f} ms, "
        f"search {d['search']:.0f} ms, one chunk {d['one chunk']:.0f} ms | | | |"
    )
    lines.append(
        f"| in-process without the word index | packed | | | query {no['query']:.0f} "
        f"ms, search {no['search']:.0f} ms | |"
    )
    lines.append(
        f"| building the word index (first read after the checkin) | loose | "
        f"{r['index build ms']:.0f} ms | | | |"
    )
    for name in ("jq query", "jq search", "python -c pass"):
        x = r[name]
        lines.append(
            f"| `{' '.join(x['cmd'][:2])[:60]}` | one file | {x['ms']:.0f} ms | "
            f"{x['rss_mib']:.0f} MiB | | |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
