"""Questions about the past: who last wrote a value, what changed when.

Walks commits newest first and compares only the blob of the key concerned: a commit whose
blob for that key equals its first parent's cannot have written the value, so it is skipped
without parsing anything. Parsed blobs are cached by id, so a walk parses each version of a key
at most once.

Attribution follows *first parents*: a value that came into main through a merge is credited to
the merge commit, whose ``Agent-Id`` is the merged agent (the one whose change survived). That is
also what ``git log --first-parent`` shows as the history of main.

Paths are JSON Pointers with optional id steps (``/tasks/[id=T-004]/status``); an id step finds
the item wherever it sits in each version, so a value keeps its history when its array is
reordered.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonpatch
import pygit2
from pygit2.enums import SortMode

from . import changes, codec, pointers
from .errors import InputError
from .jsonmerge import MISSING, is_id_array, json_equal
from .provenance import DEFAULT_CONFIDENCE, parse_trailers, trailer_values
from .storage import MAIN, Store

LEGACY_DIR = "legacy-eventlog"


@dataclass(frozen=True)
class Writer:
    commit: str
    agent: str
    source: str
    confidence: float | None
    justification: str
    time: int

    @classmethod
    def of(cls, commit: pygit2.Commit) -> Writer:
        t = parse_trailers(commit.message)
        return cls(str(commit.id), t.get("Agent-Id", commit.author.name), t.get("Source", ""),
                   _trailer_confidence(t), t.get("Justification", ""),
                   commit.commit_time)

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "agent": self.agent, "source": self.source,
                "confidence": self.confidence, "justification": self.justification,
                "time": self.time}


def _blob_id(tree: pygit2.Tree, name: str) -> pygit2.Oid | None:
    """The id of key file ``name`` in ``tree``: its blob, or its tree when it is sharded."""
    for entry in (name, name.removesuffix(codec.BLOB_SUFFIX)):
        try:
            return tree[entry].id
        except KeyError:
            continue
    return None


def value_at(store: Store, tree: pygit2.Tree, path: str) -> Any:
    """The value at a pointer (id steps allowed) in a commit's tree, or MISSING."""
    key = pointers.top_key(path)
    oid = _blob_id(tree, key + codec.BLOB_SUFFIX)
    if oid is None:
        return MISSING
    doc = {key: codec.loads_trusted(store.blob(oid), key)}
    return pointers.get(doc, path)


def last_writer(store: Store, head: pygit2.Oid, path: str,
                hide: pygit2.Oid | None = None) -> Writer | None:
    """The commit that last set the value at ``path`` as it is at ``head``."""
    key_file = pointers.top_key(path) + codec.BLOB_SUFFIX
    want = value_at(store, store.commit(head).tree, path)
    walker = store.repo.walk(head, SortMode.TOPOLOGICAL | SortMode.TIME)
    if hide is not None:
        walker.hide(hide)
    probe = changes.Probe(pointers.split(path))
    for commit in walker:
        if commit.parent_ids and probe.rules_out(commit.message):
            continue
        parent = commit.parents[0] if commit.parent_ids else None
        blob = _blob_id(commit.tree, key_file)
        if parent is not None and _blob_id(parent.tree, key_file) == blob:
            continue
        changed_here = parent is None or not json_equal(value_at(store, parent.tree, path), want)
        if changed_here and json_equal(value_at(store, commit.tree, path), want):
            return Writer.of(commit)
    return None


# -- small helpers ----------------------------------------------------------------------------

def _trailer_confidence(t: Mapping[str, str]) -> float | None:
    """A commit's confidence: a plain-git commit that names its agent but no Confidence has
    the default, as a CLI checkin without one would."""
    return _confidence(t.get("Confidence", DEFAULT_CONFIDENCE if "Agent-Id" in t else None))


def _confidence(value: object) -> float | None:
    """A trailer's or legacy event's confidence; None when absent or not a finite number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _iso(seconds: float, offset_minutes: int = 0) -> str:
    """ISO-8601 in the commit's own offset (git stores one; ours are UTC)."""
    try:
        return datetime.fromtimestamp(seconds, timezone(timedelta(minutes=offset_minutes))
                                      ).isoformat()
    except (OverflowError, OSError, ValueError):  # a hand-made commit at the edge of time
        return f"@{seconds:g}"


