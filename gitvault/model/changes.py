"""An index of what each commit changed, kept in its own message as ``Changed:`` trailers.

Why: ``log --path`` and ``blame`` ask of every commit "did you change
``/tasks/[id=T-004]/status``?". Answered from the blobs, that means reading and parsing every
version of the key: with a 10,000-item key that changes in every commit, minutes for 10,000
commits. Each commit gitvault writes therefore names the elements it changed against its
first parent, one trailer line each, two levels deep::

    Changed: /tasks/[id=T-004]      an item (by id) of an array of objects with ids
    Changed: /patterns/retry        a member of an object
    Changed: /notes                 the whole key (a scalar, another array, an added or
                                    removed key, reordered items, or too many to list)

A history walk reads the commit object anyway, so a commit whose lines cannot touch the
pointer is skipped without opening a blob; the others are still checked against the blobs, so
a line too many costs time, never a wrong answer. The lines are computed from the canonical
bytes: a key's elements are its indent-2 lines (a string never holds a raw newline), so only
the elements that differ are parsed. A commit without ``Changed:`` lines (pushed by hand, or a
commit that changed no key) is read the slow way. The pre-receive hook refuses pushed commits
whose lines disagree with their trees, so the index is never trusted wrongly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from gitvault.core import codec, pointers, splice
from gitvault.errors import InputError
from gitvault.git import shards
from gitvault.model.provenance import escape, trailer_values

if TYPE_CHECKING:
    import pygit2

    from gitvault.git.storage import Store

TRAILER = "Changed"
MAX_PER_KEY = 64  # more changed elements than this: the key is named whole
_SEPARATOR = re.compile(rb",\n  (?! )")  # between two elements of a canonical container


def _token(chunk: bytes, array: bool) -> str | None:
    """The pointer step naming one element chunk (None: an array item without an id)."""
    if not array:
        (name,) = orjson.loads(b"{" + chunk + b"}")
        return str(name)
    item = orjson.loads(chunk)
    if (
        isinstance(item, dict)
        and isinstance(item.get("id"), str | int)
        and not isinstance(item["id"], bool)
    ):
        return f"[id={item['id']}]"
    return None


def _split(window: bytes) -> list[bytes]:
    return _SEPARATOR.split(window) if window else []


def key_changes(key: str, old: bytes | None, new: bytes | None) -> list[str]:
    """The ``Changed:`` pointers for one key whose blob went from ``old`` to ``new``."""
    whole = [pointers.join([key])]
    if old == new:
        return []
    if old is None or new is None or old[:1] != new[:1] or old[:1] not in (b"[", b"{"):
        return whole
    # elements before the first differing byte and after the last are the same on both sides,
    # so only the window between is split: a small edit of a 10,000-item key costs a few
    # memcmp calls, not a split of megabytes (None: the window cannot be placed)
    window = splice.window(old, new)
    if window is not None:
        before, after = _split(window[0]), _split(window[1])
    else:
        before, after = _split(old[4:-3]), _split(new[4:-3])
    old_set, new_set = set(before), set(after)
    gone = [c for c in before if c not in new_set]
    came = [c for c in after if c not in old_set]
    if len(gone) + len(came) > MAX_PER_KEY:
        return whole
    array = old[:1] == b"["
    if array and [c for c in before if c in new_set] != [c for c in after if c in old_set]:
        return whole  # items moved: positional and duplicate-id pointers may see a change
    steps: set[str] = set()
    for chunk in gone + came:
        step = _token(chunk, array)
        if step is None or step != step.strip():  # trailer values are read back stripped
            return whole
        steps.add(step)
    return [pointers.join([key, s]) for s in sorted(steps)] or whole


def between(
    store: Store,
    old: pygit2.Tree | None,
    new: pygit2.Tree,
    new_files: Mapping[str, bytes] | None = None,
    read: Callable[[pygit2.Oid], bytes] | None = None,
) -> list[str]:
    """Every ``Changed:`` pointer of a commit with tree ``new`` over first parent ``old``.

    ``new_files`` may hold bytes the caller has at hand (by file name) and ``read`` may serve
    blobs from a cache: reading a packed 2 MB blob back costs more than the comparison.
    """
    read = read or store.blob
    before = store.key_blobs(old) if old is not None else {}
    after = store.key_blobs(new)
    out: list[str] = []
    for name in sorted(set(before) | set(after)):
        if before.get(name) == after.get(name):
            continue
        key = codec.key_of(name)
        assert key is not None
        runs = _sharded_runs(store, before.get(name), after.get(name))
        a: bytes | None
        b: bytes | None
        if runs is not None:
            a, b = runs
        else:
            a = read(before[name]) if name in before else None
            b = None
            if name in after:
                b = new_files[name] if new_files and name in new_files else read(after[name])
        out += key_changes(key, a, b)
    return out


def _sharded_runs(
    store: Store, old: pygit2.Oid | None, new: pygit2.Oid | None
) -> tuple[bytes, bytes] | None:
    """For a key sharded on both sides: the chunks that differ, as two arrays (else None).

    Chunks the same at both ends (by id, in order) hold the same items at the same places,
    so only the chunks between are read; the lines are those of a key holding just them.
    """
    if old is None or new is None or not (store.is_tree(old) and store.is_tree(new)):
        return None  # (object headers only: loading a blob to learn its type inflates it)
    trees = [store.repo[old], store.repo[new]]
    a, b = ([oid for _, oid in shards.entries(t)] for t in trees)  # type: ignore[arg-type]
    i = codec.common_prefix(a, b)
    j = codec.common_suffix(a, b, min(len(a), len(b)) - i)

    def run(ids: list[pygit2.Oid]) -> bytes:
        found = [item for oid in ids for item in shards.items(store.blob(oid))]
        return shards.encode(found) if found else b"[]\n"

    return run(a[i : len(a) - j]), run(b[i : len(b) - j])


def trailers(changed: Iterable[str]) -> list[tuple[str, str]]:
    return [(TRAILER, p) for p in changed]


@dataclass(frozen=True)
class Index:
    """The ``Changed:`` lines of one commit, by key: the steps named, or None for all."""

    keys: Mapping[str, frozenset[str] | None]

    @classmethod
    def of(cls, values: Sequence[str]) -> Index | None:
        """From a commit's ``Changed:`` trailer values; None if it has none (unknown)."""
        if not values:
            return None
        keys: dict[str, set[str] | None] = {}
        for value in values:
            try:
                tokens = pointers.split(value)
            except InputError:  # a malformed line: trust nothing of this commit
                return None
            if not tokens or len(tokens) > 2:
                return None
            steps = keys.setdefault(tokens[0], set())
            if len(tokens) == 1:
                keys[tokens[0]] = None
            elif steps is not None:
                steps.add(tokens[1])
        return cls({k: None if v is None else frozenset(v) for k, v in keys.items()})


