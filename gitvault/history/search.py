"""Text search over the memory's strings and member names, ranked, at any revision.

Why: "everything we decided about the database" is a question of words, not of structure, and
an agent cannot guess pointers. Every string value and every member name under the scope (the
document, one key, or the value at a pointer) is matched; each hit says where it is (a
positional pointer for ``checkin --patch``, and the id-step path), shows the text trimmed to
``width`` around the match, and with ``blame`` who last wrote it.

Matching: the words of the text, case-insensitive, each matching at the start of a word
(``data`` finds "database", ``base`` does not); or one regular expression (``regex``,
case-insensitive). Ranking: more words matched first, then the more recently changed, then
document order.

Recency is that of the *element* holding the hit, as the ``Changed:`` index names elements (an
item of an array by id, a member of an object, or the whole key): one walk along main's first
parents reads commit messages only, and stops when every hit's element is placed. A commit
without ``Changed:`` lines counts as changing every key whose blob differs from its parent's.
So two hits in one task rank alike, and a hit in a key without ids ranks by the key's last
change.

A sharded key is read chunk by chunk. A chunk that holds none of the words is skipped: the
word index (:mod:`gitvault.history.wordindex`, derived and checked) rules it out without
inflating it, and otherwise its text is tested before it is parsed. For ``regex`` every chunk
is parsed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pygit2

from gitvault import history
from gitvault.core import codec, pointers
from gitvault.core.jsonmerge import MISSING
from gitvault.errors import InputError, QueryError
from gitvault.git.storage import Store
from gitvault.history.reading import IdNamer, IdPaths, Snapshot, page
from gitvault.history.wordindex import Want
from gitvault.history.wordindex import words as index_words
from gitvault.model import changes

Element = tuple[str, str | None]  # a key, and the step below it the Changed: index names


@dataclass
class Hit:
    pointer: str  # positional: what `checkin --patch` takes
    path: str  # with id steps where items have ids
    where: str  # "value" (a string) or "name" (a member's name)
    text: str  # trimmed to the width, around the first match
    score: int  # words matched
    changed: int | None = None  # unix time of the last change of the element holding it
    order: int = 0
    writer: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "pointer": self.pointer,
            "path": self.path,
            "where": self.where,
            "text": self.text,
            "score": self.score,
            "changed": self.changed,
        }
        if self.writer is not None:
            out["writer"] = self.writer
        return out


@dataclass
class SearchResult:
    text: str
    rev: str
    commit: str
    hits: list[Hit]
    total: int  # hits before the limit
    read: str
    chunks_read: int = 0
    chunks_skipped: int = 0
    offset: int = 0
    cut: bool = False  # max_bytes cut the answer
    more: bool = field(init=False)
    next_offset: int | None = field(init=False)

    def __post_init__(self) -> None:
        self.more = self.total > self.offset + len(self.hits)
        self.next_offset = self.offset + len(self.hits) if self.more else None

    @property
    def note(self) -> str:
        if self.next_offset is None:
            return ""
        why = "cut to fit max_bytes" if self.cut else "limit reached"
        return (
            f"{why}: {len(self.hits)} of {self.total} hits from offset {self.offset}; for "
            f"the rest ask again with offset={self.next_offset} and rev={self.commit}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "rev": self.rev,
            "commit": self.commit,
            "total": self.total,
            "more": self.more,
            "read": self.read,
            "chunks_read": self.chunks_read,
            "chunks_skipped": self.chunks_skipped,
            "offset": self.offset,
            "next_offset": self.next_offset,
            "cut": self.cut,
            "note": self.note,
            "hits": [h.to_json() for h in self.hits],
        }


class _Matcher:
    """Words (case-insensitive, at the start of a word) or one regular expression."""

    def __init__(self, text: str, regex: bool) -> None:
        self.rx: re.Pattern[str] | None = None
        self.memo: dict[str, tuple[int, int]] = {}
        self.words: list[re.Pattern[str]] = []
        self.plain: list[str] = []
        self.want: Want | None = None  # what the word index can rule out
        self.needles: list[str] | None = None  # what a chunk's lowered text must contain
        if regex:
            try:
                self.rx = re.compile(text, re.IGNORECASE)
            except re.error as e:
                raise QueryError(
                    f"bad regular expression {text!r} at position {e.pos}: {e.msg}", e.pos
                ) from None
            return
        words = list(dict.fromkeys(w.lower() for w in text.split()))
        if not words:
            raise InputError("give one or more words to search for, e.g. `search database`")
        self.plain = words
        self.words = [re.compile(r"(?<!\w)" + re.escape(w)) for w in words]
        self.want = Want([index_words(w) for w in words], "any", prefix=True)
        # a word without quotes, backslashes or control characters appears in the JSON text
        # of a chunk exactly when it appears in one of its strings (or names)
        if all(
            not any(c in w for c in '"\\') and all(unicodedata.category(c) != "Cc" for c in w)
            for w in words
        ):
            self.needles = words

    def match(self, text: str) -> tuple[int, int]:
        """(words matched, where the first match starts); (0, -1) for none. Remembered per
        string: member names, statuses and owners repeat in every item."""
        found = self.memo.get(text)
        if found is None:
            found = self._match(text)
            if len(self.memo) < 65536:
                self.memo[text] = found
        return found

    def _match(self, text: str) -> tuple[int, int]:
        if self.rx is not None:
            m = self.rx.search(text)
            return (1, m.start()) if m else (0, -1)
        low = text.lower()
        found = []
        for word, rx in zip(self.plain, self.words, strict=True):
            if word in low:  # cheap test first: most strings hold none of the words
                m = rx.search(low)
                if m:
                    found.append(m.start())
        return (len(found), min(found)) if found else (0, -1)

    def may_hold(self, chunk: bytes) -> bool:
        if self.needles is None:
            return True
        low = chunk.lower().decode() if chunk.isascii() else chunk.decode().lower()
        return any(n in low for n in self.needles)


def _trim(text: str, at: int, width: int) -> str:
    if len(text) <= width:
        return text
    start = max(0, min(at - width // 3, len(text) - width))
    out = text[start : start + width]
    return ("…" if start else "") + out + ("…" if start + width < len(text) else "")


def _strings(value: Any, tokens: list[str]) -> Iterator[tuple[list[str], str, str]]:
    """(pointer tokens, "value" or "name", text) of every string and member name under it."""
    if isinstance(value, str):
        yield tokens, "value", value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield [*tokens, k], "name", k
            yield from _strings(v, [*tokens, k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, [*tokens, str(i)])


class _Found:
    """A hit before it is shown: the cheap parts first (most hits of a common word are
    ranked and dropped, never shown)."""

    __slots__ = (
        "at",
        "changed",
        "element",
        "n",
        "order",
        "paths",
        "prefix",
        "score",
        "text",
        "tokens",
        "where",
    )

    def __init__(
        self,
        score: int,
        order: int,
        tokens: list[str],
        where: str,
        text: str,
        at: int,
        prefix: list[str],
        paths: IdPaths,
        n: int,
    ) -> None:
        self.score, self.order, self.tokens, self.where = score, order, tokens, where
        self.text, self.at, self.prefix, self.paths, self.n = text, at, prefix, paths, n
        rest = tokens[n:]
        self.element: Element = (
            prefix[0],
            prefix[1] if len(prefix) > 1 else (paths.path(rest[:1])[1:] if rest else None),
        )
        self.changed: int | None = None

    def hit(self, width: int) -> Hit:
        path = pointers.join(self.prefix) + self.paths.path(self.tokens[self.n :])
        return Hit(
            pointers.join(self.tokens),
            path,
            self.where,
            _trim(self.text, self.at, width),
            self.score,
            self.changed,
            self.order,
        )


class _Scan:
    def __init__(self, snap: Snapshot, matcher: _Matcher, width: int) -> None:
        self.snap, self.matcher, self.width = snap, matcher, width
        self.found: list[_Found] = []

    def add(self, value: Any, tokens: list[str], paths: IdPaths, prefix: list[str]) -> None:
        """Hits under ``value`` (at ``tokens``); id paths are ``prefix`` + those in ``paths``
        (whose document is ``value``)."""
        n = len(tokens)
        match = self.matcher.match
        for t, where, text in _strings(value, tokens):
            score, at = match(text)
            if score:
                self.found.append(
                    _Found(score, len(self.found), t, where, text, at, prefix, paths, n)
                )

    def key(self, key: str) -> None:
        """The hits of one key: a sharded one chunk by chunk, skipping chunks without a
        word; any other whole."""
        snap = self.snap
        if snap.sharded(key) is None:
            value = snap.value(key)
            self.add(value, [key], IdPaths(value), [key])
            return
        namer = IdNamer()
        for start, data, entry in snap.scan_chunks(key, self.matcher.want):
            if data is None or not self.matcher.may_hold(data):
                if data is not None:
                    snap.chunks_skipped += 1
                namer.skip(data or b"", entry)
                continue
            for j, item in enumerate(snap.parse_chunk(data)):
                i = start + j
                self.add(item, [key, str(i)], IdPaths(item), [key, namer.token(i, item)])

    def under(self, path: str) -> None:
        """The hits under the value at pointer ``path`` (id steps allowed)."""
        snap = self.snap
        tokens = pointers.split(path)
        given, asked = list(tokens), path
        key = tokens[0]
        snap.require(key)
        if len(tokens) == 1:
            self.key(key)
            return
        sparse = snap.sharded(key) is not None and (
            tokens[1].isdigit() or tokens[1].startswith("[id=")
        )
        if sparse and not tokens[1].isdigit():  # an id step: the chunk whose ids hold it
            found = snap.find_id(key, tokens[1][4:-1])
            tokens[1] = str(found) if found is not None else "-"  # "-": no item
            path = pointers.join(tokens)
        if sparse and not tokens[1].isdigit():
            doc: dict[str, Any] = {key: []}  # no such id: "does not exist" below
        elif sparse:  # read the one chunk that holds the item
            item = snap.item(key, int(tokens[1]))
            doc = {key: [None] * int(tokens[1]) + [item]}
        else:
            doc = {key: snap.value(key)}
        value = pointers.get(doc, path)
        where = history.positional(doc, path)
        if value is MISSING or where is None:
            raise InputError(
                f"{asked} does not exist at {snap.name}; check the pointer "
                "(e.g. /tasks/[id=T-004]) against `gitvault show`"
            )
        at = pointers.split(where)
        if sparse:  # the other items were not read: the step as given, or the index
            step = given[1] if given[1].startswith("[id=") else at[1]
            prefix = [at[0], step, *pointers.split(IdPaths(item).path(at[2:]))]
        else:
            prefix = pointers.split(IdPaths(doc).path(at))
        self.add(value, at, IdPaths(value), prefix)


def _entry(tree: pygit2.Tree, key: str) -> pygit2.Oid | None:
    for name in (key + codec.BLOB_SUFFIX, key):
        try:
            return tree[name].id
        except KeyError:
            continue
    return None


def last_changes(store: Store, head: pygit2.Commit, elements: set[Element]) -> dict[Element, int]:
    """When each element last changed along ``head``'s first parents (commit time), read
    from ``Changed:`` lines; commits without them are compared key by key."""
    pending: dict[str, set[str | None]] = {}
    for key, step in elements:
        pending.setdefault(key, set()).add(step)
    out: dict[Element, int] = {}

    def done(key: str, steps: set[str | None], when: int) -> None:
        for s in steps:
            out[(key, s)] = when
        pending[key] -= steps
        if not pending[key]:
            del pending[key]

    commit = head
    while pending:
        if not commit.parents:
            for key in list(pending):
                done(key, set(pending[key]), commit.commit_time)
            break
        parent = commit.parents[0]
        index = changes.index_of(commit.message)
        for key in list(pending):
            if index is None:
                if _entry(commit.tree, key) != _entry(parent.tree, key):
                    done(key, set(pending[key]), commit.commit_time)
                continue
            if key not in index.keys:
                continue
            named = index.keys[key]
            by_id = named is not None and any(t.startswith("[id=") for t in named)
            hit = (
                set(pending[key])
                if named is None
                else {
                    s
                    for s in pending[key]
                    if s is None or s in named or (by_id and not s.startswith("[id="))
                }
            )
            if hit:
                done(key, hit, commit.commit_time)
        commit = parent
    return out


def _writer(store: Store, commit: pygit2.Commit, hit: Hit) -> dict[str, Any] | None:
    entries = history.blame(store, hit.pointer, str(commit.id))
    if not entries:
        return None
    e = max(entries, key=lambda x: x.time)  # a name: the newest write under the member
    return {
        "agent": e.agent,
        "source": e.source,
        "confidence": e.confidence,
        "commit": e.commit,
        "time": e.time,
        "iso": e.iso,
        "justification": e.justification,
    }


def search(
    store: Store,
    text: str,
    *,
    key: str | None = None,
    path: str | None = None,
    rev: str | None = None,
    at: str | float | None = None,
    limit: int | None = 20,
    regex: bool = False,
    width: int = 80,
    blame: bool = False,
    max_bytes: int | None = None,
    offset: int = 0,
) -> SearchResult:
    """Hits of ``text`` in the strings and member names at ``rev`` (default main) or ``at``,
    best first; ``offset``, ``limit`` and ``max_bytes`` page through them as in
    :func:`gitvault.history.query.query`."""
    if offset < 0 or (max_bytes is not None and max_bytes < 1):
        raise InputError("offset must be 0 or more and max_bytes 1 or more")
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: give 1 or more")
    if width < 10:
        raise InputError(f"--width {width}: give 10 or more")
    matcher = _Matcher(text, regex)
    snap = Snapshot.at(store, rev, at)
    scan = _Scan(snap, matcher, width)
    if path is not None:
        top = pointers.top_key(path)
        if key is not None and key != top:
            raise InputError(f"--key {key} and --path {path} name different keys; give one")
        scan.under(path)
    elif key is not None:
        snap.require(key)
        scan.key(key)
    else:
        for k in snap.keys():  # noqa: SIM118 (a Snapshot is not a dict)
            scan.key(k)
    found = scan.found
    when = last_changes(store, snap.commit, {f.element for f in found})
    for f in found:
        f.changed = when.get(f.element)
    found.sort(key=lambda f: (-f.score, -(f.changed or 0), f.order))
    window = [f.hit(width) for f in found[offset : None if limit is None else offset + limit]]
    fit = page([h.to_json() for h in window], max_bytes)  # blame added after: cut before it
    shown = window[: len(fit.items)]
    if blame:
        for h in shown:
            h.writer = _writer(store, snap.commit, h)
    return SearchResult(
        text,
        snap.rev,
        str(snap.commit.id),
        shown,
        len(found),
        snap.how,
        snap.chunks_read,
        snap.chunks_skipped,
        offset,
        len(shown) < len(window),
    )
