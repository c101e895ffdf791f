"""`query`: JMESPath over the memory, at any revision, with pointers that `checkin --patch`
takes; on a sharded key, chunk by chunk. Results are checked against jmespath itself run on
the whole document, so the planner's shortcuts can only change the cost, never the answer."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitvault import Vault
from gitvault.core import pointers
from gitvault.errors import InputError, QueryError
from gitvault.history.query import query

from ..conftest import EXAMPLE, Cli, fast


def expected(doc: Any, expression: str) -> list[Any]:
    """What the answer must be: jmespath's result as a list of matches."""
    result = jmespath.search(expression, doc)
    return [] if result is None else result if isinstance(result, list) else [result]


EXAMPLE_EXPRESSIONS = [
    "tasks[?status=='done']",
    "tasks[?status=='done'].title",
    "tasks[?status=='doing' && owner=='coder'].{id: id, title: title}",
    "tasks[?priority > `3`].id",
    "tasks[?contains(tags, 'cli')] | [:3]",
    "tasks[?status=='todo'] | [0]",
    "tasks[?status=='todo'] | length(@)",
    "tasks[:5].id",
    "tasks[3].status",
    "tasks[-1].tags",
    "roadmap.vision",
    "roadmap.milestones[?quarter=='2025Q4'].name",
    "agents.coder.notes[1]",
    "sort_by(tasks, &priority)[:3].id",
    "keys(@)",
    "decisions[?status=='accepted'].title",
    "tasks[?status=='nothing-has-this']",
    "tasks[0].no_such_field",
]


@pytest.mark.parametrize("expression", EXAMPLE_EXPRESSIONS)
def test_every_expression_answers_what_jmespath_answers(vault: Vault, expression: str) -> None:
    assert query(vault.store, expression).values == expected(vault.read(), expression)


@pytest.mark.parametrize("expression", EXAMPLE_EXPRESSIONS)
def test_every_pointer_names_the_value_it_comes_with(vault: Vault, expression: str) -> None:
    doc = vault.read()
    for m in query(vault.store, expression, with_pointers=True).matches:
        if m.pointer is None:
            continue
        at = vault.show(path=m.pointer)
        assert m.path is not None and vault.show(path=m.path) == at
        if not m.computed:
            assert at == m.value
        assert doc is not None


def test_a_filter_gives_item_pointers_and_id_paths(vault: Vault) -> None:
    r = query(vault.store, "tasks[?status=='done'].status", with_pointers=True)
    first = r.matches[0].to_json()
    assert first == {
        "value": "done",
        "pointer": "/tasks/2/status",
        "path": "/tasks/[id=T-003]/status",
    }
    assert r.read == "keys"


def test_a_computed_projection_points_at_the_item_it_came_from(vault: Vault) -> None:
    m = query(vault.store, "tasks[?id=='T-004'].{t: title}", with_pointers=True).matches
    assert [x.to_json() for x in m] == [
        {
            "value": {"t": "Task 4: write tests"},
            "pointer": "/tasks/3",
            "path": "/tasks/[id=T-004]",
            "computed": True,
        }
    ]


def test_a_computed_scalar_has_no_pointer(vault: Vault) -> None:
    (m,) = query(vault.store, "length(tasks)", with_pointers=True).matches
    assert (m.value, m.pointer, m.path) == (40, None, None)


def test_objects_an_arbitrary_expression_returns_are_found_by_identity(vault: Vault) -> None:
    m = query(vault.store, "sort_by(tasks, &priority)[-1]", with_pointers=True).matches[0]
    assert m.pointer is not None and vault.show(path=m.pointer) == m.value


def test_pointers_from_a_query_feed_straight_into_a_patch_checkin(vault: Vault) -> None:
    found = query(vault.store, "tasks[?status=='doing'].status", with_pointers=True)
    patch = [{"op": "replace", "path": m.pointer, "value": "blocked"} for m in found.matches]
    vault.checkout("fixer", 60)
    vault.checkin_patch("fixer", patch, "triage", 0.9, "all doing are blocked")
    blocked = query(vault.store, "tasks[?status=='blocked'].id").values
    doing = query(vault.store, "tasks[?status=='doing'].id", rev="main~1").values
    assert blocked == doing and len(blocked) == 11


