"""The watcher behind `gitvault watch`, MCP subscriptions and the review page's live timeline.

Writes are made through other handles (and, for the CLI, another process) so the watcher sees
only what is on disk. Waiting is done by reading the subprocess's output, never by sleeping.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest

from gitvault import Vault
from gitvault.errors import InputError
from gitvault.history.watch import Selection, Watcher

ROOT = Path(__file__).resolve().parent.parent


def set_status(path: Path, agent: str, task_id: str, status: str) -> str:
    """A checkin by ``agent`` through its own handle; returns the new head."""
    v = Vault.open(path)
    with v.lease(agent, ttl=60) as co:
        for t in co.doc["tasks"]:
            if t["id"] == task_id:
                t["status"] = status
        r = co.commit(source="test", confidence=0.8, justification=f"{task_id} {status}")
    assert r.commit is not None
    return r.commit


def add_bug(path: Path, agent: str, bug_id: str) -> str:
    v = Vault.open(path)
    with v.lease(agent, ttl=60) as co:
        co.doc["bugs"].append({"id": bug_id, "title": "x", "open": True})
        r = co.commit(source="test", confidence=0.5)
    assert r.commit is not None
    return r.commit


def test_a_watcher_reports_nothing_until_main_moves(vault: Vault) -> None:
    w = Watcher(vault.store)
    assert w.poll() == []
    assert w.poll() == []


def test_a_watcher_reports_another_handles_checkin_with_its_changed_pointers(
    vault: Vault, vault_path: Path
) -> None:
    w = Watcher(vault.store)
    head = set_status(vault_path, "planner", "T-004", "in-review")
    (change,) = w.poll()
    assert change.commit == head
    assert change.entry.agent == "planner"
    assert change.entry.source == "test"
    assert change.pointers == ("/tasks/[id=T-004]",)
    assert change.to_json()["head"] == head
    assert w.poll() == []


def test_a_key_selection_skips_commits_that_did_not_change_the_key(
    vault: Vault, vault_path: Path
) -> None:
    w = Watcher(vault.store, Selection(key="bugs"))
    set_status(vault_path, "planner", "T-004", "in-review")
    bug = add_bug(vault_path, "coder", "B-900")
    assert [c.commit for c in w.poll()] == [bug]


def test_a_path_selection_skips_commits_that_changed_other_items(
    vault: Vault, vault_path: Path
) -> None:
    w = Watcher(vault.store, Selection(path="/tasks/[id=T-004]/status"))
    set_status(vault_path, "planner", "T-005", "in-review")
    mine = set_status(vault_path, "planner", "T-004", "in-review")
    assert [c.commit for c in w.poll()] == [mine]


def test_several_commits_come_oldest_first(vault: Vault, vault_path: Path) -> None:
    w = Watcher(vault.store)
    first = set_status(vault_path, "planner", "T-001", "in-review")
    second = set_status(vault_path, "planner", "T-002", "in-review")
    assert [c.commit for c in w.poll()] == [first, second]


def test_a_merge_is_reported_once_as_the_merge_commit(vault: Vault, vault_path: Path) -> None:
    planner, coder = Vault.open(vault_path), Vault.open(vault_path)
    p = planner.checkout("planner", 60).document
    c = coder.checkout("coder", 60).document
    w = Watcher(vault.store)
    p["tasks"][0]["status"] = "done"
    c["tasks"][1]["status"] = "done"
    planner.checkin("planner", p, "test", 0.9)
    merged = coder.checkin("coder", c, "test", 0.9)
    assert merged.merged
    changes = w.poll()
    assert [x.commit for x in changes][-1] == merged.commit
    assert len(changes) == 2  # the planner's checkin and the merge; not the coder's own commit
    assert changes[-1].entry.merged
    assert changes[-1].pointers == ("/tasks/[id=T-002]",)


def test_vault_watch_is_the_same_watcher(vault: Vault, vault_path: Path) -> None:
    w = vault.watch(key="tasks")
    head = set_status(vault_path, "planner", "T-004", "in-review")
    assert [c.commit for c in w.poll()] == [head]


def test_since_replays_what_landed_after_a_revision(vault: Vault, vault_path: Path) -> None:
    start = vault.head()
    head = set_status(vault_path, "planner", "T-004", "in-review")
    assert start is not None
    assert [c.commit for c in Watcher(vault.store, since=start).poll()] == [head]


@pytest.mark.parametrize(
    "selection", [{"key": "no/such"}, {"path": "tasks"}, {"key": "bugs", "path": "/tasks/0"}]
)
def test_a_bad_selection_is_refused_with_an_input_error(selection: dict[str, str]) -> None:
    with pytest.raises(InputError):
        Selection(**selection)


# -- the CLI, as another process ---------------------------------------------------------------


def _readline(stream: IO[str], timeout: float = 30) -> str:
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    ready = sel.select(timeout)
    sel.close()
    assert ready, "no output from gitvault watch"
    return stream.readline()


def _watch(vault_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "GITVAULT_DAEMON": "0"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gitvault",
            "watch",
            "--vault",
            str(vault_path),
            "--interval",
            "0.05",
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    assert "watching main" in _readline(proc.stderr)  # it has read the head: safe to write
    return proc


def test_gitvault_watch_json_prints_another_agents_checkin_as_one_json_line(
    vault: Vault, vault_path: Path
) -> None:
    proc = _watch(vault_path, "--json", "--key", "tasks")
    try:
        add_bug(vault_path, "coder", "B-901")  # not under --key tasks
        head = set_status(vault_path, "planner", "T-004", "in-review")
        assert proc.stdout is not None
        line: dict[str, Any] = json.loads(_readline(proc.stdout))
        assert line["commit"] == head
        assert line["agent"] == "planner"
        assert line["pointers"] == ["/tasks/[id=T-004]"]
        assert line["changed"] == ["tasks"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_gitvault_watch_stops_cleanly_on_ctrl_c(vault: Vault, vault_path: Path) -> None:
    proc = _watch(vault_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert out == ""


def test_gitvault_watch_with_a_bad_key_exits_1_with_one_line(
    vault_path: Path, vault: Vault
) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gitvault", "watch", "--vault", str(vault_path), "--key", "bad/key"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("gitvault: ") and "Traceback" not in r.stderr
