"""The measurements behind ``bench/run.py`` (issue 8), one function per scenario.

Every function returns plain JSON-able data; ``run.py`` collects it into ``results.json`` and
``summary.py`` turns it into tables and plots. Child processes (concurrent agents, peak RSS) are
started with the ``spawn`` method so that each one is a fresh interpreter.
"""

from __future__ import annotations

import cProfile
import io
import json
import math
import multiprocessing
import os
import pstats
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pygit2
from alternatives import (
    DEFAULT_TTL,
    Document,
    Floor,
    GitCliStore,
    MemoryStore,
    OldFileStore,
    SqliteStore,
    canonical,
)

from gitvault import Session, Vault
from gitvault.core import codec
from gitvault.errors import ConflictError, GitVaultError, LeaseError, VaultBusy

BENCH = Path(__file__).resolve().parent
ALT_SCRIPT = BENCH / "alternatives.py"
CTX = multiprocessing.get_context("spawn")
AGENT = "bench-agent"
STATUSES = ["todo", "doing", "review", "done"]
TAGS = ["backend", "frontend", "infra", "docs", "bug", "feature", "urgent", "later"]
Stats = dict[str, float]
Log = Callable[[str], None]


# -- the workload --
def make_document(n: int) -> Document:
    """``{"items": [n tasks], "meta": {...}}``: the document every scenario uses."""
    return {
        "items": [
            {
                "id": f"T-{i:06d}",
                "title": f"Task {i}: make component {i % 97} handle case {i % 13} correctly",
                "status": "todo",
                "priority": i % 5,
                "tags": [TAGS[i % len(TAGS)], TAGS[(i * 3 + 1) % len(TAGS)]],
            }
            for i in range(1, n + 1)
        ],
        "meta": {
            "name": "benchmark memory",
            "schema": 1,
            "items": n,
            "owners": ["planner", "coder", "reviewer"],
        },
    }


def edit(doc: Document, run: int) -> int:
    """Change the status of one item (a different one each run); returns its index."""
    items = doc["items"]
    i = (run * 7919) % len(items)
    status = items[i]["status"]
    items[i]["status"] = (
        STATUSES[(STATUSES.index(status) + 1) % len(STATUSES)] if status in STATUSES else "todo"
    )
    return i


def stats(samples: Sequence[float]) -> Stats:
    """Median, nearest-rank p90, mean, min, max of milliseconds."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p90": p90,
        "mean": statistics.fmean(ordered),
        "min": ordered[0],
        "max": ordered[-1],
    }


def gitvault_cli() -> list[str]:
    """The installed ``gitvault`` script when it is the daemon-aware client, else ``-m``.

    Cold runs set GITVAULT_DAEMON=0 (``run.py`` does so for the whole process), so a daemon a
    developer left running never serves them; daemon runs pass :func:`daemon_env`.
    """
    script = Path(sys.executable).with_name("gitvault")
    if script.exists() and "gitvault.console" in script.read_text(errors="replace"):
        return [str(script)]
    return [sys.executable, "-m", "gitvault"]


def run_cmd(
    cmd: Sequence[str], what: str = "", env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run(list(cmd), capture_output=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(
            f"{what or cmd[0]} failed ({r.returncode}): "
            f"{r.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return r


def make_vault(path: Path, doc: Document | None, fsync: bool) -> str:
    """A vault holding ``doc`` on main, fsync set as asked; returns main's commit."""
    v = Vault.init(path)
    v.config_set("fsync", "true" if fsync else "false")
    v = Vault.open(path)
    if doc is not None:
        v.checkout("seed")
        v.checkin("seed", doc, "bench-seed", 1.0, "the benchmark document")
        v.release("seed")
    head = v.head()
    assert head is not None
    return head


# -- adapters: gitvault (library, CLI) and the old tool's CLI, as MemoryStores --
class LibraryStore:
    """gitvault's library behind the common interface (checkin pins the checkout's token)."""

    name = "gitvault library"

    def __init__(self, path: Path) -> None:
        self.vault = Vault.open(path)
        self.tokens: dict[str, int] = {}

    def checkout(self, agent: str, ttl: int = DEFAULT_TTL) -> Document:
        co = self.vault.checkout(agent, ttl)
        self.tokens[agent] = co.lease.token
        return co.document

    def checkin(
        self, agent: str, doc: Mapping[str, Any], source: str, confidence: float, justification: str
    ) -> None:
        r = self.vault.checkin(
            agent, doc, source, confidence, justification, lease=self.tokens.get(agent)
        )
        if r.commit is None:
            raise RuntimeError("the checkin changed nothing")

    def release(self, agent: str) -> None:
        self.vault.release(agent)

    def close(self) -> None:
        pass