_UNIX = re.compile(r"-?\d+(\.\d+)?")
_YEAR_1, _YEAR_9999 = -62135596800.0, 253402300799.0


def _in_range(seconds: float, given: object) -> float:
    if not _YEAR_1 <= seconds <= _YEAR_9999:  # also refuses NaN and infinities
        raise InputError(f"timestamp {given!r} is outside the years 1-9999; "
                         "give ISO-8601 or unix seconds")
    return seconds


def parse_time(value: str | float) -> float:
    """Unix seconds from an ISO-8601 timestamp (naive means UTC) or unix seconds.

    Accepted: ``2025-10-01T09:00:00+02:00``, ``2025-10-01T09:00:00Z``, ``2025-10-01 09:00``,
    ``2025-10-01``, ``1759309200``, ``1759309200.5``. Anything else is an :class:`InputError`.
    """
    if isinstance(value, bool):
        raise InputError(f"timestamp {value!r} is not a time; give ISO-8601 or unix seconds")
    if isinstance(value, int | float):
        return _in_range(float(value), value)
    text = value.strip()
    if _UNIX.fullmatch(text):
        return _in_range(float(text), value)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"timestamp {value!r} is neither ISO-8601 nor unix seconds; "
            "give e.g. 2025-10-01T09:00:00Z, 2025-10-01 or 1759309200"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return _in_range(when.timestamp(), value)
    except (OverflowError, ValueError):
        raise InputError(f"timestamp {value!r} is outside the years 1-9999") from None


def _tree_of(store: Store, tree: pygit2.Tree, *names: str) -> pygit2.Tree | None:
    for name in names:
        try:
            obj = store.repo[tree[name].id]
        except KeyError:
            return None
        if not isinstance(obj, pygit2.Tree):
            return None
        tree = obj
    return tree


class _Blobs:
    """Parsed key blobs by id, so a walk parses each version of a key once.

    Bounded (least recently used goes first): a walk only ever compares a commit with its
    parent, and a long history of a large key must not be held in memory whole.
    """

    def __init__(self, store: Store, size: int = 64) -> None:
        self.store, self.size = store, size
        self.cache: dict[pygit2.Oid, Any] = {}

    def value(self, oid: pygit2.Oid | None, key: str) -> Any:
        if oid is None:
            return MISSING
        if oid in self.cache:
            value = self.cache[oid] = self.cache.pop(oid)  # now the most recently used
            return value
        value = codec.loads_trusted(self.store.blob(oid), key + codec.BLOB_SUFFIX)
        self.cache[oid] = value
        if len(self.cache) > self.size:
            del self.cache[next(iter(self.cache))]
        return value

    def at(self, tree: pygit2.Tree, path: str) -> Any:
        """The value at ``path`` in ``tree`` (MISSING when absent)."""
        tokens = pointers.split(path)
        if not tokens:
            return self.document(tree)
        key = tokens[0]
        value = self.value(_blob_id(tree, key + codec.BLOB_SUFFIX), key)
        return value if value is MISSING else pointers.get({key: value}, path)

    def document(self, tree: pygit2.Tree) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for name, oid in sorted(self.store.key_blobs(tree).items()):
            key = codec.key_of(name)
            assert key is not None
            doc[key] = self.value(oid, key)
        return doc


def _check_path(path: str) -> list[str]:
    """Tokens of a user pointer; malformed pointers are an InputError (from ``split``)."""
    tokens = pointers.split(path)
    if tokens:
        codec.check_key(tokens[0])
    return tokens


def _name(rev: str, commit: pygit2.Commit) -> str:
    """``main (1a2b3c4d5e6f)`` for error messages: what the user typed and what it meant."""
    short = str(commit.id)[:12]
    rev = rev.removeprefix("refs/heads/")
    full = str(commit.id)
    return short if rev and full.startswith(rev.lower()) else f"{rev} ({short})"


def _verification(entry: Any) -> dict[str, Any]:
    """The signature fields of an entry, once gitvault.trust.annotate has filled them."""
    if entry.verified is None:
        return {}
    return {"verified": entry.verified, "fingerprint": entry.fingerprint, "signer": entry.signer}


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
    verified: bool | str | None = None  # set by gitvault.trust.annotate: True/False/"unsigned"
    fingerprint: str | None = None
    signer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **_verification(self),
            "commit": self.commit, "time": self.time, "iso": self.iso, "agent": self.agent,
            "source": self.source, "confidence": self.confidence,
            "justification": self.justification, "lease": self.lease, "base": self.base,
            "parents": list(self.parents), "merged": self.merged, "changed": list(self.changed),
            "subject": self.subject, "merged_commit": self.merged_commit,
            "strategy": self.strategy, "resolved": list(self.resolved), "legacy": self.legacy,
            "legacy_file": self.legacy_file,
        }


