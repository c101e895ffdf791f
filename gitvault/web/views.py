"""What the pages show, computed from the library: no HTML here (the templates escape it)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gitvault.api.vault import Vault
from gitvault.core import pointers
from gitvault.core.jsonmerge import is_id_array
from gitvault.history.blame import _steps  # (id token, positional token, child) of a container
from gitvault.history.summary import render
from gitvault.history.timeline import newest_first
from gitvault.model.provenance import parse_trailers

PAGE_ITEMS = 100  # array items shown at once on the document page
MAX_ROWS = 3000  # rows of one document page, whatever its shape
ACTIVITY_COMMITS = 2000  # how far back the leases page looks for agents' last checkins


@dataclass(frozen=True)
class Row:
    """One line of the document view."""

    depth: int
    label: str
    path: str  # id form, for blame and links
    kind: str  # object | array | leaf | more
    text: str = ""  # a leaf's value, or a container's size
    offset: int = 0  # for "more": the next items' start


def document_rows(value: Any, path: str, offset: int = 0) -> list[Row]:
    """The value at ``path`` as indented rows; arrays longer than a page show one page (from
    ``offset`` for the array at ``path`` itself) and a row leading to the next."""
    rows: list[Row] = []
    label = pointers.split(path)[-1] if pointers.split(path) else "document"
    _walk(rows, value, path, label, 0, offset)
    return rows


def _walk(rows: list[Row], value: Any, path: str, label: str, depth: int, offset: int) -> None:
    if len(rows) >= MAX_ROWS:
        return
    if isinstance(value, dict | list):
        kind = "object" if isinstance(value, dict) else "array"
        size = f"{{{len(value)} keys}}" if isinstance(value, dict) else f"[{len(value)} items]"
        rows.append(Row(depth, label, path, kind, size))
        start = offset if isinstance(value, list) else 0
        shown = _window(value, start) if isinstance(value, list) else _steps(value)
        for token, _pos, child in shown:
            _walk(rows, child, path + pointers.join([token]), token, depth + 1, 0)
        end = start + len(shown)
        if isinstance(value, list) and end < len(value):
            rows.append(
                Row(
                    depth + 1,
                    f"items {end} to {min(end + PAGE_ITEMS, len(value)) - 1}",
                    path,
                    "more",
                    f"{len(value) - end} more",
                    end,
                )
            )
        return
    rows.append(Row(depth, label, path, "leaf", render(value, 200)))


def _window(items: list[Any], start: int) -> list[tuple[str, str, Any]]:
    """``_steps`` of one page of an array (id steps when the whole array has unique ids),
    without building the steps of the other items."""
    window = items[start : start + PAGE_ITEMS]
    by_id = is_id_array(items) and len({str(x["id"]) for x in items}) == len(items)
    return [
        (f"[id={x['id']}]" if by_id else str(i), str(i), x) for i, x in enumerate(window, start)
    ]


def activity(vault: Vault) -> dict[str, dict[str, Any]]:
    """Each agent's latest commit on main among the newest ``ACTIVITY_COMMITS`` (trailers only)."""
    head = vault.store.ref("refs/heads/main")
    seen: dict[str, dict[str, Any]] = {}
    if head is None:
        return seen
    for n, commit in enumerate(newest_first(vault.store.commit(head))):
        if n >= ACTIVITY_COMMITS:
            break
        agent = parse_trailers(commit.message).get("Agent-Id", commit.author.name)
        if agent not in seen:
            seen[agent] = {
                "commit": str(commit.id),
                "time": commit.commit_time,
                "subject": commit.message.split("\n", 1)[0],
            }
    return seen


def ago(seconds: float, now: float | None = None) -> str:
    """``3 min ago`` / ``in 5 min``: how people read lease times."""
    delta = (now if now is not None else time.time()) - seconds
    future = delta < 0
    d = abs(delta)
    if d < 60:
        text = f"{d:.0f} s"
    elif d < 3600:
        text = f"{d / 60:.0f} min"
    elif d < 86400:
        text = f"{d / 3600:.1f} h"
    else:
        text = f"{d / 86400:.1f} days"
    return f"in {text}" if future else f"{text} ago"