def test_a_query_at_a_past_revision_or_time_sees_the_old_values(vault: Vault) -> None:
    now = time.time()
    later = Vault.open(vault.path, clock=lambda: now + 3600)  # the change lands an hour on
    later.checkout("fixer", 60)
    later.checkin_patch(
        "fixer", [{"op": "replace", "path": "/tasks/0/status", "value": "blocked"}], "triage", 0.9
    )
    assert query(vault.store, "tasks[?status=='blocked'].id").values == ["T-001"]
    old = query(vault.store, "tasks[?status=='blocked'].id", rev="main~1")
    assert old.values == [] and old.commit != vault.head()
    assert query(vault.store, "tasks[0].status", at=str(now + 60)).values == ["todo"]


def test_a_bad_expression_says_where_it_broke(vault: Vault) -> None:
    with pytest.raises(QueryError) as e:
        query(vault.store, "tasks[?status==")
    assert e.value.position == 15 and "position 15" in str(e.value)
    assert e.value.exit_code == 1 and e.value.to_json()["position"] == 15


def test_an_unknown_key_is_refused_with_the_keys_there_are(vault: Vault) -> None:
    with pytest.raises(InputError, match=r"no key 'taskz' at main .*its keys: agents, bugs"):
        query(vault.store, "taskz[?status=='done']")


def test_no_match_is_an_empty_list(vault: Vault) -> None:
    r = query(vault.store, "tasks[?status=='nothing-has-this']")
    assert r.values == [] and not r.more


def test_limit_cuts_the_answer_and_says_there_is_more(vault: Vault) -> None:
    r = query(vault.store, "tasks[?status=='done'].id", limit=2)
    assert r.values == ["T-003", "T-004"] and r.more
    assert not query(vault.store, "tasks[?status=='done'].id", limit=15).more


def test_a_repeated_id_gets_a_positional_step(vault: Vault) -> None:
    doc = vault.read()
    doc["tasks"][5]["id"] = "T-001"
    vault.checkout("dup", 60)
    vault.checkin("dup", doc, "test", 1.0)
    paths = [m.path for m in query(vault.store, "tasks[:6]", with_pointers=True).matches]
    assert paths[0] == "/tasks/[id=T-001]" and paths[5] == "/tasks/5"


# -- a sharded key of 100,000 items -------------------------------------------------------


@pytest.fixture(scope="module")
def big_doc(big100k: Path) -> dict[str, Any]:
    return Vault.open(big100k).read()


BIG_EXPRESSIONS = [
    "tasks[?status=='blocked']",
    "tasks[?status=='blocked'].title",
    "tasks[?status=='blocked'] | [:3]",
    "tasks[?owner=='agent-3' && priority==`4`] | [:5]",
    "tasks[?status=='blocked'] | [1]",
    "tasks[99990:].id",
    "tasks[77777]",
    "tasks[?status=='blocked'] | length(@)",
]


@pytest.mark.parametrize("expression", BIG_EXPRESSIONS)
def test_a_sharded_key_answers_what_jmespath_answers(
    big100k: Path, big_doc: dict[str, Any], expression: str
) -> None:
    r = query(Vault.open(big100k).store, expression, with_pointers=True)
    assert r.values == expected(big_doc, expression)
    assert r.read == "chunks"
    for m in r.matches:
        if m.pointer is not None:  # `length(@)` is computed: it has none
            assert pointers.get(big_doc, m.pointer) == m.value
            assert m.path is not None and pointers.get(big_doc, m.path) == m.value


