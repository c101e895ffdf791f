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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gitvault.errors import CodecError

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
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
        if isinstance(v, float):
            if not math.isfinite(v):
                raise CodecError(f"{name}: {v} is not JSON; use null or a string instead")
            continue
        if isinstance(v, str):
            if (
                len(v) * 4 > limits.max_string_bytes
                and len(v.encode("utf-8", "surrogatepass")) > limits.max_string_bytes
            ):
                raise CodecError(
                    f"{name}: a string is longer than maxStringBytes={limits.max_string_bytes}"
                )
            continue
        if not isinstance(v, dict | list):
            continue
        if depth > limits.max_depth:
            raise CodecError(f"{name}: nesting deeper than maxDepth={limits.max_depth}")
        if isinstance(v, dict):
            if len(v) > limits.max_keys:
                raise CodecError(
                    f"{name}: an object has {len(v)} keys, more than maxKeys={limits.max_keys}"
                )
            stack.extend((k, depth) for k in v)
            stack.extend((x, depth + 1) for x in v.values())
        else:
            stack.extend((x, depth + 1) for x in v)


def check_size(size: int, limits: Limits, name: str) -> None:
    if size > limits.max_document_bytes:
        raise CodecError(
            f"{name}: {size} bytes is more than maxDocumentBytes="
            f"{limits.max_document_bytes}; split the memory or raise the limit "
            "(`gitvault config set maxDocumentBytes N`)"
        )


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
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise CodecError(
                f"{name}: a lone UTF-16 surrogate at character {e.start}; UTF-8 cannot store it"
            ) from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
        if _SURROGATE_ESCAPE.search(text):  # "\ud800" parses, but UTF-8 cannot store it
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        return value
    except UnicodeEncodeError:
        raise CodecError(
            f"{name}: a string holds a lone UTF-16 surrogate (\\udXXX escape); "
            "UTF-8 cannot store it"
        ) from None
    except CodecError as e:
        raise CodecError(f"{name}: {e}") from None
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise CodecError(f"{name}: invalid JSON at {where}: {e.msg}") from None
    except RecursionError:
        raise CodecError(f"{name}: nesting too deep (limit maxDepth)") from None
    except ValueError as e:  # an integer too long to convert
        raise CodecError(f"{name}: cannot parse: {e}") from None


def loads_document(
    data: bytes | str, name: str = "document", limits: Limits = DEFAULT_LIMITS
) -> Document:
    """Parse a whole document: a JSON object whose keys are valid top-level keys."""
    check_size(len(data), limits, name)
    return check_document(loads(data, name), name)  # limits: checked when encoded


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


_ORJSON = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
# Where orjson's output differs from the canonical (stdlib) form: floats below 1e-4 ("0.00001"
# for 1e-05, "1e-7" for 1e-07). Seen nowhere else in 3 million sampled floats; a match (even a
# false one inside a string) only sends the value down the slow, reference path.
_ORJSON_DIFFERS = re.compile(rb"0\.0000|e-\d(?!\d)")
# orjson reads integers beyond 64 bits as floats; digits -> "0", the rest -> " " finds them fast
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))


def common_prefix(a: Sequence[object], b: Sequence[object]) -> int:
    """Length of the longest common prefix of two byte strings (or other sequences): binary
    search on slices, so bytes compare at memcmp speed."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def common_suffix(a: Sequence[object], b: Sequence[object], limit: int) -> int:
    """Length of the longest common suffix, at most ``limit``."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid : len(a) - lo] == b[len(b) - mid : len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


_LIKE_MIN = 1 << 16  # below this, scanning everything is cheaper than comparing first


def dumps(value: JSON, like: bytes | None = None) -> bytes:
    """The canonical bytes of one value (what is stored as ``K.json``).

    The canonical form is ``json.dumps(indent=2, sort_keys=True, ensure_ascii=False)`` plus a
    newline. orjson produces the same bytes ~40x faster except for the float forms above, so
    it is used whenever its output cannot differ; NaN and infinities never get here (parsing
    and :func:`check_limits` refuse them; orjson would write ``null``).

    ``like`` may be the canonical bytes of an earlier version (a checkin's base): where
    orjson's output equals them, it parses to the same values and so is canonical, and only
    the stretch that differs is searched for those float forms (a 2 MB key: ~2.5 ms less).
    """
    try:
        out = orjson.dumps(value, option=_ORJSON)
    except (orjson.JSONEncodeError, TypeError):  # >64-bit ints, surrogates, non-JSON types
        return _dumps_reference(value)
    scan = out
    if like is not None and len(out) >= _LIKE_MIN:
        p = common_prefix(out, like)
        s = common_suffix(out, like, min(len(out), len(like)) - p)
        scan = out[max(0, p - 8) : len(out) - s + 8]  # a match may straddle the edges
    if b"0.0000" in scan or (b"e-" in scan and _ORJSON_DIFFERS.search(scan)):
        return _dumps_reference(value)
    if b"null" in out:  # orjson writes NaN and infinities as null: make sure there were none
        try:
            json.dumps(value, allow_nan=False, check_circular=False, separators=(",", ":"))
        except ValueError:
            raise CodecError("NaN and Infinity are not JSON; use null or a string") from None
    return out


