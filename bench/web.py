#!/usr/bin/env python3
"""Server-side render time of the review page on a long history (issue 18's target: < 300 ms).

    python bench/web.py [--commits 10000] [--items 10000] [--runs 7] [--dir TMPDIR]
                        [--vault PATH]   (measure a vault built before)

The vault is bench/history.py's document and edits: a ``tasks`` key of ``--items`` records
(sharded, as gitvault stores a key that large) and ``--commits`` commits, nine in ten changing
one task's status, written directly with the objects and trailers a checkin writes (fsync off,
then ``git gc``). Each page is requested in-process through Starlette's test client (no
network), and the time is the app's own, read from the ``Server-Timing`` header the app
sets (the request's wall time is kept too). Median of ``--runs`` runs after one warm-up
request per page (its time is reported too: the app keeps one vault handle per worker thread,
so later requests find the commits they walk in libgit2's object cache).

A Markdown table goes to stdout, the samples to ``bench/results/web.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pygit2
from starlette.testclient import TestClient

from gitvault import Vault
from gitvault.core import codec
from gitvault.git.storage import Store
from gitvault.model import changes
from gitvault.model.provenance import checkin_trailers, message, subject_for
from gitvault.web.app import Settings, wrapped
from gitvault.web.security import Guard

sys.path.insert(0, str(Path(__file__).resolve().parent))
import history as hb  # bench/history.py: the document and its edits

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "web.json"
TARGET_MS = 300.0


class ShardedWriter(hb.DirectWriter):
    """bench/history.py's direct writer, but laying the large key out as a checkin would
    (sharded, through ``Store.build_tree``): its own writer puts a ``tasks.json`` blob beside
    the sharded ``tasks/`` the import made."""

    def __init__(self, path: Path, doc: hb.Doc, token: int) -> None:
        super().__init__(path, doc, token)
        self.store = Store.open(str(path))
        self.store.fsync = False
        self.repo = self.store.repo
        self.tree = self.store.commit(self.head).tree  # objects of this repository handle

    def commit(self, doc: hb.Doc, key: str, index: int, when: float) -> None:
        if key == "tasks":
            old = self.assembled
            self.chunks[index] = hb.item_chunk(doc["tasks"][index])
            data = self.assembled = self.assemble()
        else:
            old = self.store.blob(self.tree[key + codec.BLOB_SUFFIX].id)
            data = codec.dumps(doc[key])
        files: dict[str, bytes | pygit2.Oid] = dict(self.store.key_blobs(self.tree))
        files[key + codec.BLOB_SUFFIX] = data
        tree_id = self.store.build_tree(self.tree, files)
        msg = message(
            subject_for(hb.AGENT, "checkin", [key]),
            checkin_trailers(self.prov, self.token, str(self.head))
            + changes.trailers(changes.key_changes(key, old, data)),
        )
        author = pygit2.Signature(self.who.name, self.who.email, int(when), 0)
        committer = pygit2.Signature("gitvault", "gitvault@localhost", int(when), 0)
        self.head = self.repo.create_commit(None, author, committer, msg, tree_id, [self.head])
        self.tree = self.repo[tree_id].peel(pygit2.Tree)
        self.written += 1
        if self.written % hb.PACK_EVERY == 0:
            self.pack()


def build(work: Path, commits: int, items: int) -> Path:
    """A vault of ``commits`` commits on an imported document with ``items`` tasks."""
    path = work / "web.git"
    doc = hb.make_document(items, 7)
    legacy = work / "import"
    legacy.mkdir()
    for key, value in doc.items():
        (legacy / f"{key}{codec.BLOB_SUFFIX}").write_bytes(codec.dumps(value))
    clock = hb.Clock(hb.START)
    Vault.init(path, import_dir=legacy, clock=clock)
    shutil.rmtree(legacy)
    hb.git(path, "config", "gitvault.fsync", "false")
    lease = Vault.open(path, clock=clock).checkout(hb.AGENT, hb.TTL).lease
    editor = hb.Editor(doc, commits, random.Random(8))
    writer = ShardedWriter(path, doc, lease.token)
    t = time.perf_counter()
    for i in range(1, commits + 1):
        key, index = editor.edit(i)
        writer.commit(doc, key, index, hb.START + hb.STEP_S * i)
        if i % 2000 == 0:
            hb.log_stderr(f"{i} commits written in {time.perf_counter() - t:.0f} s")
    writer.publish(doc)
    if Vault.open(path).read() != doc:
        raise AssertionError("main does not hold the document the builder made")
    hb.git(path, "gc", "--quiet")
    return path


def pages(commits: int) -> list[tuple[str, str]]:
    middle = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(hb.START + hb.STEP_S * (commits // 2)))
    return [
        ("timeline, page 1 (50 commits)", "/timeline"),
        ("timeline, page 20", "/timeline?page=20"),
        ("timeline, filtered by agent", "/timeline?agent=bench"),
        (
            "timeline, filtered by source and time range",
            f"/timeline?source=bench&since={middle}&until={middle[:-2]}59",
        ),
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
    first = client.get(url)  # the first request of this page: objects not yet cached
    if first.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {first.status_code}: {first.text[:300]}")
    server: list[float] = []
    wall: list[float] = []
    for _ in range(runs):
        t = time.perf_counter()
        r = client.get(url)
        wall.append((time.perf_counter() - t) * 1000)
        server.append(server_ms(r.headers))
    return {
        "url": url,
        "server_ms": server,
        "wall_ms": wall,
        "bytes": len(first.content),
        "first_server_ms": server_ms(first.headers),
        "median_server_ms": statistics.median(server),
        "median_wall_ms": statistics.median(wall),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--vault", default=None, help="measure this vault instead of building one")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gitvault-web-bench-", dir=args.dir))
    try:
        t = time.perf_counter()
        vault = Path(args.vault) if args.vault else build(work, args.commits, args.items)
        build_s = time.perf_counter() - t
        hb.log_stderr(f"built in {build_s:.0f} s")
        settings = Settings(
            str(vault), Guard("bench", "127.0.0.1", 80), "bench-reader", read_only=True
        )
        rows = []
        # one client for the run: one event loop and its worker threads, as in a server
        with TestClient(wrapped(settings), base_url="http://127.0.0.1:80") as client:
            for label, url in pages(args.commits):
                m = measure(client, url, args.runs)
                m["label"] = label
                rows.append(m)
                hb.log_stderr(f"{label}: {m['median_server_ms']:.1f} ms")
        print(
            f"\nReview page on {args.commits:,} commits, a {args.items:,}-item key "
            f"(median of {args.runs}, server-side; target < {TARGET_MS:.0f} ms)\n"
        )
        print("| page | server ms | first request ms | request ms | HTML KB | target |")
        print("|---|---:|---:|---:|---:|---|")
        for m in rows:
            ok = "pass" if m["median_server_ms"] < TARGET_MS else "FAIL"
            print(
                f"| {m['label']} | {m['median_server_ms']:.1f} | {m['first_server_ms']:.1f} | "
                f"{m['median_wall_ms']:.1f} | "
                f"{m['bytes'] / 1024:.0f} | {ok} |"
            )
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            json.dumps(
                {
                    "commits": args.commits,
                    "items": args.items,
                    "runs": args.runs,
                    "build_s": round(build_s, 1),
                    "pages": rows,
                },
                indent=2,
            )
            + "\n"
        )
        return 0 if all(m["median_server_ms"] < TARGET_MS for m in rows) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
