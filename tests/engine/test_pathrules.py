"""Write permissions by JSON Pointer, at every way onto main: CLI checkin, patch checkin, MCP,
push, the fold of a pushed branch (merge) and resolve; and propose-only agents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pygit2
import pytest

from gitvault import Vault
from gitvault.engine.pathcheck import forbidden
from gitvault.errors import InputError, NotAllowed
from gitvault.model.access import Rules
from gitvault.model.pathrules import allow, rule_for

from ..conftest import Cli, Git
from ..hooks.test_hooks import commit, edit, push, work
from ..mcp.test_mcp import call, fail, run_with
from ..model.test_access import report_of


@pytest.fixture
def ruled(vault: Vault, cli: Cli) -> Vault:
    """The issue's rules: reviewer the task statuses and bugs, planner roadmap and tasks,
    interns only propose; root is the admin."""
    for args in (
        ("allow", "reviewer", "/tasks/*/status"),
        ("allow", "reviewer", "/bugs"),
        ("allow", "planner", "/roadmap"),
        ("allow", "planner", "/tasks"),
        ("allow", "intern-*", "/bugs"),
        ("propose-only", "intern-*"),
        ("admin", "add", "root"),
    ):
        r = cli("access", *args)
        assert r.exit_code == 0, r.output
    return vault


def refs(git: Git) -> str:
    return git("for-each-ref")


def proposal(tmp_path: Path, doc: Any, name: str = "p.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def changed(vault: Vault, fn: Any) -> dict[str, Any]:
    doc = vault.read()
    fn(doc)
    return doc


def set_title(doc: dict[str, Any]) -> None:
    doc["tasks"][0]["title"] = "renamed by the reviewer"


def set_status(doc: dict[str, Any]) -> None:
    doc["tasks"][0]["status"] = "done"


# -- the rules themselves -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "pointer", "allowed"),
    [
        ("/tasks/*/status", "/tasks/[id=T-1]/status", True),
        ("/tasks/*/status", "/tasks/3/status", True),
        ("/tasks/*/status", "/tasks/[id=T-1]/status/deeper", True),
        ("/tasks/*/status", "/tasks/[id=T-1]/title", False),
        ("/tasks/*/status", "/tasks", False),
        ("/bugs", "/bugs/0/title", True),
        ("/bugs", "/bugsy", False),
        ("", "/anything/at/all", True),
    ],
)
def test_a_pointer_pattern_covers_its_value_and_below(
    pattern: str, pointer: str, allowed: bool
) -> None:
    rules = allow(Rules(present=True), "reviewer", pattern)
    assert (rule_for(rules, "reviewer", pointer) is not None) is allowed


def test_an_agent_no_rule_names_may_change_nothing_once_rules_exist() -> None:
    rules = allow(Rules(present=True), "reviewer", "/bugs")
    assert rule_for(rules, "planner", "/bugs") is None
    assert rule_for(Rules(), "planner", "/bugs") == "no path rules"


def test_a_bad_pointer_in_the_access_file_refuses_the_file() -> None:
    with pytest.raises(InputError, match="must start with '/'"):
        Rules.from_json({"admins": [], "paths": {"reviewer": ["tasks"]}, "version": 1})


def test_changes_are_found_member_by_member_below_a_changed_item(ruled: Vault) -> None:
    store = ruled.store
    main = store.commit(store.ref("refs/heads/main") or "")
    rules = ruled.access()
    doc = changed(ruled, set_title)
    doc["tasks"][1]["status"] = "done"
    from gitvault.core import codec

    tree = store.repo[store.build_tree(main.tree, codec.encode_document(doc))]
    assert isinstance(tree, pygit2.Tree)
    assert forbidden(store, rules, "reviewer", main.tree, tree) == ["/tasks/[id=T-001]/title"]


# -- CLI --------------------------------------------------------------------------------------
def test_access_list_and_check_show_the_path_rules(ruled: Vault, cli: Cli, git: Git) -> None:
    listed = cli("access", "list").stdout.splitlines()
    assert "paths reviewer /tasks/*/status" in listed and "propose-only intern-*" in listed
    stored = json.loads(git("show", "main:.gitvault/access.json"))
    assert stored["paths"]["planner"] == ["/roadmap", "/tasks"]
    ok = cli("access", "check", "reviewer", "/tasks/[id=T-001]/status")
    assert ok.exit_code == 0 and ok.stdout.strip() == "paths reviewer /tasks/*/status"
    no = cli("access", "check", "reviewer", "/roadmap", "--json")
    assert no.exit_code == 5 and json.loads(no.stdout)["pointer"] == "/roadmap"


def test_a_cli_checkin_outside_the_agents_paths_is_exit_5_naming_pointer_and_rule(
    ruled: Vault, cli: Cli, git: Git, tmp_path: Path
) -> None:
    assert cli("checkout", "reviewer").exit_code == 0
    before = refs(git)
    r = cli(
        "checkin", "reviewer", proposal(tmp_path, changed(ruled, set_title)), "review", "--json"
    )
    assert r.exit_code == 5, r.output
    err = json.loads(r.stdout)
    assert err["pointer"] == "/tasks/[id=T-001]/title" and "reviewer may change" in err["rule"]
    assert refs(git) == before
    ok = cli("checkin", "reviewer", proposal(tmp_path, changed(ruled, set_status)), "review")
    assert ok.exit_code == 0, ok.output


def test_a_patch_checkin_outside_the_agents_paths_is_refused(
    ruled: Vault, cli: Cli, git: Git, tmp_path: Path
) -> None:
    assert cli("checkout", "reviewer").exit_code == 0
    before = refs(git)
    patch = proposal(tmp_path, [{"op": "replace", "path": "/roadmap/vision", "value": "mine"}])
    r = cli("checkin", "reviewer", patch, "review", "--patch")
    assert r.exit_code == 5 and "/roadmap/vision" in r.output, r.output
    assert refs(git) == before


def test_a_propose_only_checkin_is_kept_for_an_admin_and_never_merged(
    ruled: Vault, cli: Cli, git: Git, tmp_path: Path
) -> None:
    assert cli("checkout", "intern-1").exit_code == 0
    head = ruled.head()
    doc = changed(ruled, lambda d: d["bugs"].append({"id": "B-9", "title": "intern found"}))
    r = cli("checkin", "intern-1", proposal(tmp_path, doc), "triage", "--json")
    assert r.exit_code == 5 and json.loads(r.stdout)["kept"] == "intern-1/1"
    assert ruled.head() == head and "refs/conflicts/intern-1/1" in refs(git)
    denied = cli("resolve", "intern-1/1", "--take", "theirs", "--agent", "planner")
    assert denied.exit_code == 5 and "only an admin" in denied.output
    assert ruled.head() == head
    done = cli("resolve", "intern-1/1", "--take", "theirs", "--agent", "root")
    assert done.exit_code == 0, done.output
    assert ruled.read()["bugs"][-1]["id"] == "B-9"


# -- resolve ----------------------------------------------------------------------------------
def test_a_resolution_is_judged_by_the_resolvers_paths(ruled: Vault, cli: Cli, git: Git) -> None:
    v = Vault.open(ruled.path)
    late = v.checkout("planner")
    with v.lease("reviewer") as s:
        s.doc["tasks"][0]["status"] = "done"
        s.commit("review")
    doc = late.document
    doc["tasks"][0]["status"] = "blocked"
    doc["roadmap"]["vision"] = "the planner's"
    with pytest.raises(Exception, match="conflict"):
        v.checkin("planner", doc, "plan")
    before = refs(git)
    r = cli("resolve", "planner/1", "--take", "theirs", "--agent", "reviewer")
    assert r.exit_code == 5 and "/roadmap/vision" in r.output, r.output
    assert refs(git) == before
    assert cli("resolve", "planner/1", "--take", "theirs").exit_code == 0  # as planner


# -- MCP --------------------------------------------------------------------------------------
def test_an_mcp_checkin_outside_the_agents_paths_is_an_is_error_result_with_the_rule(
    tmp_path: Path, vault_dir: Path
) -> None:
    v = Vault.open(vault_dir)
    v.change_access(lambda r: allow(r, "reviewer", "/bugs"), "gitvault", "allow")
    head = v.head()

    async def scenario(s: Any) -> None:
        await call(s, "checkout")
        err = await fail(
            s,
            "checkin",
            patch=[{"op": "replace", "path": "/tasks/0/status", "value": "done"}],
            source="review",
            confidence=0.8,
            justification="",
        )
        assert err["exit_code"] == 5 and err["error"] == "NotAllowed"
        assert err["pointer"].startswith("/tasks") and "paths" in err["rule"]
        assert Vault.open(vault_dir).head() == head

    run_with(tmp_path, vault_dir, "reviewer")(scenario)


@pytest.fixture
def vault_dir(vault: Vault) -> Path:
    return Path(vault.path)


# -- push and merge ---------------------------------------------------------------------------
def test_a_push_outside_the_agents_paths_is_refused_with_exit_5(
    ruled: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(ruled, tmp_path, "reviewer")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Reviewer: every')
    commit(c, "reviewer")
    before = refs(git)
    r = push(c, "refs/heads/agents/reviewer")
    assert r.returncode != 0 and report_of(r.stderr)["exit_code"] == 5
    assert "/roadmap/vision" in r.stderr and refs(git) == before


def test_a_forbidden_change_arriving_through_a_merge_of_another_branch_is_refused(
    ruled: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(ruled, tmp_path, "reviewer")
    c("checkout", "-q", "-b", "planner-work")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Planner: every')
    commit(c, "planner")  # the planner may change the roadmap: this commit alone is fine
    c("checkout", "-q", "main")
    edit(c, "tasks.json", '"status": "todo"', '"status": "done"')
    commit(c, "reviewer")
    c(
        "merge",
        "-q",
        "--no-edit",
        "planner-work",
        "-m",
        "reviewer merges planner's work",
        "-m",
        "Agent-Id: reviewer\nSource: merge",
    )
    before = refs(git)
    r = push(c, "refs/heads/agents/reviewer")
    assert r.returncode != 0 and report_of(r.stderr)["exit_code"] == 5, r.stderr
    assert "/roadmap/vision" in r.stderr and "what the branch brings" in r.stderr
    assert refs(git) == before


def test_the_fold_of_a_branch_into_main_applies_the_path_rules(
    ruled: Vault, git: Git, tmp_path: Path
) -> None:
    """The merge itself refuses, even for a branch that reached the vault some other way."""
    c = work(ruled, tmp_path, "reviewer")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Reviewer: every')
    commit(c, "reviewer")
    top = c("rev-parse", "--show-toplevel").strip()
    git("fetch", "-q", top, "+HEAD:refs/heads/agents/reviewer")  # a fetch runs no hooks
    head = ruled.head()
    with pytest.raises(NotAllowed) as e:
        Vault.open(ruled.path).fold_branch("refs/heads/agents/reviewer")
    assert e.value.details["pointer"] == "/roadmap/vision" and ruled.head() == head


def test_a_propose_only_push_is_kept_under_conflicts_and_main_stays(
    ruled: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(ruled, tmp_path, "intern-2")
    edit(c, "bugs.json", '"severity": "', '"severity": "x')
    commit(c, "intern-2")
    head = ruled.head()
    r = push(c, "refs/heads/agents/intern-2")
    assert report_of(r.stderr)["exit_code"] == 5 and "may only propose" in r.stderr, r.stderr
    assert ruled.head() == head and "refs/conflicts/intern-2/1" in refs(git)
