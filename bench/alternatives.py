#!/usr/bin/env python3
"""Reference implementations gitvault is measured against (issue 8).

Each store offers the old tool's operations, ``checkout(agent, ttl)``, ``checkin(agent, doc,
source, confidence, justification)`` and ``release(agent)``, so the benchmark drives them all
the same way:

- :class:`OldFileStore`: faithful to the old ``memory_checkin.py``: ``memory/snapshot.json``
  rewritten atomically (tempfile, fsync, rename), one global lease file written the same way,
  one fsynced event file per checkin in ``eventlog/`` (agent, source, confidence,
  justification, time, a simple patch: the top-level keys replaced), and
  ``checkouts/<agent>.json``, a copy of the snapshot at checkout. A checkin whose base (the
  sha256 recorded at checkout) is no longer the snapshot stops with "3-way merge required".
  ``python bench/alternatives.py ROOT checkout|checkin|release|status ...`` is its CLI, with
  the old tool's arguments (``--out FILE`` and ``--no-fsync`` added for the benchmark).
- :class:`GitCliStore`: the same operations as a shell script would do them with git plumbing
  on a bare repository: ``git hash-object -w --stdin`` per key blob, ``git mktree``,
  ``git commit-tree`` with the trailers in the message, ``git update-ref refs/heads/main NEW
  OLD``; the lease is a blob under ``refs/leases/<agent>``.
- :class:`SqliteStore`: one SQLite table with a row per version (id, agent, source,
  confidence, justification, time, the document as JSON) and a lease table; WAL journal,
  ``synchronous=FULL`` when fsync is on, ``OFF`` when off.
- :class:`Floor`: the bytes of the document written with write + fsync + rename; no history,
  no lease, no check. Nothing that keeps the document durably can write less.

Only the standard library is imported at module level, so the old tool's CLI starts as fast as
the old script did (``subprocess`` and ``sqlite3`` are imported where used).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import sqlite3

Document = dict[str, Any]
DEFAULT_TTL = 900


class StoreError(Exception):
    """A refused operation of a reference store."""


class LeaseProblem(StoreError):
    """No lease, an expired lease, or the global lease held by another agent."""


class Diverged(StoreError):
    """The memory moved since the agent's checkout (the old tool stopped here)."""


class MemoryStore(Protocol):
    """The four operations every implementation under test offers."""

    name: str

    def checkout(self, agent: str, ttl: int = DEFAULT_TTL) -> Document: ...

    def checkin(
        self, agent: str, doc: Mapping[str, Any], source: str, confidence: float, justification: str
    ) -> None: ...

    def release(self, agent: str) -> None: ...

    def close(self) -> None: ...


def canonical(obj: Any) -> bytes:
    """Pretty-printed, sorted, UTF-8, trailing newline: the bytes gitvault stores per key."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def sha256(obj: Any) -> str:
    """The old tool's content hash: sha256 of the JSON with sorted keys."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def write_atomic(path: Path, data: bytes, fsync: bool = True) -> None:
    """tempfile in the same folder, write, flush, fsync, rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing or broken (as the old tool did)."""
    try:
        with path.open("rb") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# -- (a) the old file-based tool --