def index_of(message: str) -> Index | None:
    """The index in a commit message, or None when it has no ``Changed:`` lines."""
    return Index.of(trailer_values(message, TRAILER))


def raw_lines(message: str) -> list[str]:
    """The ``Changed:`` values of the trailer block exactly as written (still escaped)."""
    block = message.rstrip("\n").rsplit("\n\n", 1)[-1]
    prefix = TRAILER + ": "
    return [line[len(prefix) :] for line in block.split("\n") if line.startswith(prefix)]


class Probe:
    """Asks commit messages whether their ``Changed:`` lines rule one pointer out.

    A line names the key whole, or one step below it: the value at ``/key/step/...`` may have
    changed if the key is named whole or with that step, or if the step is positional and
    the key's array items are named by id. The answers come from substring tests on the
    trailer block rather than a parse: a walk asks every commit of the history, and this
    keeps the question at a couple of microseconds.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = list(tokens)

        def line(parts: Sequence[str], end: str = "\n") -> str:
            return f"\n{TRAILER}: {escape(pointers.join(list(parts)))}{end}"

        if self.tokens:
            self.whole = line(self.tokens[:1])
            self.below = line(self.tokens[:1], "/")
            self.ids = line(self.tokens[:1], "/[id=")
            self.step = line(self.tokens[:2]) if len(self.tokens) > 1 else ""
        self.positional = len(self.tokens) > 1 and not self.tokens[1].startswith("[id=")

    def rules_out(self, message: str) -> bool:
        """True only if the message carries an index and it excludes the pointer."""
        block = "\n" + message.rstrip("\n").rsplit("\n\n", 1)[-1] + "\n"
        if f"\n{TRAILER}: " not in block or not self.tokens or self.whole in block:
            return False
        if len(self.tokens) == 1:
            return self.below not in block
        if self.step in block:
            return False
        return not (self.positional and self.ids in block)
