"""The word index of sharded chunks is derived, checked and only ever rules chunks out: with
it, without it, or with a corrupt one, queries and searches give the same answers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pygit2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitvault import Vault
from gitvault.core import codec
from gitvault.git import shards
from gitvault.history.search import _Matcher
from gitvault.history.wordindex import _ESCAPE, Entry, Want, words

from ..conftest import fast


@pytest.fixture
def copy(big100k: Path, tmp_path: Path) -> Path:
    path = tmp_path / "copy.git"
    shutil.copytree(big100k, path, ignore=shutil.ignore_patterns("gitvault-cache"))
    fast(path)
    return path


def answers(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    v = Vault.open(path)
    q = v.query("tasks[?status=='blocked'].id", with_pointers=True)
    s = v.search("zanzibar port")
    return ([m.to_json() for m in q.matches], [h.to_json() for h in s.hits])


def test_the_index_is_built_from_the_chunks_and_changes_no_answer(copy: Path) -> None:
    cache = copy / "gitvault-cache" / "words"
    first = answers(copy)  # builds the entries
    assert [p for p in cache.rglob("*") if p.is_file()]
    assert answers(copy) == first
    skipped = Vault.open(copy).query("tasks[?status=='blocked']").chunks_skipped
    assert skipped > 700


def test_a_corrupt_or_foreign_entry_is_ignored_and_rebuilt(copy: Path) -> None:
    first = answers(copy)
    files = sorted(p for p in (copy / "gitvault-cache" / "words").rglob("*") if p.is_file())
    for p in files:
        p.write_bytes(b"GVW2" + b"\0" * 20)  # wrong checksum: says nothing is there
    assert answers(copy) == first
    assert all(Entry.load(p.read_bytes()) is not None for p in files)


def test_a_vault_where_the_index_cannot_be_written_is_searched_without_it(copy: Path) -> None:
    (copy / "gitvault-cache").write_text("not a folder")  # every write fails (even as root)
    assert answers(copy)[1][0]["pointer"] == "/tasks/77777/title"
    assert (copy / "gitvault-cache").read_text() == "not a folder"


texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


@given(st.lists(texts, min_size=1, max_size=8), texts)
def test_a_word_in_a_string_is_never_ruled_out(values: list[str], word: str) -> None:
    chunk = codec.dumps([{"id": i, "text": v} for i, v in enumerate(values)])
    entry = Entry.of(shards.encode(shards.items(chunk)))
    matcher = _Matcher(word, False) if word.split() else None
    if matcher is None:
        return
    hit = any(matcher.match(v)[0] for v in values)
    if hit:
        assert matcher.want is not None and matcher.want.maybe(entry)
    for v in values:  # a string equal to a query literal is never ruled out either
        assert Want([words(v)]).maybe(entry)


@given(st.lists(st.text(st.characters(max_codepoint=127), max_size=30), min_size=1, max_size=8))
def test_the_fast_ascii_word_list_is_the_unicode_one(values: list[str]) -> None:
    chunk = shards.encode(shards.items(codec.dumps([{"k": v} for v in values])))
    slow = sorted(set(words(_ESCAPE.sub(" ", chunk.decode()))))
    assert Entry.of(chunk).words == ("\n" + "\n".join(slow) + "\n").encode()


def test_gc_keeps_only_the_entries_of_mains_chunks(copy: Path) -> None:
    v = Vault.open(copy)
    v.search("zanzibar")  # entries for every chunk of main
    v.checkout("editor", 60)
    v.checkin_patch(
        "editor", [{"op": "replace", "path": "/tasks/3/title", "value": "moved"}], "edit", 0.5
    )
    Vault.open(copy).search("zanzibar")  # the new chunk's entry too
    cache = copy / "gitvault-cache" / "words"
    before = {p.parent.name + p.name for p in cache.rglob("*") if p.is_file()}
    pruned = Vault.open(copy).gc()["pruned_word_index"]
    after = {p.parent.name + p.name for p in cache.rglob("*") if p.is_file()}
    tree = Vault.open(copy).store.repo.revparse_single("main:tasks")
    assert isinstance(tree, pygit2.Tree)
    assert after == {str(e.id) for e in tree} and pruned == len(before - after) >= 1
