"""What every history question needs: the writer of a value, times, blobs read once."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pygit2
from pygit2.enums import SortMode

from gitvault.core import codec, pointers
from gitvault.core.jsonmerge import MISSING, json_equal
from gitvault.errors import InputError
from gitvault.git.storage import Store
from gitvault.model import changes
from gitvault.model.provenance import DEFAULT_CONFIDENCE, parse_trailers

LEGACY_DIR = "legacy-eventlog"


@dataclass(frozen=True)
class LastWriter:
    commit: str
    agent: str
    source: str
    confidence: float | None
    justification: str
    time: int

    @classmethod
    def of(cls, commit: pygit2.Commit) -> LastWriter:
        t = parse_trailers(commit.message)
        return cls(
            str(commit.id),
            t.get("Agent-Id", commit.author.name),
            t.get("Source", ""),
            trailer_confidence(t),
            t.get("Justification", ""),
            commit.commit_time,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "agent": self.agent,
            "source": self.source,
            "confidence": self.confidence,
            "justification": self.justification,
            "time": self.time,
        }


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


def last_writer(
    store: Store, head: pygit2.Oid, path: str, hide: pygit2.Oid | None = None
) -> LastWriter | None:
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
            return LastWriter.of(commit)
    return None


# -- small helpers ----------------------------------------------------------------------------


def trailer_confidence(t: Mapping[str, str]) -> float | None:
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
        return datetime.fromtimestamp(
            seconds, timezone(timedelta(minutes=offset_minutes))
        ).isoformat()
    except (OverflowError, OSError, ValueError):  # a hand-made commit at the edge of time
        return f"@{seconds:g}"


_UNIX = re.compile(r"-?\d+(\.\d+)?")
_YEAR_1, _YEAR_9999 = -62135596800.0, 253402300799.0


def _in_range(seconds: float, given: object) -> float:
    if not _YEAR_1 <= seconds <= _YEAR_9999:  # also refuses NaN and infinities
        raise InputError(
            f"timestamp {given!r} is outside the years 1-9999; give ISO-8601 or unix seconds"
        )
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
    """The signature fields of an entry, once gitvault.engine.trust.annotate has filled them."""
    if entry.verified is None:
        return {}
    return {"verified": entry.verified, "fingerprint": entry.fingerprint, "signer": entry.signer}