def test_a_filter_on_a_sharded_key_skips_chunks_without_the_string(big100k: Path) -> None:
    r = query(Vault.open(big100k).store, "tasks[?status=='blocked'].id", with_pointers=True)
    assert len(r.values) == 10 and "T-050000" in r.values and "T-000007" not in r.values
    assert r.chunks_read <= 10 < r.chunks_skipped
    assert r.matches[0].path == "/tasks/[id=T-010007]/id"


def test_a_sharded_key_at_the_past_revision(big100k: Path) -> None:
    r = query(Vault.open(big100k).store, "tasks[?status=='blocked'].id", rev="main~1")
    assert r.values[0] == "T-000007" and "T-050000" not in r.values


def test_a_cut_answer_stops_reading_at_the_last_chunk_it_needs(big100k: Path) -> None:
    r = query(Vault.open(big100k).store, "tasks[?owner=='agent-1'].id", limit=3)
    assert r.values == ["T-000001", "T-000008", "T-000015"] and r.more
    assert r.chunks_read == 1


def test_an_index_into_a_sharded_key_reads_one_chunk(big100k: Path) -> None:
    r = query(Vault.open(big100k).store, "tasks[77777].title", with_pointers=True)
    assert r.values == ["Ship the zanzibar port"] and r.chunks_read == 1
    assert r.matches[0].pointer == "/tasks/77777/title"


