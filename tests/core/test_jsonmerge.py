"""gitvault.core.jsonmerge: a case table for the merge rules plus hypothesis properties."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitvault.core.jsonmerge import (
    MISSING,
    Conflict,
    MergeResult,
    is_id_array,
    json_equal,
    merge3,
    pointer_escape,
)

# --------------------------------------------------------------------------------------------
# helpers


def task(task_id: str | int, status: str = "todo", **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "status": status, **fields}


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def resolve(doc: Any, pointer: str, *, by_id: bool = False) -> Any:
    """Follow an RFC 6901 pointer (or, with by_id, a `[id=...]` path); MISSING if absent."""
    if pointer == "":
        return doc
    node = doc
    for token in pointer[1:].split("/"):
        if isinstance(node, dict):
            key = _unescape(token)
            if key not in node:
                return MISSING
            node = node[key]
        elif isinstance(node, list):
            if by_id:
                assert token.startswith("[id=") and token.endswith("]"), token
                wanted = token[4:-1]
                matches = [
                    item
                    for item in node
                    if isinstance(item, dict) and pointer_escape(str(item.get("id"))) == wanted
                ]
                if not matches:
                    return MISSING
                node = matches[0]
            else:
                index = int(token)
                if index >= len(node):
                    return MISSING
                node = node[index]
        else:
            return MISSING
    return node


def canonical(value: Any) -> str:
    """JSON text that ignores object key order and the order of id-array items."""

    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            items = [norm(x) for x in v]
            if is_id_array(v):
                items.sort(key=lambda d: (type(d["id"]).__name__, str(d["id"])))
            return items
        return v

    if value is MISSING:
        return "<MISSING>"
    return json.dumps(norm(value), sort_keys=True)


ConflictTuple = tuple[str, str, Any, Any, Any, str]


def as_tuple(c: Conflict) -> ConflictTuple:
    return (c.pointer, c.path, c.base, c.ours, c.theirs, c.kind)


def assert_conflicts(actual: tuple[Conflict, ...], expected: list[ConflictTuple]) -> None:
    assert len(actual) == len(expected), [as_tuple(c) for c in actual]
    for got, want in zip(actual, expected, strict=True):
        assert (got.pointer, got.path, got.kind) == (want[0], want[1], want[5])
        for g, w in zip((got.base, got.ours, got.theirs), want[2:5], strict=True):
            assert json_equal(g, w), (as_tuple(got), want)


# --------------------------------------------------------------------------------------------
# the case table

T1, T2, T3 = task("T-1"), task("T-2"), task("T-3")

CASES = [
    pytest.param(
        {"a": 1, "b": 2},
        {"a": 10, "b": 2},
        {"a": 1, "b": 20},
        {"a": 10, "b": 20},
        [],
        "",
        id="disjoint key edits merge",
    ),
    pytest.param(
        {"a": 1, "b": 2},
        {"a": 5, "b": 3},
        {"a": 5, "b": 2},
        {"a": 5, "b": 3},
        [],
        "",
        id="same key same value is not a conflict",
    ),
    pytest.param(
        {"a": 1, "b": 2},
        {"a": 2, "b": 2},
        {"a": 3, "b": 2},
        {"a": 2, "b": 2},
        [("/a", "/a", 1, 2, 3, "modify/modify")],
        "",
        id="same key different values conflict and keep ours",
    ),
    pytest.param(
        {"x": {"y": 1, "z": 1}},
        {"x": {"y": 2, "z": 1}},
        {"x": {"y": 1, "z": 2}},
        {"x": {"y": 2, "z": 2}},
        [],
        "",
        id="nested objects merge field by field",
    ),
    pytest.param(
        {"x": {"y": {"z": 1}}, "k": 0},
        {"x": {"y": {"z": 2}}, "k": 0},
        {"x": {"y": {"z": 3}}, "k": 1},
        {"x": {"y": {"z": 2}}, "k": 1},
        [("/x/y/z", "/x/y/z", 1, 2, 3, "modify/modify")],
        "",
        id="nested conflict has a deep pointer",
    ),
    pytest.param(
        {"a": 1},
        {"a": 1, "n": [1]},
        {"a": 2, "n": [1]},
        {"a": 2, "n": [1]},
        [],
        "",
        id="key added on both sides with the same value",
    ),
    pytest.param(
        {"a": 1},
        {"a": 1, "n": 1},
        {"a": 1, "n": "x"},
        {"a": 1, "n": 1},
        [("/n", "/n", MISSING, 1, "x", "add/add")],
        "",
        id="key added on both sides with different values",
    ),
    pytest.param(
        {},
        {"n": {"a": 1}},
        {"n": {"b": 2}},
        {"n": {"a": 1, "b": 2}},
        [],
        "",
        id="object added on both sides merges recursively",
    ),
    pytest.param(
        {},
        {"n": {"a": 1}},
        {"n": {"a": 2}},
        {"n": {"a": 1}},
        [("/n/a", "/n/a", MISSING, 1, 2, "add/add")],
        "",
        id="object added on both sides with a clashing field",
    ),
    pytest.param(
        {"a": 1, "b": 1},
        {"b": 1},
        {"a": 2, "b": 1},
        {"b": 1},
        [("/a", "/a", 1, MISSING, 2, "delete/modify")],
        "",
        id="delete vs modify conflicts and stays deleted",
    ),
    pytest.param(
        {"a": 1},
        {"a": 2},
        {},
        {"a": 2},
        [("/a", "/a", 1, 2, MISSING, "modify/delete")],
        "",
        id="modify vs delete conflicts and keeps ours",
    ),
    pytest.param(
        {"a": 1, "b": 1},
        {"b": 1},
        {"a": 1, "b": 2},
        {"b": 2},
        [],
        "",
        id="delete vs unchanged deletes",
    ),
    pytest.param(
        {"a": 1, "b": 1},
        {"a": 1, "b": 2},
        {"b": 1},
        {"b": 2},
        [],
        "",
        id="unchanged vs delete deletes",
    ),
    pytest.param(
        {"a": None},
        {},
        {"a": 0},
        {},
        [("/a", "/a", None, MISSING, 0, "delete/modify")],
        "",
        id="null and missing are different",
    ),
    pytest.param(
        [T1, T2],
        [task("T-1", "done"), T2],
        [T1, task("T-2", "doing")],
        [task("T-1", "done"), task("T-2", "doing")],
        [],
        "",
        id="id array both sides edit different items",
    ),
    pytest.param(
        [task("T-1", title="a")],
        [task("T-1", "done", title="a")],
        [task("T-1", title="b")],
        [task("T-1", "done", title="b")],
        [],
        "",
        id="id array both sides edit different fields of one item",
    ),
    pytest.param(
        [T1, T2],
        [T1, task("T-2", "done")],
        [T1, task("T-2", "blocked")],
        [T1, task("T-2", "done")],
        [("/tasks/1/status", "/tasks/[id=T-2]/status", "todo", "done", "blocked", "modify/modify")],
        "/tasks",
        id="id array same field conflict uses index pointer and id path with prefix",
    ),
    pytest.param(
        [T1],
        [task("T-0"), T1, T2],
        [T1, T3, task("T-4")],
        [task("T-0"), T1, T2, T3, task("T-4")],
        [],
        "",
        id="id array inserts on both sides keep ours order then theirs new items",
    ),
    pytest.param(
        [T1, T2, T3],
        [T1, T3],
        [T1, T2, task("T-3", "done")],
        [T1, task("T-3", "done")],
        [],
        "",
        id="id array delete one item and modify another",
    ),
    pytest.param(
        [task("A"), task("B"), task("C")],
        [task("C"), task("A"), task("B")],
        [task("A"), task("B", "done"), task("C")],
        [task("C"), task("A"), task("B", "done")],
        [],
        "",
        id="id array item moved in ours and edited in theirs",
    ),
    pytest.param(
        [T1, T2, T3],
        [T1, T3],
        [task("T-0"), T1, task("T-2", "done"), T3],
        [T1, T3, task("T-0")],
        [("/2", "/[id=T-2]", T2, MISSING, task("T-2", "done"), "delete/modify")],
        "",
        id="id array delete vs modify points at theirs index",
    ),
    pytest.param(
        [T1, T2],
        [task("T-2", "done"), T1],
        [T1],
        [task("T-2", "done"), T1],
        [("/0", "/[id=T-2]", T2, task("T-2", "done"), MISSING, "modify/delete")],
        "",
        id="id array modify vs delete points at ours index",
    ),
    pytest.param(
        [T1, T2, T3],
        [task("T-1", "done"), T3],
        [T1, task("T-3", "done")],
        [task("T-1", "done"), task("T-3", "done")],
        [],
        "",
        id="id array item deleted on both sides is gone",
    ),
    pytest.param(
        [{"id": 7, "v": 1}, {"id": 8, "v": 1}],
        [{"id": 8, "v": 1}, {"id": 7, "v": 2}],
        [{"id": 7, "v": 3}, {"id": 8, "v": 1}],
        [{"id": 8, "v": 1}, {"id": 7, "v": 2}],
        [("/1/v", "/[id=7]/v", 1, 2, 3, "modify/modify")],
        "",
        id="int ids",
    ),
    pytest.param(
        [{"id": "a/b~", "v": 1}],
        [{"id": "a/b~", "v": 2}],
        [{"id": "a/b~", "v": 3}],
        [{"id": "a/b~", "v": 2}],
        [("/0/v", "/[id=a~1b~0]/v", 1, 2, 3, "modify/modify")],
        "",
        id="slash and tilde in ids are escaped in paths",
    ),
    pytest.param(
        [{"id": 1, "v": 0}, {"id": 1, "v": 1}],
        [{"id": 1, "v": 5}, {"id": 1, "v": 1}],
        [{"id": 1, "v": 0}, {"id": 1, "v": 6}],
        [{"id": 1, "v": 5}, {"id": 1, "v": 1}],
        [
            (
                "",
                "",
                [{"id": 1, "v": 0}, {"id": 1, "v": 1}],
                [{"id": 1, "v": 5}, {"id": 1, "v": 1}],
                [{"id": 1, "v": 0}, {"id": 1, "v": 6}],
                "array",
            )
        ],
        "",
        id="duplicate ids fall back to the array rule",
    ),
    pytest.param(
        [{"id": 1, "v": 0}, "x"],
        [{"id": 1, "v": 2}, "x"],
        [{"id": 1, "v": 0}, "y"],
        [{"id": 1, "v": 2}, "x"],
        [
            (
                "",
                "",
                [{"id": 1, "v": 0}, "x"],
                [{"id": 1, "v": 2}, "x"],
                [{"id": 1, "v": 0}, "y"],
                "array",
            )
        ],
        "",
        id="mixed items fall back to the array rule",
    ),
    pytest.param(
        [{"id": True, "v": 0}],
        [{"id": True, "v": 1}],
        [{"id": True, "v": 0}, {"id": False}],
        [{"id": True, "v": 1}],
        [
            (
                "",
                "",
                [{"id": True, "v": 0}],
                [{"id": True, "v": 1}],
                [{"id": True, "v": 0}, {"id": False}],
                "array",
            )
        ],
        "",
        id="bool ids are not ids",
    ),
    pytest.param(
        {"l": [1, 2, 3]},
        {"l": [1, 2, 3, 4]},
        {"l": [1, 2, 3]},
        {"l": [1, 2, 3, 4]},
        [],
        "",
        id="non id array changed on one side only",
    ),
    pytest.param(
        {"l": [1, 2]},
        {"l": [1, 2, 3]},
        {"l": [0, 1, 2]},
        {"l": [1, 2, 3]},
        [("/l", "/l", [1, 2], [1, 2, 3], [0, 1, 2], "array")],
        "",
        id="non id array changed differently on both sides",
    ),
    pytest.param(
        {"a": {"x": 1}},
        {"a": "x"},
        {"a": {"x": 2}},
        {"a": "x"},
        [("/a", "/a", {"x": 1}, "x", {"x": 2}, "modify/modify")],
        "",
        id="type change vs edit",
    ),
    pytest.param(
        {"a": [1]},
        {"a": {"x": 1}},
        {"a": [2]},
        {"a": {"x": 1}},
        [("/a", "/a", [1], {"x": 1}, [2], "modify/modify")],
        "",
        id="array replaced by object vs array edit",
    ),
    pytest.param(
        {"a": 1, "b": 0},
        {"a": True, "b": 0},
        {"a": 1, "b": 1},
        {"a": True, "b": 1},
        [],
        "",
        id="bool vs int is a change",
    ),
    pytest.param(
        {"a": 1},
        {"a": True},
        {"a": 2},
        {"a": True},
        [("/a", "/a", 1, True, 2, "modify/modify")],
        "",
        id="bool vs int conflicts",
    ),
    pytest.param(
        {"a": 1},
        {"a": 1.0},
        {"a": 2},
        {"a": 1.0},
        [("/a", "/a", 1, 1.0, 2, "modify/modify")],
        "",
        id="int vs float conflicts",
    ),
    pytest.param(
        {"a": 0.0},
        {"a": -0.0},
        {"a": 0.0},
        {"a": -0.0},
        [],
        "",
        id="negative zero is a change",
    ),
    pytest.param(
        {"a": 1.0},
        {"a": 0.0},
        {"a": -0.0},
        {"a": 0.0},
        [("/a", "/a", 1.0, 0.0, -0.0, "modify/modify")],
        "",
        id="negative zero vs zero conflicts",
    ),
    pytest.param(
        {"ключ": "a", "名前": 1},
        {"ключ": "b", "名前": 1},
        {"ключ": "c", "名前": 2},
        {"ключ": "b", "名前": 2},
        [("/ключ", "/ключ", "a", "b", "c", "modify/modify")],
        "",
        id="unicode keys",
    ),
    pytest.param(
        {"a/b": {"c~d": 1}},
        {"a/b": {"c~d": 2}},
        {"a/b": {"c~d": 3}},
        {"a/b": {"c~d": 2}},
        [("/a~1b/c~0d", "/a~1b/c~0d", 1, 2, 3, "modify/modify")],
        "",
        id="slash and tilde in keys are escaped",
    ),
    pytest.param(
        {"a": 1},
        {"a": 2},
        {"a": 3},
        {"a": 2},
        [("/memory/a", "/memory/a", 1, 2, 3, "modify/modify")],
        "/memory",
        id="prefix is prepended to object pointers",
    ),
    pytest.param(
        1,
        2,
        3,
        2,
        [("", "", 1, 2, 3, "modify/modify")],
        "",
        id="top level scalar conflict",
    ),
    pytest.param(
        MISSING,
        1,
        2,
        1,
        [("", "", MISSING, 1, 2, "add/add")],
        "",
        id="top level add add of scalars",
    ),
    pytest.param(
        MISSING,
        {"a": 1, "b": 1},
        {"a": 2, "c": 1},
        {"a": 1, "b": 1, "c": 1},
        [("/a", "/a", MISSING, 1, 2, "add/add")],
        "",
        id="top level add add of objects recurses",
    ),
    pytest.param(
        1,
        MISSING,
        1,
        MISSING,
        [],
        "",
        id="top level delete vs unchanged",
    ),
    pytest.param(
        MISSING,
        [T1],
        [T2],
        [T1, T2],
        [],
        "",
        id="id arrays added on both sides merge by id",
    ),
    pytest.param(
        {"t": []},
        {"t": [T1]},
        {"t": [T2]},
        {"t": [T1, T2]},
        [],
        "",
        id="empty base list is compatible with id merging",
    ),
    pytest.param(
        [],
        [{"id": "N", "a": 1}],
        [{"id": "N", "b": 2}],
        [{"id": "N", "a": 1, "b": 2}],
        [],
        "",
        id="same new id added on both sides merges fields",
    ),
    pytest.param(
        [{"id": "P", "sub": [{"id": 1, "d": False}, {"id": 2, "d": False}]}],
        [{"id": "P", "sub": [{"id": 1, "d": True}, {"id": 2, "d": False}]}],
        [{"id": "P", "sub": [{"id": 1, "d": False}, {"id": 2, "d": True}]}],
        [{"id": "P", "sub": [{"id": 1, "d": True}, {"id": 2, "d": True}]}],
        [],
        "",
        id="nested id arrays merge",
    ),
    pytest.param(
        [task("T-1", tags=["a"])],
        [task("T-1", tags=["a", "b"])],
        [task("T-1", tags=["c"])],
        [task("T-1", tags=["a", "b"])],
        [("/tasks/0/tags", "/tasks/[id=T-1]/tags", ["a"], ["a", "b"], ["c"], "array")],
        "/tasks",
        id="non id array conflict inside an id item",
    ),
]


@pytest.mark.parametrize(("base", "ours", "theirs", "expected", "conflicts", "prefix"), CASES)
def test_merge_case_table(
    base: Any,
    ours: Any,
    theirs: Any,
    expected: Any,
    conflicts: list[ConflictTuple],
    prefix: str,
) -> None:
    result = merge3(base, ours, theirs, prefix=prefix)
    assert json_equal(result.value, expected), result.value
    assert_conflicts(result.conflicts, conflicts)
    assert result.clean == (not conflicts)


# --------------------------------------------------------------------------------------------
# targeted tests


def test_merged_object_keeps_ours_key_order_then_theirs_new_keys() -> None:
    base = {"a": 0, "b": 0}
    ours = {"z": 1, "b": 1, "a": 0}
    theirs = {"y": 2, "a": 0, "b": 0, "x": 2}
    result = merge3(base, ours, theirs)
    assert list(result.value) == ["z", "b", "a", "y", "x"]


def test_resolver_choosing_theirs_is_used_and_conflict_still_reported() -> None:
    result = merge3({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 3, "b": 1}, lambda c: c.theirs)
    assert result.value == {"a": 3, "b": 1}
    assert not result.clean
    assert_conflicts(result.conflicts, [("/a", "/a", 1, 2, 3, "modify/modify")])


def test_resolver_returning_missing_deletes_the_key() -> None:
    result = merge3({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 3, "b": 1}, lambda c: MISSING)
    assert result.value == {"b": 1}
    assert len(result.conflicts) == 1


def test_resolver_returning_missing_drops_an_id_item() -> None:
    base = [T1, T2]
    result = merge3(base, [T1, task("T-2", "done")], [T1], lambda c: MISSING)
    assert result.value == [T1]
    assert result.conflicts[0].kind == "modify/delete"


def test_resolver_keeping_an_item_ours_deleted_places_it_in_theirs_order() -> None:
    base = [T1, T2, T3]
    theirs = [task("T-2", "done"), T1, task("T-4"), T3]
    result = merge3(base, [T1, T3], theirs, lambda c: c.theirs)
    assert result.value == [T1, T3, task("T-2", "done"), task("T-4")]
    assert_conflicts(
        result.conflicts, [("/0", "/[id=T-2]", T2, MISSING, task("T-2", "done"), "delete/modify")]
    )


def test_resolver_is_called_once_per_conflict_in_discovery_order() -> None:
    seen: list[str] = []

    def record(c: Conflict) -> Any:
        seen.append(c.pointer)
        return c.ours

    base = {"a": 1, "b": {"c": 1}, "d": [1]}
    ours = {"d": [2], "b": {"c": 2}, "a": 2}
    theirs = {"a": 3, "b": {"c": 3}, "d": [3], "e": 1}
    result = merge3(base, ours, theirs, record)
    assert seen == ["/d", "/b/c", "/a"]
    assert [c.pointer for c in result.conflicts] == seen
    assert result.value == {"d": [2], "b": {"c": 2}, "a": 2, "e": 1}


def test_resolver_errors_propagate() -> None:
    def refuse(c: Conflict) -> Any:
        raise LookupError(c.pointer)

    with pytest.raises(LookupError, match="/a"):
        merge3({"a": 1}, {"a": 2}, {"a": 3}, refuse)


def test_merge_result_does_not_alias_inputs() -> None:
    base: dict[str, Any] = {"l": [{"id": 1, "v": {"x": 1}}], "o": {"k": [1]}}
    ours = copy.deepcopy(base)
    theirs = copy.deepcopy(base)
    theirs["o"]["k"].append(2)
    snapshot = copy.deepcopy((base, ours, theirs))
    result = merge3(base, ours, theirs)
    result.value["o"]["k"].append(3)
    result.value["l"][0]["v"]["x"] = 9
    assert (base, ours, theirs) == snapshot


def test_conflict_values_do_not_alias_result() -> None:
    result = merge3({"a": [1]}, {"a": [2]}, {"a": [3]})
    result.value["a"].append(4)
    assert result.conflicts[0].ours == [2]


def test_missing_is_a_singleton_with_a_short_repr() -> None:
    assert repr(MISSING) == "MISSING"
    assert copy.copy(MISSING) is MISSING
    assert copy.deepcopy(MISSING) is MISSING
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING
    assert "MISSING" in repr(Conflict("", "", MISSING, 1, 2, "add/add"))


def test_merge_result_clean_reflects_conflicts() -> None:
    assert MergeResult(1, ()).clean
    assert not MergeResult(1, (Conflict("", "", 1, 2, 3, "modify/modify"),)).clean


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        pytest.param(True, 1, False, id="true is not one"),
        pytest.param(False, 0, False, id="false is not zero"),
        pytest.param(1, 1.0, False, id="int is not float"),
        pytest.param(0.0, -0.0, False, id="zero is not negative zero"),
        pytest.param(-0.0, -0.0, True, id="negative zero equals itself"),
        pytest.param(float("nan"), float("nan"), True, id="nan equals nan"),
        pytest.param(None, MISSING, False, id="null is not missing"),
        pytest.param(MISSING, MISSING, True, id="missing equals missing"),
        pytest.param("1", 1, False, id="string is not int"),
        pytest.param({"a": 1, "b": [2]}, {"b": [2], "a": 1}, True, id="key order ignored"),
        pytest.param({"a": 1}, {"a": True}, False, id="nested strictness in objects"),
        pytest.param({"a": 1}, {"b": 1}, False, id="different keys"),
        pytest.param([1, 2], [2, 1], False, id="array order matters"),
        pytest.param([1], [1, 1], False, id="array length matters"),
        pytest.param([[0.0]], [[-0.0]], False, id="nested strictness in arrays"),
        pytest.param([], {}, False, id="empty array is not empty object"),
    ],
)
def test_json_equal_is_strict(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


def test_pointer_escape_follows_rfc_6901() -> None:
    assert pointer_escape("a/b~c") == "a~1b~0c"
    assert pointer_escape("~1") == "~01"
    assert pointer_escape("") == ""


@pytest.mark.parametrize(
    ("lists", "expected"),
    [
        pytest.param(([{"id": 1}],), True, id="one int id"),
        pytest.param(([], [{"id": "a"}], []), True, id="empty lists are compatible"),
        pytest.param(([], []), False, id="all empty"),
        pytest.param(([{"id": 1}, {"id": "1"}],), True, id="int and str ids differ"),
        pytest.param(([{"id": 1}, {"id": 1}],), False, id="duplicate ids"),
        pytest.param(([{"id": "a"}], [{"id": "a"}]), True, id="same id across lists"),
        pytest.param(([{"id": True}],), False, id="bool id"),
        pytest.param(([{"id": 1.0}],), False, id="float id"),
        pytest.param(([{"id": None}],), False, id="null id"),
        pytest.param(([{"name": "a"}],), False, id="no id key"),
        pytest.param(([{"id": 1}, 1],), False, id="non object item"),
    ],
)
def test_is_id_array_requires_unique_str_or_int_ids(
    lists: tuple[list[Any], ...], expected: bool
) -> None:
    assert is_id_array(*lists) is expected


# --------------------------------------------------------------------------------------------
# hypothesis: arbitrary JSON and related edits of it

KEYS = st.sampled_from(["a", "b", "c", "id", "a/b", "~x", "ключ", ""]) | st.text(max_size=2)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.sampled_from([0.0, -0.0, 1.0])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=2)
)


RECORD_IDS: list[str | int] = ["x", "y", "z", 1, 2]


def _containers(children: st.SearchStrategy[Any], min_size: int = 0) -> st.SearchStrategy[Any]:
    records = st.lists(
        st.fixed_dictionaries({"id": st.sampled_from(RECORD_IDS)}, optional={"v": children}),
        min_size=min_size,
        max_size=3,
        unique_by=lambda d: d["id"],
    )
    return (
        st.lists(children, min_size=min_size, max_size=3)
        | st.dictionaries(KEYS, children, min_size=min_size, max_size=4)
        | records
    )


JSON: st.SearchStrategy[Any] = st.recursive(SCALARS, _containers, max_leaves=12)


# hypothesis favours early elements, so edits come first to keep most examples interesting
ACTIONS = st.sampled_from(["edit", "edit", "edit", "keep", "replace"])
STEPS = st.sampled_from(["edit", "keep", "keep", "edit", "delete"])


@st.composite
def mutated(draw: st.DrawFn, value: Any, edit: bool = False) -> Any:
    """An edit of `value`: kept, replaced, or (for containers, or always if `edit`) edited
    piecewise."""
    action = "edit" if edit else draw(ACTIONS)
    if action == "keep":
        return value
    if action == "replace" or value is MISSING:
        return draw(JSON)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, child in value.items():
            step = draw(STEPS)
            if step == "keep":
                out[key] = child
            elif step == "edit":
                out[key] = draw(mutated(child))
        for key, child in draw(st.dictionaries(KEYS, JSON, max_size=2)).items():
            out.setdefault(key, child)
        return out
    if isinstance(value, list):
        records = is_id_array(value)
        items: list[Any] = []
        for child in value:
            step = draw(STEPS)
            if step == "keep":
                items.append(child)
            elif step == "edit" and records:  # usually keep it a record with the same id
                edited = draw(mutated({k: v for k, v in child.items() if k != "id"}))
                items.append({**edited, "id": child["id"]} if isinstance(edited, dict) else edited)
            elif step == "edit":
                items.append(draw(mutated(child)))
        for _ in range(draw(st.integers(0, 2))):
            if records:
                taken = {item["id"] for item in items if isinstance(item, dict)}
                free = [i for i in RECORD_IDS if i not in taken]
                new: Any = {"id": draw(st.sampled_from(free))} if free else draw(JSON)
            else:
                new = draw(JSON)
            items.insert(draw(st.integers(0, len(items))), new)
        if draw(st.booleans()):
            items = list(draw(st.permutations(items)))
        return items
    return draw(SCALARS)


@st.composite
def triples(draw: st.DrawFn) -> tuple[Any, Any, Any]:
    """(base, ours, theirs) where both sides are edits of base, so merges recurse often."""
    base = draw(
        st.dictionaries(KEYS, _containers(JSON), min_size=1, max_size=4)
        | _containers(JSON, min_size=1)
        | JSON
        | st.just(MISSING)
    )

    def side() -> Any:
        if draw(st.integers(0, 19)) == 0:
            return MISSING
        return draw(mutated(base, edit=True))

    return base, side(), side()


MIRROR = {"delete/modify": "modify/delete", "modify/delete": "delete/modify"}


@given(triples())
def test_unchanged_ours_takes_theirs(t: tuple[Any, Any, Any]) -> None:
    base, _, theirs = t
    result = merge3(base, base, theirs)
    assert result.clean
    assert json_equal(result.value, theirs)


@given(triples())
def test_unchanged_theirs_takes_ours(t: tuple[Any, Any, Any]) -> None:
    base, ours, _ = t
    result = merge3(base, ours, base)
    assert result.clean
    assert json_equal(result.value, ours)


@given(triples())
def test_identical_changes_merge_clean(t: tuple[Any, Any, Any]) -> None:
    base, ours, _ = t
    result = merge3(base, ours, copy.deepcopy(ours))
    assert result.clean
    assert json_equal(result.value, ours)


@given(triples())
def test_merge_is_symmetric_up_to_order(t: tuple[Any, Any, Any]) -> None:
    base, ours, theirs = t
    forward = merge3(base, ours, theirs)
    backward = merge3(base, theirs, ours)
    assert forward.clean == backward.clean

    def key(c: Conflict, swap: bool) -> tuple[str, str, str, str, str]:
        kind = MIRROR.get(c.kind, c.kind) if swap else c.kind
        left, right = (c.theirs, c.ours) if swap else (c.ours, c.theirs)
        return (c.path, kind, canonical(c.base), canonical(left), canonical(right))

    assert sorted(key(c, False) for c in forward.conflicts) == sorted(
        key(c, True) for c in backward.conflicts
    )
    if forward.clean:
        assert canonical(forward.value) == canonical(backward.value)


@given(triples())
def test_resolving_to_theirs_equals_merging_the_other_way(t: tuple[Any, Any, Any]) -> None:
    base, ours, theirs = t
    resolved = merge3(base, ours, theirs, lambda c: c.theirs)
    swapped = merge3(base, theirs, ours)
    assert len(resolved.conflicts) == len(swapped.conflicts)
    assert canonical(resolved.value) == canonical(swapped.value)


@given(triples(), st.sampled_from(["", "/doc", "/a~1b"]))
def test_conflict_locations_resolve_in_each_side(t: tuple[Any, Any, Any], prefix: str) -> None:
    base, ours, theirs = t
    result = merge3(base, ours, theirs, prefix=prefix)
    for c in result.conflicts:
        assert c.pointer.startswith(prefix)
        assert c.path.startswith(prefix)
        pointer, path = c.pointer[len(prefix) :], c.path[len(prefix) :]
        if c.ours is not MISSING:
            assert json_equal(resolve(ours, pointer), c.ours)
        # ids survive reordering, so the id path also finds ours' value in the merged result
        assert json_equal(resolve(result.value, path, by_id=True), c.ours)
        assert json_equal(resolve(ours, path, by_id=True), c.ours)
        assert json_equal(resolve(theirs, path, by_id=True), c.theirs)
        assert json_equal(resolve(base, path, by_id=True), c.base)


# --------------------------------------------------------------------------------------------
# hypothesis: id arrays edited on disjoint ids

BASE_IDS = st.integers(0, 50) | st.text("abc/~", min_size=1, max_size=3)
TAGS = st.integers(0, 2)


def _new_ids(low: int, tag: str) -> st.SearchStrategy[list[str | int]]:
    fresh: st.SearchStrategy[str | int] = st.integers(low, low + 49) | st.text(
        "abc", min_size=1, max_size=3
    ).map(lambda s: f"{tag}:{s}")
    return st.lists(fresh, unique=True, max_size=3)


@st.composite
def id_array_edits(
    draw: st.DrawFn,
) -> tuple[list[Any], list[Any], list[Any], dict[str | int, str]]:
    """(base, ours, theirs, owner) where each id is touched by at most one side.

    owner maps every id in ours or theirs to the side whose version must win.
    """
    ids = draw(st.lists(BASE_IDS, unique=True, max_size=8))
    base: list[dict[str, Any]] = [
        {"id": i, "v": draw(st.integers(0, 3)), "tags": draw(st.lists(TAGS, max_size=2))}
        for i in ids
    ]
    owner = {i: draw(st.sampled_from(["none", "ours", "theirs"])) for i in ids}

    def side(name: str, low: int) -> list[Any]:
        items: list[Any] = []
        for item in base:
            if owner[item["id"]] != name:
                items.append(copy.deepcopy(item))
                continue
            step = draw(st.sampled_from(["v", "tags", "field", "delete"]))
            if step == "v":
                items.append({**item, "v": draw(st.integers(0, 3))})
            elif step == "tags":
                items.append({**item, "tags": draw(st.lists(TAGS, max_size=2))})
            elif step == "field":
                items.append({**item, name: draw(SCALARS)})
        for new_id in draw(_new_ids(low, name)):
            owner[new_id] = name
            record = {"id": new_id, "v": draw(st.integers(0, 3))}
            items.insert(draw(st.integers(0, len(items))), record)
        return list(draw(st.permutations(items)))

    ours = side("ours", 100)
    theirs = side("theirs", 200)
    return base, ours, theirs, owner


@given(id_array_edits())
def test_id_array_edits_on_disjoint_ids_merge_clean(
    edits: tuple[list[Any], list[Any], list[Any], dict[str | int, str]],
) -> None:
    base, ours, theirs, owner = edits
    result = merge3(base, ours, theirs, prefix="/tasks")
    assert result.clean, result.conflicts

    ours_by_id = {item["id"]: item for item in ours}
    theirs_by_id = {item["id"]: item for item in theirs}
    base_ids = {item["id"] for item in base}
    if json_equal(ours, base):  # a one-sided change (even a pure reorder) is taken whole
        expected_order = list(theirs_by_id)
    elif json_equal(theirs, base) or json_equal(ours, theirs):
        expected_order = list(ours_by_id)
    else:  # surviving items in ours' order, then the items new in theirs
        expected_order = [i for i in ours_by_id if i in theirs_by_id or i not in base_ids]
        expected_order += [i for i in theirs_by_id if i not in ours_by_id and i not in base_ids]
    assert [item["id"] for item in result.value] == expected_order

    for item in result.value:
        winner = theirs_by_id if owner[item["id"]] == "theirs" else ours_by_id
        assert json_equal(item, winner[item["id"]])

    backward = merge3(base, theirs, ours)
    assert backward.clean
    assert canonical(backward.value) == canonical(result.value)


@given(id_array_edits(), st.data())
def test_id_array_conflicting_edit_of_one_field_is_reported_by_id(
    edits: tuple[list[Any], list[Any], list[Any], dict[str | int, str]], data: st.DataObject
) -> None:
    base, ours, theirs, _ = edits
    common = [
        i["id"]
        for i in base
        if any(j["id"] == i["id"] for j in ours) and any(j["id"] == i["id"] for j in theirs)
    ]
    if not common:
        return
    target = data.draw(st.sampled_from(common))
    for side, value in ((ours, "ours-v"), (theirs, "theirs-v")):
        for item in side:
            if item["id"] == target:
                item["v"] = value
    result = merge3(base, ours, theirs, prefix="/tasks")
    token = pointer_escape(str(target))
    index = next(n for n, item in enumerate(ours) if item["id"] == target)
    assert [as_tuple(c)[:2] for c in result.conflicts] == [
        (f"/tasks/{index}/v", f"/tasks/[id={token}]/v")
    ]
    assert result.conflicts[0].ours == "ours-v"
    assert result.conflicts[0].theirs == "theirs-v"
