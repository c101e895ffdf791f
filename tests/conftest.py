"""Shared fixtures: real vaults in tmp dirs, the CLI through CliRunner, and the real git binary."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gitvault import Vault
from gitvault.cli import app

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "legacy"

Git = Callable[..., str]
Cli = Callable[..., Result]


def git_in(path: Path) -> Git:
    def run(*args: str, check: bool = True) -> str:
        r = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True)
        if check:
            assert r.returncode == 0, f"git {' '.join(args)} failed: {r.stderr}"
        return r.stdout

    return run


def fast(path: Path) -> None:
    """Tests turn fsync off: durability is tested where it matters, speed everywhere else."""
    subprocess.run(
        ["git", "config", "-f", str(path / "config"), "gitvault.fsync", "false"], check=True
    )


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "vault.git"


@pytest.fixture
def vault(vault_path: Path) -> Vault:
    """A vault imported from the bundled example."""
    Vault.init(vault_path, EXAMPLE)
    fast(vault_path)
    return Vault.open(vault_path)


@pytest.fixture
def empty_vault(vault_path: Path) -> Vault:
    Vault.init(vault_path)
    fast(vault_path)
    return Vault.open(vault_path)


@pytest.fixture
def git(vault_path: Path) -> Git:
    return git_in(vault_path)


@pytest.fixture
def cli(vault_path: Path) -> Cli:
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, ["--vault", str(vault_path), *args], input=input)

    return run


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[[Any], str]:
    counter = iter(range(1_000_000))

    def write(value: Any) -> str:
        p = tmp_path / f"proposal-{next(counter)}.json"
        p.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        return str(p)

    return write


@pytest.fixture
def daemon(vault: Vault) -> Iterator[str]:
    """`git daemon` on an ephemeral 127.0.0.1 port serving the vault, receive-pack enabled."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = Path(vault.path).parent
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"git://127.0.0.1:{port}/{Path(vault.path).name}"
    proc.terminate()
    proc.wait()


@pytest.fixture(autouse=True, scope="session")
def _no_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A daemon a developer left running must never serve the suite's commands: every test
    (and its subprocesses) looks for one at a socket nobody listens on, and none starts one
    by itself (GITVAULT_DAEMON=1). test_daemon.py starts its own on sockets of its own, and
    test_autostart.py asks for self-started ones (GITVAULT_DAEMON=auto) and stops them."""
    sock = tmp_path_factory.mktemp("no-daemon") / "daemon.sock"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GITVAULT_DAEMON_SOCKET", str(sock))
        mp.setenv("GITVAULT_DAEMON", "1")  # use a daemon that runs, never start one
        yield


BIG_ITEMS = 100_000


@pytest.fixture(scope="session")
def big100k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vault whose ``tasks`` is a sharded key of 100,000 items, in two commits (read-only:
    copy it before writing). Rev 1: items 7, 10007, ... 90007 blocked. Rev 2 (main): item 7
    done, item 50000 blocked, item 77777 titled with the rare word "zanzibar"."""
    path = tmp_path_factory.mktemp("big") / "big.git"
    Vault.init(path)
    fast(path)
    v = Vault.open(path)
    statuses = ["todo", "doing", "done"]
    tasks = [
        {
            "id": f"T-{i:06d}",
            "title": f"Task {i}: item number {i}",
            "status": "blocked" if i % 10_000 == 7 else statuses[i % 3],
            "owner": f"agent-{i % 7}",
            "priority": i % 5,
        }
        for i in range(BIG_ITEMS)
    ]
    v.checkout("gen", 600)
    v.checkin(
        "gen",
        {"tasks": tasks, "notes": {"db": "we chose SQLite for the queue"}},
        "generator",
        1.0,
        "100k items",
    )
    v.checkin_patch(
        "gen",
        [
            {"op": "replace", "path": "/tasks/7/status", "value": "done"},
            {"op": "replace", "path": "/tasks/50000/status", "value": "blocked"},
            {"op": "replace", "path": "/tasks/77777/title", "value": "Ship the zanzibar port"},
        ],
        "generator",
        0.9,
        "second revision",
    )
    v.release("gen")
    return path