def test_sharded_pointers_feed_straight_into_a_patch_checkin(big100k: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.git"
    shutil.copytree(big100k, copy)
    fast(copy)
    v = Vault.open(copy)
    found = query(v.store, "tasks[?status=='blocked'].status", with_pointers=True)
    v.checkout("fixer", 60)
    v.checkin_patch(
        "fixer",
        [{"op": "replace", "path": m.pointer, "value": "done"} for m in found.matches],
        "triage",
        0.9,
        "unblocked all",
    )
    assert query(v.store, "tasks[?status=='blocked']").values == []
    assert v.show(path="/tasks/[id=T-050000]/status") == "done"


# -- the CLI ------------------------------------------------------------------------------


def test_cli_query_pointers_feed_checkin_patch(vault: Vault, cli: Cli) -> None:
    r = cli("query", "tasks[?owner=='reviewer' && status=='todo'].status", "--pointers")
    assert r.exit_code == 0, r.output
    found = json.loads(r.output)
    patch = [{"op": "replace", "path": m["pointer"], "value": "blocked"} for m in found]
    assert cli("checkout", "rev", "60").exit_code == 0
    done = cli(
        "checkin",
        "rev",
        "-",
        "triage",
        "0.8",
        "reviewer is away",
        "--patch",
        input=json.dumps(patch),
    )
    assert done.exit_code == 0, done.output
    after = json.loads(cli("query", "tasks[?owner=='reviewer' && status=='todo']").output)
    assert after == [] and len(found) > 0
    blocked = json.loads(cli("query", "tasks[?status=='blocked'].id").output)
    assert len(blocked) == len(found)


def test_cli_answers_empty_bad_and_unknown_clearly(vault: Vault, cli: Cli) -> None:
    empty = cli("query", "tasks[?status=='nothing']")
    assert (empty.exit_code, json.loads(empty.output)) == (0, [])
    bad = cli("query", "tasks[?status==")
    assert bad.exit_code == 1 and "at position 15" in bad.output
    unknown = cli("query", "taskz[0]")
    assert unknown.exit_code == 1 and "no key 'taskz'" in unknown.output
    as_json = cli("query", "tasks[?status==", "--json")
    assert json.loads(as_json.output.split("\ngitvault:")[0])["position"] == 15


def test_cli_query_json_says_how_it_read_and_where_to_continue(vault: Vault, cli: Cli) -> None:
    r = cli("query", "tasks[?status=='done'].id", "--limit", "2", "--json")
    j = json.loads(r.output.split("\nlimit reached")[0])
    assert j["matches"] == ["T-003", "T-004"] and j["next_offset"] == 2 and j["more"]
    rest = cli("query", "tasks[?status=='done'].id", j["commit"], "--offset", "2", "-n", "1")
    assert json.loads(rest.output.split("\nlimit reached")[0]) == ["T-006"]


def test_checkout_path_prints_only_the_parts_under_a_whole_lease(
    vault: Vault, cli: Cli, write_json: Any
) -> None:
    r = cli(
        "checkout",
        "planner",
        "60",
        "--path",
        "/tasks/[id=T-004]/status",
        "--keys",
        "roadmap",
        "--json",
    )
    assert r.exit_code == 0, r.output
    j = json.loads(r.output.split("\nlease:")[0])
    assert j["parts"]["/tasks/[id=T-004]/status"] == "done"
    assert set(j["parts"]) == {"/tasks/[id=T-004]/status", "/roadmap"}
    assert j["pointers"]["/tasks/[id=T-004]/status"] == "/tasks/3/status"
    patch = write_json(
        [{"op": "replace", "path": j["pointers"]["/tasks/[id=T-004]/status"], "value": "doing"}]
    )
    assert cli("checkin", "planner", patch, "review", "0.9", "--patch").exit_code == 0
    assert vault.show(path="/tasks/[id=T-004]/status") == "doing"
    assert vault.show(path="/bugs") == Vault.open(vault.path).show("main~1", path="/bugs")


def test_checkout_of_a_missing_path_takes_no_lease(vault: Vault, cli: Cli) -> None:
    r = cli("checkout", "planner", "60", "--path", "/tasks/[id=T-999]")
    assert r.exit_code == 1 and "does not exist" in r.output
    assert vault.leases.get("planner") is None


def test_a_slice_of_a_sharded_key_gives_no_id_step_to_a_repeated_id(
    big100k: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.git"
    shutil.copytree(big100k, copy)
    fast(copy)
    v = Vault.open(copy)
    v.checkout("dup", 60)
    v.checkin_patch(
        "dup", [{"op": "replace", "path": "/tasks/99995/id", "value": "T-000003"}], "test", 1.0
    )
    paths = [m.path for m in query(v.store, "tasks[99990:].id", with_pointers=True).matches]
    assert paths[5] == "/tasks/99995/id" and paths[4] == "/tasks/[id=T-099994]/id"


HOSTILE = [
    "(" * 5000 + "a" + ")" * 5000,
    "[" * 3000,
    "tasks[?priority > 'x']",
    "&foo",
    "[&foo]",
    "tasks[::0]",
    "tasks[?status=='done'] | [::0]",
    "abs('x')",
    "sort_by(tasks, &tags)",
    "\x00",
    "`{bad json`.x",
]


@pytest.mark.parametrize("expression", HOSTILE)
def test_a_hostile_expression_is_an_answer_or_a_one_line_error(
    vault: Vault, expression: str
) -> None:
    try:
        r = query(vault.store, expression, with_pointers=True, max_bytes=300)
    except InputError as e:
        assert e.exit_code == 1 and "\n" not in str(e)
    else:
        json.dumps(r.to_json(True))


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Vault:
    path = tmp_path_factory.mktemp("example") / "v.git"
    Vault.init(path, EXAMPLE)
    return Vault.open(path)


JMES_BITS = st.sampled_from(
    [
        "tasks",
        "[?",
        "status",
        "==",
        "'done'",
        "]",
        ".",
        "id",
        "|",
        "[0]",
        "[:2]",
        "@",
        "*",
        "length(",
        ")",
        "&",
        "{a: ",
        "}",
        "`1`",
        "[-1]",
        "&&",
        "||",
        "!",
        " ",
        "roadmap",
        "milestones",
        "'",
    ]
)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(JMES_BITS, max_size=12).map("".join)))
def test_any_expression_is_an_answer_or_a_one_line_error(example: Vault, expression: str) -> None:
    try:
        r = query(example.store, expression, with_pointers=True, limit=5, max_bytes=500)
    except InputError as e:
        assert e.exit_code == 1 and "\n" not in str(e)
    else:
        json.dumps(r.to_json(True))
        assert r.values == expected(example.read(), expression)[: len(r.values)] or r.cut
