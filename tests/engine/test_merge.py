"""Checkin when main moved: git merge, structural fallback, conflicts, policies, schemas."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from gitvault import Vault
from gitvault.errors import ConflictError, InputError, SchemaError

from ..conftest import Cli, Git

Edit = Callable[[dict[str, Any]], None]


def race(
    vault: Vault, first: Edit, second: Edit, conf: tuple[float, float] = (0.5, 0.5), **kw: Any
) -> Any:
    """Agents a and b check out the same base; a checks in first, then b."""
    a, b = vault.checkout("a"), vault.checkout("b")
    first(a.document)
    second(b.document)
    vault.checkin("a", a.document, "test", conf[0])
    return vault.checkin("b", b.document, "test", conf[1], **kw)


def set_task(i: int, field: str, value: Any) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        doc["tasks"][i][field] = value

    return edit


def test_edits_of_different_keys_merge_with_a_two_parent_commit(vault: Vault, git: Git) -> None:
    r = race(
        vault,
        set_task(0, "status", "done"),
        lambda d: d["bugs"].append({"id": "B-9", "title": "new"}),
    )
    assert r.merged and r.commit == vault.head()
    assert len(git("log", "-1", "--format=%p").split()) == 2
    doc = vault.read()
    assert doc["tasks"][0]["status"] == "done" and doc["bugs"][-1]["id"] == "B-9"
    git("fsck", "--full")


def test_edits_of_different_items_of_one_key_are_spliced_without_a_text_merge(vault: Vault) -> None:
    r = race(vault, set_task(0, "status", "done"), set_task(30, "status", "blocked"))
    assert r.strategy == {"tasks": "splice"}
    assert [vault.read()["tasks"][i]["status"] for i in (0, 30)] == ["done", "blocked"]


def test_appends_to_one_id_array_are_spliced_main_first_as_the_structural_merge_would(
    vault: Vault,
) -> None:
    r = race(
        vault, lambda d: d["bugs"].append({"id": "B-8"}), lambda d: d["bugs"].append({"id": "B-9"})
    )
    assert r.strategy == {"bugs": "splice"}  # git's text merge alone would conflict here
    assert [b["id"] for b in vault.read()["bugs"]][-2:] == ["B-8", "B-9"]


def test_adjacent_field_edits_of_one_item_merge_structurally(vault: Vault) -> None:
    r = race(vault, set_task(0, "status", "done"), set_task(0, "owner", "planner"))
    assert r.merged
    assert vault.read()["tasks"][0] | {} == {
        **vault.read()["tasks"][0],
        "status": "done",
        "owner": "planner",
    }


def test_the_merge_commit_names_the_merged_agent_and_its_provenance(vault: Vault, git: Git) -> None:
    r = race(vault, set_task(0, "status", "done"), set_task(30, "status", "x"), (0.5, 0.7))
    t = git(
        "log",
        "-1",
        "--format=%(trailers:key=Agent-Id,valueonly)%(trailers:key=Confidence,"
        "valueonly)%(trailers:key=Merged-Commit,valueonly)",
    ).split()
    assert t[0] == "b" and t[1] == "0.7"
    assert git("rev-parse", "main^2").strip() == t[2]
    assert r.lease.base == r.commit  # b now stands on the merge


def test_a_true_conflict_exits_3_changes_nothing_and_keeps_the_proposal(
    vault: Vault, git: Git
) -> None:
    a, b = vault.checkout("a"), vault.checkout("b")
    a.document["tasks"][0]["status"] = "done"
    b.document["tasks"][0]["status"] = "blocked"
    vault.checkin("a", a.document, "test", 0.9)
    head, leases = vault.head(), git("for-each-ref", "refs/leases", "refs/notes")
    with pytest.raises(ConflictError) as e:
        vault.checkin("b", b.document, "test")
    assert e.value.exit_code == 3 and vault.head() == head
    assert git("for-each-ref", "refs/leases", "refs/notes") == leases
    row = e.value.report["conflicts"][0]
    assert row == {
        "pointer": "/tasks/0/status",
        "path": "/tasks/[id=T-001]/status",
        "kind": "modify/modify",
        "base": "todo",
        "current": "done",
        "proposed": "blocked",
        "current_writer": "a",
        "current_commit": head,
    }
    kept = git("rev-parse", "refs/conflicts/b/1").strip()
    assert json.loads(git("show", f"{kept}:tasks.json"))[0]["status"] == "blocked"


def test_delete_versus_modify_is_a_conflict(vault: Vault) -> None:
    with pytest.raises(ConflictError) as e:
        race(vault, lambda d: d.pop("patterns"), lambda d: d["patterns"].update(x=1))
    assert e.value.report["conflicts"][0]["kind"] == "delete/modify"
    assert "current" not in e.value.report["conflicts"][0]


def test_identical_changes_on_both_sides_are_not_a_conflict(vault: Vault) -> None:
    r = race(vault, set_task(0, "status", "done"), set_task(0, "status", "done"))
    assert r.commit == vault.head()


def test_policy_theirs_takes_the_proposal_and_records_it(vault: Vault, git: Git) -> None:
    r = race(
        vault, set_task(0, "status", "done"), set_task(0, "status", "blocked"), on_conflict="theirs"
    )
    assert vault.read()["tasks"][0]["status"] == "blocked"
    assert r.resolved == ["/tasks/[id=T-001]/status -> theirs (policy theirs)"]
    assert "Resolved: /tasks/[id=T-001]/status -> theirs" in git("log", "-1", "--format=%B")


def test_policy_ours_keeps_main(vault: Vault) -> None:
    race(vault, set_task(0, "status", "done"), set_task(0, "status", "blocked"), on_conflict="ours")
    assert vault.read()["tasks"][0]["status"] == "done"


@pytest.mark.parametrize(("conf", "winner"), [((0.9, 0.4), "done"), ((0.4, 0.9), "blocked")])
def test_policy_confidence_lets_the_surer_writer_win(
    vault: Vault, conf: tuple[float, float], winner: str
) -> None:
    race(
        vault,
        set_task(0, "status", "done"),
        set_task(0, "status", "blocked"),
        conf,
        on_conflict="confidence",
    )
    assert vault.read()["tasks"][0]["status"] == winner


def test_policy_confidence_refuses_a_tie(vault: Vault) -> None:
    with pytest.raises(ConflictError):
        race(
            vault,
            set_task(0, "status", "done"),
            set_task(0, "status", "blocked"),
            (0.6, 0.6),
            on_conflict="confidence",
        )


def test_the_policy_default_comes_from_the_vault_config(vault: Vault, git: Git) -> None:
    git("config", "gitvault.onConflict", "theirs")
    v = Vault.open(vault.path)
    race(v, set_task(0, "status", "done"), set_task(0, "status", "blocked"))
    assert v.read()["tasks"][0]["status"] == "blocked"


def test_an_unknown_policy_is_refused(vault: Vault) -> None:
    vault.checkout("a")
    with pytest.raises(InputError, match="unknown conflict policy"):
        vault.checkin("a", {}, "s", on_conflict="coin-flip")


def test_resolve_takes_a_side_and_removes_the_kept_ref(vault: Vault, git: Git) -> None:
    with pytest.raises(ConflictError):
        race(vault, set_task(0, "status", "done"), set_task(0, "status", "blocked"))
    r = vault.resolve("b/1", take="theirs", agent="reviewer")
    assert vault.read()["tasks"][0]["status"] == "blocked" and r.commit == vault.head()
    assert git("for-each-ref", "refs/conflicts/") == ""
    body = git("log", "-1", "--format=%B")
    assert "Resolved-By: reviewer" in body and "Conflict: b/1" in body


def test_resolve_by_pointer_and_undecided_conflicts_refuse(vault: Vault) -> None:
    def both(status: str, owner: str) -> Edit:
        return lambda d: d["tasks"][0].update(status=status, owner=owner)

    with pytest.raises(ConflictError):
        race(vault, both("done", "x"), both("blocked", "y"))
    head = vault.head()
    with pytest.raises(ConflictError, match="left undecided"):
        vault.resolve("b/1", picks={"/tasks/[id=T-001]/status": "theirs"})
    assert vault.head() == head
    vault.resolve("b/1", take="ours", picks={"/tasks/0/status": "theirs"})
    assert vault.read()["tasks"][0]["status"] == "blocked"
    assert vault.read()["tasks"][0]["owner"] == "x"


def test_resolve_with_a_whole_document(vault: Vault) -> None:
    with pytest.raises(ConflictError):
        race(vault, set_task(0, "status", "done"), set_task(0, "status", "blocked"))
    doc = vault.read()
    doc["tasks"][0]["status"] = "review"
    vault.resolve("b/1", document=doc)
    assert vault.read() == doc


def test_conflicts_lists_and_drop_forgets(vault: Vault) -> None:
    with pytest.raises(ConflictError):
        race(vault, set_task(0, "status", "done"), set_task(0, "status", "blocked"))
    pending = vault.pending_conflicts()
    assert [p["id"] for p in pending] == ["b/1"]
    assert pending[0]["conflicts"][0]["path"] == "/tasks/[id=T-001]/status"
    vault.drop_conflict("b/1")
    assert vault.pending_conflicts() == []
    with pytest.raises(InputError):
        vault.drop_conflict("b/1")


def test_a_schema_refuses_a_direct_checkin(vault: Vault) -> None:
    vault.set_schema("patterns", {"type": "object", "additionalProperties": {"type": "object"}})
    co = vault.checkout("a")
    co.document["patterns"]["bad"] = 3
    head = vault.head()
    with pytest.raises(SchemaError, match="/patterns/bad"):
        vault.checkin("a", co.document, "s")
    assert vault.head() == head


def test_a_merge_that_breaks_a_schema_is_refused_like_a_conflict(vault: Vault) -> None:
    vault.set_schema("bugs", {"type": "array", "maxItems": 5})
    with pytest.raises(ConflictError) as e:
        race(
            vault,
            lambda d: d["bugs"].append({"id": "B-8"}),
            lambda d: d["bugs"].append({"id": "B-9"}),
        )
    assert e.value.report["conflicts"][0]["kind"] == "schema"


def test_a_schema_that_main_fails_is_refused(vault: Vault) -> None:
    with pytest.raises(SchemaError, match="fix the data first"):
        vault.set_schema("tasks", {"type": "string"})
    with pytest.raises(SchemaError, match="not a valid JSON Schema"):
        vault.set_schema("tasks", {"type": 5})
    assert vault.schema("tasks") is None


def test_cli_conflict_report_on_stdout_with_exit_3(
    vault: Vault, cli: Cli, write_json: Callable[[Any], str]
) -> None:
    a, b = json.loads(cli("checkout", "a").stdout), json.loads(cli("checkout", "b").stdout)
    a["tasks"][0]["status"], b["tasks"][0]["status"] = "done", "blocked"
    assert cli("checkin", "a", write_json(a), "s").exit_code == 0
    r = cli("checkin", "b", write_json(b), "s")
    assert r.exit_code == 3, r.output
    assert "/tasks/[id=T-001]/status" in r.stdout and "last written by a" in r.stdout
    r = cli("conflicts", "--json")
    assert json.loads(r.stdout)[0]["id"] == "b/1"
    r = cli("resolve", "b/1", "--pick", "/tasks/[id=T-001]/status=theirs")
    assert r.exit_code == 0, r.output
    assert cli("conflicts").stdout == "no pending conflicts\n"


def test_cli_checkin_json_conflict_report(
    vault: Vault, cli: Cli, write_json: Callable[[Any], str]
) -> None:
    a, b = json.loads(cli("checkout", "a").stdout), json.loads(cli("checkout", "b").stdout)
    a["roadmap"]["vision"], b["roadmap"]["vision"] = "A", "B"
    cli("checkin", "a", write_json(a), "s")
    r = cli("checkin", "b", write_json(b), "s", "--json")
    assert r.exit_code == 3
    report = json.loads(r.stdout)
    assert report["error"] == "ConflictError" and report["conflicts"][0]["pointer"] == (
        "/roadmap/vision"
    )


def test_cli_schema_set_and_show(vault: Vault, cli: Cli, write_json: Callable[[Any], str]) -> None:
    schema = {"type": "object"}
    assert cli("schema", "set", "patterns", write_json(schema)).exit_code == 0
    r = cli("schema", "show", "patterns")
    assert r.exit_code == 0 and json.loads(r.stdout) == schema
    r = cli("schema", "show", "bugs")
    assert r.exit_code == 1 and "has no schema" in r.stderr
