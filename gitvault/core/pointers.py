"""JSON Pointers (RFC 6901) with id steps for arrays of objects that carry an ``id``.

``/tasks/3/status`` names the fourth item; ``/tasks/[id=T-004]/status`` names the item whose
``id`` is ``"T-004"`` wherever it sits, so a path means the same value across history even when
items move. ``[id=7]`` matches a string id ``"7"`` first, else the integer 7.
"""

from __future__ import annotations

import re
from typing import Any

from gitvault.core.jsonmerge import MISSING
from gitvault.errors import InputError

_ID_STEP = re.compile(r"\[id=(.*)\]")


def split(pointer: str) -> list[str]:
    """The unescaped tokens of a pointer; ``""`` is the whole document."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise InputError(f"pointer {pointer!r} must start with '/' (e.g. /tasks/[id=T-004]/status)")
    if re.search(r"~(?![01])", pointer):
        raise InputError(f"pointer {pointer!r}: '~' must be written ~0 and '/' in a key ~1")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def join(tokens: list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _find_id(items: list[Any], wanted: str) -> int | None:
    for want in (wanted, int(wanted) if re.fullmatch(r"-?\d+", wanted) else None):
        if want is None:
            continue
        for i, item in enumerate(items):
            if isinstance(item, dict) and "id" in item:
                v = item["id"]
                if type(v) is type(want) and v == want:
                    return i
    return None


def step(value: Any, token: str) -> Any:
    """One step down from ``value``; MISSING when there is nothing there."""
    if isinstance(value, dict):
        return value.get(token, MISSING)
    if isinstance(value, list):
        if m := _ID_STEP.fullmatch(token):
            i = _find_id(value, m.group(1))
            return MISSING if i is None else value[i]
        if re.fullmatch(r"0|[1-9]\d*", token) and int(token) < len(value):
            return value[int(token)]
    return MISSING


def get(doc: Any, pointer: str) -> Any:
    """The value at ``pointer`` (positional or id steps), or MISSING."""
    value = doc
    for token in split(pointer):
        value = step(value, token)
        if value is MISSING:
            break
    return value


def top_key(pointer: str) -> str:
    tokens = split(pointer)
    if not tokens:
        raise InputError("the pointer names the whole document; name a key, e.g. /tasks")
    return tokens[0]