def canonical(data: bytes, name: str = "input") -> bytes:
    """The canonical bytes of JSON given in any form (strictly parsed): what it should be."""
    return dumps(loads(data, name))


def is_canonical(data: bytes) -> bool:
    """Whether ``data`` is valid JSON already in canonical form (what :func:`canonical` gives).

    Fast (orjson) yet exact: anything the strict parser would treat differently (a duplicate
    key, a number orjson reads otherwise) changes the re-encoded bytes, so they would differ.
    """
    if b"0" * 19 in data.translate(_DIGITS):  # a 19-digit run: leave it to the strict path
        return False
    try:
        return dumps(orjson.loads(data)) == data
    except (orjson.JSONDecodeError, CodecError):
        return False


def loads_trusted(data: bytes, name: str = "blob") -> JSON:
    """Parse a blob the vault wrote itself (already checked): fast, same result."""
    if b"0" * 19 in data.translate(_DIGITS):  # a 19-digit run: maybe an int orjson can't hold
        return loads(data, name)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return loads(data, name)


def _dumps_reference(value: JSON) -> bytes:
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


def _maybe_over(data: bytes, limits: Limits) -> bool:
    """Could this canonical blob break a depth or string limit? Cheap byte tests first.

    A value nested at depth d is indented 2*(d-2) spaces in its key's blob, and no string can
    be longer than the blob; only then does the full walk run.
    """
    deep = b"\n" + b" " * max(0, 2 * (limits.max_depth - 2)) in data
    # a string never spans lines, so only a line that long can hold one that long
    return deep or (
        len(data) > limits.max_string_bytes
        and max(map(len, data.splitlines())) > limits.max_string_bytes
    )


def _check_keys(value: JSON, limits: Limits, name: str) -> None:
    """Objects with more than maxKeys keys (only containers are visited)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            if len(v) > limits.max_keys:
                raise CodecError(
                    f"{name}: an object has {len(v)} keys, more than maxKeys={limits.max_keys}"
                )
            stack.extend(x for x in v.values() if type(x) is dict or type(x) is list)
        elif type(v) is list:
            stack.extend(x for x in v if type(x) is dict or type(x) is list)


def encode_document(
    doc: Mapping[str, JSON],
    limits: Limits = DEFAULT_LIMITS,
    like: Mapping[str, bytes] | None = None,
) -> dict[str, bytes]:
    """Split a checked document into ``{file name: canonical bytes}``, within ``limits``.

    ``like``: canonical bytes of an earlier version by file name, if at hand (see dumps).
    """
    check_document(doc)
    if len(doc) > limits.max_keys or any(len(k) > limits.max_string_bytes for k in doc):
        check_limits(doc, limits)
    files = {}
    for key, value in doc.items():
        data = dumps(value, like.get(key + BLOB_SUFFIX) if like else None)
        if _maybe_over(data, limits):
            check_limits({key: value}, limits)
        elif data.count(b"\n") > limits.max_keys and data.count(b'": ') > limits.max_keys:
            # more keys in the blob than one object may have (each member is on a line of its
            # own, and counting newlines is the faster scan)
            _check_keys(value, limits, "document")
        files[key + BLOB_SUFFIX] = data
    check_size(sum(map(len, files.values())), limits, "document")
    return files


def key_of(filename: str) -> str | None:
    """The key stored in a root file name, or None for files that are not keys."""
    if filename.endswith(BLOB_SUFFIX) and not filename.startswith("."):
        return filename[: -len(BLOB_SUFFIX)]
    return None


def changed_keys(old: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    """Keys added, removed or changed between two encoded documents (bytes or blob ids)."""
    names: Iterable[str] = set(old) | set(new)
    return sorted(k for n in names if old.get(n) != new.get(n) and (k := key_of(n)) is not None)