class CliStore:
    """A command line driven by files: ``checkout ... --out FILE``, ``checkin AGENT FILE ...``."""

    def __init__(
        self, name: str, prefix: Sequence[str], workdir: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name, self.prefix, self.workdir, self.env = name, list(prefix), workdir, env
        self.out, self.proposal = workdir / "checkout.json", workdir / "proposal.json"

    def checkout(self, agent: str, ttl: int = DEFAULT_TTL) -> Document:
        run_cmd(
            [*self.prefix, "checkout", agent, str(ttl), "--out", str(self.out)],
            f"{self.name} checkout",
            self.env,
        )
        doc: Document = json.loads(self.out.read_bytes())
        return doc

    def checkin(
        self, agent: str, doc: Mapping[str, Any], source: str, confidence: float, justification: str
    ) -> None:
        self.proposal.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        run_cmd(
            [
                *self.prefix,
                "checkin",
                agent,
                str(self.proposal),
                source,
                str(confidence),
                justification,
            ],
            f"{self.name} checkin",
            self.env,
        )

    def release(self, agent: str) -> None:
        run_cmd([*self.prefix, "release", agent], f"{self.name} release", self.env)

    def close(self) -> None:
        pass


def gitvault_cli_store(vault: Path, workdir: Path) -> CliStore:
    return CliStore("gitvault CLI", [*gitvault_cli(), "--vault", str(vault)], workdir)


# -- the resident daemon (`gitvault daemon start`), on a socket of the benchmark's own --
def daemon_env(sock: Path) -> dict[str, str]:
    """The environment of a command that the daemon on ``sock`` serves."""
    env = {**os.environ, "GITVAULT_DAEMON_SOCKET": str(sock)}
    env.pop("GITVAULT_DAEMON", None)
    return env


def start_daemon(sock: Path) -> dict[str, str]:
    """Start a daemon on ``sock`` (it must answer, fresh) and return :func:`daemon_env`."""
    env = daemon_env(sock)
    r = run_cmd([*gitvault_cli(), "daemon", "start", "--json"], "gitvault daemon start", env)
    if not json.loads(r.stdout).get("fresh"):
        raise RuntimeError(f"the daemon on {sock} runs other code than this benchmark")
    return env


def stop_daemon(env: Mapping[str, str]) -> dict[str, Any]:
    """Stop it; returns its last status (``served``: how many commands it ran)."""
    st = json.loads(run_cmd([*gitvault_cli(), "daemon", "status", "--json"], "status", env).stdout)
    run_cmd([*gitvault_cli(), "daemon", "stop"], "gitvault daemon stop", env)
    info: dict[str, Any] = st
    return info


class DaemonCliStore(CliStore):
    """The gitvault CLI with a daemon running: started with the store, stopped by ``close``."""

    def __init__(self, vault: Path, workdir: Path) -> None:
        env = start_daemon(workdir / "d" / "daemon.sock")
        super().__init__(DAEMON_CLI, [*gitvault_cli(), "--vault", str(vault)], workdir, env)

    def close(self) -> None:
        assert self.env is not None
        if stop_daemon(self.env).get("served", 0) == 0:
            raise RuntimeError("the daemon served none of the measured commands")


def old_cli_store(root: Path, workdir: Path, fsync: bool) -> CliStore:
    flags = [] if fsync else ["--no-fsync"]
    return CliStore(
        "old file-based CLI", [sys.executable, str(ALT_SCRIPT), str(root), *flags], workdir
    )


def seed(store: MemoryStore, doc: Document) -> None:
    store.checkout("seed")
    store.checkin("seed", doc, "bench-seed", 1.0, "the benchmark document")
    store.release("seed")


# -- (i) one agent's checkout + checkin cycle --
DAEMON_CLI = "gitvault CLI (daemon)"
IMPLEMENTATIONS = (
    "floor",
    "floor + JSON encode",
    "old file-based",
    "old file-based CLI",
    "git CLI plumbing",
    "SQLite",
    "gitvault library",
    "gitvault CLI",
    DAEMON_CLI,
)


def cycle_samples(store: MemoryStore, runs: int) -> dict[str, list[float]]:
    """``runs`` timed cycles (after one untimed warm-up): checkout, edit one item, checkin."""
    out: dict[str, list[float]] = {"cycle": [], "checkout": [], "checkin": []}
    for run in range(runs + 1):
        t0 = time.perf_counter()
        doc = store.checkout(AGENT)
        t1 = time.perf_counter()
        edit(doc, run)
        t2 = time.perf_counter()
        store.checkin(AGENT, doc, "bench", 0.9, f"cycle {run}")
        t3 = time.perf_counter()
        if run:
            out["checkout"].append((t1 - t0) * 1000)
            out["checkin"].append((t3 - t2) * 1000)
            out["cycle"].append((t3 - t0) * 1000)
    store.release(AGENT)
    return out


def floor_samples(
    workdir: Path, items: int, runs: int, fsync: bool, encode: bool
) -> dict[str, list[float]]:
    """The floor: the same document bytes written with write(+fsync)+rename.

    Without ``encode`` the bytes are prepared untimed (pure I/O); with it, the JSON encoding is
    timed too.
    """
    floor = Floor(workdir / "snapshot.json", fsync)
    doc = make_document(items)
    floor.write(canonical(doc))
    payloads, docs = [], []
    for run in range(runs + 1):
        edit(doc, run)
        if encode:
            docs.append(json.loads(json.dumps(doc)))
        else:
            payloads.append(canonical(doc))
    samples: list[float] = []
    for run in range(runs + 1):
        t0 = time.perf_counter()
        if encode:
            floor.checkin(AGENT, docs[run], "bench", 0.9, "")
        else:
            floor.write(payloads[run])
        if run:
            samples.append((time.perf_counter() - t0) * 1000)
    return {"cycle": samples, "checkout": [0.0] * runs, "checkin": samples}


def one_cycle_bench(
    impl: str, workdir: Path, items: int, runs: int, fsync: bool
) -> dict[str, list[float]]:
    workdir.mkdir(parents=True)
    if impl.startswith("floor"):
        return floor_samples(workdir, items, runs, fsync, encode=impl != "floor")
    doc = make_document(items)
    store: MemoryStore
    if impl == "old file-based":
        store = OldFileStore(workdir / "old", fsync)
        seed(store, doc)
    elif impl == "old file-based CLI":
        seed(OldFileStore(workdir / "old", fsync), doc)
        store = old_cli_store(workdir / "old", workdir, fsync)
    elif impl == "git CLI plumbing":
        store = GitCliStore(workdir / "plumbing.git", fsync)
        seed(store, doc)
    elif impl == "SQLite":
        store = SqliteStore(workdir / "versions.sqlite", fsync)
        seed(store, doc)
    elif impl == "gitvault library":
        make_vault(workdir / "vault.git", doc, fsync)
        store = LibraryStore(workdir / "vault.git")
    elif impl == "gitvault CLI":
        make_vault(workdir / "vault.git", doc, fsync)
        store = gitvault_cli_store(workdir / "vault.git", workdir)
    elif impl == DAEMON_CLI:
        make_vault(workdir / "vault.git", doc, fsync)
        store = DaemonCliStore(workdir / "vault.git", workdir)
    else:
        raise ValueError(impl)
    del doc
    try:
        return cycle_samples(store, runs)
    finally:
        store.close()


def cycles(
    root: Path, sizes: Sequence[int], runs_for: Callable[[int], int], log: Log
) -> list[dict[str, Any]]:
    rows = []
    for items in sizes:
        runs = runs_for(items)
        for fsync in (True, False):
            for impl in IMPLEMENTATIONS:
                log(f"cycle: {items} items, fsync {'on' if fsync else 'off'}, {impl} x{runs}")
                work = root / f"cycle-{items}-{int(fsync)}-{impl.replace(' ', '_')}"
                os.sync()  # start each block without the previous block's dirty pages
                t0 = time.perf_counter()
                s = one_cycle_bench(impl, work, items, runs, fsync)
                shutil.rmtree(work, ignore_errors=True)
                rows.append(
                    {
                        "impl": impl,
                        "items": items,
                        "fsync": fsync,
                        "runs": runs,
                        "cycle": stats(s["cycle"]),
                        "checkout": stats(s["checkout"]),
                        "checkin": stats(s["checkin"]),
                        "wall_s": round(time.perf_counter() - t0, 2),
                        "samples_ms": {k: [round(x, 3) for x in v] for k, v in s.items()},
                    }
                )
    return rows


# -- (ii) history length and (vi) repository size --
def disk_usage(path: Path) -> dict[str, Any]:
    """``du`` of the folder, and git's own count of loose and packed objects."""
    du = run_cmd(["du", "-sk", str(path)]).stdout.split()[0]
    apparent = run_cmd(["du", "-sk", "--apparent-size", str(path)]).stdout.split()[0]
    files = sum(len(f) for _, _, f in os.walk(path))
    out: dict[str, Any] = {"du_kib": int(du), "apparent_kib": int(apparent), "files": files}
    if (path / "objects").is_dir():
        counts = run_cmd(["git", "--git-dir", str(path), "count-objects", "-v"]).stdout.decode()
        for line in counts.splitlines():
            k, _, v = line.partition(":")
            if v.strip().isdigit():
                out[k.strip().replace("-", "_")] = int(v)
    return out


def count_commits(path: Path) -> int:
    repo = pygit2.Repository(str(path))
    head = repo.references["refs/heads/main"].target
    assert isinstance(head, pygit2.Oid)
    return sum(1 for _ in repo.walk(head))


def gc_running(path: Path) -> bool:
    """Is a ``git gc`` (gitvault's automatic, detached one) running on this vault? (Linux)"""
    if (path / "gc.pid").exists():
        return True
    target = str(path).encode()
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not pid.isdigit():
            continue
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if target in args and any(a in (b"gc", b"repack") for a in args):
            return True
    return False


def wait_for_gc(path: Path, timeout: float = 300) -> float:
    """Wait until no gc runs on ``path``; returns the seconds waited."""
    t0 = time.perf_counter()
    while gc_running(path) and time.perf_counter() - t0 < timeout:
        time.sleep(0.1)
    return time.perf_counter() - t0


def _measure_checkins(path: Path, fsync: bool, runs: int, start: int, into: dict[str, Any]) -> None:
    """Time ``runs`` checkout+checkin cycles (after one warm-up), adding to ``into``."""
    v = Vault.open(path)
    v.config_set("fsync", "true" if fsync else "false")
    store = LibraryStore(path)
    into["gc_wait_s"] = round(into.get("gc_wait_s", 0) + wait_for_gc(path), 2)
    os.sync()
    for run in range(runs + 1):
        t0 = time.perf_counter()
        doc = store.checkout(AGENT, 86400)
        t1 = time.perf_counter()
        edit(doc, start + run)
        t2 = time.perf_counter()
        store.checkin(AGENT, doc, "bench-history", 0.9, f"measure {run}")
        t3 = time.perf_counter()
        if run:
            into["checkout"].append((t1 - t0) * 1000)
            into["checkin"].append((t3 - t2) * 1000)
            into["samples_during_auto_gc"] += gc_running(path)
    store.close()


def interleaved(
    paths: Sequence[Path], runs: int, rounds: int, start: int
) -> list[dict[str, dict[str, Any]]]:
    """Checkin times on each vault, fsync on and off, measured in interleaved rounds.

    Measured one vault after the other, a slow minute of the machine (another job, a
    writeback) lands on one history length and reads as growth; round-robin over the vaults,
    each round starting at a different one, spreads it over all of them.
    """
    out: list[dict[str, dict[str, Any]]] = [
        {
            mode: {"checkout": [], "checkin": [], "samples_during_auto_gc": 0}
            for mode in ("fsync_on", "fsync_off")
        }
        for _ in paths
    ]
    per_round = max(1, runs // rounds)
    for r in range(rounds):
        for k in range(len(paths)):
            i = (k + r) % len(paths)
            for mode in ("fsync_on", "fsync_off"):
                for p in paths:  # a gc of another copy would share the CPUs and the flushes
                    out[i][mode]["gc_wait_s"] = round(
                        out[i][mode].get("gc_wait_s", 0) + wait_for_gc(p), 2
                    )
                _measure_checkins(paths[i], mode == "fsync_on", per_round, start, out[i][mode])
                start += per_round + 1
    for point in out:
        for mode, raw in point.items():
            point[mode] = {
                "checkout": stats(raw["checkout"]),
                "checkin": stats(raw["checkin"]),
                "gc_wait_s": raw.get("gc_wait_s", 0),
                "samples_during_auto_gc": raw["samples_during_auto_gc"],
            }
    return out


def _setting(v: Vault, name: str) -> Any:
    try:
        return v.config_get(name)
    except GitVaultError:
        return None  # a gitvault without that setting


def history(
    root: Path,
    milestones: Sequence[int],
    runs: int,
    size_at: int,
    items: int,
    status_runs: int,
    log: Log,
) -> dict[str, Any]:
    """Checkin time (fsync on and off) with 10 ... N commits of history on main.

    History is built through the library with fsync off and without new checkouts (the lease
    keeps standing on each new head). At ``size_at`` commits the vault's disk use is taken,
    then again after ``git gc``.
    """
    path = root / "history.git"
    snapshots: list[Path] = []  # the vault as it was at each milestone
    make_vault(path, make_document(items), fsync=False)
    commits = count_commits(path)
    builder = Vault.open(path)
    builder.checkout(AGENT, 86400)
    doc = builder.read()
    points: list[dict[str, Any]] = []
    size: dict[str, Any] = {}
    step = 0
    for m in milestones:
        t0 = time.perf_counter()
        built = 0
        while commits < m:
            step += 1
            edit(doc, step)
            builder.checkin(AGENT, doc, "bench-history", 0.5, f"history {step}")
            commits += 1
            built += 1
        build_s = time.perf_counter() - t0
        log(f"history: {commits} commits (built {built} in {build_s:.1f} s), measuring")
        waited = wait_for_gc(path)
        objects = disk_usage(path)
        if m == size_at:
            size = {
                "checkins": commits - 2,
                "commits": commits,
                "before_gc": objects,
                "gc_loose_objects_setting": _setting(builder, "gcLooseObjects"),
            }
        at = commits
        point: dict[str, Any] = {
            "milestone": m,
            "commits": at,
            "build_s": round(build_s, 2),
            "build_ms_per_checkin": round(build_s * 1000 / built, 3) if built else None,
            "waited_for_auto_gc_s": round(waited, 2),
            "objects": objects,
        }
        if m == milestones[-1]:
            snapshots.append(path)
        else:
            snapshots.append(root / f"history-{m}.git")
            shutil.copytree(path, snapshots[-1], symlinks=True)
        lib: list[float] = []
        cli: list[float] = []
        v = Vault.open(path)
        for _ in range(status_runs):
            t = time.perf_counter()
            v.status()
            lib.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            run_cmd([*gitvault_cli(), "--vault", str(path), "status"], "gitvault status")
            cli.append((time.perf_counter() - t) * 1000)
        point["status_library"], point["status_cli"] = stats(lib), stats(cli)
        points.append(point)
        if m == size_at:
            target = path
            if m != milestones[-1]:
                target = root / "size-copy.git"
                shutil.copytree(path, target, symlinks=True)
            wait_for_gc(path)
            t = time.perf_counter()
            run_cmd(["git", "--git-dir", str(target), "gc", "--quiet"], "git gc")
            size["gc_s"] = round(time.perf_counter() - t, 2)
            size["after_gc"] = disk_usage(target)
            if target != path:
                shutil.rmtree(target, ignore_errors=True)
    assert count_commits(path) == commits, (count_commits(path), commits)
    log(f"history: measuring checkins on {len(snapshots)} history lengths, interleaved")
    rounds = 4
    for point, measured in zip(points, interleaved(snapshots, runs, rounds, step), strict=True):
        point.update(measured)
    for snap in snapshots:
        if snap != path:
            shutil.rmtree(snap, ignore_errors=True)
    return {
        "items": items,
        "document_bytes": len(canonical(make_document(items))),
        "runs": runs,
        "points": points,
        "size": size,
    }


def alternative_sizes(root: Path, checkins: int, items: int, log: Log) -> list[dict[str, Any]]:
    """Disk use of the old tool and of SQLite after as many checkins (fsync off, to be quick)."""
    out = []
    for name in ("old file-based", "SQLite"):
        work = root / f"size-{name.replace(' ', '_')}"
        work.mkdir()
        target = work / ("old" if name.startswith("old") else "versions.sqlite")
        store: MemoryStore = (
            OldFileStore(target, fsync=False)
            if name.startswith("old")
            else SqliteStore(target, fsync=False)
        )
        doc = make_document(items)
        seed(store, doc)
        t0 = time.perf_counter()
        for n in range(checkins):
            d = store.checkout(AGENT, 86400)
            edit(d, n)
            store.checkin(AGENT, d, "bench-size", 0.5, f"size {n}")
        store.close()
        elapsed = time.perf_counter() - t0
        log(f"size: {name}, {checkins} checkins in {elapsed:.1f} s")
        out.append(
            {"impl": name, "checkins": checkins, "build_s": round(elapsed, 2), **disk_usage(work)}
        )
        shutil.rmtree(work, ignore_errors=True)
    return out


# -- (iii) concurrent agents --
class _Probe:
    """Counts, inside one agent process, what gitvault does not report: how many merge plans
    a checkin computed (one per attempt; more than one means main moved under it and the
    attempt was thrown away) and how often and how long ref-lock waits slept."""

    def __init__(self) -> None:
        self.plans = 0
        self.sleeps = 0
        self.slept = 0.0

    def install(self) -> None:
        from gitvault.engine import integrate
        from gitvault.git import storage

        real_plan = integrate.plan
        probe = self

        def plan(*args: Any, **kwargs: Any) -> Any:
            probe.plans += 1
            return real_plan(*args, **kwargs)

        class Clock:
            def __getattr__(self, name: str) -> Any:
                return getattr(time, name)

            @staticmethod
            def sleep(seconds: float) -> None:
                probe.sleeps += 1
                probe.slept += seconds
                time.sleep(seconds)

        setattr(integrate, "plan", plan)  # noqa: B010 - instrumenting this process only
        setattr(storage, "time", Clock())  # noqa: B010


def _agent(
    path: str,
    idx: int,
    agents: int,
    items: int,
    duration: float,
    barrier: Barrier,
    out: Queue[dict[str, Any]],
    sessions: bool = False,
) -> None:
    """One agent process: checkout, set the status of one of its own items, checkin; repeat.

    With ``sessions`` the agent keeps one lease (a :meth:`Vault.lease` session) and only checks
    in, one ref transaction per cycle instead of two."""
    v = Vault.open(path)
    agent = f"agent-{idx}"
    own = items // agents
    probe = _Probe()
    probe.install()
    acked: list[tuple[int, str]] = []
    errors: Counter[str] = Counter()
    strategies: Counter[str] = Counter()
    merged = 0
    latencies: list[float] = []
    session: Session | None = None
    barrier.wait()
    start = time.time()
    n = 0
    while time.time() < start + duration:
        n += 1
        item = idx + agents * (n % own)
        value = f"{agent}#{n}"
        t0 = time.perf_counter()
        try:
            if sessions:
                session = session or Session(v, v.checkout(agent, 600))
                session.doc["items"][item]["status"] = value
                r = session.commit("bench-concurrency", 0.5, f"write {n}")
            else:
                co = v.checkout(agent, 600)
                co.document["items"][item]["status"] = value
                r = v.checkin(
                    agent, co.document, "bench-concurrency", 0.5, f"write {n}", lease=co.lease.token
                )
        except ConflictError:
            errors["conflict"] += 1
            continue
        except VaultBusy:
            errors["busy"] += 1
            continue
        except LeaseError:
            errors["lease"] += 1
            session = None  # check out again
            continue
        except GitVaultError as e:
            errors[type(e).__name__] += 1
            continue
        latencies.append((time.perf_counter() - t0) * 1000)
        if r.commit is None:
            errors["noop"] += 1
            continue
        acked.append((item, value))
        merged += r.merged
        strategies.update(r.strategy.values())
    end = time.time()
    v.release(agent)
    out.put(
        {
            "agent": agent,
            "start": start,
            "end": end,
            "acked": acked,
            "merged": merged,
            "errors": dict(errors),
            "strategies": dict(strategies),
            "latencies": latencies,
            "plans": probe.plans,
            "lock_sleeps": probe.sleeps,
            "lock_sleep_s": probe.slept,
        }
    )


def _per(total: float, count: int, scale: float) -> float | None:
    return round(total * scale / count, 2) if count else None


def concurrency(
    root: Path,
    levels: Sequence[int],
    duration: float,
    items: int,
    log: Log,
    sessions: bool = False,
) -> list[dict[str, Any]]:
    rows = []
    for agents in levels:
        path = root / f"concurrency-{agents}.git"
        seed_commit = make_vault(path, make_document(items), fsync=True)
        os.sync()
        log(f"concurrency: {agents} agent(s) for {duration:g} s")
        barrier = CTX.Barrier(agents)
        results: Queue[dict[str, Any]] = CTX.Queue()
        used = resource.getrusage(resource.RUSAGE_CHILDREN)  # the agents', once joined
        procs = [
            CTX.Process(
                target=_agent,
                args=(str(path), i, agents, items, duration, barrier, results, sessions),
            )
            for i in range(agents)
        ]
        for p in procs:
            p.start()
        reports = []
        for _ in procs:
            try:
                reports.append(results.get(timeout=duration + 300))
            except queue.Empty:
                break
        for p in procs:
            p.join(timeout=60)
        if len(reports) != agents:
            raise RuntimeError(f"only {len(reports)} of {agents} agents reported")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # every acknowledged write must be in the final document (each agent has its own items)
        final = Vault.open(path).read()["items"]
        expected: dict[int, str] = {}
        for rep in reports:
            for item, value in rep["acked"]:
                expected[item] = value
        lost = sum(1 for item, value in expected.items() if final[item]["status"] != value)
        repo = pygit2.Repository(str(path))
        walker = repo.walk(repo.references["refs/heads/main"].target)
        walker.hide(pygit2.Oid(hex=seed_commit))
        landed = merges = 0
        for c in walker:
            if len(c.parents) > 1:
                merges += 1
            elif c.author.name.startswith("agent-"):
                landed += 1
        acked = sum(len(r["acked"]) for r in reports)
        elapsed = max(r["end"] for r in reports) - min(r["start"] for r in reports)
        errors: Counter[str] = Counter()
        strategies: Counter[str] = Counter()
        for rep in reports:
            errors.update(rep["errors"])
            strategies.update(rep["strategies"])
        rows.append(
            {
                "agents": agents,
                "duration_s": round(elapsed, 3),
                "items": items,
                "checkins": acked,
                "throughput": acked / elapsed if elapsed else 0.0,
                "merged": sum(r["merged"] for r in reports),
                "merge_commits": merges,
                "landed_commits": landed,
                "conflicts": errors.get("conflict", 0),
                "busy": errors.get("busy", 0),
                "lease_errors": errors.get("lease", 0),
                "other_errors": {
                    k: v for k, v in errors.items() if k not in ("conflict", "busy", "lease")
                },
                "retries": sum(errors.values()),
                "strategies": dict(strategies),
                "lost_updates": lost,
                "latency": stats([x for r in reports for x in r["latencies"]]),
                "attempts": sum(r["plans"] for r in reports),
                "lock_sleeps": sum(r["lock_sleeps"] for r in reports),
                "lock_sleep_s": round(sum(r["lock_sleep_s"] for r in reports), 3),
                "per_agent": {r["agent"]: len(r["acked"]) for r in reports},
                # CPU of all agents together, per acknowledged checkin: on two cores eight
                # agents use both, so this, not the writers' turn alone, bounds the rate
                "cpu_ms_per_checkin": _per(
                    after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime, acked, 1000
                ),
                "sys_ms_per_checkin": _per(after.ru_stime - used.ru_stime, acked, 1000),
                "context_switches_per_checkin": _per(
                    after.ru_nvcsw + after.ru_nivcsw - used.ru_nvcsw - used.ru_nivcsw, acked, 1
                ),
            }
        )
        shutil.rmtree(path, ignore_errors=True)
    return rows


# -- (iv) start-up --
def startup(root: Path, runs: int, log: Log) -> list[dict[str, Any]]:
    vault = root / "startup.git"
    make_vault(vault, make_document(100), fsync=True)
    cli = gitvault_cli()
    commands = [
        ("python -c pass (interpreter alone)", [sys.executable, "-c", "pass"]),
        ('python -c "import gitvault.cli"', [sys.executable, "-c", "import gitvault.cli"]),
        ("gitvault --help", [*cli, "--help"]),
        ("gitvault --version", [*cli, "--version"]),
        ("gitvault status", [*cli, "--vault", str(vault), "status"]),
        ("gitvault status --json", [*cli, "--vault", str(vault), "status", "--json"]),
        (
            "old tool status (alternatives.py ROOT status)",
            [sys.executable, str(ALT_SCRIPT), str(root / "startup-old"), "status"],
        ),
    ]
    rows = [startup_row(label, cmd, runs, log) for label, cmd in commands]
    env = start_daemon(root / "startup-daemon" / "daemon.sock")
    try:
        for label, cmd in commands[2:6]:
            rows.append(startup_row(f"{label} (daemon)", cmd, runs, log, env))
    finally:
        if stop_daemon(env).get("served", 0) == 0:
            raise RuntimeError("the daemon served none of the start-up commands")
    return rows


def startup_row(
    label: str, cmd: Sequence[str], runs: int, log: Log, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    log(f"startup: {label}")
    samples = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        run_cmd(cmd, label, env)
        if i:
            samples.append((time.perf_counter() - t0) * 1000)
    return {"command": label, **stats(samples)}


# -- (v) peak RSS --
# A fresh process's ru_maxrss on Linux starts at the RSS of the process that forked it (the
# high-water mark survives exec), so each measured command is started by this tiny launcher
# (``python -S``, a few MiB) with posix_spawn and the launcher reports RUSAGE_CHILDREN.
LAUNCHER = """
import os, resource, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status = os.waitpid(pid, 0)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def maxrss_kib(cmd: Sequence[str], what: str) -> int:
    """Peak RSS (KiB) of ``cmd`` (an absolute executable path first), via getrusage."""
    r = run_cmd([sys.executable, "-S", "-c", LAUNCHER, *cmd], what)
    return int(r.stdout.decode().split()[-1])


def rss_work(kind: str, path: str) -> None:
    """In a fresh process: one checkout, a one-item edit and a checkin (``python -c`` entry)."""
    agent = "rss-agent"
    if kind == "baseline":
        Vault.open(path).status()
        return
    store: MemoryStore = (
        LibraryStore(Path(path))
        if kind == "gitvault library"
        else OldFileStore(path)
        if kind == "old file-based"
        else SqliteStore(path)
    )
    doc = store.checkout(agent)
    edit(doc, 1)
    store.checkin(agent, doc, "bench-rss", 0.9, "rss")
    store.release(agent)


def peak_rss(root: Path, vault: Path, items: int, log: Log) -> dict[str, Any]:
    doc = make_document(items)
    old, sqlite = root / "rss-old", root / "rss.sqlite"
    seed(OldFileStore(old), doc)
    sq = SqliteStore(sqlite)
    seed(sq, doc)
    sq.close()
    del doc
    rows: list[dict[str, Any]] = []

    def add(kind: str, kib: int, measured: str) -> None:
        rows.append(
            {"kind": kind, "maxrss_kib": kib, "maxrss_mib": kib / 1024, "measured": measured}
        )

    add(
        "launcher alone (python -S, measurement floor)",
        maxrss_kib([sys.executable, "-S", "-c", "pass"], "launcher"),
        "python -S -c pass",
    )
    add(
        "python + import gitvault (no work)",
        maxrss_kib([sys.executable, "-c", "import gitvault"], "import"),
        "python -c",
    )
    for kind, path in (
        ("baseline", vault),
        ("gitvault library", vault),
        ("old file-based", old),
        ("SQLite", sqlite),
    ):
        log(f"rss: {kind}, {items:,} items")
        code = (
            f"import sys; sys.path.insert(0, {str(BENCH)!r}); import scenarios; "
            f"scenarios.rss_work({kind!r}, {str(path)!r})"
        )
        label = (
            "baseline: import + Vault.open + status()"
            if kind == "baseline"
            else f"{kind}: checkout + edit + checkin"
        )
        add(label, maxrss_kib([sys.executable, "-c", code], f"rss {kind}"), "one process")
    out, proposal = root / "rss-out.json", root / "rss-proposal.json"
    for kind, prefix in (
        ("gitvault CLI", [*gitvault_cli(), "--vault", str(vault)]),
        ("old file-based CLI", [sys.executable, str(ALT_SCRIPT), str(old)]),
    ):
        log(f"rss: {kind}, {items:,} items")
        co = maxrss_kib([*prefix, "checkout", "rss-cli", "--out", str(out)], f"{kind} checkout")
        doc = json.loads(out.read_bytes())
        edit(doc, 2)
        proposal.write_text(json.dumps(doc))
        del doc
        ci = maxrss_kib(
            [*prefix, "checkin", "rss-cli", str(proposal), "bench-rss", "0.9"], f"{kind} checkin"
        )
        add(f"{kind}: checkout process", co, "one process")
        add(f"{kind}: checkin process", ci, "one process")
    shutil.rmtree(old, ignore_errors=True)
    return {"items": items, "rows": rows}


# -- --patch: one value changed on the largest document --
def patch(
    root: Path, vault: Path, items: int, runs: int, cli_runs: int, log: Log
) -> dict[str, Any]:
    v = Vault.open(vault)
    v.checkout(AGENT, 3600)
    lib: list[float] = []
    log(f"patch: library checkin_patch, {items} items x{runs}")
    for run in range(runs + 1):
        i = (run * 7919) % items
        ops = [{"op": "replace", "path": f"/items/{i}/status", "value": f"patched-{run}"}]
        t0 = time.perf_counter()
        r = v.checkin_patch(AGENT, ops, "bench-patch", 0.9, f"patch {run}")
        if run:
            lib.append((time.perf_counter() - t0) * 1000)
        assert r.commit is not None
    log(f"patch: library full-document checkin, {items} items x{runs}")
    full: list[float] = []
    for run in range(runs + 1):
        co = v.checkout(AGENT, 3600)  # untimed: the full checkin starts from a checkout
        edit(co.document, run + 1)
        t0 = time.perf_counter()
        v.checkin(AGENT, co.document, "bench-patch", 0.9, f"full {run}", lease=co.lease.token)
        if run:
            full.append((time.perf_counter() - t0) * 1000)
    log(f"patch: CLI checkin --patch, {items} items x{cli_runs}")
    cli: list[float] = []
    patch_file = root / "patch.json"
    for run in range(cli_runs + 1):
        i = (run * 104729) % items
        patch_file.write_text(
            json.dumps([{"op": "replace", "path": f"/items/{i}/status", "value": f"cli-{run}"}])
        )
        t0 = time.perf_counter()
        run_cmd(
            [
                *gitvault_cli(),
                "--vault",
                str(vault),
                "checkin",
                AGENT,
                str(patch_file),
                "bench-patch",
                "0.9",
                "--patch",
            ],
            "gitvault checkin --patch",
        )
        if run:
            cli.append((time.perf_counter() - t0) * 1000)
    v.release(AGENT)
    return {
        "items": items,
        "library_patch": stats(lib),
        "library_full_checkin": stats(full),
        "cli_patch": stats(cli),
        "samples_ms": {"library_patch": lib, "library_full_checkin": full, "cli_patch": cli},
    }


# -- the profile --
def profile_checkin(vault: Path, items: int, runs: int, top: int = 15) -> str:
    """cProfile of ``Vault.checkin`` (and separately ``checkout``) on a one-item change."""
    v = Vault.open(vault)
    prof_in, prof_out = cProfile.Profile(), cProfile.Profile()
    wall_in, wall_out = [], []
    for run in range(runs):
        t0 = time.perf_counter()
        prof_out.enable()
        co = v.checkout(AGENT)
        prof_out.disable()
        wall_out.append((time.perf_counter() - t0) * 1000)
        edit(co.document, run + 11)
        t0 = time.perf_counter()
        prof_in.enable()
        v.checkin(AGENT, co.document, "bench-profile", 0.9, f"profile {run}", lease=co.lease.token)
        prof_in.disable()
        wall_in.append((time.perf_counter() - t0) * 1000)
    # the same calls without the profiler, and the phases that dominate them
    plain: dict[str, list[float]] = {
        "checkout": [],
        "checkin": [],
        "read": [],
        "encode": [],
        "canonical": [],
    }
    for run in range(runs):
        t0 = time.perf_counter()
        co = v.checkout(AGENT)
        t1 = time.perf_counter()
        edit(co.document, run + 23)
        t2 = time.perf_counter()
        v.checkin(AGENT, co.document, "bench-profile", 0.9, f"plain {run}", lease=co.lease.token)
        t3 = time.perf_counter()
        v.read()
        t4 = time.perf_counter()
        codec.encode_document(co.document)
        t5 = time.perf_counter()
        json.dumps(co.document, sort_keys=True, ensure_ascii=False)
        t6 = time.perf_counter()
        for k, a, b in (
            ("checkout", t0, t1),
            ("checkin", t2, t3),
            ("read", t3, t4),
            ("encode", t4, t5),
            ("canonical", t5, t6),
        ):
            plain[k].append((b - a) * 1000)
    v.release(AGENT)
    m = {k: statistics.median(x) for k, x in plain.items()}
    buf = io.StringIO()
    head = (
        f"{items} items, fsync on, {runs} calls; wall time under the profiler "
        f"(inflated by it): checkin median {statistics.median(wall_in):.1f} ms, "
        f"checkout median {statistics.median(wall_out):.1f} ms"
    )
    buf.write(
        f"=== {items} items without the profiler (median of {runs}): "
        f"Vault.checkin {m['checkin']:.1f} ms, of which codec.encode_document (the "
        f"canonical bytes) alone takes {m['encode']:.1f} ms (for scale: stdlib json.dumps "
        f"without indent, its C encoder, {m['canonical']:.1f} ms). "
        f"Vault.checkout {m['checkout']:.1f} ms, of which Vault.read {m['read']:.1f} ms.\n\n"
    )
    buf.write(f"=== Vault.checkin: {head}\n--- top {top} by cumulative time\n")
    st = pstats.Stats(prof_in, stream=buf)
    st.strip_dirs().sort_stats(pstats.SortKey.CUMULATIVE).print_stats(top)
    buf.write(f"--- top {top} by own (total) time\n")
    st.sort_stats(pstats.SortKey.TIME).print_stats(top)
    buf.write(f"\n=== Vault.checkout ({items} items, same calls) --- top {top} by cumulative\n")
    pstats.Stats(prof_out, stream=buf).strip_dirs().sort_stats(
        pstats.SortKey.CUMULATIVE
    ).print_stats(top)
    return buf.getvalue()
