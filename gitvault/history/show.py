"""``show`` (the document or a value at a revision or a time) and ``export``."""

from __future__ import annotations

import json
from typing import Any

import pygit2

from gitvault.core import codec
from gitvault.core.jsonmerge import MISSING
from gitvault.errors import InputError
from gitvault.git.storage import MAIN, Store
from gitvault.history import walk
from gitvault.history.common import _Blobs, _check_path, _iso, _name, parse_time
from gitvault.history.log import log

# -- show -------------------------------------------------------------------------------------


def revision(store: Store, rev: str | None = None, at: str | float | None = None) -> pygit2.Commit:
    """The commit ``rev`` names (default main), or with ``at`` the newest commit along its
    first parents made at or before that time: what main held then (merged agent commits were
    never main's head themselves, so they are not candidates)."""
    commit = store.resolve(rev or MAIN)
    if at is None:
        return commit
    when = parse_time(at)
    found = walk.first_parent_at(store, commit, when)
    if found is not None:
        return found
    raise InputError(
        f"{rev or 'main'} has no commit at or before {_iso(when)}; its history starts at "
        f"{_iso(_root_time(commit))} (see `gitvault log`)"
    )


def _root_time(commit: pygit2.Commit) -> int:
    while commit.parents:
        commit = commit.parents[0]
    return commit.commit_time


def show(
    store: Store, rev: str | None = None, at: str | float | None = None, path: str | None = None
) -> Any:
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


# -- export -----------------------------------------------------------------------------------

EXPORT_FORMATS = ("json", "jsonl")


def _line(value: Any) -> str:
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    )


def export(store: Store, rev: str | None = None, fmt: str = "json", history: bool = False) -> str:
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
        whole = {
            "commit": str(commit.id),
            "document": doc,
            "history": [e.to_json() for e in entries],
        }
        return codec.dumps(whole).decode("utf-8")
    lines = [_line({"key": k, "value": v}) for k, v in sorted(doc.items())]
    lines += [_line(e.to_json()) for e in entries]
    return "".join(line + "\n" for line in lines)
