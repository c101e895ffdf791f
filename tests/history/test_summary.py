"""The value-by-value summary of a change (history.summary), as the review page shows it."""

from __future__ import annotations

from typing import Any

from gitvault import Vault
from gitvault.core.jsonmerge import MISSING
from gitvault.history.summary import between, documents, merge_sides, render, strategy_of, summarize


def texts(old: Any, new: Any) -> list[str]:
    return [line.text for line in documents(old, new)]


def test_a_changed_status_is_named_by_the_items_id() -> None:
    old = {"tasks": [{"id": "T-4", "status": "todo"}, {"id": "T-5", "status": "todo"}]}
    new = {"tasks": [{"id": "T-4", "status": "done"}, {"id": "T-5", "status": "todo"}]}
    assert texts(old, new) == ["/tasks/[id=T-4]/status: 'todo' → 'done'"]


def test_reordering_records_is_not_reported_as_changes_of_every_field() -> None:
    a, b = {"id": "T-1", "x": 1}, {"id": "T-2", "x": 2}
    assert texts({"tasks": [a, b]}, {"tasks": [b, a]}) == []


def test_added_and_removed_values_say_so() -> None:
    old = {"bugs": [{"id": "B-1", "open": True}], "notes": "n"}
    new = {"bugs": [{"id": "B-1", "open": True}, {"id": "B-2", "open": False}]}
    assert texts(old, new) == [
        '/bugs/[id=B-2]: added {"id": "B-2", "open": false}',
        "/notes: removed (was 'n')",
    ]


def test_a_type_change_shows_both_values_as_json() -> None:
    assert texts({"k": {"n": 1}}, {"k": {"n": "1"}}) == ["/k/n: 1 → '1'"]


def test_plain_arrays_are_compared_by_position() -> None:
    assert texts({"tags": ["a", "b"]}, {"tags": ["a", "c"]}) == ["/tags/1: 'b' → 'c'"]


def test_a_whole_new_key_is_one_line() -> None:
    assert [x.kind for x in summarize(MISSING, [1, 2], "/k")] == ["added"]


def test_one_change_in_ten_thousand_items_is_one_line() -> None:
    old = [{"id": f"T-{i}", "status": "todo", "n": i} for i in range(10_000)]
    new = [dict(x) for x in old]
    new[7_777]["status"] = "done"
    assert [x.text for x in summarize(old, new, "/tasks")] == [
        "/tasks/[id=T-7777]/status: 'todo' → 'done'"
    ]


def test_render_quotes_strings_and_shortens_long_values() -> None:
    assert render("it's") == '"it\'s"'
    assert render("a\nb") == "'a\\nb'"
    assert render(list(range(100))) == "[…100 items]"
    assert render(None) == "null"


def test_the_merge_strategy_trailer_is_read_per_key() -> None:
    assert strategy_of("tasks=git, bugs=structural") == {"tasks": "git", "bugs": "structural"}
    assert strategy_of(None) == {}


def test_a_merge_commit_has_both_sides_since_their_base(vault: Vault) -> None:
    planner, coder = Vault.open(vault.path), Vault.open(vault.path)
    p = planner.checkout("planner", 60).document
    c = coder.checkout("coder", 60).document
    p["tasks"][0]["status"] = "p"
    c["tasks"][1]["status"] = "c"
    planner.checkin("planner", p, "t", 0.5)
    merged = coder.checkin("coder", c, "t", 0.5)
    assert merged.commit is not None
    commit = vault.store.commit(merged.commit)
    sides = merge_sides(vault.store, commit, "tasks=git")
    assert sides is not None
    assert [x.path for x in sides.ours] == ["/tasks/[id=T-001]/status"]
    assert [x.path for x in sides.theirs] == ["/tasks/[id=T-002]/status"]
    assert [x.path for x in sides.result] == ["/tasks/[id=T-002]/status"]
    assert sides.strategy == {"tasks": "git"}
    assert [x.path for x in between(vault.store, commit.parents[0], commit)] == [
        "/tasks/[id=T-002]/status"
    ]
