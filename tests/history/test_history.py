"""History on real vaults: log, show, diff, blame and export, checked against git itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitvault import Vault, history
from gitvault.core import codec
from gitvault.core.jsonmerge import json_equal
from gitvault.errors import InputError

from ..conftest import EXAMPLE, Git, fast

Edit = Callable[[dict[str, Any]], None]
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC).timestamp()  # 2026-01-01T10:00:00Z


class Clock:
    """A settable clock: commit times become whatever the test says."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def edit_task(i: int, field: str, value: Any) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        doc["tasks"][i][field] = value

    return edit


def add_bug(bug_id: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        doc["bugs"].append({"id": bug_id})

    return edit


def reverse_tasks(doc: dict[str, Any]) -> None:
    doc["tasks"].reverse()


def change(
    vault: Vault, agent: str, edit: Edit, source: str = "test", confidence: float = 0.5
) -> str:
    """One agent checks out, edits and checks in; returns the new head."""
    co = vault.checkout(agent)
    edit(co.document)
    result = vault.checkin(agent, co.document, source, confidence, f"{agent} did it")
    assert result.commit is not None
    return result.commit


def race(vault: Vault, first: Edit, second: Edit) -> None:
    """a and b check out the same base; a lands first, b is merged (as in test_merge)."""
    a, b = vault.checkout("a"), vault.checkout("b")
    first(a.document)
    second(b.document)
    vault.checkin("a", a.document, "src-a", 0.9, "a's reason")
    assert vault.checkin("b", b.document, "src-b", 0.7, "b's reason").merged


def status_race(vault: Vault) -> None:
    race(vault, edit_task(0, "status", "done"), edit_task(30, "status", "blocked"))


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def timed(vault_path: Path, clock: Clock) -> Vault:
    """The example vault imported at 10:00 UTC, whose commits get the clock's time."""
    Vault.init(vault_path, EXAMPLE, clock=clock)
    fast(vault_path)
    return Vault.open(vault_path, clock=clock)


def commits(entries: list[history.LogEntry]) -> list[str | None]:
    return [e.commit for e in entries if not e.legacy]


# -- log --------------------------------------------------------------------------------------


def test_log_lists_every_commit_of_main_newest_first_with_what_git_says(
    vault: Vault, git: Git
) -> None:
    status_race(vault)
    entries = history.log(vault.store, include_legacy=False)
    assert sorted(map(str, commits(entries))) == sorted(git("rev-list", "main").split())
    assert entries[0].commit == vault.head() and entries[-1].parents == ()
    for e in entries:
        assert e.commit is not None
        fmt = "%P%n%(trailers:key=Agent-Id,valueonly)%(trailers:key=Source,valueonly)%ct"
        shown = git("show", "-s", f"--format={fmt}", e.commit).split("\n")
        parents, agent, source, when = shown[:4]
        assert (list(e.parents), e.agent, e.source, e.time) == (
            parents.split(),
            agent,
            source,
            int(when),
        )
        assert e.merged == (len(e.parents) == 2)
    merge = entries[0]
    assert merge.merged and merge.agent == "b" and merge.confidence == 0.7
    assert merge.merged_commit == git("rev-parse", "main^2").strip()
    assert merge.strategy == "tasks=splice" and merge.changed == ("tasks",)
    assert entries[-1].source == "legacy-import"
    assert entries[-1].changed == ("agents", "bugs", "decisions", "patterns", "roadmap", "tasks")


def test_log_entries_round_trip_through_json(vault: Vault) -> None:
    status_race(vault)
    for e in history.log(vault.store):
        assert json.loads(json.dumps(e.to_json())) == e.to_json()
        assert e.to_json()["commit"] == e.commit


def test_log_filters_by_agent_source_key_and_limit(vault: Vault) -> None:
    status_race(vault)
    bug = change(vault, "c", lambda d: d["bugs"].append({"id": "B-9", "title": "new"}), "ci")
    store = vault.store
    assert [e.agent for e in history.log(store, agent="b", include_legacy=False)] == ["b", "b"]
    assert commits(history.log(store, source="ci")) == [bug]
    root = commits(history.log(store))[-1]
    assert commits(history.log(store, key="bugs")) == [bug, root]
    tasks = history.log(store, key="tasks", include_legacy=False)
    assert sorted(e.agent for e in tasks) == ["a", "b", "b", "gitvault"]
    assert tasks[0].merged and tasks[-1].commit == root
    assert commits(history.log(store, limit=2)) == commits(history.log(store))[:2]
    assert history.log(store, limit=0) == []


def test_log_since_and_until_take_iso_with_or_without_zone_and_unix_seconds(
    timed: Vault, clock: Clock
) -> None:
    clock.now = T0 + 3600  # 11:00Z
    eleven = change(timed, "a", edit_task(0, "status", "done"))
    clock.now = T0 + 7200  # 12:00Z
    noon = change(timed, "b", edit_task(1, "status", "done"))
    store = timed.store
    root = commits(history.log(store))[-1]
    assert commits(history.log(store, since="2026-01-01T10:30:00")) == [noon, eleven]
    assert commits(history.log(store, since="2026-01-01T12:30:00+02:00")) == [noon, eleven]
    assert commits(history.log(store, until="2026-01-01T11:00:00Z")) == [eleven, root]
    assert commits(history.log(store, since=T0 + 1, until=str(int(T0 + 7199)))) == [eleven]
    assert commits(history.log(store, since="2026-01-01", until="2026-01-01T10:00")) == [root]
    assert history.log(store, since="2026-01-02") == []
    assert history.log(store)[1].iso == "2026-01-01T11:00:00+00:00"


def test_legacy_events_come_last_oldest_last_and_pass_the_same_filters(vault: Vault) -> None:
    change(vault, "coder", edit_task(0, "status", "done"))
    entries = history.log(vault.store)
    legacy = [e for e in entries if e.legacy]
    assert entries[-3:] == legacy
    assert [(e.agent, e.source, e.iso) for e in legacy] == [
        ("reviewer", "code-review", "2025-10-03T09:00:00+00:00"),
        ("coder", "ci-logs", "2025-10-02T09:00:00+00:00"),
        ("planner", "planning-session", "2025-10-01T09:00:00+00:00"),
    ]
    assert legacy[-1].commit is None and legacy[-1].confidence == 0.9
    assert legacy[-1].justification == "initial roadmap" and legacy[-1].changed == ("tasks",)
    coder = history.log(vault.store, agent="coder")
    assert [e.legacy for e in coder] == [False, True]
    assert [e.legacy_file for e in history.log(vault.store, until="2025-10-02T12:00:00Z")] == [
        "00000002.json",
        "00000001.json",
    ]
    assert not any(e.legacy for e in history.log(vault.store, since="2025-10-04"))
    assert not any(e.legacy for e in history.log(vault.store, key="bugs"))
    assert not any(e.legacy for e in history.log(vault.store, include_legacy=False))


def test_log_path_lists_only_the_commits_that_changed_that_value(vault: Vault, git: Git) -> None:
    status_race(vault)
    merge = vault.head()
    a_commit = history.log(vault.store, agent="a")[0].commit
    moved = change(vault, "c", reverse_tasks)
    change(vault, "d", lambda d: d["bugs"].append({"id": "B-9"}))
    root = git("rev-list", "--max-parents=0", "main").strip()
    store = vault.store
    assert commits(history.log(store, path="/tasks/[id=T-001]/status")) == [a_commit, root]
    assert commits(history.log(store, path="/tasks/39/id")) == [moved, root]  # positional
    b_own = git("rev-parse", f"{merge}^2").strip()  # b's commit on the base, then the merge
    assert commits(history.log(store, path="/tasks/[id=T-031]/status")) == [merge, b_own, root]
    assert commits(history.log(store, path="/tasks")) == commits(history.log(store, key="tasks"))
    by_git = git("log", "--format=%H", "--", "tasks.json").split()
    assert set(commits(history.log(store, path="/tasks"))) <= set(by_git)
    legacy = [e for e in history.log(store, path="/tasks/[id=T-001]/status") if e.legacy]
    assert len(legacy) == 3  # the legacy patches replaced /tasks, which holds the value
    assert not [e for e in history.log(store, path="/bugs") if e.legacy]


# -- show -------------------------------------------------------------------------------------


def test_show_returns_the_document_or_a_value_at_a_revision(vault: Vault) -> None:
    status_race(vault)
    store = vault.store
    assert history.show(store) == vault.read()
    assert history.show(store, rev="main~1") == vault.read("main~1")
    assert history.show(store, path="/tasks/[id=T-031]/status") == "blocked"
    assert history.show(store, rev="main^2", path="/tasks/0/status") == "todo"
    assert history.show(store, path="/tasks/0") == vault.read()["tasks"][0]
    assert history.show(store, path="") == vault.read()


def test_show_at_a_time_gives_what_main_held_then(timed: Vault, clock: Clock) -> None:
    clock.now = T0 + 3600
    change(timed, "a", edit_task(0, "status", "done"))
    clock.now = T0 + 7200
    change(timed, "a", edit_task(0, "status", "shipped"))
    store = timed.store
    status = "/tasks/[id=T-001]/status"
    assert history.show(store, at="2026-01-01T10:59:59Z", path=status) == "todo"
    assert history.show(store, at="2026-01-01T11:30:00", path=status) == "done"
    assert history.show(store, at=str(int(T0 + 7200)), path=status) == "shipped"
    assert history.show(store, at="2026-01-01T13:00:00+02:00", path=status) == "done"
    assert history.show(store, at=T0 + 3600) == timed.read("main~1")
    assert history.revision(store, at=T0).id == history.revision(store, "main~2").id
    with pytest.raises(InputError, match="no commit at or before"):
        history.show(store, at="2025-12-31")


def test_show_at_a_time_ignores_merged_agent_commits_that_never_were_main(
    timed: Vault, clock: Clock
) -> None:
    a, b = timed.checkout("a"), timed.checkout("b")
    a.document["tasks"][0]["status"] = "done"
    b.document["tasks"][30]["status"] = "blocked"
    clock.now = T0 + 100
    timed.checkin("b", b.document, "test", 0.5)  # b lands first, at 10:01:40
    clock.now = T0 + 200
    assert timed.checkin("a", a.document, "test", 0.5).merged  # a is merged at 10:03:20
    store = timed.store
    assert history.show(store, at=T0 + 150, path="/tasks/0/status") == "todo"
    assert history.show(store, at=T0 + 150, path="/tasks/30/status") == "blocked"
    assert history.show(store, at=T0 + 200) == timed.read()
    assert history.revision(store, at=T0 + 200).id == store.resolve("main").id


# -- diff -------------------------------------------------------------------------------------


def test_diff_patch_turns_the_old_document_into_the_new(vault: Vault, git: Git) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["bugs"].append({"id": "B-9"})
        del d["patterns"]["naming"]
        d["notes"] = {"x": [1, 2.5, None]}

    status_race(vault)
    merge = vault.head()
    assert merge is not None
    change(vault, "c", reverse_tasks)
    change(vault, "d", edit)
    root = git("rev-list", "--max-parents=0", "main").strip()
    pairs = [
        (None, None),
        ("main~1", "main"),
        (root, "main"),
        ("main", root),
        ("main~2", "main"),
        (None, merge + "^2"),
        (merge, root),
        (None, root),
    ]
    for old, new in pairs:
        d = history.diff(vault.store, old, new)
        before = (
            vault.read(old) if old else (vault.read((new or "main") + "~1") if new != root else {})
        )
        assert json_equal(jsonpatch.apply_patch(before, d.patch), vault.read(new)), (old, new)
        assert len(d.text.splitlines()) == len(d.patch)
    assert history.diff(vault.store, "main", "main").empty


def test_diff_text_shows_one_line_per_change(vault: Vault) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["tasks"][0]["status"] = "done"
        d["bugs"].append({"id": "B-9", "title": "new"})
        del d["patterns"]["naming"]

    change(vault, "a", edit)
    d = history.diff(vault.store)
    assert d.text.splitlines() == [
        '+ /bugs/4: {"id": "B-9", "title": "new"}',
        "- /patterns/naming (was {…3 keys})",
        '~ /tasks/0/status: "todo" -> "done"',
    ]
    assert d.old == history.log(vault.store)[1].commit and d.new == vault.head()
    assert d.to_json()["patch"] == d.patch


def test_diff_of_a_path_keeps_absolute_pointers_where_the_value_was(vault: Vault) -> None:
    change(vault, "c", reverse_tasks)
    change(vault, "a", lambda d: d["tasks"][39].update(status="done", owner="a"))
    d = history.diff(vault.store, "main~2", path="/tasks/[id=T-001]")
    assert sorted(op["path"] for op in d.patch) == ["/tasks/0/owner", "/tasks/0/status"]
    old = vault.read("main~2")
    assert jsonpatch.apply_patch(old, d.patch)["tasks"][0] == vault.read()["tasks"][39]
    assert history.diff(vault.store, path="/tasks/[id=T-002]").empty
    added = history.diff(vault.store, "main~2", path="/tasks/[id=T-001]/owner")
    assert added.patch == [{"op": "replace", "path": "/tasks/0/owner", "value": "a"}]


def test_diff_of_a_reordered_id_array_moves_records_instead_of_rewriting_them(vault: Vault) -> None:
    change(vault, "c", reverse_tasks)
    change(vault, "a", edit_task(39, "status", "done"))
    d = history.diff(vault.store, "main~2")
    assert {op["op"] for op in d.patch} == {"move", "replace"}
    assert not any(op["path"].endswith("/id") for op in d.patch)
    lines = d.text.splitlines()
    assert lines[0] == "> /tasks/39 -> /tasks/0 (T-040)"
    assert lines[-1] == '~ /tasks/39/status: "todo" -> "done"'
    assert jsonpatch.apply_patch(vault.read("main~2"), d.patch) == vault.read()


def test_diff_of_id_records_removed_added_moved_and_changed_applies() -> None:
    a = {"k": [{"id": 1, "v": 1}, {"id": 2}, {"id": "3", "v": [1, 2]}]}
    b = {"k": [{"id": "3", "v": [2, 1]}, {"id": 4}, {"id": 1, "v": True}]}
    d = history.diff_documents(a, b)
    assert json_equal(jsonpatch.apply_patch(a, d.patch), b)
    assert d.text.splitlines() == [
        '- /k/1 (was {"id": 2})',
        "> /k/1 -> /k/0 (3)",
        '+ /k/1: {"id": 4}',
        "> /k/0/v/1 -> /k/0/v/0",
        "~ /k/2/v: 1 -> true",
    ]


def test_diff_documents_keeps_strict_json_types(vault: Vault) -> None:
    a = {"k": {"n": 1, "f": 1.0, "b": False, "list": [1, 2]}}
    b = {"k": {"n": True, "f": 1, "b": 0, "list": [1, 2]}, "new": []}
    d = history.diff_documents(a, b)
    assert json_equal(jsonpatch.apply_patch(a, d.patch), b)
    assert "+ /new: []" in d.text.splitlines()
    assert history.diff_documents(b, b).patch == [] and history.diff_documents(b, b).text == ""


def test_diff_of_keys_with_pointer_special_characters_escapes_them() -> None:
    a = {"k": {"a/b": 1, "c~d": [1]}}
    b = {"k": {"a/b": 2, "c~d": [1, 2]}}
    d = history.diff_documents(a, b)
    assert json_equal(jsonpatch.apply_patch(a, d.patch), b)
    assert "~ /k/a~1b: 1 -> 2" in d.text


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.0, -0.0, 1.0, 2.5])
    | st.sampled_from(["", "a", "b/c", "~"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "id", "x/y"]), inner, max_size=3)
        | st.lists(
            st.fixed_dictionaries({"id": st.integers(0, 5)}, optional={"v": inner}),
            max_size=5,
            unique_by=lambda r: r["id"],
        )
    ),
    max_leaves=12,
)
DOCS = st.dictionaries(st.sampled_from(["k", "l", "m"]), VALUES, max_size=3)


