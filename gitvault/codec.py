"""Canonical JSON: the one byte form each top-level key is stored in.

One blob per top-level key, ``indent=2``, sorted keys, UTF-8 without escapes, a trailing
newline. Pretty-printing puts one value per line so git's line merge and ``git diff`` work on
values; sorting makes equal documents byte-equal so unchanged keys keep their blob. Parsing is
strict (duplicate keys, NaN/Infinity, overflowing floats, invalid UTF-8, lone surrogates are
refused) because whatever we accept must come back out byte-identical.

Knows nothing of git.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import CodecError

KEY_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_KEY_RE = re.compile(KEY_PATTERN)
BLOB_SUFFIX = ".json"
RESERVED = ".gitvault"

JSON = Any
Document = dict[str, Any]


@dataclass(frozen=True)
class Limits:
    """Explicit bounds on what a proposal may be (settings ``gitvault.max*`` override them)."""

    max_document_bytes: int = 64 * 2**20
    max_depth: int = 100
    max_string_bytes: int = 16 * 2**20
    max_keys: int = 100_000


DEFAULT_LIMITS = Limits()


def check_limits(value: JSON, limits: Limits = DEFAULT_LIMITS, name: str = "document") -> None:
    """Refuse values deeper, wider or with longer strings than ``limits`` allow."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            if len(v) * 4 > limits.max_string_bytes and len(
                    v.encode("utf-8", "surrogatepass")) > limits.max_string_bytes:
                raise CodecError(f"{name}: a string is longer than maxStringBytes="
                                 f"{limits.max_string_bytes}")
            continue
        if not isinstance(v, dict | list):
            continue
        if depth > limits.max_depth:
            raise CodecError(f"{name}: nesting deeper than maxDepth={limits.max_depth}")
        if isinstance(v, dict):
            if len(v) > limits.max_keys:
                raise CodecError(f"{name}: an object has {len(v)} keys, more than "
                                 f"maxKeys={limits.max_keys}")
            stack.extend((k, depth) for k in v)
            stack.extend((x, depth + 1) for x in v.values())
        else:
            stack.extend((x, depth + 1) for x in v)


def check_size(size: int, limits: Limits, name: str) -> None:
    if size > limits.max_document_bytes:
        raise CodecError(f"{name}: {size} bytes is more than maxDocumentBytes="
                         f"{limits.max_document_bytes}; split the memory or raise the limit "
                         "(`gitvault config set maxDocumentBytes N`)")


def check_key(key: object) -> str:
    """Return ``key`` if it may be a top-level key (and so a file name), else raise."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise CodecError(
            f"invalid top-level key {key!r}: keys must match {KEY_PATTERN} "
            "(letters, digits, '.', '_', '-'; start with a letter or digit; at most 128)"
        )
    return key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise CodecError(f"duplicate key {k!r} in one object")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise CodecError(f"{name} is not JSON; use null or a string instead")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise CodecError(f"number {text[:40]} overflows a double; store it as a string")
    return value


def loads(data: bytes | str, name: str = "input") -> JSON:
    """Parse one JSON value strictly; ``name`` goes into error messages."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise CodecError(f"{name}: invalid UTF-8 at byte {e.start}: {e.reason}") from None
    else:
        text = data
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except CodecError as e:
        raise CodecError(f"{name}: {e}") from None
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise CodecError(f"{name}: invalid JSON at {where}: {e.msg}") from None
    except (ValueError, RecursionError) as e:  # int too long, nesting too deep
        raise CodecError(f"{name}: cannot parse: {e}") from None


def loads_document(data: bytes | str, name: str = "document",
                   limits: Limits = DEFAULT_LIMITS) -> Document:
    """Parse a whole document: a JSON object whose keys are valid top-level keys."""
    check_size(len(data), limits, name)
    doc = check_document(loads(data, name), name)
    check_limits(doc, limits, name)
    return doc


def check_document(value: object, name: str = "document") -> Document:
    if not isinstance(value, dict):
        raise CodecError(
            f"{name}: the document must be a JSON object mapping keys to values, "
            f"not {type(value).__name__ if value is not None else 'null'}"
        )
    for key in value:
        try:
            check_key(key)
        except CodecError as e:
            raise CodecError(f"{name}: {e}") from None
    return value


def dumps(value: JSON) -> bytes:
    """The canonical bytes of one value (what is stored as ``K.json``)."""
    try:
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        raise CodecError("a string holds a lone UTF-16 surrogate; UTF-8 cannot store it") from None
    except (TypeError, ValueError, RecursionError) as e:
        raise CodecError(f"value is not storable as JSON: {e}") from None


def dumps_document(doc: Mapping[str, JSON]) -> bytes:
    """The whole document in the same canonical style (for checkout output)."""
    return dumps(dict(doc))


def encode_document(doc: Mapping[str, JSON], limits: Limits | None = None) -> dict[str, bytes]:
    """Split a checked document into ``{file name: canonical bytes}``."""
    check_document(doc)
    if limits is not None:
        check_limits(doc, limits)
    files = {key + BLOB_SUFFIX: dumps(value) for key, value in doc.items()}
    if limits is not None:
        check_size(sum(map(len, files.values())), limits, "document")
    return files


def key_of(filename: str) -> str | None:
    """The key stored in a root file name, or None for files that are not keys."""
    if filename.endswith(BLOB_SUFFIX) and not filename.startswith("."):
        return filename[: -len(BLOB_SUFFIX)]
    return None


def changed_keys(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> list[str]:
    """Keys added, removed or changed between two encoded documents, sorted."""
    names: Iterable[str] = set(old) | set(new)
    return sorted(
        k for n in names if old.get(n) != new.get(n) and (k := key_of(n)) is not None
    )
