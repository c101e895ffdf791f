#!/usr/bin/env python3
"""Server-side render time of the review page on a long history (issue 18's target: < 300 ms).

    python bench/web.py [--commits 10000] [--items 10000] [--runs 7] [--dir TMPDIR]

The vault is the one bench/history.py builds (fsync off; the first 20 commits through the
library, the rest written directly with the same objects and trailers, then ``git gc``): a
``tasks`` key of ``--items`` records and ``--commits`` commits, nine in ten changing one task's
status. Each page is requested in-process through Starlette's test client (no network), and
the time is the app's own, read from the ``Server-Timing`` header the app sets (the request's
wall time is kept too). Median of ``--runs`` runs after one warm-up request per page (the
first request of a process pays for Jinja compiling the template).

A Markdown table goes to stdout, the samples to ``bench/results/web.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
import history as hb  # noqa: E402  (bench/history.py builds the vault)

from gitvault.web.app import Settings, wrapped  # noqa: E402
from gitvault.web.security import Guard  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "web.json"
TARGET_MS = 300.0


def pages(commits: int) -> list[tuple[str, str]]:
    middle = time.strftime("%Y-%m-%dT%H:%M:%S",
                           time.gmtime(hb.START + hb.STEP_S * (commits // 2)))
    return [
        ("timeline, page 1 (50 commits)", "/timeline"),
        ("timeline, page 20", "/timeline?page=20"),
        ("timeline, filtered by agent", "/timeline?agent=bench"),
        ("timeline, filtered by source and time range",
         f"/timeline?source=bench&since={middle}&until={middle[:-2]}59"),
        ("timeline, filtered by pointer (one task)", f"/timeline?path={hb.WATCH}"),
        ("document at main (first 100 of the items)", "/document"),
        ("document, /tasks items 5000-5099", "/document?path=/tasks&offset=5000"),
        ("document at a time halfway back", f"/document?at={middle}"),
        ("document, one task", f"/document?path={hb.WATCH}"),
    ]


def server_ms(headers: Any) -> float:
    timing = headers.get("server-timing", "")
    return float(timing.split("dur=", 1)[1]) if "dur=" in timing else float("nan")


def measure(client: TestClient, url: str, runs: int) -> dict[str, Any]:
    first = client.get(url)
    if first.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {first.status_code}: {first.text[:300]}")
    server: list[float] = []
    wall: list[float] = []
    for _ in range(runs):
        t = time.perf_counter()
        r = client.get(url)
        wall.append((time.perf_counter() - t) * 1000)
        server.append(server_ms(r.headers))
    return {"url": url, "server_ms": server, "wall_ms": wall, "bytes": len(first.content),
            "median_server_ms": statistics.median(server),
            "median_wall_ms": statistics.median(wall)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gitvault-web-bench-", dir=args.dir))
    try:
        t = time.perf_counter()
        built = hb.build(work, args.commits, args.items, "auto", 7, hb.log_stderr)
        build_s = time.perf_counter() - t
        settings = Settings(str(built.path), Guard("bench", "127.0.0.1", 80), "bench-reader",
                            read_only=True)
        client = TestClient(wrapped(settings), base_url="http://127.0.0.1:80")
        rows = []
        for label, url in pages(args.commits):
            m = measure(client, url, args.runs)
            m["label"] = label
            rows.append(m)
            hb.log_stderr(f"{label}: {m['median_server_ms']:.1f} ms")
        print(f"\nReview page on {args.commits:,} commits, a {args.items:,}-item key "
              f"(median of {args.runs}, server-side; target < {TARGET_MS:.0f} ms)\n")
        print("| page | server ms | request ms | HTML KB | target |")
        print("|---|---:|---:|---:|---|")
        for m in rows:
            ok = "pass" if m["median_server_ms"] < TARGET_MS else "FAIL"
            print(f"| {m['label']} | {m['median_server_ms']:.1f} | {m['median_wall_ms']:.1f} | "
                  f"{m['bytes'] / 1024:.0f} | {ok} |")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"commits": args.commits, "items": args.items,
                                       "runs": args.runs, "build_s": round(build_s, 1),
                                       "pages": rows}, indent=2) + "\n")
        return 0 if all(m["median_server_ms"] < TARGET_MS for m in rows) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
