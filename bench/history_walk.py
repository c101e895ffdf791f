#!/usr/bin/env python3
"""Recent history costs what it shows (issue 19): gitvault against ``git log`` on one vault.

    python bench/history_walk.py [--commits 100000] [--step 600] [--runs 7]
                                 [--cache /tmp/gitvault-bench-walk] [--rebuild]

The vault: ``Vault.init`` imports a document (``tasks``: 100 records, plus ``roadmap``,
``meta``, ``team``), then ``--commits`` commits follow, written straight into one pack file
in the vault's own format: the blob of the changed key as ``codec.dumps`` writes it, the
root tree, and the commit with the trailers a checkin writes (``Agent-Id`` ... ``Base``, and
the ``Changed:`` lines ``changes.key_changes`` computes). Nine in ten set a task's status; the
others change ``/roadmap/focus`` or ``/meta/revision``. Every 20th step is a race: agent ``b``
commits on the same base in the same second and a merge commit (``Merged-Commit:``) brings it
into main, so the walk meets merges and same-second ties. Commits are ``--step`` seconds
apart (600: 144 a day). The watched task ``T-00042`` changes once, 10% into the history.
``git index-pack`` indexes the pack, ``git commit-graph write --reachable`` writes what
``gitvault gc`` writes. The vault is cached under ``--cache`` (keyed by the parameters).

Measured, interleaved, median of ``--runs``: each operation through the library (a fresh
``Vault.open`` per run, included) and through the CLI (``gitvault ... --json``, a process),
and the ``git`` command that selects the same commits on the same vault. Prints a Markdown
table; writes ``bench/results/history_walk.json``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import random
import shutil
import statistics
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pygit2
from pygit2.enums import SortMode

from gitvault import Vault, history
from gitvault.core import codec
from gitvault.git.storage import MAIN
from gitvault.history import pathindex
from gitvault.model import changes
from gitvault.model.provenance import Provenance, checkin_trailers, identity, message, subject_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "history_walk.json"
GITVAULT = str(Path(sys.executable).with_name("gitvault"))
START = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
ITEMS = 100
WATCH_ID = "T-00042"
WATCH = f"/tasks/[id={WATCH_ID}]/status"
STATUSES = ["todo", "doing", "review", "blocked", "done"]
RACE_EVERY = 20
BUILD_VERSION = 1  # bump when the built history changes


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- writing a pack ----------------------------------------------------------------------------


class Pack:
    """Objects appended to one pack file, undeltified; ``git index-pack`` indexes it."""

    KINDS: ClassVar[dict[str, int]] = {"commit": 1, "tree": 2, "blob": 3}

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = path.open("wb")
        self.f.write(b"PACK" + struct.pack(">II", 2, 0))
        self.count = 0

    def add(self, kind: str, data: bytes) -> bytes:
        oid = hashlib.sha1(f"{kind} {len(data)}\0".encode() + data).digest()
        size = len(data)
        header = bytearray([(self.KINDS[kind] << 4) | (size & 15)])
        size >>= 4
        while size:
            header[-1] |= 0x80
            header.append(size & 0x7F)
            size >>= 7
        self.f.write(bytes(header) + zlib.compress(data, 1))
        self.count += 1
        return oid

    def finish(self) -> None:
        self.f.seek(8)
        self.f.write(struct.pack(">I", self.count))
        self.f.close()
        digest = hashlib.sha1()
        with self.path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        with self.path.open("ab") as f:
            f.write(digest.digest())


def tree_bytes(entries: dict[str, tuple[str, bytes]]) -> bytes:
    """A git tree object from name -> (mode, raw id), in git's order (trees sort as name/)."""

    def order(name: str) -> str:
        return name + "/" if entries[name][0] == "40000" else name

    return b"".join(
        f"{entries[n][0]} {n}\0".encode() + entries[n][1] for n in sorted(entries, key=order)
    )


def commit_bytes(tree: bytes, parents: list[bytes], author: str, when: int, msg: str) -> bytes:
    lines = [f"tree {tree.hex()}"] + [f"parent {p.hex()}" for p in parents]
    lines += [
        f"author {author} {when} +0000",
        f"committer gitvault <gitvault@localhost> {when} +0000",
    ]
    return ("\n".join(lines) + "\n\n" + msg).encode()


# -- building the vault ------------------------------------------------------------------------