def _changed_keys(store: Store, commit: pygit2.Commit,
                  index: changes.Index | None = None) -> tuple[str, ...]:
    if index is not None:  # the commit's own Changed: lines name every key it changed
        return tuple(sorted(index.keys))
    new = store.key_blobs(commit.tree)
    old = store.key_blobs(commit.parents[0].tree) if commit.parents else {}
    return tuple(sorted(k for n in set(old) | set(new)
                        if old.get(n) != new.get(n) and (k := codec.key_of(n)) is not None))


def entry_of(store: Store, commit: pygit2.Commit,
             index: changes.Index | None = None) -> LogEntry:
    """The log entry of one commit: its trailers, parents and changed keys."""
    t = parse_trailers(commit.message)
    return LogEntry(
        commit=str(commit.id), time=commit.commit_time,
        iso=_iso(commit.commit_time, commit.commit_time_offset),
        agent=t.get("Agent-Id", commit.author.name), source=t.get("Source", ""),
        confidence=_trailer_confidence(t), justification=t.get("Justification", ""),
        lease=t.get("Lease"),
        base=t.get("Base") or (str(commit.parent_ids[0]) if commit.parent_ids else None),
        parents=tuple(str(p) for p in commit.parent_ids), merged=len(commit.parent_ids) > 1,
        changed=_changed_keys(store, commit, index), subject=commit.message.split("\n", 1)[0],
        merged_commit=t.get("Merged-Commit"), strategy=t.get("Merge-Strategy"),
        resolved=trailer_values(commit.message, "Resolved"),
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
            commit=None, time=None if when is None else math.floor(when),
            iso=None if when is None else _iso(when),
            agent=str(event.get("agent_id", "")), source=str(event.get("source", "")),
            confidence=_confidence(event.get("confidence")),
            justification=str(event.get("justification", "")), changed=keys,
            subject=f"legacy event {name}", legacy=True, legacy_file=name,
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


def log(store: Store, rev: str = MAIN, *, agent: str | None = None, key: str | None = None,
        path: str | None = None, source: str | None = None, since: str | float | None = None,
        until: str | float | None = None, limit: int | None = None,
        include_legacy: bool = True) -> list[LogEntry]:
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

    root: pygit2.Commit | None = None
    probe = changes.Probe(tokens) if tokens is not None else None
    for commit in store.repo.walk(start.id, SortMode.TOPOLOGICAL | SortMode.TIME):
        if not commit.parent_ids:
            root = commit
        if limit is not None and len(out) >= limit:
            break
        if probe is not None and commit.parent_ids and probe.rules_out(commit.message):
            continue  # its Changed: lines rule the pointer out: no tree or blob read
        entry = entry_of(store, commit, changes.index_of(commit.message) if commit.parent_ids
                         else None)
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
        for event, paths in legacy_events(store, root):
            if not wanted(event):
                continue
            if tokens is not None and not any(_overlaps(p, tokens) for p in paths):
                continue
            out.append(event)
    return out[:limit] if limit is not None else out


# -- show -------------------------------------------------------------------------------------

def revision(store: Store, rev: str | None = None, at: str | float | None = None
             ) -> pygit2.Commit:
    """The commit ``rev`` names (default main), or with ``at`` the newest commit along its
    first parents made at or before that time: what main held then (merged agent commits were
    never main's head themselves, so they are not candidates)."""
    commit = store.resolve(rev or MAIN)
    if at is None:
        return commit
    when = parse_time(at)
    walker = store.repo.walk(commit.id, SortMode.TOPOLOGICAL)
    walker.simplify_first_parent()
    for c in walker:
        if c.commit_time <= when:
            return c
    raise InputError(
        f"{rev or 'main'} has no commit at or before {_iso(when)}; its history starts at "
        f"{_iso(_root_time(commit))} (see `gitvault log`)"
    )


def _root_time(commit: pygit2.Commit) -> int:
    while commit.parents:
        commit = commit.parents[0]
    return commit.commit_time


def show(store: Store, rev: str | None = None, at: str | float | None = None,
         path: str | None = None) -> Any:
    """The document (or the value at pointer ``path``) at ``rev`` or at time ``at``."""
    commit = revision(store, rev, at)
    blobs = _Blobs(store)
    if path is None:
        return blobs.document(commit.tree)
    _check_path(path)
    value = blobs.at(commit.tree, path)
    if value is MISSING:
        raise InputError(
            f"{path} does not exist at {_name(rev or 'main', commit)}; check the pointer "
            "(e.g. /tasks/[id=T-004]/status) against the document at that revision"
        )
    return value


# -- diff -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiffResult:
    """An RFC 6902 patch from one state to another, and its one-line-per-op rendering."""

    patch: list[dict[str, Any]]
    text: str
    old: str | None = None  # commit ids; None for in-memory documents
    new: str | None = None
    path: str | None = None

    @property
    def empty(self) -> bool:
        return not self.patch

    def to_json(self) -> dict[str, Any]:
        return {"from": self.old, "to": self.new, "path": self.path, "patch": self.patch,
                "text": self.text}


def _render(value: Any, width: int = 72) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) <= width:
        return text
    if isinstance(value, dict):
        return f"{{…{len(value)} keys}}"
    if isinstance(value, list):
        return f"[…{len(value)} items]"
    return text[: width - 1] + "…"