class OldFileStore:
    """``memory_checkin.py``: a snapshot file, one global lease, an event file per checkin."""

    name = "old file-based"

    def __init__(self, root: str | os.PathLike[str], fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.memory = self.root / "memory"
        self.snapshot = self.memory / "snapshot.json"
        self.lease = self.memory / "lease.json"
        self.events = self.root / "eventlog"
        self.checkouts = self.root / "checkouts"
        self.ensure_dirs()

    def ensure_dirs(self) -> None:
        for d in (
            self.memory,
            self.events,
            self.checkouts,
            self.root / "schemas",
            self.root / "config",
        ):
            d.mkdir(parents=True, exist_ok=True)
        if not self.snapshot.exists():
            write_atomic(self.snapshot, canonical({}), self.fsync)

    def _write_json(self, path: Path, obj: Any) -> None:
        write_atomic(path, canonical(obj), self.fsync)

    @staticmethod
    def is_lease_expired(lease: Mapping[str, Any]) -> bool:
        return datetime.fromisoformat(str(lease["expires_at"])) <= datetime.now(UTC)

    def checkout(self, agent: str, ttl: int = DEFAULT_TTL) -> Document:
        lease = read_json(self.lease)
        if lease and lease.get("agent") != agent and not self.is_lease_expired(lease):
            raise LeaseProblem(f"lease held by {lease.get('agent')} until {lease['expires_at']}")
        snap = read_json(self.snapshot) or {}
        now = datetime.now(UTC)
        self._write_json(
            self.lease,
            {
                "agent": agent,
                "acquired_at": now.isoformat(),
                "expires_at": (now + timedelta(seconds=ttl)).isoformat(),
                "ttl": ttl,
                "base_sha": sha256(snap),
            },
        )
        self._write_json(self.checkouts / f"{agent}.json", snap)
        return dict(snap)

    @staticmethod
    def compute_simple_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
        """The old tool's placeholder patch: which top-level keys were replaced or removed."""
        return {
            "replaced": sorted(k for k in new if old.get(k) != new[k]),
            "removed": sorted(k for k in old if k not in new),
        }

    def checkin(
        self, agent: str, doc: Mapping[str, Any], source: str, confidence: float, justification: str
    ) -> None:
        lease = read_json(self.lease)
        if not lease or lease.get("agent") != agent:
            raise LeaseProblem(f"{agent} holds no lease")
        if self.is_lease_expired(lease):
            raise LeaseProblem(f"lease of {agent} expired at {lease['expires_at']}")
        current = read_json(self.snapshot) or {}
        if sha256(current) != lease.get("base_sha"):
            raise Diverged("snapshot changed since checkout: 3-way merge required")
        patch = self.compute_simple_patch(current, doc)
        self._write_json(self.snapshot, dict(doc))
        event = {
            "agent": agent,
            "source": source,
            "confidence": confidence,
            "justification": justification,
            "timestamp": now_iso(),
            "base_sha": lease.get("base_sha"),
            "patch": patch,
        }
        name = self.events / f"{time.time_ns()}-{agent}.json"
        with name.open("wb") as f:
            f.write(canonical(event))
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())

    def release(self, agent: str) -> None:
        lease = read_json(self.lease)
        if lease and lease.get("agent") == agent:
            self.lease.unlink(missing_ok=True)
        (self.checkouts / f"{agent}.json").unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        snap = read_json(self.snapshot) or {}
        return {
            "keys": sorted(snap),
            "lease": read_json(self.lease),
            "events": sum(1 for _ in self.events.iterdir()),
        }

    def close(self) -> None:
        pass


# -- (b) git plumbing from a script --
ZERO = "0" * 40


