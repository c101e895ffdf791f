"""Merging keys whose two sides changed different elements, without a text merge.

Why: with eight agents on one 1,000-item key nearly every checkin is a merge, and git's 3-way
line merge of the whole 190 KB key (plus re-checking its result as JSON) was most of a
checkin's cost. When main and the proposal changed *different* items of an array of objects
with ids, or different members of an object, the result is known without merging text: take
main's elements and put the proposal's changed elements in. A key's canonical bytes are its
elements joined by ``,\\n  `` (indent 2, a string never holds a raw newline), so elements are
split, compared and spliced as bytes; ids and member names are read from their one line, and
no element is parsed.

The result is, by construction, what the structural merge (:func:`gitvault.core.jsonmerge.merge3`)
would produce, encoded canonically; ``tests/test_splice.py`` checks that property on random
documents. The splice applies only where that result is also what git's text merge would
have kept, so choosing it never changes a merge's outcome:

- arrays: every item of all three versions is an object with a string or integer ``id``
  (one ``"id": ...`` line at indent 4), ids unique in each; the ids the two sides changed
  (added, removed or modified) are disjoint; the proposal kept the base's order and added
  items only at its end (the structural merge would move an item added in the middle to
  the end, and would drop a move);
- objects: the member names the two sides changed are disjoint.

Anything else returns None, and the caller merges as before (git, then the structural merge).
"""

from __future__ import annotations

import re

from gitvault.core.codec import common_prefix, common_suffix

_SEPARATOR = re.compile(rb",\n  (?! )")  # between two elements of a canonical container
# the id of an item: its member line at indent 4, a string or an integer, nothing else
_ID = re.compile(rb'\n    "id": ("(?:[^"\\\n]|\\.)*"|-?(?:0|[1-9][0-9]*)),?\n')
_NAME = re.compile(rb'"(?:[^"\\\n]|\\.)*"')  # a member's name, at the start of its element


def _container(data: bytes) -> bool:
    """Whether ``data`` looks like a non-empty canonical container (it is canonical JSON)."""
    return len(data) >= 6 and data[1:4] == b"\n  " and data[-3:] in (b"\n]\n", b"\n}\n")


def _split(run: bytes) -> list[bytes]:
    return _SEPARATOR.split(run)


def _at_boundary(data: bytes, pos: int, end: int) -> bool:
    """Whether data[pos:end] is a run of whole elements of the container ``data``."""
    before = pos == 4 or data[pos - 4 : pos] == b",\n  "
    after = end == len(data) - 3 or (
        data[end : end + 4] == b",\n  " and data[end + 4 : end + 5] != b" "
    )
    return before and after


def _locate(ours: bytes, run: bytes) -> int:
    """Where ``run`` (whole elements) stands in ``ours``, -1 unless exactly once."""
    pos = ours.find(run, 4)
    while pos >= 0 and not _at_boundary(ours, pos, pos + len(run)):
        pos = ours.find(run, pos + 1)
    if pos < 0:
        return -1
    again = ours.find(run, pos + 1)
    while again >= 0 and not _at_boundary(ours, again, again + len(run)):
        again = ours.find(run, again + 1)
    return pos if again < 0 else -1


def _join(kind: bytes, elements: list[bytes]) -> bytes:
    if not elements:
        return kind + (b"]" if kind == b"[" else b"}") + b"\n"
    close = b"\n]\n" if kind == b"[" else b"\n}\n"
    return kind + b"\n  " + b",\n  ".join(elements) + close


def _replace(ours: bytes, pos: int, end: int, run: list[bytes]) -> bytes:
    """``ours`` with its elements ours[pos:end] replaced by ``run`` (maybe none)."""
    if run:
        return ours[:pos] + b",\n  ".join(run) + ours[end:]
    if pos > 4:  # drop the separator before the run
        return ours[: pos - 4] + ours[end:]
    if end < len(ours) - 3:  # the run was first: drop the separator after it
        return ours[:pos] + ours[end + 4 :]
    return _join(ours[:1], [])


def _append(data: bytes, elements: list[bytes]) -> bytes:
    if not elements:
        return data
    if len(data) < 6:  # an empty container
        return _join(data[:1], elements)
    return data[:-3] + b",\n  " + b",\n  ".join(elements) + data[-3:]


