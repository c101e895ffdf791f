"""The CLI as users meet it: exit codes, stdout vs stderr, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gitvault import Vault

from ..conftest import EXAMPLE, Cli, Git

Write = Callable[[Any], str]


def test_init_import_then_status(cli: Cli) -> None:
    r = cli("init", "--import", str(EXAMPLE))
    assert r.exit_code == 0, r.output
    r = cli("status", "--json")
    assert r.exit_code == 0, r.output
    st = json.loads(r.stdout)
    assert st["commits"] == 1 and "tasks" in st["keys"] and st["leases"] == []


def test_checkout_prints_the_document_and_the_lease_on_stderr(vault: Vault, cli: Cli) -> None:
    r = cli("checkout", "planner", "60")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == vault.read()
    assert "lease: planner token 1 (shared)" in r.stderr


def test_checkout_out_file(vault: Vault, cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "doc.json"
    r = cli("checkout", "planner", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and json.loads(out.read_text()) == vault.read()


def test_checkin_from_stdin_prints_the_commit(vault: Vault, cli: Cli) -> None:
    doc = cli("checkout", "a").stdout
    r = cli("checkin", "a", "-", "stdin-test", "0.9", "why", input=doc.replace("todo", "doing"))
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == vault.head()


def test_checkin_json_output(vault: Vault, cli: Cli, write_json: Write) -> None:
    doc = json.loads(cli("checkout", "a").stdout)
    doc["patterns"]["p"] = 1
    r = cli("checkin", "a", write_json(doc), "s", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["changed"] == ["patterns"]


def test_unchanged_proposal_says_so_and_exits_0(vault: Vault, cli: Cli, write_json: Write) -> None:
    doc = json.loads(cli("checkout", "a").stdout)
    r = cli("checkin", "a", write_json(doc), "s")
    assert r.exit_code == 0, r.output
    assert "no change" in r.stderr


def test_release_without_lease_says_so_and_exits_0(vault: Vault, cli: Cli) -> None:
    r = cli("release", "ghost")
    assert r.exit_code == 0, r.output
    assert "held no lease" in r.stderr


def test_status_shows_live_leases(vault: Vault, cli: Cli) -> None:
    cli("checkout", "a")
    r = cli("status")
    assert r.exit_code == 0, r.output
    assert "1 live, 0 expired" in r.stdout and "tasks" in r.stdout


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["checkin", "nobody", "{doc}", "s"], 4, "holds no lease"),
        (["checkin", "a", "{doc}", "s", "1.5"], 1, "outside [0, 1]"),
        (["checkin", "a", "{doc}", "s", "abc"], 1, "not a number"),
        (["checkin", "a", "/nonexistent.json", "s"], 1, "cannot read"),
        (["checkin", "a", "{bad}", "s"], 1, "invalid JSON"),
        (["checkin", "a", "{doc}", "s", "--lease", "99"], 4, "stale"),
        (["checkin", "a", "{doc}", ""], 1, "source is empty"),
        (["checkout", "a", "0"], 1, "at least 1"),
        (["checkout", "a", "notanumber"], 2, ""),
        (["checkout", "", "10"], 1, "agent id is empty"),
        (["checkout", "b", "--exclusive"], 4, "hold(s) live leases"),
        (["init"], 1, "already exists"),
        (["nonsense"], 2, ""),
        (["checkin", "a"], 2, ""),
    ],
)
def test_bad_input_gives_one_clean_line_and_its_exit_code(
    vault: Vault, cli: Cli, write_json: Write, args: list[str], code: int, needle: str
) -> None:
    cli("checkout", "a")
    doc, bad = write_json(vault.read()), write_json("x")
    Path(bad).write_text("{not json")
    head = vault.head()
    r = cli(*[x.replace("{doc}", doc).replace("{bad}", bad) for x in args])
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    assert needle in r.stderr
    if code != 2:
        assert r.stderr.startswith("gitvault: ") and r.stderr.count("\n") == 1
    assert vault.head() == head


def test_missing_vault_is_exit_1_with_a_hint(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gitvault", "--vault", str(tmp_path / "x"), "status"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("gitvault: no gitvault at") and "Traceback" not in r.stderr


def test_gitvault_dir_environment_variable_selects_the_vault(vault: Vault, tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gitvault", "status", "--json"],
        capture_output=True,
        text=True,
        env={"GITVAULT_DIR": vault.path, "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["head"] == vault.head()


@pytest.mark.parametrize("command", ["init", "checkout", "checkin", "release", "status"])
def test_every_command_has_help(cli: Cli, command: str) -> None:
    r = cli(command, "--help")
    assert r.exit_code == 0, r.output
    assert "Usage" in r.stdout


def test_version(cli: Cli) -> None:
    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.startswith("gitvault ")


def test_cli_checkin_is_visible_to_plain_git(
    vault: Vault, cli: Cli, git: Git, write_json: Write
) -> None:
    doc = json.loads(cli("checkout", "reviewer").stdout)
    doc["bugs"][0]["open"] = False
    r = cli("checkin", "reviewer", write_json(doc), "code-review", "0.95", "fixed in #12")
    assert r.exit_code == 0, r.output
    line = git(
        "log",
        "-1",
        "--format=%an %(trailers:key=Source,valueonly,separator=)"
        "%(trailers:key=Confidence,valueonly,separator=)",
    )
    assert line.split() == ["reviewer", "code-review0.95"]
    assert git("log", "--format=%h", "--", "bugs.json").count("\n") == 2
