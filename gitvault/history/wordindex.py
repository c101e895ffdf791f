"""A derived, checked index of the words in each chunk of a sharded key, so that ``query`` and
``search`` skip chunks without reading them.

Why: a question about 100,000 items ("the blocked ones", "the word zanzibar") touches a handful
of chunks, but finding them by reading every chunk costs 19 MB of inflating (~0.2-0.4 s on a
2-core machine). The list of the distinct words a chunk holds (a few KiB) answers "not here"
for most chunks without inflating them.

What it is, and why it can be trusted:

- **Derived, never the only copy.** One file per chunk blob, named by the blob's id, in
  ``<vault>/gitvault-cache/words/``; computed from that blob alone. A blob id never changes
  meaning, so an entry never goes stale; deleting the folder loses nothing.
- **Checked.** Each file carries a magic number and the CRC-32 of its content; a file that
  fails the check is ignored and rebuilt from the blob.
- **Only ever rules out.** A word the list lacks is not in the chunk; a chunk the list lets
  through is then read and matched as if there were no index. So the index can change how
  much is read, never an answer.
- **Best effort.** A vault the user may not write to is searched without caching entries.

What is in it: every distinct word (a run of ``\\w`` characters) of the chunk's text, lowered
after JSON escapes are taken out, sorted; and the ids of the chunk's items as the canonical
bytes write them (so that a skipped chunk's ids still count for id steps, see
:class:`gitvault.history.reading.IdNamer`).
"""

from __future__ import annotations

import contextlib
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import pygit2

from gitvault.git import shards
from gitvault.git.storage import MAIN, Store

MAGIC = b"GVW2"
_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|.)")
_WORD = re.compile(r"\w+")
_ESCAPE_BYTES = re.compile(rb"\\(?:u[0-9a-fA-F]{4}|.)")
_NOT_WORD = bytes(
    c if chr(c) in "abcdefghijklmnopqrstuvwxyz0123456789_" else 32 for c in range(256)
)  # lowered ASCII: word bytes stay, the rest is a space
ITEM_ID = re.compile(rb'\n    "id": ([^,\n]*)')  # an item's own id in a canonical array


def words(text: str) -> list[str]:
    """The words of a text as the index sees them (lowered)."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Entry:
    """One chunk's distinct words and item ids, each list ``\n``-separated with a ``\n`` at
    both ends, so that a word, or the start of one, is a substring test."""

    words: bytes
    ids: bytes

    @classmethod
    def of(cls, chunk: bytes) -> Entry:
        ids = sorted(set(ITEM_ID.findall(chunk)))
        if chunk.isascii():  # the common case, at C speed: ASCII \w is [a-z0-9_] once lowered
            text = _ESCAPE_BYTES.sub(b" ", chunk) if b"\\" in chunk else chunk
            found = sorted(set(text.lower().translate(_NOT_WORD).split()))
            listed = b"\n" + b"\n".join(found) + b"\n"
        else:
            listed = (
                "\n" + "\n".join(sorted(set(words(_ESCAPE.sub(" ", chunk.decode()))))) + "\n"
            ).encode()
        return cls(listed, b"\n" + b"\n".join(ids) + b"\n")

    def dump(self) -> bytes:
        body = len(self.words).to_bytes(4, "big") + self.words + self.ids
        return MAGIC + zlib.crc32(body).to_bytes(4, "big") + body

    @classmethod
    def load(cls, data: bytes) -> Entry | None:
        body = data[8:]
        if data[:4] != MAGIC or len(body) < 4 or zlib.crc32(body).to_bytes(4, "big") != data[4:8]:
            return None
        n = int.from_bytes(body[:4], "big")
        return cls(body[4 : 4 + n], body[4 + n :])

    def id_list(self) -> list[bytes]:
        return self.ids.split(b"\n")[1:-1]


@dataclass(frozen=True)
class Want:
    """What a chunk must hold to be worth reading: for ``all``, every group; for ``any``,
    one group. A group is the words a match needs: all exactly, the last (``prefix``) maybe
    only as the start of a word. An empty group cannot rule anything out."""

    groups: Sequence[Sequence[str]]
    mode: str = "all"
    prefix: bool = False

    def _group(self, listed: bytes, group: Sequence[str]) -> bool:
        for i, w in enumerate(group):
            end = "" if self.prefix and i == len(group) - 1 else "\n"
            if ("\n" + w + end).encode() not in listed:
                return False
        return True

    def maybe(self, entry: Entry) -> bool:
        tests = (self._group(entry.words, g) for g in self.groups)
        return all(tests) if self.mode == "all" else any(tests)


class WordIndex:
    """The entries of one vault, read and written as chunks are met."""

    def __init__(self, vault_path: str) -> None:
        self.root = os.path.join(vault_path, "gitvault-cache", "words")
        self.writable = True
        self.built = 0
        try:
            self.mode = os.stat(os.path.join(vault_path, "objects")).st_mode & 0o666
        except OSError:
            self.mode = 0o644

    def _path(self, oid: pygit2.Oid) -> str:
        hexid = str(oid)
        return os.path.join(self.root, hexid[:2], hexid[2:])

    def get(self, oid: pygit2.Oid) -> Entry | None:
        try:
            with open(self._path(oid), "rb") as f:
                return Entry.load(f.read())
        except OSError:
            return None

    def put(self, oid: pygit2.Oid, chunk: bytes) -> Entry:
        """Build (and keep, if the vault lets us) the entry of a chunk just read."""
        entry = Entry.of(chunk)
        self.built += 1
        if self.writable:
            path = self._path(oid)
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                import tempfile  # only when writing (a few ms of imports otherwise)

                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
                os.fchmod(fd, self.mode)  # as readable as the objects it is derived from
                with os.fdopen(fd, "wb") as f:
                    f.write(entry.dump())
                os.replace(tmp, path)  # whole or not at all; the check catches the rest
            except OSError:
                self.writable = False
        return entry


def prune(store: Store) -> int:
    """Drop the entries of chunks that main no longer holds (``gitvault gc``); how many.

    The index is a cache: an entry of an older revision's chunk is rebuilt if that revision is
    read again, so keeping only main's bounds the folder by main's size.
    """
    root = os.path.join(store.path, "gitvault-cache", "words")
    if not os.path.isdir(root):
        return 0
    keep: set[str] = set()
    main = store.ref(MAIN)
    if main is not None:
        for oid in store.key_blobs(store.commit(main).tree).values():
            if store.is_tree(oid):
                tree = store.repo[oid]
                assert isinstance(tree, pygit2.Tree)
                keep.update(str(o) for _, o in shards.entries(tree))
    removed = 0
    for fan in os.listdir(root):
        folder = os.path.join(root, fan)
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            if fan + name not in keep:
                with contextlib.suppress(FileNotFoundError):  # a concurrent gc took it
                    os.remove(os.path.join(folder, name))
                    removed += 1
    return removed
