#!/usr/bin/env python3
"""How long one checkout + checkin cycle takes on a large document.

    python bench/cycle.py [--items 10000] [--runs 20] [--dir TMPDIR]

The document has one key, ``items``: a list of ``--items`` task objects. Each cycle checks the
document out, changes one item's status and checks it in, either in-process through the library
(:class:`gitvault.Vault`) or through the CLI (``gitvault checkout --out`` and ``gitvault
checkin``, two processes), each with fsync on (the default) and off (``gitvault.fsync=false``).
The time covers the whole cycle: checkout, the edit, checkin.

The *floor* is what the old file-based tool paid per checkin: the same document bytes written to
a temporary file, fsynced and renamed over the snapshot. Every figure is also given as a ratio to
it. A Markdown table goes to stdout, the raw samples to ``bench/results/cycle.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pygit2

from gitvault import Vault, __version__

RESULTS = Path(__file__).resolve().parent / "results" / "cycle.json"
STATUSES = ["todo", "doing", "review", "done"]
TAGS = ["backend", "frontend", "infra", "docs", "bug", "feature", "urgent", "later"]
AGENT = "bench-agent"


def make_document(n: int) -> dict[str, Any]:
    return {
        "items": [
            {
                "id": f"T-{i:05d}",
                "title": f"Task {i}: make component {i % 97} handle case {i % 13} correctly",
                "status": "todo",
                "priority": i % 5,
                "tags": [TAGS[i % len(TAGS)], TAGS[(i * 3 + 1) % len(TAGS)]],
            }
            for i in range(1, n + 1)
        ]
    }


def edit(doc: dict[str, Any], run: int) -> None:
    """Change the status of one item (a different one each run)."""
    items = doc["items"]
    item = items[(run * 7919) % len(items)]
    item["status"] = STATUSES[(STATUSES.index(item["status"]) + 1) % len(STATUSES)]


def canonical(doc: dict[str, Any]) -> bytes:
    """The bytes the old tool wrote: pretty-printed, sorted keys, trailing newline."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("gitvault")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gitvault"]


def make_vault(path: Path, doc: dict[str, Any], fsync: bool) -> None:
    """A vault whose main holds ``doc``, with fsync set as asked."""
    Vault.init(path)
    subprocess.run(
        [
            "git",
            "config",
            "-f",
            str(path / "config"),
            "gitvault.fsync",
            "true" if fsync else "false",
        ],
        check=True,
    )
    v = Vault.open(path)
    v.checkout("seed")
    v.checkin("seed", doc, "bench-seed", 1.0, "the benchmark document")
    v.release("seed")


def timed(cycle: Callable[[int], None], runs: int) -> list[float]:
    """Milliseconds per call of ``cycle(run)``; one untimed warm-up call first."""
    cycle(0)
    samples = []
    for run in range(1, runs + 1):
        t0 = time.perf_counter()
        cycle(run)
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def bench_floor(workdir: Path, doc: dict[str, Any], runs: int, fsync: bool) -> list[float]:
    target = workdir / "snapshot.json"
    target.write_bytes(canonical(doc))
    payloads = []
    for run in range(runs + 1):  # the bytes of each run's document, prepared untimed
        edit(doc, run)
        payloads.append(canonical(doc))

    def cycle(run: int) -> None:
        fd, tmp = tempfile.mkstemp(dir=workdir, prefix=".snapshot-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(payloads[run])
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, target)

    return timed(cycle, runs)


def bench_library(vault: Path, runs: int) -> list[float]:
    v = Vault.open(vault)

    def cycle(run: int) -> None:
        co = v.checkout(AGENT)
        doc = co.document
        edit(doc, run)
        result = v.checkin(AGENT, doc, "bench", 0.9, f"cycle {run}", lease=co.lease.token)
        assert result.commit is not None, "the cycle changed nothing"

    samples = timed(cycle, runs)
    v.release(AGENT)
    return samples


def bench_cli(vault: Path, workdir: Path, runs: int) -> list[float]:
    cli = [*cli_command(), "--vault", str(vault)]
    out, proposal = workdir / "checkout.json", workdir / "proposal.json"

    def run_cli(*args: str) -> None:
        r = subprocess.run([*cli, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"gitvault {args[0]} failed ({r.returncode}): {r.stderr.strip()}")

    def cycle(run: int) -> None:
        run_cli("checkout", AGENT, "--out", str(out))
        doc = json.loads(out.read_bytes())
        edit(doc, run)
        proposal.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        run_cli("checkin", AGENT, str(proposal), "bench", "0.9", f"cycle {run}")

    samples = timed(cycle, runs)
    run_cli("release", AGENT)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=10_000, help="items in the document")
    parser.add_argument("--runs", type=int, default=20, help="timed cycles per mode")
    parser.add_argument("--dir", default=None, help="where to make the scratch vaults")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    if args.items < 1 or args.runs < 1:
        parser.error("--items and --runs must be positive")

    doc = make_document(args.items)
    size = len(canonical(doc))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gitvault-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        plan: list[tuple[str, bool, Callable[[Path, Path], list[float]]]] = [
            (
                "floor: write+fsync+rename",
                True,
                lambda _v, w: bench_floor(w, make_document(args.items), args.runs, True),
            ),
            (
                "floor without fsync",
                False,
                lambda _v, w: bench_floor(w, make_document(args.items), args.runs, False),
            ),
            ("library, fsync on", True, lambda v, _w: bench_library(v, args.runs)),
            ("library, fsync off", False, lambda v, _w: bench_library(v, args.runs)),
            ("CLI, fsync on", True, lambda v, w: bench_cli(v, w, args.runs)),
            ("CLI, fsync off", False, lambda v, w: bench_cli(v, w, args.runs)),
        ]
        for i, (mode, fsync, fn) in enumerate(plan):
            work = root / f"mode-{i}"
            work.mkdir()
            vault = work / "vault.git"
            if not mode.startswith("floor"):
                make_vault(vault, doc, fsync)
            print(f"running {mode} ...", file=sys.stderr, flush=True)
            samples = fn(vault, work)
            rows.append(
                {
                    "mode": mode,
                    "fsync": fsync,
                    "median_ms": statistics.median(samples),
                    "p90_ms": percentile(samples, 90),
                    "runs": len(samples),
                    "samples_ms": [round(s, 3) for s in samples],
                }
            )

    floor = rows[0]["median_ms"]
    for row in rows:
        row["ratio_to_floor"] = row["median_ms"] / floor

    print(
        f"\none checkout+checkin cycle, {args.items} items "
        f"({size / 1e6:.2f} MB of pretty-printed JSON), {args.runs} runs per mode\n"
    )
    print("| mode | median ms | p90 ms | runs | ratio to floor |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['mode']} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | {row['runs']} "
            f"| {row['ratio_to_floor']:.1f} |"
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "cycle",
        "items": args.items,
        "document_bytes": size,
        "runs": args.runs,
        "floor": rows[0]["mode"],
        "gitvault": __version__,
        "pygit2": metadata.version("pygit2"),
        "libgit2": pygit2.LIBGIT2_VERSION,
        "python": platform.python_version(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
