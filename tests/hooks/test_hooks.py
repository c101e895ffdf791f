"""Distribution: raw git pushes guarded by the vault's hooks, agent branches merged into main."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gitvault import Vault
from gitvault.api.remote import clone

from ..conftest import Git, git_in

TRAILERS = [
    "Source=field-notes",
    "Confidence=0.8",
    "Justification=seen it",
    "Lease=none",
    "Base=none",
]


def work(vault: Vault, tmp_path: Path, agent: str, url: str | None = None) -> Git:
    """A plain git clone, identity set to the agent."""
    dest = tmp_path / f"clone-{agent}"
    subprocess.run(["git", "clone", "-q", url or vault.path, str(dest)], check=True)
    g = git_in(dest)
    g("config", "user.name", agent)
    g("config", "user.email", f"{agent}@example")
    return g


def edit(clone: Git, file: str, old: str, new: str) -> None:
    path = Path(clone("rev-parse", "--show-toplevel").strip()) / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def commit(clone: Git, agent: str, *trailers: str) -> None:
    args = ["commit", "-qam", f"{agent} edits"]
    for t in trailers or (f"Agent-Id={agent}", *TRAILERS):
        args += ["--trailer", t]
    clone(*args)


def push(clone: Git, ref: str) -> subprocess.CompletedProcess[str]:
    top = clone("rev-parse", "--show-toplevel").strip()
    return subprocess.run(
        ["git", "-C", top, "push", "origin", f"HEAD:{ref}"], capture_output=True, text=True
    )


def refs(git: Git) -> str:
    return git("for-each-ref")


def test_init_installs_hooks_that_run_this_gitvault(vault: Vault) -> None:
    hook = Path(vault.path) / "hooks" / "pre-receive"
    assert sys.executable in hook.read_text() and hook.stat().st_mode & 0o111


def test_a_good_push_to_an_agent_branch_lands_on_main(
    vault: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(vault, tmp_path, "alice")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Alice says: every')
    commit(c, "alice")
    r = push(c, "refs/heads/agents/alice")
    assert r.returncode == 0, r.stderr
    assert "gitvault: merged refs/heads/agents/alice into main" in r.stderr
    assert vault.read()["roadmap"]["vision"].startswith("Alice says")
    assert git("log", "-1", "--format=%(trailers:key=Agent-Id,valueonly)", "main").strip() == (
        "alice"
    )
    git("fsck", "--full")


def test_pushes_from_two_agents_are_merged(vault: Vault, git: Git, tmp_path: Path) -> None:
    a, b = work(vault, tmp_path, "alice"), work(vault, tmp_path, "bob")
    edit(a, "tasks.json", '"status": "todo"', '"status": "doing"')
    commit(a, "alice")
    edit(b, "roadmap.json", '"vision": "Every', '"vision": "Bob: every')
    commit(b, "bob")
    assert push(a, "refs/heads/agents/alice").returncode == 0
    r = push(b, "refs/heads/agents/bob")
    assert r.returncode == 0 and "merged" in r.stderr
    assert len(git("log", "-1", "--format=%p", "main").split()) == 2
    doc = vault.read()
    assert doc["roadmap"]["vision"].startswith("Bob") and doc["tasks"][0]["status"] == "doing"


def test_a_conflicting_push_leaves_main_and_is_kept(vault: Vault, git: Git, tmp_path: Path) -> None:
    a, b = work(vault, tmp_path, "alice"), work(vault, tmp_path, "bob")
    edit(a, "roadmap.json", '"vision": "Every', '"vision": "A')
    commit(a, "alice")
    edit(b, "roadmap.json", '"vision": "Every', '"vision": "B')
    commit(b, "bob")
    push(a, "refs/heads/agents/alice")
    head = vault.head()
    r = push(b, "refs/heads/agents/bob")
    assert "CONFLICT" in r.stderr and "/roadmap/vision" in r.stderr
    report = json.loads(r.stderr.split("gitvault-report: ")[1].splitlines()[0].strip())
    assert report["exit_code"] == 3 and report["id"] == "bob/1"
    assert vault.head() == head
    assert [p["id"] for p in vault.pending_conflicts()] == ["bob/1"]


@pytest.mark.parametrize(
    ("case", "ref", "needle"),
    [
        ("invalid-json", "refs/heads/agents/alice", "invalid JSON"),
        ("not-canonical", "refs/heads/agents/alice", "not canonical"),
        ("bad-key", "refs/heads/agents/alice", "only K.json"),
        ("no-trailers", "refs/heads/agents/alice", "missing trailer Agent-Id"),
        ("forged-agent", "refs/heads/agents/alice", "does not match the branch's agent"),
        ("bad-confidence", "refs/heads/agents/alice", "outside [0, 1]"),
        ("forged-index", "refs/heads/agents/alice", "Changed: lines ['/tasks']"),
        ("lease-ref", "refs/leases/x", "belong to the vault"),
        ("notes-ref", "refs/notes/leases", "belong to the vault"),
        ("conflict-ref", "refs/conflicts/alice/9", "belong to the vault"),
        ("other-branch", "refs/heads/feature", "only refs/heads/agents"),
    ],
)
def test_bad_pushes_are_refused_and_change_no_ref(
    vault: Vault, git: Git, tmp_path: Path, case: str, ref: str, needle: str
) -> None:
    c = work(vault, tmp_path, "alice")
    top = Path(c("rev-parse", "--show-toplevel").strip())
    trailers: list[str] = []
    if case == "invalid-json":
        (top / "tasks.json").write_text('[{"id": "T-1",]\n')
    elif case == "not-canonical":
        (top / "tasks.json").write_text('[{"id": "T-1"}]')
    elif case == "bad-key":
        (top / "notes.txt").write_text("hi")
        c("add", "notes.txt")
    else:
        edit(c, "roadmap.json", '"vision": "Every', '"vision": "X')
    if case == "no-trailers":
        trailers = ["Note=nothing"]
    elif case == "forged-agent":
        trailers = ["Agent-Id=bob", *TRAILERS]
    elif case == "forged-index":  # log and blame would skip this commit for /roadmap
        trailers = ["Agent-Id=alice", *TRAILERS, "Changed=/tasks"]
    elif case == "bad-confidence":
        trailers = [
            "Agent-Id=alice",
            "Source=s",
            "Confidence=7",
            "Justification=j",
            "Lease=none",
            "Base=none",
        ]
    commit(c, "alice", *trailers)
    before = refs(git)
    r = push(c, ref)
    assert r.returncode != 0
    assert needle in r.stderr, r.stderr
    assert "remote: gitvault: push refused" in r.stderr
    assert refs(git) == before


def test_a_pushed_commit_with_exact_changed_lines_is_accepted_and_indexed(
    vault: Vault, git: Git, tmp_path: Path
) -> None:
    c = work(vault, tmp_path, "alice")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Alice says: every')
    commit(c, "alice", "Agent-Id=alice", *TRAILERS, "Changed=/roadmap/vision")
    r = push(c, "refs/heads/agents/alice")
    assert r.returncode == 0, r.stderr
    assert [e.agent for e in vault.log(path="/roadmap/vision")][:1] == ["alice"]


def test_a_non_fast_forward_to_main_is_refused(vault: Vault, git: Git, tmp_path: Path) -> None:
    c = work(vault, tmp_path, "alice")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "X')
    commit(c, "alice")
    with vault.lease("bob") as co:
        co.doc["patterns"]["x"] = 1
        co.commit(source="s")
    before = refs(git)
    r = push(c, "refs/heads/main")
    assert r.returncode != 0 and refs(git) == before


def test_a_checked_fast_forward_of_main_is_accepted(vault: Vault, tmp_path: Path) -> None:
    c = work(vault, tmp_path, "alice")
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "FF')
    commit(c, "alice")
    r = push(c, "refs/heads/main")
    assert r.returncode == 0, r.stderr
    assert vault.read()["roadmap"]["vision"].startswith("FF")


def test_gitvault_clone_adds_trailers_and_pushes_to_the_agent_branch(
    vault: Vault, git: Git, tmp_path: Path
) -> None:
    dest = clone(vault.path, str(tmp_path / "w"), "carol")
    c = git_in(dest)
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "Carol: every')
    c("commit", "-qam", "carol: vision", "--trailer", "Source=retro")
    msg = c("log", "-1", "--format=%B")
    assert "Agent-Id: carol" in msg and "Base: " in msg
    r = subprocess.run(["git", "-C", str(dest), "push"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert git("rev-parse", "refs/heads/agents/carol").strip() == c("rev-parse", "HEAD").strip()
    assert vault.read()["roadmap"]["vision"].startswith("Carol")


def test_the_clone_hooks_refuse_bad_commits_locally(vault: Vault, tmp_path: Path) -> None:
    dest = clone(vault.path, str(tmp_path / "w"), "carol")
    c = git_in(dest)
    edit(c, "roadmap.json", '"vision": "Every', '"vision": "C')
    r = subprocess.run(
        ["git", "-C", str(dest), "commit", "-qam", "no source"], capture_output=True, text=True
    )
    assert r.returncode != 0 and "Source" in r.stderr
    (dest / "tasks.json").write_text('[{"id": "T-1"}]')
    r = subprocess.run(
        ["git", "-C", str(dest), "commit", "-qam", "x", "--trailer", "Source=s"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "gitvault fmt" in r.stderr


def test_four_clones_pushing_at_once_lose_nothing(vault: Vault, git: Git, tmp_path: Path) -> None:
    agents = ["a1", "a2", "a3", "a4"]
    clones = {}
    for i, agent in enumerate(agents):
        c = work(vault, tmp_path, agent)
        edit(c, "tasks.json", f'"id": "T-00{i + 1}"', f'"id": "T-00{i + 1}", "seen_by": "{agent}"')
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gitvault",
                "fmt",
                str(Path(c("rev-parse", "--show-toplevel").strip()) / "tasks.json"),
            ],
            check=True,
        )
        commit(c, agent)
        clones[agent] = c
    procs = [
        subprocess.Popen(
            [
                "git",
                "-C",
                clones[a]("rev-parse", "--show-toplevel").strip(),
                "push",
                "origin",
                f"HEAD:refs/heads/agents/{a}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a in agents
    ]
    outs = [p.communicate()[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    tasks = vault.read()["tasks"]
    assert [tasks[i].get("seen_by") for i in range(4)] == agents, outs
    git("fsck", "--full")


def test_pushes_over_git_daemon_are_guarded_and_merged(
    vault: Vault, git: Git, tmp_path: Path, daemon: str
) -> None:
    good = work(vault, tmp_path, "dora", daemon)
    edit(good, "roadmap.json", '"vision": "Every', '"vision": "Dora: every')
    commit(good, "dora")
    r = push(good, "refs/heads/agents/dora")
    assert r.returncode == 0, r.stderr
    assert "merged refs/heads/agents/dora" in r.stderr
    bad = work(vault, tmp_path, "eve", daemon)
    edit(bad, "roadmap.json", '"vision": "', '"vision": "Eve: ')
    commit(bad, "eve", "Agent-Id=dora", *TRAILERS)
    before = refs(git)
    r = push(bad, "refs/heads/agents/eve")
    assert r.returncode != 0 and "does not match" in r.stderr and refs(git) == before
    r = push(bad, "refs/leases/eve")
    assert r.returncode != 0 and refs(git) == before
    git("fsck", "--full")


@pytest.mark.parametrize("name", ["pre-receive", "post-receive", "commit-msg", "pre-commit"])
def test_the_project_hook_files_are_what_install_writes(name: str, tmp_path: Path) -> None:
    from gitvault.engine.install import install

    project = Path(__file__).resolve().parents[2] / "hooks" / name
    install(str(tmp_path), [name], python="@PYTHON@")
    assert (tmp_path / name).read_text() == project.read_text()