def make_document(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    return {
        "tasks": [
            {
                "id": f"T-{i:05d}",
                "title": f"task {i}",
                "status": rng.choice(STATUSES),
                "owner": f"agent-{i % 6}",
                "priority": rng.randint(0, 4),
            }
            for i in range(1, ITEMS + 1)
        ],
        "roadmap": {"focus": "import", "quarter": "2024-Q1"},
        "meta": {"revision": 0, "schema": 1},
        "team": {"lead": "planner", "size": 6},
    }


@dataclass
class Built:
    path: Path
    commits: int
    step: int
    head_time: int
    watch_commit: str
    build_s: float


def build(path: Path, commits: int, step: int, seed: int = 19) -> Built:
    t0 = time.perf_counter()
    doc = make_document(seed)
    src = path.parent / "import"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for key, value in doc.items():
        (src / f"{key}{codec.BLOB_SUFFIX}").write_bytes(codec.dumps(value))
    Vault.init(path, import_dir=src, clock=lambda: float(START))
    shutil.rmtree(src)
    subprocess.run(
        ["git", "config", "-f", str(path / "config"), "gitvault.fsync", "false"], check=True
    )
    vault = Vault.open(path, clock=lambda: float(START))
    token = vault.checkout("a", 86400).lease.token
    repo = pygit2.Repository(str(path))
    root = repo.references[MAIN].peel(pygit2.Commit)
    entries = {
        e.name: ("40000" if e.type_str == "tree" else "100644", e.id.raw)
        for e in root.tree
        if e.name is not None
    }
    blobs = {k: codec.dumps(v) for k, v in doc.items()}
    pack_dir = path / "objects" / "pack"
    pack = Pack(pack_dir / "pack-bench.pack")
    rng = random.Random(seed + 1)
    head = root.id.raw
    who = {a: identity(a) for a in ("a", "b")}
    prov = {a: Provenance(a, "bench", 0.5, "").check() for a in ("a", "b")}
    watch_at = commits // 10
    watch_commit = b""

    def one(
        agent: str,
        parents: list[bytes],
        base: bytes,
        key: str,
        when: int,
        merged: bytes | None = None,
    ) -> bytes:
        old = blobs[key]
        new = blobs[key] = codec.dumps(doc[key])
        entries[key + codec.BLOB_SUFFIX] = ("100644", pack.add("blob", new))
        tree = pack.add("tree", tree_bytes(entries))
        trailers = checkin_trailers(prov[agent], token, base.hex())
        if merged is not None:
            trailers.append(("Merged-Commit", merged.hex()))
        trailers += changes.trailers(changes.key_changes(key, old, new))
        msg = message(subject_for(agent, "merge" if merged else "checkin", [key]), trailers)
        author = f"{who[agent].name} <{who[agent].email}>"
        return pack.add("commit", commit_bytes(tree, parents, author, when, msg))

    for i in range(1, commits + 1):
        when = START + step * i
        if i == watch_at:
            doc["tasks"][41]["status"] = (
                "review" if doc["tasks"][41]["status"] != "review" else "done"
            )
            head = watch_commit = one("a", [head], head, "tasks", when)
            continue
        if i % RACE_EVERY == 0 and i + 1 < commits:
            # b changed meta on the same base, in the same second; the merge brings it in
            base_entries = dict(entries)
            base_meta = blobs["meta"]
            doc["meta"]["revision"] += 1
            side_blob = codec.dumps(doc["meta"])
            side_entries = dict(base_entries)
            side_entries["meta" + codec.BLOB_SUFFIX] = ("100644", pack.add("blob", side_blob))
            side_tree = pack.add("tree", tree_bytes(side_entries))
            side_msg = message(
                subject_for("b", "checkin", ["meta"]),
                checkin_trailers(prov["b"], token, head.hex())
                + changes.trailers(changes.key_changes("meta", base_meta, side_blob)),
            )
            side = pack.add(
                "commit",
                commit_bytes(
                    side_tree, [head], f"{who['b'].name} <{who['b'].email}>", when, side_msg
                ),
            )
            t = rng.randrange(ITEMS)
            t = t if t != 41 else 40
            doc["tasks"][t]["status"] = STATUSES[
                (STATUSES.index(doc["tasks"][t]["status"]) + 1) % len(STATUSES)
            ]
            first = one("a", [head], head, "tasks", when)
            head = one("b", [first, side], head, "meta", when, merged=side)
            continue
        r = rng.random()
        if r < 0.9:
            t = rng.randrange(ITEMS)
            t = t if t != 41 else 40
            doc["tasks"][t]["status"] = STATUSES[
                (STATUSES.index(doc["tasks"][t]["status"]) + 1) % len(STATUSES)
            ]
            key = "tasks"
        elif r < 0.95:
            doc["roadmap"]["focus"] = f"focus {i}"
            key = "roadmap"
        else:
            doc["meta"]["revision"] += 1
            key = "meta"
        head = one("a", [head], head, key, when)
        if i % 20000 == 0:
            log(f"{i} commits written in {time.perf_counter() - t0:.0f} s")
    pack.finish()
    subprocess.run(
        ["git", "--git-dir", str(path), "index-pack", str(pack.path)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["git", "--git-dir", str(path), "update-ref", MAIN, head.hex(), str(root.id)], check=True
    )
    subprocess.run(
        ["git", "--git-dir", str(path), "commit-graph", "write", "--reachable"],
        check=True,
        capture_output=True,
    )
    index_path(path)
    if Vault.open(path).read() != doc:
        raise AssertionError("main does not hold the document the builder made")
    count = int(
        subprocess.run(
            ["git", "--git-dir", str(path), "rev-list", "--count", MAIN],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    head_time = pygit2.Repository(str(path)).references[MAIN].peel(pygit2.Commit).commit_time
    out = Built(path, count, step, head_time, watch_commit.hex(), time.perf_counter() - t0)
    log(f"built {count} commits in {out.build_s:.0f} s")
    return out


def index_path(path: Path) -> float:
    """The path index ``gitvault gc`` writes (its ``git gc`` repack is left out: minutes here)."""
    store = Vault.open(path).store
    head = store.resolve(MAIN).id
    found = pathindex.Index.load(store)
    if found is not None and found.tip == head:
        return 0.0
    t = time.perf_counter()
    pathindex.build(store, head)
    took = time.perf_counter() - t
    log(f"path index of {head} written in {took:.1f} s")
    return took


def cached(cache: Path, commits: int, step: int, rebuild: bool) -> Built:
    where = cache / f"v{BUILD_VERSION}-{commits}-{step}"
    meta = where / "built.json"
    if meta.exists() and not rebuild:
        d = json.loads(meta.read_text())
        return Built(
            Path(d["path"]),
            d["commits"],
            d["step"],
            d["head_time"],
            d["watch_commit"],
            d["build_s"],
        )
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    b = build(where / "vault.git", commits, step)
    meta.write_text(json.dumps({**b.__dict__, "path": str(b.path)}))
    return b


# -- measuring ---------------------------------------------------------------------------------


def run(args: list[str]) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


@dataclass
class Case:
    name: str
    library: Callable[[], Any]
    cli: list[str] | None
    git: list[str] | None
    target_ms: float | None = None  # absolute target for the library, when no git twin
    before: Callable[[], Any] | None = None  # what the library did until now (one sample)


def cases(b: Built) -> list[Case]:
    p = str(b.path)
    g = ["git", "--git-dir", p]
    fmt = "--format=%H%x00%P%x00%ct%x00%an%x00%B"
    at = b.head_time - 86400 // 2  # half a day back
    at_iso = datetime.fromtimestamp(at, UTC).isoformat()
    middle = b.head_time - b.step * (b.commits // 2)
    since = b.head_time - 86400
    since_iso = datetime.fromtimestamp(since, UTC).isoformat()
    cli = [GITVAULT, "--vault", p]

    def walk_all() -> pygit2.Walker:
        store = Vault.open(p).store
        return store.repo.walk(store.resolve(MAIN).id, SortMode.TOPOLOGICAL | SortMode.TIME)

    def old_at() -> Any:
        v = Vault.open(p)
        walker = v.store.repo.walk(v.store.resolve(MAIN).id, SortMode.TOPOLOGICAL)
        walker.simplify_first_parent()
        c = next(c for c in walker if c.commit_time <= at)
        return v.show(rev=str(c.id))

    def without_index(fn: Callable[[Vault], Any]) -> Callable[[], Any]:
        def run() -> Any:
            f = b.path / pathindex.FILE
            f.rename(f.with_suffix(".off"))
            try:
                return fn(Vault.open(p))
            finally:
                f.with_suffix(".off").rename(f)

        return run

    return [
        Case(
            "log -n 50",
            lambda: Vault.open(p).log(limit=50),
            [*cli, "log", "-n", "50", "--json"],
            [*g, "log", "-n", "50", fmt],
            before=lambda: [
                history.entry_of(Vault.open(p).store, c) for c in itertools.islice(walk_all(), 50)
            ],
        ),
        Case(
            "show --at (half a day back)",
            lambda: Vault.open(p).show(at=at_iso),
            [*cli, "show", "--at", at_iso, "--json"],
            [*g, "log", "-1", "--first-parent", f"--before={at}", fmt],
            before=old_at,
        ),
        Case(
            "show --at (middle of the history)",
            lambda: Vault.open(p).show(at=str(middle)),
            [*cli, "show", "--at", str(middle), "--json"],
            [*g, "log", "-1", "--first-parent", f"--before={middle}", fmt],
        ),
        Case(
            "log --since (1 day)",
            lambda: Vault.open(p).log(since=since_iso),
            [*cli, "log", "--since", since_iso, "--json"],
            [*g, "log", f"--since={since}", fmt],
            before=lambda: [
                history.entry_of(Vault.open(p).store, c)
                for c in walk_all()
                if c.commit_time >= since
            ],
        ),
        Case(
            "log --path (one leaf)",
            lambda: Vault.open(p).log(path=WATCH),
            [*cli, "log", "--path", WATCH, "--json"],
            None,
            300.0,
            without_index(lambda v: v.log(path=WATCH)),
        ),
        Case(
            "blame (one leaf)",
            lambda: Vault.open(p).blame(WATCH),
            [*cli, "blame", WATCH, "--json"],
            None,
            300.0,
            without_index(lambda v: v.blame(WATCH)),
        ),
    ]


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def check(b: Built) -> None:
    """The commits gitvault reports are the ones git selects."""
    v = Vault.open(b.path)
    ours = [e.commit for e in v.log(limit=50)]
    theirs = run(
        ["git", "--git-dir", str(b.path), "log", "-n", "50", "--topo-order", "--format=%H"]
    ).split()
    if set(ours) != set(theirs):
        raise AssertionError("log -n 50 and git log -n 50 selected different commits")
    since = b.head_time - 86400
    ours = [e.commit for e in v.log(since=str(since)) if not e.legacy]
    theirs = run(
        ["git", "--git-dir", str(b.path), "log", f"--since={since}", "--format=%H"]
    ).split()
    if set(ours) != set(theirs):
        raise AssertionError("log --since and git log --since selected different commits")
    at = b.head_time - 86400 // 2
    theirs_at = run(
        [
            "git",
            "--git-dir",
            str(b.path),
            "log",
            "-1",
            "--first-parent",
            f"--before={at}",
            "--format=%H",
        ]
    ).strip()
    found = str(history.revision(v.store, None, at=at).id)
    if found != theirs_at:
        raise AssertionError(f"show --at found {found}, git {theirs_at}")
    blamed = v.blame(WATCH)
    if [x.commit for x in blamed] != [b.watch_commit]:
        raise AssertionError("blame of the watched leaf did not find the commit that set it")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=100_000)
    ap.add_argument("--step", type=int, default=600)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/gitvault-bench-walk"))
    ap.add_argument("--rebuild", action="store_true")
    a = ap.parse_args()
    b = cached(a.cache, a.commits, a.step, a.rebuild)
    index_path(b.path)
    check(b)
    rows = []
    for case in cases(b):
        samples: dict[str, list[float]] = {"library": [], "cli": [], "git": []}
        for _ in range(a.runs):  # interleaved, so a slow spell hits all three alike
            samples["library"].append(timed(case.library))
            for kind, argv in (("cli", case.cli), ("git", case.git)):
                if argv is not None:
                    samples[kind].append(timed(functools.partial(run, argv)))
        med: dict[str, float] = {k: statistics.median(v) for k, v in samples.items() if v}
        if case.before is not None:
            med["before"] = timed(case.before)
        row: dict[str, Any] = {
            "case": case.name,
            **{f"{k}_ms": med.get(k) for k in (*samples, "before")},
            "samples": samples,
        }
        if "git" in med:
            row["library_ratio"] = med["library"] / med["git"]
            row["cli_ratio"] = med["cli"] / med["git"] if "cli" in med else None
            row["pass"] = row["library_ratio"] <= 3.0
        else:
            row["target_ms"] = case.target_ms
            row["pass"] = case.target_ms is not None and med["library"] <= case.target_ms
        rows.append(row)
        log(f"{case.name}: {json.dumps({k: round(v, 1) for k, v in med.items() if v})}")
    print(
        f"\n{b.commits:,} commits ({86400 // b.step} a day), median of {a.runs}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
    )
    print(
        "| operation | library | before (1 run) | CLI | git | library / git | CLI / git | target |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:

        def ms(v: float | None) -> str:
            return f"{v:.1f} ms" if v is not None else ""

        ratio = (
            (f"{r['library_ratio']:.1f}x", f"{r['cli_ratio']:.1f}x")
            if r.get("library_ratio")
            else ("", "")
        )
        target = "≤ 3x git" if r.get("library_ratio") else f"< {r['target_ms']:.0f} ms"
        print(
            f"| {r['case']} | {ms(r['library_ms'])} | {ms(r['before_ms'])} | {ms(r['cli_ms'])} "
            f"| {ms(r['git_ms'])} "
            f"| {ratio[0]} | {ratio[1]} | {target}: {'pass' if r['pass'] else 'FAIL'} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"commits": b.commits, "step_s": b.step, "build_s": b.build_s, "rows": rows}, indent=1
        )
    )


if __name__ == "__main__":
    main()