@settings(max_examples=300, deadline=None)
@given(DOCS, DOCS)
def test_any_diff_patch_rebuilds_the_new_document_exactly(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    d = history.diff_documents(a, b)
    assert json_equal(jsonpatch.apply_patch(a, d.patch), b)
    assert len(d.text.splitlines()) == len(d.patch)
    assert (d.patch == []) == json_equal(a, b)


# -- blame ------------------------------------------------------------------------------------


def test_blame_through_a_merge_names_the_agent_whose_change_survived(
    vault: Vault, git: Git
) -> None:
    status_race(vault)
    [t1] = history.blame(vault.store, "/tasks/[id=T-001]/status")
    [t31] = history.blame(vault.store, "/tasks/[id=T-031]/status")
    assert (t1.agent, t1.source, t1.confidence, t1.value) == ("a", "src-a", 0.9, "done")
    assert t1.commit == git("rev-parse", "main^1").strip()
    assert (t31.agent, t31.source, t31.justification) == ("b", "src-b", "b's reason")
    assert t31.commit == vault.head()  # the merge brought it into main
    [t2] = history.blame(vault.store, "/tasks/1/status")
    assert t2.source == "legacy-import" and t2.path == "/tasks/[id=T-002]/status"
    assert t2.commit == git("rev-list", "--max-parents=0", "main").strip()


def test_blame_follows_an_id_through_a_reorder(vault: Vault) -> None:
    status_race(vault)
    change(vault, "c", reverse_tasks)
    assert vault.read()["tasks"][39]["id"] == "T-001"
    [by_id] = history.blame(vault.store, "/tasks/[id=T-001]/status")
    [by_pos] = history.blame(vault.store, "/tasks/39/status")
    assert by_id == by_pos
    assert (by_id.agent, by_id.path, by_id.pointer) == (
        "a",
        "/tasks/[id=T-001]/status",
        "/tasks/39/status",
    )
    item = {e.path: e for e in history.blame(vault.store, "/tasks/[id=T-001]")}
    assert item["/tasks/[id=T-001]/status"].agent == "a"
    assert item["/tasks/[id=T-001]/tags/0"].source == "legacy-import"
    assert set(item) == {
        f"/tasks/[id=T-001]/{f}"
        for f in ("id", "title", "owner", "priority", "status", "tags/0", "tags/1")
    }


def test_blame_of_a_key_covers_every_leaf_once_in_document_order(vault: Vault, git: Git) -> None:
    status_race(vault)
    change(vault, "c", lambda d: d["patterns"].update(empty={}, flag=True))
    entries = history.blame(vault.store, "/patterns")
    assert [e.path for e in entries] == [
        "/patterns/empty",
        "/patterns/error_handling/description",
        "/patterns/error_handling/uses",
        "/patterns/flag",
        "/patterns/naming/description",
        "/patterns/naming/note",
        "/patterns/naming/uses",
        "/patterns/prompt_templates/description",
        "/patterns/prompt_templates/uses",
    ]
    assert {e.path: e.agent for e in entries}["/patterns/empty"] == "c"
    new_key = change(vault, "n", lambda d: d.update(notes={"list": [1, "two"]}))
    assert [(e.path, e.commit) for e in history.blame(vault.store, "/notes")] == [
        ("/notes/list/0", new_key),
        ("/notes/list/1", new_key),
    ]
    assert entries[0].value == {}
    first_parent = set(git("log", "--first-parent", "--format=%H", "--", "tasks.json").split())
    assert {e.commit for e in history.blame(vault.store, "/tasks")} <= first_parent
    whole = history.blame(vault.store, "")
    assert len(whole) == sum(len(history.blame(vault.store, f"/{k}")) for k in vault.read())


def test_blame_parses_each_version_of_the_key_once(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(4):
        change(vault, f"agent-{i}", edit_task(i, "status", f"finished-{i}"))
        change(vault, f"bugger-{i}", add_bug(f"B-{10 + i}"))
    parsed: list[str] = []
    real = codec.loads_trusted

    def counting(data: bytes, name: str = "blob") -> Any:
        parsed.append(name)
        return real(data, name)

    monkeypatch.setattr(codec, "loads_trusted", counting)
    entries = history.blame(vault.store, "/tasks")
    assert parsed == ["tasks.json"] * 5  # head, then each of the 4 parents that differ
    assert [e.agent for e in entries if e.path.endswith("/status")][:5] == [
        "agent-0",
        "agent-1",
        "agent-2",
        "agent-3",
        "gitvault",
    ]


def test_blame_of_a_value_the_merge_rewrote_names_the_merge(vault: Vault) -> None:
    race(
        vault, lambda d: d["bugs"].append({"id": "B-8"}), lambda d: d["bugs"].append({"id": "B-9"})
    )
    by_path = {e.path: e.agent for e in history.blame(vault.store, "/bugs")}
    assert by_path["/bugs/[id=B-8]/id"] == "a" and by_path["/bugs/[id=B-9]/id"] == "b"


# -- export -----------------------------------------------------------------------------------


def test_export_json_is_the_canonical_document(vault: Vault, git: Git) -> None:
    status_race(vault)
    out = history.export(vault.store)
    assert out.encode() == codec.dumps_document(vault.read())
    assert json.loads(history.export(vault.store, rev="main~1")) == vault.read("main~1")
    tasks = json.loads(git("show", "main:tasks.json"))
    assert json.loads(out)["tasks"] == tasks
    full = json.loads(history.export(vault.store, history=True))
    assert full["document"] == vault.read() and full["commit"] == vault.head()
    assert [h["commit"] for h in full["history"]] == [e.commit for e in history.log(vault.store)]


def test_export_jsonl_has_a_line_per_key_then_the_history(vault: Vault) -> None:
    change(vault, "a", edit_task(0, "status", "done"))
    lines = [json.loads(line) for line in history.export(vault.store, fmt="jsonl").splitlines()]
    assert {x["key"]: x["value"] for x in lines} == vault.read()
    assert [x["key"] for x in lines] == sorted(vault.read())
    with_log = history.export(vault.store, fmt="jsonl", history=True).splitlines()
    rows = [json.loads(line) for line in with_log[len(lines) :]]
    assert [r["commit"] for r in rows][:2] == [e.commit for e in history.log(vault.store)][:2]
    assert [r["legacy"] for r in rows] == [False, False, True, True, True]
    assert "naïve" in history.export(vault.store, fmt="jsonl")  # UTF-8 kept, not escaped


# -- bad input --------------------------------------------------------------------------------

BAD: list[tuple[str, Callable[[Vault], object], str]] = [
    ("unknown rev for log", lambda v: history.log(v.store, "no-such-rev"), "unknown revision"),
    ("unknown rev for show", lambda v: history.show(v.store, rev="main~9"), "unknown revision"),
    ("unknown rev for diff", lambda v: history.diff(v.store, "nope"), "unknown revision"),
    (
        "unknown rev for blame",
        lambda v: history.blame(v.store, "/tasks", "nope"),
        "unknown revision",
    ),
    ("pointer without slash", lambda v: history.show(v.store, path="tasks/0"), "start with '/'"),
    (
        "pointer without slash in blame",
        lambda v: history.blame(v.store, "tasks/0"),
        "start with '/'",
    ),
    (
        "pointer without slash in log",
        lambda v: history.log(v.store, path="tasks"),
        "start with '/'",
    ),
    ("bad since", lambda v: history.log(v.store, since="yesterday"), "ISO-8601"),
    ("bad until", lambda v: history.log(v.store, until="2026-13-01"), "ISO-8601"),
    ("bad at", lambda v: history.show(v.store, at="noon"), "ISO-8601"),
    (
        "missing path in show",
        lambda v: history.show(v.store, path="/tasks/[id=T-999]"),
        r"does not exist at main \([0-9a-f]{12}\)",
    ),
    ("missing key in blame", lambda v: history.blame(v.store, "/nokey/x"), "does not exist"),
    ("missing path in diff", lambda v: history.diff(v.store, path="/tasks/99"), "exists neither"),
    ("bad key filter", lambda v: history.log(v.store, key="../x"), "invalid top-level key"),
    ("bad export format", lambda v: history.export(v.store, fmt="xml"), "json, jsonl"),
    ("negative limit", lambda v: history.log(v.store, limit=-1), "negative"),
]


@pytest.mark.parametrize(("what", "call", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_input_error_with_a_clear_message(
    vault: Vault, what: str, call: Callable[[Vault], object], message: str
) -> None:
    head = vault.head()
    with pytest.raises(InputError, match=message):
        call(vault)
    assert vault.head() == head


def test_timestamps_parse_from_iso_and_unix_seconds() -> None:
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()
    for text in (
        "2026-01-01T12:00:00Z",
        "2026-01-01T12:00:00",
        "2026-01-01 12:00",
        "2026-01-01T14:00:00+02:00",
        str(int(noon)),
        f"{noon}",
    ):
        assert history.parse_time(text) == noon, text
    assert history.parse_time(noon) == noon
    for bad in (
        "",
        "soon",
        "12:00",
        "2026-01-01T25:00",
        "-99999999999999",
        "1e9",
        "0001-01-01T00:00:00+01:00",
    ):
        with pytest.raises(InputError):
            history.parse_time(bad)
