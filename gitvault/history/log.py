"""``log``: checkins and merges newest first (in libgit2's order), then legacy events."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pygit2

from gitvault.core import codec, pointers
from gitvault.core.jsonmerge import MISSING, json_equal
from gitvault.errors import InputError
from gitvault.git.storage import MAIN, Store
from gitvault.history import pathindex, walk
from gitvault.history.common import (
    LEGACY_DIR,
    _Blobs,
    _check_path,
    _confidence,
    _iso,
    _tree_of,
    _verification,
    parse_time,
    trailer_confidence,
)
from gitvault.model import changes
from gitvault.model.provenance import parse_trailers, trailer_values

# -- log --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """One commit of the history, or one event of the imported legacy event log."""

    commit: str | None  # None for a legacy event
    time: int | None  # unix seconds; None for a legacy event without a readable timestamp
    iso: str | None
    agent: str
    source: str
    confidence: float | None
    justification: str
    lease: str | None = None
    base: str | None = None
    parents: tuple[str, ...] = ()
    merged: bool = False
    changed: tuple[str, ...] = ()  # keys changed vs the first parent (root: every key)
    subject: str = ""
    merged_commit: str | None = None
    strategy: str | None = None
    resolved: tuple[str, ...] = ()
    legacy: bool = False
    legacy_file: str | None = None  # the event's file under .gitvault/legacy-eventlog/
    reverts: tuple[str, ...] = ()  # commits this one undid (gitvault revert, quarantine)
    verified: bool | str | None = None  # True/False/"unsigned", set by engine.trust.annotate
    fingerprint: str | None = None
    signer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **_verification(self),
            "commit": self.commit,
            "time": self.time,
            "iso": self.iso,
            "agent": self.agent,
            "source": self.source,
            "confidence": self.confidence,
            "justification": self.justification,
            "lease": self.lease,
            "base": self.base,
            "parents": list(self.parents),
            "merged": self.merged,
            "changed": list(self.changed),
            "subject": self.subject,
            "merged_commit": self.merged_commit,
            "strategy": self.strategy,
            "resolved": list(self.resolved),
            "legacy": self.legacy,
            "legacy_file": self.legacy_file,
            "reverts": list(self.reverts),
        }


def _changed_keys(
    store: Store, commit: pygit2.Commit, index: changes.Index | None = None
) -> tuple[str, ...]:
    if index is not None:  # the commit's own Changed: lines name every key it changed
        return tuple(sorted(index.keys))
    new = store.key_blobs(commit.tree)
    old = store.key_blobs(commit.parents[0].tree) if commit.parents else {}
    return tuple(
        sorted(
            k
            for n in set(old) | set(new)
            if old.get(n) != new.get(n) and (k := codec.key_of(n)) is not None
        )
    )


def entry_of(store: Store, commit: pygit2.Commit, index: changes.Index | None = None) -> LogEntry:
    """The log entry of one commit: its trailers, parents and changed keys."""
    t = parse_trailers(commit.message)
    return LogEntry(
        commit=str(commit.id),
        time=commit.commit_time,
        iso=_iso(commit.commit_time, commit.commit_time_offset),
        agent=t.get("Agent-Id", commit.author.name),
        source=t.get("Source", ""),
        confidence=trailer_confidence(t),
        justification=t.get("Justification", ""),
        lease=t.get("Lease"),
        base=t.get("Base") or (str(commit.parent_ids[0]) if commit.parent_ids else None),
        parents=tuple(str(p) for p in commit.parent_ids),
        merged=len(commit.parent_ids) > 1,
        changed=_changed_keys(store, commit, index),
        subject=commit.message.split("\n", 1)[0],
        merged_commit=t.get("Merged-Commit"),
        strategy=t.get("Merge-Strategy"),
        resolved=trailer_values(commit.message, "Resolved"),
        reverts=trailer_values(commit.message, "Reverts"),
    )


def _legacy_paths(event: Mapping[str, Any]) -> list[list[str]]:
    out = []
    patch = event.get("patch")
    for op in patch if isinstance(patch, list) else []:
        if isinstance(op, dict) and isinstance(op.get("path"), str):
            try:
                out.append(pointers.split(op["path"]))
            except InputError:
                continue
    return out


def legacy_events(store: Store, root: pygit2.Commit) -> list[tuple[LogEntry, list[list[str]]]]:
    """The imported legacy events of a root commit, newest first, with their patch paths.

    The files are kept verbatim at import; one that no longer parses is skipped rather than
    hiding the rest of the history.
    """
    folder = _tree_of(store, root.tree, codec.RESERVED, LEGACY_DIR)
    if folder is None:
        return []
    found: list[tuple[float, str, LogEntry, list[list[str]]]] = []
    for item in folder:
        name = item.name
        if name is None or not name.endswith(".json") or item.type_str != "blob":
            continue
        try:
            event = codec.loads(store.blob(item.id), name)
        except InputError:
            continue
        if not isinstance(event, dict):
            continue
        when: float | None
        try:
            stamp = event.get("timestamp")
            when = parse_time(stamp) if isinstance(stamp, str | int | float) else None
        except InputError:
            when = None
        paths = _legacy_paths(event)
        keys = tuple(sorted({p[0] for p in paths if p}))
        entry = LogEntry(
            commit=None,
            time=None if when is None else math.floor(when),
            iso=None if when is None else _iso(when),
            agent=str(event.get("agent_id", "")),
            source=str(event.get("source", "")),
            confidence=_confidence(event.get("confidence")),
            justification=str(event.get("justification", "")),
            changed=keys,
            subject=f"legacy event {name}",
            legacy=True,
            legacy_file=name,
        )
        found.append((-math.inf if when is None else when, name, entry, paths))
    found.sort(key=lambda f: (f[0], f[1]), reverse=True)
    return [(e, p) for _, _, e, p in found]


def _overlaps(event_path: list[str], tokens: list[str]) -> bool:
    """Whether a legacy patch path may have touched the pointer (one is a prefix of the other).

    Legacy patches are positional, so an id step matches any index: the event is shown when it
    might have written the value rather than hidden when it might have.
    """
    for a, b in zip(event_path, tokens, strict=False):
        if a != b and not (b.startswith("[id=") and re.fullmatch(r"\d+|-", a)):
            return False
    return True


def log(
    store: Store,
    rev: str = MAIN,
    *,
    agent: str | None = None,
    key: str | None = None,
    path: str | None = None,
    source: str | None = None,
    since: str | float | None = None,
    until: str | float | None = None,
    limit: int | None = None,
    include_legacy: bool = True,
) -> list[LogEntry]:
    """The history reachable from ``rev``, newest first, then the legacy events (oldest last).

    ``key`` keeps commits that changed that key's blob; ``path`` keeps commits where the value
    at that pointer differs from the first parent (a commit whose blob of that key equals the
    parent's is skipped unparsed). ``since``/``until`` (inclusive) take ISO-8601 (naive = UTC)
    or unix seconds. Legacy events pass the same filters (key/path: their patch paths).
    """
    if limit is not None and limit < 0:
        raise InputError(f"limit {limit} is negative; give a count such as 20")
    start = store.resolve(rev)
    lo = None if since is None else parse_time(since)
    hi = None if until is None else parse_time(until)
    if key is not None:
        codec.check_key(key)
    tokens = _check_path(path) if path is not None else None
    blobs = _Blobs(store)
    out: list[LogEntry] = []

    def wanted(e: LogEntry) -> bool:
        if agent is not None and e.agent != agent:
            return False
        if source is not None and e.source != source:
            return False
        if key is not None and key not in e.changed:
            return False
        if lo is not None and (e.time is None or e.time < lo):
            return False
        return not (hi is not None and (e.time is None or e.time > hi))

    def shown(event: LogEntry, paths: list[list[str]]) -> bool:
        return wanted(event) and (tokens is None or any(_overlaps(p, tokens) for p in paths))

    def no_legacy_shown(roots: list[pygit2.Commit]) -> bool:
        # a walk that stops early never learns which root it would have ended on
        return not include_legacy or not any(
            shown(e, p) for r in roots for e, p in legacy_events(store, r)
        )

    root: pygit2.Commit | None = None
    probe = changes.Probe(tokens) if tokens is not None else None
    indexed = pathindex.in_log_order(store, start, tokens) if tokens else None
    for commit in indexed or walk.Walk(
        store, start.id, since=lo, stop_ok=no_legacy_shown, lazy=limit is not None or lo is not None
    ):
        if not commit.parent_ids:
            root = commit
        if limit is not None and len(out) >= limit:
            break
        if (lo is not None and commit.commit_time < lo) or (
            hi is not None and commit.commit_time > hi
        ):
            continue  # what wanted() would say, before the entry is built
        if probe is not None and commit.parent_ids and probe.rules_out(commit.message):
            continue  # its Changed: lines rule the pointer out: no tree or blob read
        entry = entry_of(
            store, commit, changes.index_of(commit.message) if commit.parent_ids else None
        )
        if not wanted(entry):
            continue
        if tokens is not None and path is not None:
            if tokens and tokens[0] not in entry.changed:
                continue
            if not tokens and not entry.changed:
                continue
            parent = commit.parents[0].tree if commit.parents else None
            before = MISSING if parent is None else blobs.at(parent, path)
            if json_equal(before, blobs.at(commit.tree, path)):
                continue
        out.append(entry)
    if include_legacy and root is not None and (limit is None or len(out) < limit):
        out += [event for event, paths in legacy_events(store, root) if shown(event, paths)]
    return out[:limit] if limit is not None else out