class GitCliStore:
    """What a shell script would do: one git subprocess per plumbing step, on a bare repo."""

    name = "git CLI plumbing"

    def __init__(self, path: str | os.PathLike[str], fsync: bool = True) -> None:
        import subprocess

        self._subprocess = subprocess
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            subprocess.run(["git", "init", "-q", "--bare", "-b", "main", self.path], check=True)
        # git fsyncs nothing loose by default; "committed" = objects and refs, like gitvault
        self._git("config", "core.fsync", "committed" if fsync else "none")
        self._git("config", "core.fsyncMethod", "fsync")

    def _git(
        self,
        *args: str,
        data: bytes | None = None,
        env: Mapping[str, str] | None = None,
        ok: Sequence[int] = (0,),
    ) -> str:
        r = self._subprocess.run(
            ["git", "--git-dir", self.path, *args],
            input=data,
            capture_output=True,
            env={**os.environ, **env} if env else None,
        )
        if r.returncode not in ok:
            raise StoreError(f"git {args[0]}: {r.stderr.decode(errors='replace').strip()}")
        return r.stdout.decode()

    def _head(self) -> str:
        return self._git("rev-parse", "--verify", "-q", "refs/heads/main", ok=(0, 1)).strip()

    def _write_lease(self, agent: str, lease: Mapping[str, Any], old: str) -> None:
        blob = self._git("hash-object", "-w", "--stdin", data=canonical(lease)).strip()
        self._git("update-ref", f"refs/leases/{agent}", blob, old)

    def _lease(self, agent: str) -> tuple[dict[str, Any], str]:
        ref = self._git("rev-parse", "--verify", "-q", f"refs/leases/{agent}", ok=(0, 1)).strip()
        if not ref:
            raise LeaseProblem(f"{agent} holds no lease")
        return json.loads(self._git("cat-file", "blob", ref)), ref

    def checkout(self, agent: str, ttl: int = DEFAULT_TTL) -> Document:
        head = self._head()
        doc: Document = {}
        if head:
            for name in self._git("ls-tree", "--name-only", head).splitlines():
                if name.endswith(".json"):
                    doc[name[:-5]] = json.loads(self._git("cat-file", "blob", f"{head}:{name}"))
        old = self._git("rev-parse", "--verify", "-q", f"refs/leases/{agent}", ok=(0, 1)).strip()
        self._write_lease(
            agent, {"agent": agent, "base": head, "expires": time.time() + ttl}, old or ZERO
        )
        return doc

    def checkin(
        self, agent: str, doc: Mapping[str, Any], source: str, confidence: float, justification: str
    ) -> None:
        lease, lease_oid = self._lease(agent)
        if lease["expires"] <= time.time():
            raise LeaseProblem(f"lease of {agent} expired")
        head = self._head()
        if head != lease["base"]:
            raise Diverged("main moved since checkout: 3-way merge required")
        entries = []
        for key in sorted(doc):
            blob = self._git("hash-object", "-w", "--stdin", data=canonical(doc[key])).strip()
            entries.append(f"100644 blob {blob}\t{key}.json\n")
        tree = self._git("mktree", data="".join(entries).encode()).strip()
        msg = (
            f"checkin {agent}\n\nAgent-Id: {agent}\nSource: {source}\n"
            f"Confidence: {confidence}\nJustification: {justification}\n"
            f"Base: {head or 'none'}\n"
        )
        who = {
            "GIT_AUTHOR_NAME": agent,
            "GIT_AUTHOR_EMAIL": f"{agent}@agents",
            "GIT_COMMITTER_NAME": "script",
            "GIT_COMMITTER_EMAIL": "script@localhost",
        }
        parents = ["-p", head] if head else []
        commit = self._git(
            "commit-tree", tree, *parents, "-F", "-", data=msg.encode(), env=who
        ).strip()
        self._git("update-ref", "refs/heads/main", commit, head or ZERO)
        self._write_lease(agent, {**lease, "base": commit}, lease_oid)

    def release(self, agent: str) -> None:
        self._git("update-ref", "-d", f"refs/leases/{agent}")

    def close(self) -> None:
        pass


