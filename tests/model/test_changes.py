"""The Changed: index: never misses a change, is exact for the common edits, and log/blame
answer the same with it as without it."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitvault import Vault
from gitvault.core import codec, pointers
from gitvault.core.jsonmerge import json_equal
from gitvault.model import changes
from gitvault.model.provenance import escape, message, trailer_values

from ..conftest import Git

IDS = st.one_of(st.sampled_from(["T-1", "T-2", "a b", "x/y", "~0", "7", "]"]), st.integers(-2, 9))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.text(alphabet=' ",\n\\{}[]:ab', max_size=6)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(' ab,\n"', max_size=3), inner, max_size=3),
    ),
    max_leaves=6,
)
ITEMS = st.lists(
    st.fixed_dictionaries({"id": IDS}, optional={"v": VALUES, "w": SCALARS}), max_size=6
)
OBJECTS = st.dictionaries(st.text(' ab,\n"[]=', max_size=4), VALUES, max_size=6)
KEY_VALUES = st.one_of(ITEMS, OBJECTS, st.lists(VALUES, max_size=4), SCALARS)


def blob(value: Any) -> bytes:
    return codec.encode_document({"k": value})["k.json"]


def steps_of(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value)
    if isinstance(value, list):
        out = {str(i) for i in range(len(value) + 1)} | {"-"}
        return out | {f"[id={x['id']}]" for x in value if isinstance(x, dict) and "id" in x}
    return set()


def may_touch(idx: changes.Index, tokens: list[str]) -> bool:
    """The reference model of what an index allows (the Probe must answer the same)."""
    if not tokens:
        return bool(idx.keys)
    if tokens[0] not in idx.keys:
        return False
    steps = idx.keys[tokens[0]]
    if steps is None or len(tokens) == 1 or tokens[1] in steps:
        return True
    # a positional step into an array whose items are listed by id: cannot tell
    return not tokens[1].startswith("[id=") and any(s.startswith("[id=") for s in steps)


def index(old: Any, new: Any) -> changes.Index:
    idx = changes.Index.of(changes.key_changes("k", blob(old), blob(new)))
    assert idx is not None
    return idx


@settings(max_examples=400, deadline=None)
@given(KEY_VALUES, KEY_VALUES)
def test_the_index_never_rules_out_a_value_that_changed(old: Any, new: Any) -> None:
    if blob(old) == blob(new):
        return
    idx = index(old, new)
    msg = message("checkin a: k", changes.trailers(changes.key_changes("k", blob(old), blob(new))))
    assert may_touch(idx, ["k"]) and not changes.Probe(["k"]).rules_out(msg)
    for step in steps_of(old) | steps_of(new):
        a, b = pointers.step(old, step), pointers.step(new, step)
        if not json_equal(a, b):
            assert may_touch(idx, ["k", step]), (
                step,
                changes.key_changes("k", blob(old), blob(new)),
            )
            assert may_touch(idx, ["k", step, "deeper"])
            assert not changes.Probe(["k", step, "deeper"]).rules_out(msg)
    assert not may_touch(idx, ["other"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries({"v": VALUES}), min_size=1, max_size=12), st.data())
def test_edits_of_items_with_unique_ids_are_named_exactly(
    items: list[dict[str, Any]], data: st.DataObject
) -> None:
    old = [{"id": f"T-{i}", **x} for i, x in enumerate(items)]
    new = [dict(x) for x in old]
    edited = data.draw(st.sets(st.sampled_from([x["id"] for x in old]), max_size=4))
    for x in new:
        if x["id"] in edited:
            x["v"] = data.draw(VALUES)
    dropped = data.draw(st.sets(st.sampled_from([x["id"] for x in old]), max_size=2))
    new = [x for x in new if x["id"] not in dropped or x["id"] in edited]
    added = data.draw(st.integers(0, 2))
    new += [{"id": f"N-{i}", "v": i} for i in range(added)]
    before, after = {x["id"]: blob(x) for x in old}, {x["id"]: blob(x) for x in new}
    truly = {i for i in before.keys() | after.keys() if before.get(i) != after.get(i)}
    got = changes.key_changes("k", blob(old), blob(new))
    if blob(old) != blob(new):
        assert set(got) == {pointers.join(["k", f"[id={i}]"]) for i in truly}


def test_examples() -> None:
    items = [{"id": f"T-{i}", "status": "todo", "tags": ["a", "b"]} for i in range(1000)]
    moved = [items[1], items[0], *items[2:]]
    edited = [dict(x) for x in items]
    edited[500]["status"], edited[3]["tags"] = "done", ["c"]
    assert changes.key_changes("tasks", blob(items), blob(edited)) == [
        "/tasks/[id=T-3]",
        "/tasks/[id=T-500]",
    ]
    assert changes.key_changes("tasks", blob(items), blob(moved)) == ["/tasks"]
    assert changes.key_changes("tasks", blob(items), blob([*items, {"id": 1000}])) == [
        "/tasks/[id=1000]"
    ]
    assert changes.key_changes("tasks", blob(items), blob([{"x": 1}, *items])) == ["/tasks"]
    assert changes.key_changes("tasks", None, blob(items)) == ["/tasks"]
    assert changes.key_changes("p", blob({"a": 1, "b/c": 2}), blob({"a": 1, "b/c": 3})) == [
        "/p/b~1c"
    ]
    assert changes.key_changes("p", blob({" a": 1}), blob({" a": 2})) == ["/p"]
    assert changes.key_changes("n", blob(1), blob(2)) == ["/n"]
    many = [dict(x, status="done") for x in items[:100]] + items[100:]
    assert changes.key_changes("tasks", blob(items), blob(many)) == ["/tasks"]


def test_the_index_of_a_message() -> None:
    assert changes.index_of("s\n\nAgent-Id: a\n") is None
    idx = changes.index_of("s\n\nChanged: /tasks/[id=T-1]\nChanged: /notes\n")
    assert idx is not None
    assert may_touch(idx, ["tasks", "[id=T-1]", "status"]) and may_touch(idx, ["notes", "x"])
    assert not may_touch(idx, ["tasks", "[id=T-2]"]) and not may_touch(idx, ["bugs"])
    assert may_touch(idx, ["tasks", "3"])  # positional: the array's items are listed by id
    assert changes.index_of("s\n\nChanged: no-slash\n") is None


# -- through the vault ------------------------------------------------------------------------


def _history(vault: Vault, seed: int) -> list[str]:
    """Random checkins by three agents from stale bases (so merges happen)."""
    rng = random.Random(seed)
    agents = ["ann", "bob", "cyd"]
    docs = {a: vault.checkout(a).document for a in agents}
    for n in range(40):
        a = rng.choice(agents)
        doc = docs[a]
        tasks = doc["tasks"]
        op = rng.random()
        if op < 0.6 and tasks:
            rng.choice(tasks)["status"] = f"s{n}"
        elif op < 0.7:
            tasks.append({"id": f"N-{a}-{n}", "title": "new", "status": "todo"})
        elif op < 0.8 and tasks:
            tasks.remove(rng.choice(tasks))
        elif op < 0.9:
            doc["roadmap"]["vision"] = f"v{n}"
        else:
            tasks.reverse()
        r = vault.checkin(a, doc, "test", 0.5, f"step {n}", on_conflict="theirs")
        docs[a] = vault.checkout(a).document if rng.random() < 0.5 or r.merged else doc
    pointers_ = [f"/tasks/[id={t['id']}]/status" for t in vault.read()["tasks"][:6]]
    return [*pointers_, "/tasks/0/status", "/tasks/2", "/roadmap/vision", "/roadmap", "/tasks"]


@pytest.mark.parametrize("seed", [1, 2])
def test_log_and_blame_answer_the_same_with_and_without_the_index(
    vault: Vault, git: Git, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _history(vault, seed)
    assert "Changed: /" in git("log", "-1", "--format=%B", "main")
    fast = {
        p: ([e.commit for e in vault.log(path=p)], [(b.path, b.commit) for b in vault.blame(p)])
        for p in paths
    }
    monkeypatch.setattr(changes, "index_of", lambda message: None)
    slow = {
        p: ([e.commit for e in vault.log(path=p)], [(b.path, b.commit) for b in vault.blame(p)])
        for p in paths
    }
    assert fast == slow
    assert git("fsck", "--full", "--no-dangling") == ""


def test_every_commit_gitvault_writes_on_main_carries_an_exact_index(vault: Vault) -> None:
    _history(vault, 3)
    store = vault.store
    for commit in store.repo.walk(store.ref("refs/heads/main")):
        if not commit.parents:
            continue
        want = changes.between(store, commit.parents[0].tree, commit.tree)
        got = list(changes.trailers(want))
        values = [v for _k, v in got]
        idx = changes.index_of(commit.message)
        assert (idx is None) == (not want), commit.message
        assert sorted(trailer_values(commit.message, "Changed")) == sorted(values)


STEPS = st.sampled_from(["[id=T-1]", "[id=7]", "7", "-", "a", "a/b", "~x", "x\\y", "l\nm", "[id="])
POINTERS = st.lists(st.sampled_from(["k", "j", "k2"]), min_size=1, max_size=1).flatmap(
    lambda key: st.one_of(st.just(key), st.tuples(st.just(key[0]), STEPS).map(list))
)


@settings(max_examples=500, deadline=None)
@given(st.lists(POINTERS, max_size=4), POINTERS, st.lists(STEPS, max_size=2), st.booleans())
def test_the_probe_answers_as_the_parsed_index(
    lines: list[list[str]], asked: list[str], deeper: list[str], empty: bool
) -> None:
    changed = [pointers.join(t) for t in lines]
    msg = message("checkin a: k", [("Agent-Id", "a"), *changes.trailers(changed)])
    tokens = [] if empty else [*asked, *deeper]
    idx = changes.index_of(msg)
    expected = idx is not None and not may_touch(idx, tokens)
    assert changes.Probe(tokens).rules_out(msg) == expected, (changed, tokens)
    assert changes.raw_lines(msg) == [escape(p) for p in changed]