def _prefixed(op: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = dict(op)
    out["path"] = prefix + op["path"]
    if "from" in op:
        out["from"] = prefix + op["from"]
    return out


def _id_tokens(items: list[Any]) -> list[str] | None:
    """The ``[id=...]`` steps of an array of uniquely-id'd objects, else None."""
    if not is_id_array(items):
        return None
    tokens = [f"[id={x['id']}]" for x in items]
    return tokens if len(set(tokens)) == len(tokens) else None


def _id_array_ops(old: list[Any], new: list[Any], prefix: str, old_ids: list[str],
                  new_ids: list[str]) -> list[dict[str, Any]]:
    """Ops that keep each record's identity: removes, then moves and adds into the new order,
    then each common record's own changes at its final index.

    A positional diff of a reordered array would instead rewrite records field by field
    (``/tasks/0/id: "T-001" -> "T-040"``), which is valid but tells a reader the wrong story.
    """
    ops: list[dict[str, Any]] = []
    work = list(old_ids)
    keep = set(new_ids)
    for i in reversed(range(len(work))):
        if work[i] not in keep:
            ops.append({"op": "remove", "path": f"{prefix}/{i}"})
            del work[i]
    for target, ident in enumerate(new_ids):
        if target < len(work) and work[target] == ident:
            continue
        if ident in work:
            j = work.index(ident)
            ops.append({"op": "move", "from": f"{prefix}/{j}", "path": f"{prefix}/{target}"})
            work.insert(target, work.pop(j))
        else:
            ops.append({"op": "add", "path": f"{prefix}/{target}", "value": new[target]})
            work.insert(target, ident)
    before = dict(zip(old_ids, old, strict=True))
    for target, ident in enumerate(new_ids):
        if ident in before:
            ops += _ops(before[ident], new[target], f"{prefix}/{target}")
    return ops


def _ops(old: Any, new: Any, prefix: str) -> list[dict[str, Any]]:
    """RFC 6902 ops turning ``old`` into ``new`` (both present), paths under ``prefix``.

    Objects key by key, arrays of id'd records by id, other arrays by jsonpatch. jsonpatch
    compares with Python ``==`` (``1 == True == 1.0``), so where its ops do not rebuild ``new``
    under strict JSON equality the array is replaced whole.
    """
    if json_equal(old, new):
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for k in sorted(set(old) | set(new)):
            where = prefix + pointers.join([k])
            if k not in new:
                ops.append({"op": "remove", "path": where})
            elif k not in old:
                ops.append({"op": "add", "path": where, "value": new[k]})
            else:
                ops += _ops(old[k], new[k], where)
        return ops
    if isinstance(old, list) and isinstance(new, list):
        old_ids, new_ids = _id_tokens(old), _id_tokens(new)
        if old_ids is not None and new_ids is not None:
            return _id_array_ops(old, new, prefix, old_ids, new_ids)
        plain: list[dict[str, Any]] = jsonpatch.make_patch(old, new).patch
        try:
            exact = json_equal(jsonpatch.apply_patch(old, plain), new)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
            exact = False
        if exact:
            return [_prefixed(op, prefix) for op in plain]
    return [{"op": "replace", "path": prefix, "value": new}]


def _line_of(op: Mapping[str, Any], work: Any, base: str) -> str:
    """One op as a line, with the value it replaces or removes read from ``work``."""
    where = op["path"]
    rel = where[len(base):]
    kind = op["op"]
    if kind == "add":
        return f"+ {where}: {_render(op['value'])}"
    if kind == "remove":
        return f"- {where} (was {_render(_at_pointer(work, rel))})"
    if kind == "replace":
        return f"~ {where}: {_render(_at_pointer(work, rel))} -> {_render(op['value'])}"
    if kind == "move":
        moved = _at_pointer(work, op["from"][len(base):])
        ident = f" ({moved['id']})" if isinstance(moved, dict) and "id" in moved else ""
        return f"> {op['from']} -> {where}{ident}"
    return f"{kind} {where}"


def _value_patch(old: Any, new: Any, prefix: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Patch ops turning ``old`` into ``new`` at ``prefix`` (either may be MISSING), with one
    text line per op. The ops are replayed on a copy to read old values and to prove they
    rebuild ``new`` exactly; if they ever did not, one ``replace`` is the honest answer."""
    if old is MISSING and new is MISSING:
        return [], []
    if old is MISSING:
        return [{"op": "add", "path": prefix, "value": new}], [f"+ {prefix}: {_render(new)}"]
    if new is MISSING:
        return [{"op": "remove", "path": prefix}], [f"- {prefix} (was {_render(old)})"]
    ops = _ops(old, new, prefix)
    work = copy.deepcopy(old)
    lines: list[str] = []
    try:
        for op in ops:
            lines.append(_line_of(op, work, prefix))
            relative = {**op, "path": op["path"][len(prefix):]}
            if "from" in op:
                relative["from"] = op["from"][len(prefix):]
            work = jsonpatch.apply_patch(work, [relative], in_place=True)
        exact = json_equal(work, new)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
        exact = False
    if not exact:
        return ([{"op": "replace", "path": prefix, "value": new}],
                [f"~ {prefix}: {_render(old)} -> {_render(new)}"])
    return ops, lines


def _at_pointer(doc: Any, pointer: str) -> Any:
    """The value at a positional pointer as jsonpatch writes it."""
    value = doc
    for token in pointers.split(pointer):
        value = pointers.step(value, token)
    return value


def _documents_patch(old: Mapping[str, Any], new: Mapping[str, Any]
                     ) -> tuple[list[dict[str, Any]], list[str]]:
    """Per key, so one key's odd patch cannot spoil another's and paths stay short."""
    ops: list[dict[str, Any]] = []
    lines: list[str] = []
    for k in sorted(set(old) | set(new)):
        o, n = _value_patch(old.get(k, MISSING), new.get(k, MISSING), pointers.join([k]))
        ops += o
        lines += n
    return ops, lines


def _text(lines: list[str]) -> str:
    """One line per op, each ending in a newline (empty when nothing changed)."""
    return "".join(line + "\n" for line in lines)


def diff_documents(a: Mapping[str, Any], b: Mapping[str, Any]) -> DiffResult:
    """The patch from document ``a`` to ``b`` (for ``checkin --dry-run``)."""
    ops, lines = _documents_patch(a, b)
    return DiffResult(ops, _text(lines))


def positional(doc: Any, path: str) -> str | None:
    """``path`` with id steps replaced by the item's index in ``doc``; None if absent."""
    out: list[str] = []
    value = doc
    for token in pointers.split(path):
        nxt = pointers.step(value, token)
        if nxt is MISSING:
            return None
        if isinstance(value, list):
            token = str(next(i for i, item in enumerate(value) if item is nxt))
        out.append(token)
        value = nxt
    return pointers.join(out)


def _key_doc(blobs: _Blobs, tree: pygit2.Tree, key: str) -> dict[str, Any]:
    value = blobs.value(_blob_id(tree, key + codec.BLOB_SUFFIX), key)
    return {} if value is MISSING else {key: value}


def diff(store: Store, rev1: str | None = None, rev2: str | None = None,
         path: str | None = None) -> DiffResult:
    """The patch from ``rev1`` (default: the first parent of ``rev2``) to ``rev2`` (main).

    With ``path`` only that value is compared; the ops stay absolute, located where the value
    sits in ``rev1`` (in ``rev2`` if it is new), so they apply to the whole ``rev1`` document.
    """
    new_c = store.resolve(rev2 or MAIN)
    if rev1 is not None:
        old_c: pygit2.Commit | None = store.resolve(rev1)
    else:
        old_c = new_c.parents[0] if new_c.parents else None
    blobs = _Blobs(store)
    old_id = str(old_c.id) if old_c is not None else None
    if not path:
        # only keys whose blobs differ are parsed: equal blobs are equal values
        old_files = store.key_blobs(old_c.tree) if old_c is not None else {}
        new_files = store.key_blobs(new_c.tree)
        old_doc, new_doc = {}, {}
        for name in set(old_files) | set(new_files):
            if old_files.get(name) != new_files.get(name):
                k = codec.key_of(name)
                assert k is not None
                if name in old_files:
                    old_doc[k] = blobs.value(old_files[name], k)
                if name in new_files:
                    new_doc[k] = blobs.value(new_files[name], k)
        ops, lines = _documents_patch(old_doc, new_doc)
        return DiffResult(ops, _text(lines), old_id, str(new_c.id), path)
    tokens = _check_path(path)
    key = tokens[0]
    old_doc = _key_doc(blobs, old_c.tree, key) if old_c is not None else {}
    new_doc = _key_doc(blobs, new_c.tree, key)
    a, b = pointers.get(old_doc, path), pointers.get(new_doc, path)
    if a is MISSING and b is MISSING:
        new_name = _name(rev2 or "main", new_c)
        old_name = "its parent" if old_c is None else _name(rev1 or "its parent", old_c)
        raise InputError(f"{path} exists neither at {old_name} nor at {new_name}; "
                         "check the pointer (e.g. /tasks/[id=T-004]/status)")
    where = positional(old_doc, path) if a is not MISSING else positional(new_doc, path)
    assert where is not None
    ops, lines = _value_patch(a, b, where)
    return DiffResult(ops, _text(lines), old_id, str(new_c.id), path)


# -- blame ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BlameEntry:
    """One leaf value and the commit that last set it (along main's first parents)."""

    path: str  # id form where array items have unique ids
    pointer: str  # positional, in the blamed revision
    value: Any
    commit: str
    agent: str
    source: str
    confidence: float | None
    justification: str
    time: int
    iso: str
    verified: bool | str | None = None  # set by gitvault.trust.annotate
    fingerprint: str | None = None
    signer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**_verification(self), "path": self.path, "pointer": self.pointer,
                "value": self.value, "commit": self.commit, "agent": self.agent,
                "source": self.source,
                "confidence": self.confidence, "justification": self.justification,
                "time": self.time, "iso": self.iso}


@dataclass
class _Node:
    """A node of the blamed value; ``pending`` counts its leaves not yet attributed."""

    token: str
    path: str
    pointer: str
    want: Any
    children: list[_Node] = field(default_factory=list)
    pending: int = 1
    writer: pygit2.Commit | None = None

    def leaves(self) -> Iterator[_Node]:
        if not self.children:
            yield self
        for child in self.children:
            yield from child.leaves()


def _steps(value: Any) -> list[tuple[str, str, Any]]:
    """(id-form token, positional token, child) for each child of a container."""
    if isinstance(value, dict):
        return [(k, k, v) for k, v in value.items()]
    if isinstance(value, list):
        if is_id_array(value) and len({str(x["id"]) for x in value}) == len(value):
            return [(f"[id={x['id']}]", str(i), x) for i, x in enumerate(value)]
        return [(str(i), str(i), x) for i, x in enumerate(value)]
    return []


def _build(token: str, path: list[str], pointer: list[str], value: Any) -> _Node:
    node = _Node(token, pointers.join(path), pointers.join(pointer), value)
    for tok, pos, child in _steps(value):
        node.children.append(_build(tok, [*path, tok], [*pointer, pos], child))
    if node.children:
        node.pending = sum(child.pending for child in node.children)
    return node


def _attribute(node: _Node, have: Any, commit: pygit2.Commit) -> int:
    """Credit ``commit`` with the pending leaves under ``node`` whose value differs in its
    first parent (``have``); descends only where the parent's subtree differs."""
    if node.pending == 0 or json_equal(node.want, have):
        return 0
    if not node.children:
        node.writer, node.pending = commit, 0
        return 1
    done = 0
    for child in node.children:
        sub = MISSING if have is MISSING else pointers.step(have, child.token)
        done += _attribute(child, sub, commit)
    node.pending -= done
    return done


def id_form(doc: Any, path: str) -> str:
    """``path`` with positional steps into arrays of uniquely-id'd items written as id steps."""
    out: list[str] = []
    value = doc
    for token in pointers.split(path):
        if isinstance(value, list):
            for tok, pos, child in _steps(value):
                if token in (tok, pos):
                    out.append(tok)
                    value = child
                    break
            else:
                out.append(token)
                value = pointers.step(value, token)
            continue
        out.append(token)
        value = pointers.step(value, token)
    return pointers.join(out)


def blame(store: Store, path: str, rev: str = MAIN) -> list[BlameEntry]:
    """Who last set the value at ``path`` (a leaf), or each leaf under it, as of ``rev``.

    One walk along first parents from ``rev``: commits whose blob of the key equals their
    parent's are skipped unparsed; at the others every pending leaf whose value differs in the
    parent is credited to the commit. Leaves left at the root are the root's (the import).
    """
    tokens = _check_path(path)
    head = store.resolve(rev)
    blobs = _Blobs(store)
    if not tokens:
        return [e for k in sorted(blobs.document(head.tree))
                for e in blame(store, pointers.join([k]), str(head.id))]
    key = tokens[0]
    kfile = key + codec.BLOB_SUFFIX
    doc = _key_doc(blobs, head.tree, key)
    want = pointers.get(doc, path)
    if want is MISSING:
        raise InputError(f"{path} does not exist at {_name(rev, head)}; check the pointer "
                         "(e.g. /tasks/[id=T-004]/status) against the document there")
    idp = id_form(doc, path)
    pos = positional(doc, path)
    assert pos is not None
    id_tokens = pointers.split(idp)
    root = _build("", id_tokens, pointers.split(pos), want)
    probe = changes.Probe(id_tokens)
    commit = head
    while root.pending:
        if not commit.parents:
            for leaf in root.leaves():
                if leaf.writer is None:
                    leaf.writer = commit
            break
        parent = commit.parents[0]
        if probe.rules_out(commit.message):
            commit = parent  # its Changed: lines rule the value out: no tree or blob read
            continue
        blob = _blob_id(commit.tree, kfile)
        pblob = _blob_id(parent.tree, kfile)
        if blob != pblob:
            pvalue = blobs.value(pblob, key)
            have = MISSING if pvalue is MISSING else pointers.get({key: pvalue}, idp)
            _attribute(root, have, commit)
        commit = parent
    out = []
    for leaf in root.leaves():
        assert leaf.writer is not None
        w = Writer.of(leaf.writer)
        out.append(BlameEntry(leaf.path, leaf.pointer, leaf.want, w.commit, w.agent, w.source,
                              w.confidence, w.justification, w.time,
                              _iso(w.time, leaf.writer.commit_time_offset)))
    return out


# -- export -----------------------------------------------------------------------------------

EXPORT_FORMATS = ("json", "jsonl")


def _line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


def export(store: Store, rev: str | None = None, fmt: str = "json",
           history: bool = False) -> str:
    """The document at ``rev`` as canonical JSON or JSON Lines, optionally with its log.

    ``json`` with history wraps it as ``{"commit", "document", "history"}`` so that the log can
    never collide with a key of the document; ``jsonl`` appends one line per log entry.
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    commit = store.resolve(rev or MAIN)
    doc = _Blobs(store).document(commit.tree)
    entries = log(store, str(commit.id)) if history else []
    if fmt == "json":
        if not history:
            return codec.dumps_document(doc).decode("utf-8")
        whole = {"commit": str(commit.id), "document": doc,
                 "history": [e.to_json() for e in entries]}
        return codec.dumps(whole).decode("utf-8")
    lines = [_line({"key": k, "value": v}) for k, v in sorted(doc.items())]
    lines += [_line(e.to_json()) for e in entries]
    return "".join(line + "\n" for line in lines)


__all__ = [
    "BlameEntry", "DiffResult", "LogEntry", "Writer", "blame", "diff", "diff_documents",
    "entry_of", "export", "id_form", "last_writer", "legacy_events", "log", "parse_time",
    "positional", "revision", "show", "value_at",
]