# -- (c) SQLite --
class SqliteStore:
    """A table of versions, one row per checkin holding the whole document, and a lease table."""

    name = "SQLite"

    def __init__(self, path: str | os.PathLike[str], fsync: bool = True) -> None:
        import sqlite3

        self.db: sqlite3.Connection = sqlite3.connect(
            os.fspath(path), isolation_level=None, timeout=60
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'OFF'}")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS versions (id INTEGER PRIMARY KEY, agent TEXT NOT NULL, "
            "source TEXT NOT NULL, confidence REAL NOT NULL, justification TEXT NOT NULL, "
            "time REAL NOT NULL, document TEXT NOT NULL)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS leases (agent TEXT PRIMARY KEY, expires REAL NOT NULL, "
            "base INTEGER)"
        )

    def _head(self) -> int | None:
        row = self.db.execute("SELECT max(id) FROM versions").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def checkout(self, agent: str, ttl: int = DEFAULT_TTL) -> Document:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            head = self._head()
            self.db.execute(
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (agent, time.time() + ttl, head)
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        if head is None:
            return {}
        row = self.db.execute("SELECT document FROM versions WHERE id = ?", (head,)).fetchone()
        doc: Document = json.loads(row[0])
        return doc

    def checkin(
        self, agent: str, doc: Mapping[str, Any], source: str, confidence: float, justification: str
    ) -> None:
        text = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        self.db.execute("BEGIN IMMEDIATE")
        try:
            lease = self.db.execute(
                "SELECT expires, base FROM leases WHERE agent = ?", (agent,)
            ).fetchone()
            if lease is None:
                raise LeaseProblem(f"{agent} holds no lease")
            if lease[0] <= time.time():
                raise LeaseProblem(f"lease of {agent} expired")
            if self._head() != lease[1]:
                raise Diverged("a newer version exists: 3-way merge required")
            cur = self.db.execute(
                "INSERT INTO versions (agent, source, confidence, justification, time, document)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (agent, source, confidence, justification, time.time(), text),
            )
            self.db.execute("UPDATE leases SET base = ? WHERE agent = ?", (cur.lastrowid, agent))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def release(self, agent: str) -> None:
        self.db.execute("DELETE FROM leases WHERE agent = ?", (agent,))

    def close(self) -> None:
        self.db.close()


# -- (d) the floor --
class Floor:
    """The document's bytes written with write + fsync + rename: no git, no history, no lease."""

    name = "floor"

    def __init__(self, path: str | os.PathLike[str], fsync: bool = True) -> None:
        self.target = Path(path)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._doc: Document = {}

    def write(self, data: bytes) -> None:
        write_atomic(self.target, data, self.fsync)

    def checkout(self, agent: str, ttl: int = DEFAULT_TTL) -> Document:
        return self._doc

    def checkin(
        self, agent: str, doc: Mapping[str, Any], source: str, confidence: float, justification: str
    ) -> None:
        self._doc = dict(doc)
        self.write(canonical(self._doc))

    def release(self, agent: str) -> None:
        pass

    def close(self) -> None:
        pass


# -- the old tool's command line --
USAGE = """usage: alternatives.py ROOT [--no-fsync] COMMAND ...
  checkout AGENT [TTL] [--out FILE]
  checkin AGENT PROPOSED SOURCE [CONFIDENCE] [JUSTIFICATION]
  release AGENT
  status"""


def main(argv: Sequence[str]) -> int:
    """``memory_checkin.py``'s commands on :class:`OldFileStore` (for the CLI comparison)."""
    args = list(argv)
    fsync = "--no-fsync" not in args
    args = [a for a in args if a != "--no-fsync"]
    out: str | None = None
    if "--out" in args:
        i = args.index("--out")
        out = args[i + 1]
        del args[i : i + 2]
    if len(args) < 2 or args[1] not in ("checkout", "checkin", "release", "status"):
        print(USAGE, file=sys.stderr)
        return 2
    store = OldFileStore(args[0], fsync)
    cmd, rest = args[1], args[2:]
    try:
        if cmd == "checkout" and rest:
            doc = store.checkout(rest[0], int(rest[1]) if len(rest) > 1 else DEFAULT_TTL)
            data = canonical(doc)
            if out:
                Path(out).write_bytes(data)
            else:
                sys.stdout.buffer.write(data)
        elif cmd == "checkin" and len(rest) >= 3:
            with open(rest[1], "rb") as f:
                proposed = json.load(f)
            confidence = float(rest[3]) if len(rest) > 3 else 0.5
            store.checkin(rest[0], proposed, rest[2], confidence, rest[4] if len(rest) > 4 else "")
            print(f"checked in by {rest[0]}", file=sys.stderr)
        elif cmd == "release" and rest:
            store.release(rest[0])
        elif cmd == "status":
            print(json.dumps(store.status(), indent=2))
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except Diverged as e:
        print(f"3-way merge required: {e}", file=sys.stderr)
        return 3
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