def splice(base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """The merged canonical bytes of one key, or None when the splice does not apply.

    Only the run of whole elements around the proposal's edit (found with two ``memcmp``
    scans, :func:`window`, which the ``Changed:`` index also uses) is split; main must hold
    that run unchanged, exactly once, which shows that main did not touch those elements.
    """
    kind = base[:1]
    if kind not in (b"[", b"{") or ours[:1] != kind or theirs[:1] != kind:
        return None
    if not (_container(base) and _container(ours) and _container(theirs)):
        return None
    found = window(base, theirs)
    if found is None:
        return None
    old_run, new_run, start, end_old = found
    pos = _locate(ours, old_run)
    if pos < 0 or ours == base:
        return None
    old, new = _split(old_run), _split(new_run)
    if kind == b"[":
        return _arrays(
            ours,
            pos,
            pos + len(old_run),
            old,
            new,
            end_old == len(base) - 3,
            start + len(new_run) == len(theirs) - 3,
        )
    return _objects(base, ours, pos, pos + len(old_run), start, end_old, old, new)


def _ids(elements: list[bytes]) -> list[bytes] | None:
    """Each element's id bytes, if every element is an object with an id (one each)."""
    out = []
    for e in elements:
        found = [m.group(1) for m in _ID.finditer(e)]
        if len(found) != 1 or not e.startswith(b"{\n"):
            return None
        out.append(found[0])
    return out if len(set(out)) == len(out) else None


def _arrays(
    ours: bytes,
    pos: int,
    end: int,
    old: list[bytes],
    new: list[bytes],
    base_end: bool,
    theirs_end: bool,
) -> bytes | None:
    oi, ni = _ids(old), _ids(new)
    if oi is None or ni is None:
        return None
    old_ids = set(oi)
    kept = [i for i in ni if i in old_ids]
    if kept != [i for i in oi if i in set(kept)]:
        return None  # the proposal moved items
    added = [i for i in ni if i not in old_ids]
    if added and (not theirs_end or ni[len(ni) - len(added) :] != added):
        return None  # the proposal added items before its end
    for i in added:  # main must not hold an item with that id (it may have added one)
        if b'\n    "id": ' + i + b",\n" in ours or b'\n    "id": ' + i + b"\n" in ours:
            return None
    # main's items stay in main's order, the proposal's new items go last (as merge3 does)
    return _append(
        _replace(ours, pos, end, new[: len(new) - len(added)]), new[len(new) - len(added) :]
    )


def _element_after(data: bytes, end: int) -> bytes:
    """The element that follows position ``end`` (a separator), b"" at the end."""
    if end >= len(data) - 3:
        return b""
    nxt = _SEPARATOR.search(data, end + 4)
    return data[end + 4 : nxt.start() if nxt else len(data) - 3]


def _element_before(data: bytes, pos: int) -> bytes:
    if pos <= 4:
        return b""
    prev = data.rfind(b",\n  ", 0, pos - 4)
    while prev >= 0 and data[prev + 4 : prev + 5] == b" ":
        prev = data.rfind(b",\n  ", 0, prev)
    return data[(prev + 4 if prev >= 0 else 4) : pos - 4]


def _names(elements: list[bytes]) -> list[bytes] | None:
    out = []
    for e in elements:
        m = _NAME.match(e)
        if m is None or e[m.end() : m.end() + 2] != b": ":
            return None
        out.append(m.group())
    return out


def _objects(
    base: bytes,
    ours: bytes,
    pos: int,
    end: int,
    start: int,
    end_old: int,
    old: list[bytes],
    new: list[bytes],
) -> bytes | None:
    on, nn = _names(old), _names(new)
    if on is None or nn is None:
        return None
    added = set(nn) - set(on)
    for n in added:  # main must not have added that member itself
        if b"\n  " + n + b": " in ours:
            return None
    if added and (
        _element_before(ours, pos) != _element_before(base, start)
        or _element_after(ours, end) != _element_after(base, end_old)
    ):
        return None  # main added members next to the run: the order would need names
    return _replace(ours, pos, end, new)


def window(old: bytes, new: bytes) -> tuple[bytes, bytes, int, int] | None:
    """The runs of whole elements of two canonical containers that hold every difference,
    with where they start (the same in both) and where the old one ends."""
    p = common_prefix(old, new)
    s = common_suffix(old, new, min(len(old), len(new)) - p)
    start = old.rfind(b",\n  ", 0, p - 1)
    while start >= 0 and old[start + 4 : start + 5] == b" ":
        start = old.rfind(b",\n  ", 0, start)
    start = 4 if start < 0 else start + 4
    end_old = old.find(b",\n  ", len(old) - s)
    while end_old >= 0 and old[end_old + 4 : end_old + 5] == b" ":
        end_old = old.find(b",\n  ", end_old + 1)
    if end_old < 0:
        end_old, end_new = len(old) - 3, len(new) - 3
    else:
        end_new = end_old + len(new) - len(old)
    if not start <= end_old <= len(old) - 3 or not start <= end_new <= len(new) - 3:
        return None
    return old[start:end_old], new[start:end_new], start, end_old
