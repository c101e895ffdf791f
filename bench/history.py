#!/usr/bin/env python3
"""How the history commands scale with the length of the history.

    python bench/history.py [--commits 1000,10000] [--items 10000] [--full]
                            [--builder auto|library|direct] [--dir TMPDIR] [--keep]

For each history length N (default 1,000 and 10,000; ``--full`` adds 100,000) a fresh vault
(``gitvault.fsync false``) is made whose root commit imports a document with a ``tasks`` list
of ``--items`` records ``{id, title, status, owner, priority}`` and three small keys
(``roadmap``, ``meta``, ``team``). Then N commits follow, one agent on one lease, each 60 s after
the previous one on a fake clock (so ``show --at`` is meaningful): nine in ten set the status
of one random task, every tenth changes ``/roadmap/focus`` or ``/meta/revision``. The watched
task ``T-00042`` is left alone except for one status change 10% into the history, so blaming
it walks 90% of the history and ``log --path`` has something to find.

How the commits are made (``--builder``):

- ``library``: ``vault.checkin("bench", doc, "bench", 0.5, "")`` on the same document object
  after one ``vault.checkout("bench", 86400)`` (renewed only when the fake clock would let the
  lease expire);
- ``direct``: the commit objects gitvault would write, straight through pygit2: one blob for
  the changed key (the ``tasks`` blob is re-assembled from cached per-item canonical bytes, and
  checked against ``codec.dumps`` at both ends), ``TreeBuilder``, ``create_commit`` with the
  library's own ``message``/``checkin_trailers``/``identity``; ``refs/heads/main`` moves once,
  at the end;
- ``auto`` (default): the first 20 commits through the library; if that pace projects past
  6 minutes for N, the rest are written directly.

The vault is then ``git gc``-ed (what ``gitvault gc`` does, and what checkins start on their
own past ``gitvault.gcLooseObjects``), and each operation runs through the library in a fresh
``Vault`` per run: median of 5 runs (3 if the first took over 2 s, 1 if over 20 s; at most 3
from 100,000 commits). An operation over 1 s, or growing clearly faster than the history
(ratio > 1.5x the commit ratio), is profiled once with cProfile at that length.

A Markdown table goes to stdout, everything (samples, build times, profiles) to
``bench/results/history.json``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import pygit2
from pygit2.enums import FileMode, Option

from gitvault import Vault, __version__
from gitvault import history as gv_history
from gitvault.core import codec
from gitvault.git.storage import MAIN
from gitvault.model import changes
from gitvault.model.provenance import Provenance, checkin_trailers, identity, message, subject_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "history.json"
AGENT = "bench"
SOURCE = "bench"
CONFIDENCE = 0.5
TTL = 86400
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC).timestamp()
STEP_S = 60  # fake seconds between two commits
CALIBRATE = 20  # library checkins timed before ``auto`` decides
LIBRARY_BUDGET_S = 360.0  # ``auto`` writes directly when the library would take longer
PACK_EVERY = 10_000  # direct writes: pack loose objects this often (keeps --full on disk)
TARGET_MS = 1000.0
TARGET_COMMITS = 10_000
SUPERLINEAR = 1.5  # growth above this times the commit ratio counts as super-linear
SLOW_FLOOR_MS = 50.0  # ... but only for operations slower than this at the larger length
WATCH_ID = "T-00042"
WATCH = f"/tasks/[id={WATCH_ID}]"
STATUSES = ["todo", "doing", "review", "blocked", "done"]
OWNERS = ["planner", "coder", "reviewer", "tester", "ops", "writer"]
VERBS = ["fix", "build", "ship", "test", "review", "plan", "document", "deploy", "refactor"]
THINGS = ["parser", "scheduler", "cache", "login page", "exporter", "CLI", "API", "index"]

Doc = dict[str, Any]
Func = tuple[str, int, str]
Log = Callable[[str], None]


def log_stderr(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- the document and its edits ----------------------------------------------------------------


def make_document(items: int, seed: int) -> Doc:
    rng = random.Random(seed)
    tasks = [
        {
            "id": f"T-{i:05d}",
            "title": f"{rng.choice(VERBS)} the {rng.choice(THINGS)} of component {i % 97}",
            "status": rng.choice(STATUSES),
            "owner": OWNERS[i % len(OWNERS)],
            "priority": rng.randint(0, 4),
        }
        for i in range(1, items + 1)
    ]
    return {
        "tasks": tasks,
        "roadmap": {
            "vision": "one shared memory for every agent",
            "quarter": "2026-Q1",
            "focus": "import the legacy memory",
            "milestones": ["M1 import", "M2 agents online", "M3 launch"],
        },
        "meta": {"schema": 1, "revision": 0, "owner": "planner"},
        "team": {"lead": "planner", "size": len(OWNERS)},
    }


@dataclass
class Editor:
    """Commit ``i``'s change to the document, in place; returns the key and task index."""

    doc: Doc
    commits: int
    rng: random.Random
    watch_index: int = field(init=False)
    watch_commit: int = field(init=False)

    def __post_init__(self) -> None:
        tasks = self.doc["tasks"]
        self.watch_index = next(i for i, t in enumerate(tasks) if t["id"] == WATCH_ID)
        self.watch_commit = max(1, self.commits // 10)

    def edit(self, i: int) -> tuple[str, int]:
        tasks = self.doc["tasks"]
        if i == self.watch_commit:
            index = self.watch_index
        elif i % 10 == 0:
            if (i // 10) % 2 == 0:
                self.doc["roadmap"]["focus"] = f"focus set by commit {i}"
                return "roadmap", -1
            self.doc["meta"]["revision"] = i
            return "meta", -1
        else:
            index = self.watch_index
            while index == self.watch_index:
                index = self.rng.randrange(len(tasks))
        task = tasks[index]
        task["status"] = self.rng.choice([s for s in STATUSES if s != task["status"]])
        return "tasks", index


class Clock:
    """A fake clock: the builder sets ``now`` before each commit."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- writing commits directly ------------------------------------------------------------------


def item_chunk(item: Any) -> bytes:
    """One array item as ``codec.dumps`` writes it inside the array (indented one level)."""
    return b"  " + codec.dumps(item)[:-1].replace(b"\n", b"\n  ")


class DirectWriter:
    """The commits a checkin would make, written with pygit2; main moves in :meth:`publish`."""

    def __init__(self, path: Path, doc: Doc, token: int) -> None:
        pygit2.option(Option.ENABLE_FSYNC_GITDIR, 0)
        self.path = path
        self.repo = pygit2.Repository(str(path))
        start = self.repo.references[MAIN].target
        assert isinstance(start, pygit2.Oid)
        self.start = self.head = start
        self.tree = self.repo[start].peel(pygit2.Commit).tree
        self.chunks = [item_chunk(x) for x in doc["tasks"]]
        self.assembled = self.assemble()
        if self.assembled != codec.dumps(doc["tasks"]):
            raise AssertionError("per-item assembly differs from codec.dumps")
        self.who = identity(AGENT)
        self.prov = Provenance(AGENT, SOURCE, CONFIDENCE, "").check()
        self.token = token
        self.written = 0

    def assemble(self) -> bytes:
        return b"[\n" + b",\n".join(self.chunks) + b"\n]\n"

    def commit(self, doc: Doc, key: str, index: int, when: float) -> None:
        if key == "tasks":
            old = self.assembled
            self.chunks[index] = item_chunk(doc["tasks"][index])
            data = self.assembled = self.assemble()
        else:
            old = self.repo[self.tree[key + codec.BLOB_SUFFIX].id].peel(pygit2.Blob).data
            data = codec.dumps(doc[key])
        tb = self.repo.TreeBuilder(self.tree)
        tb.insert(key + codec.BLOB_SUFFIX, self.repo.create_blob(data), FileMode.BLOB)
        tree_id = tb.write()
        changed = changes.key_changes(key, old, data)  # the Changed: lines a checkin writes
        msg = message(
            subject_for(AGENT, "checkin", [key]),
            checkin_trailers(self.prov, self.token, str(self.head)) + changes.trailers(changed),
        )
        author = pygit2.Signature(self.who.name, self.who.email, int(when), 0)
        committer = pygit2.Signature("gitvault", "gitvault@localhost", int(when), 0)
        self.head = self.repo.create_commit(None, author, committer, msg, tree_id, [self.head])
        self.tree = self.repo[tree_id].peel(pygit2.Tree)
        self.written += 1
        if self.written % PACK_EVERY == 0:
            self.pack()

    def pack(self) -> None:
        """Pack the loose objects so far (a temporary ref keeps them reachable for repack)."""
        self.repo.references.create("refs/bench/building", self.head, force=True)
        git(self.path, "repack", "-d", "-q")

    def publish(self, doc: Doc) -> None:
        if self.assemble() != codec.dumps(doc["tasks"]):
            raise AssertionError("per-item assembly drifted from codec.dumps")
        ref = self.repo.references[MAIN]
        if ref.target != self.start:
            raise RuntimeError("main moved while the history was being written")
        ref.set_target(self.head, f"bench/history.py: {self.written} commits written directly")
        if "refs/bench/building" in self.repo.references:
            self.repo.references.delete("refs/bench/building")


# -- building a vault --------------------------------------------------------------------------


def git(path: Path, *args: str) -> None:
    subprocess.run(
        ["git", "--git-dir", str(path), *args],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


def wait_for_gc(path: Path, timeout: float = 1800.0) -> None:
    """Let a ``git gc`` that a checkin started in the background finish."""
    deadline = time.monotonic() + timeout
    while (path / "gc.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.5)


def disk_bytes(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


@dataclass
class Built:
    path: Path
    commits: int
    library: int = 0
    direct: int = 0
    library_s: float = 0.0
    direct_s: float = 0.0
    build_s: float = 0.0
    gc_s: float = 0.0
    bytes_before_gc: int = 0
    bytes_after_gc: int = 0
    root: str = ""
    watch_commit: int = 0
    watch_id: str = ""  # the commit that last set the watched status
    lease_renewals: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "commits": self.commits,
            "via_library": self.library,
            "via_direct": self.direct,
            "library_s": round(self.library_s, 2),
            "direct_s": round(self.direct_s, 2),
            "library_ms_per_commit": round(self.library_s * 1000 / self.library, 2)
            if self.library
            else None,
            "direct_ms_per_commit": round(self.direct_s * 1000 / self.direct, 2)
            if self.direct
            else None,
            "build_s": round(self.build_s, 2),
            "gc_s": round(self.gc_s, 2),
            "bytes_before_gc": self.bytes_before_gc,
            "bytes_after_gc": self.bytes_after_gc,
            "root": self.root,
            "watch_commit": self.watch_commit,
            "lease_renewals": self.lease_renewals,
        }


def build(workdir: Path, commits: int, items: int, builder: str, seed: int, log: Log) -> Built:
    path = workdir / f"history-{commits}.git"
    doc = make_document(items, seed)
    legacy = workdir / f"import-{commits}"
    legacy.mkdir()
    for key, value in doc.items():
        (legacy / f"{key}{codec.BLOB_SUFFIX}").write_bytes(codec.dumps(value))
    clock = Clock(START)
    Vault.init(path, import_dir=legacy, clock=clock)
    shutil.rmtree(legacy)
    subprocess.run(
        ["git", "config", "-f", str(path / "config"), "gitvault.fsync", "false"], check=True
    )
    vault = Vault.open(path, clock=clock)
    out = Built(path, commits, root=str(vault.head()))
    lease = vault.checkout(AGENT, TTL).lease
    editor = Editor(doc, commits, random.Random(seed + 1))
    out.watch_commit = editor.watch_commit
    writer: DirectWriter | None = None
    t_start = time.perf_counter()
    for i in range(1, commits + 1):
        clock.now = START + STEP_S * i
        if writer is None and builder == "direct":
            writer = DirectWriter(path, doc, lease.token)
        if writer is None and builder == "auto" and out.library == CALIBRATE:
            projected = out.library_s / out.library * commits
            if projected > LIBRARY_BUDGET_S:
                log(
                    f"{commits} commits: the library takes {out.library_s / out.library * 1000:.0f}"
                    f" ms per checkin, {projected / 60:.1f} min in all; writing the other "
                    f"{commits - i + 1} commits directly"
                )
                writer = DirectWriter(path, doc, lease.token)
            else:
                log(
                    f"{commits} commits: the library takes "
                    f"{out.library_s / out.library * 1000:.0f} ms per checkin; keeping it"
                )
        key, index = editor.edit(i)
        t = time.perf_counter()
        if writer is not None:
            writer.commit(doc, key, index, clock.now)
            out.direct += 1
            out.direct_s += time.perf_counter() - t
        else:
            if not lease.live(clock.now + STEP_S):
                lease = vault.checkout(AGENT, TTL).lease
                out.lease_renewals += 1
            result = vault.checkin(AGENT, doc, SOURCE, CONFIDENCE, "")
            if result.commit is None or result.lease is None or result.merged:
                raise RuntimeError(f"checkin {i} did not fast-forward: {result.to_json()}")
            lease = result.lease
            out.library += 1
            out.library_s += time.perf_counter() - t
        if i % 1000 == 0 or i == commits:
            log(f"{commits} commits: {i} made in {time.perf_counter() - t_start:.0f} s")
    if writer is not None:
        writer.publish(doc)
    out.build_s = time.perf_counter() - t_start
    if Vault.open(path).read() != doc:
        raise AssertionError("main does not hold the document the builder made")
    wait_for_gc(path)
    out.bytes_before_gc = disk_bytes(path)
    t = time.perf_counter()
    git(path, "gc", "--quiet")
    out.gc_s = time.perf_counter() - t
    out.bytes_after_gc = disk_bytes(path)
    log(
        f"{commits} commits: built in {out.build_s:.0f} s ({out.library} library, {out.direct} "
        f"direct), gc {out.gc_s:.0f} s, {out.bytes_before_gc / 1e6:.0f} MB -> "
        f"{out.bytes_after_gc / 1e6:.0f} MB"
    )
    return out


# -- the operations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    name: str
    label: str
    run: Callable[[Vault], Any]
    expect: Callable[[Any], bool] | None = None  # checked on the first run's result


def operations(built: Built) -> list[Op]:
    """The operations in table order; the arguments depend on the history length."""
    n = built.commits
    middle = START + STEP_S * (n // 2)
    at = datetime.fromtimestamp(middle, UTC).isoformat()
    back = min(500, n)
    return [
        Op("log_path", f"log(path='{WATCH}/status')", lambda v: v.log(path=f"{WATCH}/status")),
        Op("log_limit", "log(limit=50)", lambda v: v.log(limit=50)),
        Op(
            "blame_leaf",
            f"blame('{WATCH}/status')",
            lambda v: v.blame(f"{WATCH}/status"),
            lambda r: len(r) == 1 and r[0].commit == built.watch_id,
        ),
        Op("blame_small", "blame('/roadmap')", lambda v: v.blame("/roadmap")),
        Op("show_at", "show(at=<middle commit's time>)", lambda v: v.show(at=at)),
        Op("diff_range", "diff(<root>, 'main')", lambda v: v.diff(built.root, "main")),
        Op(
            "show_rev_path",
            f"show(rev='main~{back}', path='{WATCH}')",
            lambda v: v.show(rev=f"main~{back}", path=WATCH),
        ),
    ]


MEASURE_ORDER = [
    "log_limit",
    "show_rev_path",
    "show_at",
    "blame_small",
    "diff_range",
    "blame_leaf",
    "log_path",
]


def check(built: Built) -> None:
    """The history is what the builder meant: ``--at`` finds the middle commit."""
    v = Vault.open(built.path)
    n = built.commits
    at = datetime.fromtimestamp(START + STEP_S * (n // 2), UTC).isoformat()
    found = gv_history.revision(v.store, None, at=at).id
    expected = v.store.resolve(f"main~{n - n // 2}").id
    if found != expected:
        raise AssertionError(f"show --at {at} found {found}, expected main~{n - n // 2}")
    built.watch_id = str(v.store.resolve(f"main~{n - built.watch_commit}").id)


def summarise(value: Any) -> str:
    if isinstance(value, gv_history.DiffResult):
        return f"{len(value.patch)} patch ops"
    if isinstance(value, list):
        return f"{len(value)} entries"
    if isinstance(value, dict):
        return f"{len(value)} keys"
    return repr(value)[:60]


def runs_after(first_ms: float, max_runs: int) -> int:
    wanted = 5 if first_ms < 2000 else 3 if first_ms < 20000 else 1
    return min(wanted, max_runs)


def measure(path: Path, op: Op, max_runs: int) -> dict[str, Any]:
    samples: list[float] = []
    result = ""
    while not samples or len(samples) < runs_after(samples[0], max_runs):
        vault = Vault.open(path)  # a fresh repository object per run, like a CLI call
        t = time.perf_counter()
        value = op.run(vault)
        samples.append((time.perf_counter() - t) * 1000)
        if len(samples) == 1 and op.expect is not None and not op.expect(value):
            raise AssertionError(f"{op.label} gave an unexpected result: {value!r:.300}")
        result = summarise(value)
        del value, vault
    return {
        "label": op.label,
        "median_ms": round(statistics.median(samples), 2),
        "runs": len(samples),
        "samples_ms": [round(s, 2) for s in samples],
        "result": result,
    }


# -- profiling ---------------------------------------------------------------------------------


def where(func: Func) -> str:
    file, line, name = func
    if file == "~":
        return name
    file = file.removeprefix(str(ROOT) + os.sep)
    if "site-packages" + os.sep in file:
        file = file.split("site-packages" + os.sep, 1)[1]
    return f"{file}:{line}({name})"


def hot_spots(raw: dict[Func, Any], top: int = 3) -> list[str]:
    """The functions with the most own time, each traced up its heaviest callers to the first
    frame in gitvault/history.py."""
    out = []
    history_file = os.path.join("gitvault", "history.py")
    own = sorted(raw.items(), key=lambda kv: float(kv[1][2]), reverse=True)[:top]
    for func, (_cc, nc, tt, _ct, _callers) in own:
        chain = [func]
        current = func
        while not current[0].endswith(history_file) and len(chain) < 15:
            callers = cast(dict[Func, Any], raw[current][4])
            if not callers:
                break
            current = max(callers, key=lambda c: float(callers[c][3]))
            if current in chain:
                break
            chain.append(current)
        route = " <- ".join(where(f) for f in chain)
        out.append(f"{float(tt):.2f} s own time in {nc} calls: {route}")
    return out


def profile(path: Path, op: Op, top: int = 10) -> dict[str, Any]:
    vault = Vault.open(path)
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    op.run(vault)
    prof.disable()
    wall = time.perf_counter() - t
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(top)
    text = buf.getvalue()
    text = text.replace(str(ROOT) + os.sep, "")
    marker = "site-packages" + os.sep
    text = "\n".join(
        line
        if marker not in line
        else line[: line.rfind(" ", 0, line.find(marker)) + 1]
        + line[line.find(marker) + len(marker) :]
        for line in text.splitlines()
    )
    raw = cast(dict[Func, Any], stats.__dict__["stats"])
    return {
        "wall_s_profiled": round(wall, 2),
        "top_cumulative": text.strip(),
        "hot_spots": hot_spots(raw),
    }


# -- the report --------------------------------------------------------------------------------


def fmt_ms(ms: float) -> str:
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def table(points: list[dict[str, Any]], ops: list[Op]) -> str:
    lengths = [p["commits"] for p in points]
    head = ["operation", *(f"{n:,} commits (ms)" for n in lengths)]
    pairs = list(itertools.pairwise(lengths))
    head += [f"growth {a:,}→{b:,}" for a, b in pairs]
    head.append(f"≤ 1 s at {TARGET_COMMITS:,}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for op in ops:
        cells = [f"`{op.label}`"]
        for p in points:
            m = p["ops"][op.name]
            cells.append(f"{fmt_ms(m['median_ms'])} (n={m['runs']})")
        for (a, b), (pa, pb) in zip(pairs, itertools.pairwise(points), strict=True):
            ratio = pb["ops"][op.name]["median_ms"] / pa["ops"][op.name]["median_ms"]
            flag = " super-linear" if superlinear(pa, pb, op.name) else ""
            cells.append(f"{ratio:.1f}x (commits {b / a:.0f}x){flag}")
        at = next((p for p in points if p["commits"] == TARGET_COMMITS), None)
        if at is None:
            cells.append("n/a")
        else:
            ok = at["ops"][op.name]["median_ms"] < TARGET_MS
            cells.append("pass" if ok else "**FAIL**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_table(points: list[dict[str, Any]]) -> str:
    lines = [
        "| commits | via library | via pygit2 | build (s) | library ms/commit | "
        "direct ms/commit | git gc (s) | size before → after gc (MB) | total for N (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        b = p["build"]
        lines.append(
            f"| {p['commits']:,} | {b['via_library']:,} | {b['via_direct']:,} | "
            f"{b['build_s']:,.0f} | {b['library_ms_per_commit'] or '-'} | "
            f"{b['direct_ms_per_commit'] or '-'} | {b['gc_s']:,.0f} | "
            f"{b['bytes_before_gc'] / 1e6:,.0f} → {b['bytes_after_gc'] / 1e6:,.0f} | "
            f"{p['total_s']:,.0f} |"
        )
    return "\n".join(lines)


def superlinear(a: dict[str, Any], b: dict[str, Any], name: str) -> bool:
    ma, mb = a["ops"][name]["median_ms"], b["ops"][name]["median_ms"]
    limit = SUPERLINEAR * b["commits"] / a["commits"]
    return bool(mb > SLOW_FLOOR_MS and ma > 0 and mb / ma > limit)


# -- main --------------------------------------------------------------------------------------


def parse_lengths(text: str) -> list[int]:
    try:
        values = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(
            f"--commits {text!r}: give comma-separated counts, e.g. 1000,10000"
        ) from None
    if not values or any(v < 10 for v in values):
        raise SystemExit("--commits: every history length must be at least 10")
    return sorted(set(values))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--commits",
        default="1000,10000",
        help="comma-separated history lengths (default 1000,10000)",
    )
    ap.add_argument("--items", type=int, default=10_000, help="tasks in the document")
    ap.add_argument("--full", action="store_true", help="also 100,000 commits")
    ap.add_argument("--builder", choices=["auto", "library", "direct"], default="auto")
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--dir", default=None, help="scratch directory (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the vaults")
    ap.add_argument("--out", default=str(RESULTS), help="JSON results file")
    args = ap.parse_args(argv)
    lengths = parse_lengths(args.commits)
    if args.full and 100_000 not in lengths:
        lengths.append(100_000)
    if args.items < 100:
        raise SystemExit("--items: at least 100 (the watched task is T-00042)")
    log = log_stderr
    workdir = Path(tempfile.mkdtemp(prefix="gitvault-history-", dir=args.dir))
    log(f"scratch vaults in {workdir}")
    points: list[dict[str, Any]] = []
    profiled: dict[str, list[dict[str, Any]]] = {}
    doc_bytes = len(codec.dumps(make_document(args.items, args.seed)["tasks"]))
    t_all = time.perf_counter()
    try:
        for n in lengths:
            t_n = time.perf_counter()
            built = build(workdir, n, args.items, args.builder, args.seed, log)
            check(built)
            ops = operations(built)
            by_name = {op.name: op for op in ops}
            point: dict[str, Any] = {"commits": n, "build": built.to_json(), "ops": {}}
            for name in MEASURE_ORDER:
                t = time.perf_counter()
                point["ops"][name] = measure(built.path, by_name[name], 3 if n >= 100_000 else 5)
                m = point["ops"][name]
                log(
                    f"{n} commits: {by_name[name].label}: {fmt_ms(m['median_ms'])} ms "
                    f"(n={m['runs']}, {m['result']}; {time.perf_counter() - t:.0f} s)"
                )
            point["ops"] = {op.name: point["ops"][op.name] for op in ops}
            prev = points[-1] if points else None
            for op in ops:
                reasons = []
                slow = point["ops"][op.name]["median_ms"] > TARGET_MS
                if slow and not any(p["reason"] == "over 1 s" for p in profiled.get(op.name, [])):
                    reasons.append("over 1 s")
                if prev is not None and superlinear(prev, point, op.name):
                    reasons.append("super-linear")
                if reasons:
                    log(f"{n} commits: profiling {op.label} ({', '.join(reasons)})")
                    prof = {
                        "commits": n,
                        "reason": " and ".join(reasons),
                        **profile(built.path, op),
                    }
                    profiled.setdefault(op.name, []).append(prof)
            point["total_s"] = round(time.perf_counter() - t_n, 1)
            points.append(point)
            log(f"{n} commits: done in {point['total_s']:.0f} s")
            if not args.keep:
                shutil.rmtree(built.path, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    ops = operations(Built(Path(), lengths[-1]))
    growth = {}
    for a, b in itertools.pairwise(points):
        growth[f"{a['commits']}->{b['commits']}"] = {
            op.name: {
                "ratio": round(b["ops"][op.name]["median_ms"] / a["ops"][op.name]["median_ms"], 2),
                "superlinear": superlinear(a, b, op.name),
            }
            for op in ops
        }
    at_target = next((p for p in points if p["commits"] == TARGET_COMMITS), None)
    target = (
        None
        if at_target is None
        else {op.name: at_target["ops"][op.name]["median_ms"] < TARGET_MS for op in ops}
    )
    report = {
        "benchmark": "history length",
        "gitvault": __version__,
        "pygit2": metadata.version("pygit2"),
        "libgit2": pygit2.LIBGIT2_VERSION,
        "jsonpatch": metadata.version("jsonpatch"),
        "python": platform.python_version(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_end": os.getloadavg(),
        },
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {
            "commits": lengths,
            "items": args.items,
            "builder": args.builder,
            "seed": args.seed,
        },
        "document": {
            "items": args.items,
            "tasks_blob_bytes": doc_bytes,
            "watched": WATCH,
            "commit_spacing_s": STEP_S,
        },
        "target": {
            "each_under_ms": TARGET_MS,
            "at_commits": TARGET_COMMITS,
            "pass": target,
            "all_pass": None if target is None else all(target.values()),
        },
        "points": points,
        "growth": growth,
        "profiles": profiled,
        "total_s": round(time.perf_counter() - t_all, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"## History length: {args.items:,} tasks ({doc_bytes / 1e6:.1f} MB `tasks` blob)\n")
    print(table(points, ops))
    verdict = "n/a" if target is None else ("pass" if all(target.values()) else "FAIL")
    print(
        f"\nTarget: each operation under 1 s at {TARGET_COMMITS:,} commits: **{verdict}**"
        f" (medians; n = runs)\n"
    )
    print("### How the history was built\n")
    print(build_table(points))
    for name, profs in profiled.items():
        for prof in profs:
            label = next(op.label for op in ops if op.name == name)
            print(
                f"\n### Profile: `{label}` at {prof['commits']:,} commits ({prof['reason']}; "
                f"{prof['wall_s_profiled']} s under the profiler)\n"
            )
            print("Hot spots (own time, traced to gitvault/history.py):\n")
            for line in prof["hot_spots"]:
                print(f"- {line}")
            print("\n```\n" + prof["top_cumulative"] + "\n```")
    print(f"\nResults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
