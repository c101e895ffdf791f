"""The splice merge (different items or members changed on each side) gives exactly what the
structural merge gives, on random documents (hypothesis), and applies where it should."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gitvault.core import codec
from gitvault.core.jsonmerge import merge3
from gitvault.core.splice import splice

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text('ab"\\é\n', max_size=3),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text("xyz", max_size=2), inner, max_size=3)
    ),
    max_leaves=6,
)
ids = st.one_of(st.integers(-3, 40), st.text('T-1"é', min_size=1, max_size=3))


@st.composite
def id_arrays(draw: st.DrawFn) -> list[dict[str, Any]]:
    keys = draw(st.lists(ids, min_size=1, max_size=8, unique_by=lambda i: (type(i), i)))
    return [
        {
            "id": k,
            **draw(st.dictionaries(st.sampled_from(["a", "b", "deps", "zz"]), values, max_size=2)),
        }
        for k in keys
    ]


@st.composite
def edited(draw: st.DrawFn, base: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """A side's version: some items modified, removed, added (anywhere) or moved."""
    out = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["modify", "remove", "add", "append", "move"]))
        if op == "modify" and out:
            i = draw(st.integers(0, len(out) - 1))
            out[i][draw(st.sampled_from(["a", "status"]))] = draw(values)
        elif op == "remove" and out:
            del out[draw(st.integers(0, len(out) - 1))]
        elif op in ("add", "append"):
            item = {"id": f"{tag}{draw(st.integers(0, 3))}", "v": draw(values)}
            if all(x["id"] != item["id"] for x in out):
                at = len(out) if op == "append" else draw(st.integers(0, len(out)))
                out.insert(at, item)
        elif op == "move" and len(out) > 1:
            out.insert(draw(st.integers(0, len(out) - 1)), out.pop(0))
    return out


def structural(base: Any, ours: Any, theirs: Any) -> bytes | None:
    result = merge3(base, ours, theirs)
    return None if result.conflicts else codec.dumps(result.value)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_spliced_id_array_equals_the_structural_merge(data: st.DataObject) -> None:
    base = data.draw(id_arrays())
    ours, theirs = data.draw(edited(base, "o")), data.draw(edited(base, "t"))
    got = splice(codec.dumps(base), codec.dumps(ours), codec.dumps(theirs))
    if got is not None:
        assert got == structural(base, ours, theirs)
        assert codec.is_canonical(got)


@st.composite
def edited_object(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.text('abcé"\\/~', min_size=0, max_size=3))
        if name in out and draw(st.booleans()):
            del out[name]
        else:
            out[name] = draw(values)
    return out


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_spliced_object_equals_the_structural_merge(data: st.DataObject) -> None:
    base = data.draw(
        st.dictionaries(st.text('abcé"\\/~', max_size=3), values, min_size=1, max_size=6)
    )
    ours, theirs = data.draw(edited_object(base)), data.draw(edited_object(base))
    got = splice(codec.dumps(base), codec.dumps(ours), codec.dumps(theirs))
    if got is not None:
        assert got == structural(base, ours, theirs)
        assert codec.is_canonical(got)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_different_items_modified_in_place_always_splice(data: st.DataObject) -> None:
    base = data.draw(id_arrays().filter(lambda b: len(b) >= 3))
    i, j = data.draw(
        st.tuples(st.integers(0, len(base) - 1), st.integers(0, len(base) - 1)).filter(
            lambda p: abs(p[0] - p[1]) >= 2
        )
    )
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    ours[i]["status"], theirs[j]["status"] = "ours", "theirs"
    got = splice(codec.dumps(base), codec.dumps(ours), codec.dumps(theirs))
    assert got is not None and got == structural(base, ours, theirs)


def test_the_same_item_changed_on_both_sides_is_not_spliced() -> None:
    base = [{"id": 1, "s": "a"}, {"id": 2, "s": "a"}]
    ours = [{"id": 1, "s": "o"}, {"id": 2, "s": "a"}]
    theirs = [{"id": 1, "s": "t"}, {"id": 2, "s": "a"}]
    assert splice(codec.dumps(base), codec.dumps(ours), codec.dumps(theirs)) is None


def test_an_item_the_proposal_inserted_in_the_middle_is_left_to_git() -> None:
    base = [{"id": i} for i in range(6)]
    ours = copy.deepcopy(base)
    ours[5]["x"] = 1
    theirs = [*base[:2], {"id": "new"}, *base[2:]]
    assert splice(codec.dumps(base), codec.dumps(ours), codec.dumps(theirs)) is None


def test_arrays_without_ids_are_left_to_git() -> None:
    base, ours, theirs = [1, 2, 3, 4, 5], [0, 2, 3, 4, 5], [1, 2, 3, 4, 6]
    assert splice(codec.dumps(base), codec.dumps(ours), codec.dumps(theirs)) is None
