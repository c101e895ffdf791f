"""`search`: words or a regex over string values and member names, ranked by words matched,
then by the recency of the element holding the hit; at any revision; sharded keys chunk by
chunk."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gitvault import Vault
from gitvault.errors import InputError, QueryError
from gitvault.history.search import search

from ..conftest import Cli


def test_the_string_holding_more_of_the_words_comes_first(vault: Vault) -> None:
    r = search(vault.store, "queue sqlite")
    top = r.hits[0]
    assert (top.path, top.pointer, top.score) == (
        "/decisions/[id=D-000]/title",
        "/decisions/0/title",
        2,
    )
    assert top.text == "Use SQLite for the task queue" and top.where == "value"


def test_words_match_case_insensitively_at_the_start_of_a_word(vault: Vault) -> None:
    assert search(vault.store, "SQLITE").total == 1
    assert search(vault.store, "qlite").total == 0
    assert search(vault.store, "refact").total == search(vault.store, "refactor").total > 0


def test_member_names_are_searched_too(vault: Vault) -> None:
    hits = search(vault.store, "preferences", key="agents").hits
    assert [h.pointer for h in hits] == [
        "/agents/coder/preferences",
        "/agents/planner/preferences",
        "/agents/reviewer/preferences",
    ]
    assert {h.where for h in hits} == {"name"}


def test_a_tie_goes_to_the_element_changed_most_recently(vault: Vault) -> None:
    later = Vault.open(vault.path, clock=lambda: time.time() + 3600)
    later.checkout("editor", 60)
    later.checkin_patch(
        "editor",
        [{"op": "replace", "path": "/tasks/30/title", "value": "Task 31: refactor parser again"}],
        "edit",
        0.9,
    )
    hits = search(vault.store, "parser").hits
    assert hits[0].path == "/tasks/[id=T-031]/title"
    assert hits[0].changed is not None and hits[0].changed > (hits[1].changed or 0)
    old = search(vault.store, "again", rev="main~1")
    assert old.total == 0 and search(vault.store, "again").total == 1


def test_blame_says_who_last_wrote_each_hit(vault: Vault) -> None:
    vault.checkout("editor", 60)
    vault.checkin_patch(
        "editor",
        [
            {
                "op": "replace",
                "path": "/decisions/0/rationale",
                "value": "sqlite is enough for one node",
            }
        ],
        "review",
        0.7,
        "checked the load",
    )
    hits = search(vault.store, "sqlite", blame=True).hits
    writers = {h.pointer: h.writer for h in hits}
    rationale = writers["/decisions/0/rationale"]
    title = writers["/decisions/0/title"]
    assert rationale is not None and title is not None
    assert (rationale["agent"], rationale["source"]) == ("editor", "review")
    assert title["source"] == "legacy-import"


def test_a_path_limits_the_search_to_the_value_there(vault: Vault) -> None:
    hits = search(vault.store, "note", path="/agents/coder").hits
    assert hits and all(h.pointer.startswith("/agents/coder/") for h in hits)
    by_id = search(vault.store, "tests", path="/tasks/[id=T-004]").hits
    assert [h.pointer for h in by_id] == ["/tasks/3/title"]


def test_a_regex_matches_case_insensitively(vault: Vault) -> None:
    hits = search(vault.store, r"^t-00[12]$", regex=True, key="tasks").hits
    assert [h.pointer for h in hits] == ["/tasks/0/id", "/tasks/1/id"]


def test_a_long_text_is_trimmed_around_the_match(vault: Vault) -> None:
    vault.checkout("editor", 60)
    long = "x " * 200 + "the needle is here " + "y " * 200
    vault.checkin_patch(
        "editor", [{"op": "add", "path": "/roadmap/notes", "value": long}], "edit", 0.5
    )
    (hit,) = search(vault.store, "needle", width=40).hits
    assert "needle" in hit.text and len(hit.text) <= 42
    assert hit.text.startswith("…") and hit.text.endswith("…")


def test_limit_offset_and_max_bytes_page_through_the_hits(vault: Vault) -> None:
    every = [h.pointer for h in search(vault.store, "task", limit=None).hits]
    first = search(vault.store, "task", limit=None, max_bytes=600)
    assert first.cut and first.next_offset == len(first.hits) < len(every)
    rest = search(vault.store, "task", limit=None, offset=first.next_offset or 0, rev=first.commit)
    assert [h.pointer for h in first.hits + rest.hits] == every
    assert search(vault.store, "task", limit=3).more


def test_bad_input_is_refused_clearly(vault: Vault) -> None:
    with pytest.raises(QueryError, match="position 0"):
        search(vault.store, "[", regex=True)
    with pytest.raises(InputError, match="no key 'nope'"):
        search(vault.store, "x", key="nope")
    with pytest.raises(InputError, match="give one or more words"):
        search(vault.store, "   ")
    with pytest.raises(InputError, match="does not exist"):
        search(vault.store, "x", path="/tasks/[id=T-999]")


def test_no_hit_is_an_empty_answer(vault: Vault) -> None:
    r = search(vault.store, "zzzqqq")
    assert r.hits == [] and r.total == 0 and not r.more


def test_the_cli_prints_one_line_per_hit_and_json_on_request(vault: Vault, cli: Cli) -> None:
    r = cli("search", "sqlite", "--blame")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("/decisions/[id=D-000]/title  [value]  Use SQLite")
    assert "by gitvault (legacy-import, 1.0)" in r.output
    j = cli("search", "sqlite", "--json")
    assert json.loads(j.output)["hits"][0]["pointer"] == "/decisions/0/title"
    bad = cli("search", "(", "--regex")
    assert bad.exit_code == 1 and "bad regular expression" in bad.output


# -- a sharded key of 100,000 items -------------------------------------------------------


def test_a_rare_word_in_a_sharded_key_is_found_reading_few_chunks(big100k: Path) -> None:
    r = search(Vault.open(big100k).store, "zanzibar")
    assert [(h.pointer, h.path) for h in r.hits] == [
        ("/tasks/77777/title", "/tasks/[id=T-077777]/title")
    ]
    assert r.chunks_read == 1 and r.chunks_skipped > 700 and r.read == "chunks"


def test_a_sharded_key_at_the_past_revision(big100k: Path) -> None:
    store = Vault.open(big100k).store
    assert search(store, "zanzibar", rev="main~1").total == 0
    old = search(store, "77777", key="tasks", rev="main~1")
    assert old.hits[0].text == "Task 77777: item number 77777"


def test_a_path_into_a_sharded_key_reads_one_chunk(big100k: Path) -> None:
    r = search(Vault.open(big100k).store, "ship", path="/tasks/77777")
    assert [h.pointer for h in r.hits] == ["/tasks/77777/title"] and r.chunks_read == 1


def test_words_outside_the_sharded_key_rank_with_their_own_recency(big100k: Path) -> None:
    r = search(Vault.open(big100k).store, "sqlite queue")
    assert r.hits[0].pointer == "/notes/db" and r.hits[0].score == 2


def test_an_id_step_into_a_sharded_key_reads_only_the_chunk_with_that_id(big100k: Path) -> None:
    store = Vault.open(big100k).store
    r = search(store, "ship", path="/tasks/[id=T-077777]")
    assert [(h.pointer, h.path) for h in r.hits] == [
        ("/tasks/77777/title", "/tasks/[id=T-077777]/title")
    ]
    assert r.read == "chunks" and r.chunks_read <= 2
    with pytest.raises(InputError, match=r"/tasks/\[id=T-999999\] does not exist"):
        search(store, "ship", path="/tasks/[id=T-999999]")
