"""The daemon starts itself on a hot command, says so once, and is never started where it
would surprise: GITVAULT_DAEMON=0 or 1, under CI, inside git hooks, for --help. Every daemon
a test starts is stopped by the ``sock`` fixture (its finalizer kills any survivor and fails
the test)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitvault import Vault
from gitvault.daemon.control import locked_pid

from .test_daemon import alive, eventually


def gv(sock: Path, vault: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # as a user runs it: not under CI or pytest (each test says when it wants either)
    e = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_CURRENT_TEST")}
    e.update(GITVAULT_DAEMON_SOCKET=str(sock), **env)
    for k, v in env.items():
        if v == "":  # "": unset it
            del e[k]
    return subprocess.run(
        [sys.executable, "-m", "gitvault", "--vault", str(vault), *args],
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=vault.parent,
    )


def running(sock: Path) -> bool:
    return locked_pid(str(sock.with_suffix(".pid"))) is not None


@pytest.fixture
def sock() -> Iterator[Path]:
    """A socket of the test's own; afterwards no daemon may run on it (one a test started is
    stopped; a survivor is killed and fails the test)."""
    folder = Path(tempfile.mkdtemp(prefix="gva-"))
    path = folder / "run" / "daemon.sock"
    yield path
    env = {**os.environ, "GITVAULT_DAEMON_SOCKET": str(path)}
    pid = locked_pid(str(path.with_suffix(".pid")))
    subprocess.run(
        [sys.executable, "-m", "gitvault", "daemon", "stop"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    leftover = locked_pid(str(path.with_suffix(".pid")))
    if leftover and leftover > 0:
        os.kill(leftover, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)
    assert leftover is None, f"daemon {leftover} survived `gitvault daemon stop`"
    assert pid is None or eventually(lambda: not alive(pid)), f"daemon {pid} still runs"


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    path = tmp_path / "v.git"
    Vault.init(path)
    return path


def test_a_hot_command_starts_the_daemon_and_says_so_once(sock: Path, vault: Path) -> None:
    first = gv(sock, vault, "status", GITVAULT_DAEMON="")
    assert first.returncode == 0, first.stderr
    assert "started a background daemon" in first.stderr
    assert "gitvault daemon stop" in first.stderr
    assert eventually(
        lambda: (
            gv(sock, vault, "daemon", "status", "--json", GITVAULT_DAEMON="").stdout.count(
                '"running": true'
            )
            == 1
        )
    )
    second = gv(sock, vault, "status", GITVAULT_DAEMON="")
    assert second.returncode == 0 and "started" not in second.stderr
    info = json.loads(gv(sock, vault, "daemon", "status", "--json").stdout)
    assert info["running"] and info["served"] >= 1  # the second status ran in the daemon
    assert (sock.parent.stat().st_mode & 0o777) == 0o700


def test_gitvault_daemon_0_never_starts_one(sock: Path, vault: Path) -> None:
    assert gv(sock, vault, "status", GITVAULT_DAEMON="0").returncode == 0
    assert not running(sock) and not sock.exists()


def test_gitvault_daemon_1_uses_a_running_one_but_never_starts_one(sock: Path, vault: Path) -> None:
    r = gv(sock, vault, "status", GITVAULT_DAEMON="1")
    assert r.returncode == 0 and "started" not in r.stderr
    assert not running(sock)


def test_under_ci_no_daemon_starts_unless_asked(sock: Path, vault: Path) -> None:
    r = gv(sock, vault, "status", GITVAULT_DAEMON="", CI="true")
    assert r.returncode == 0 and "started" not in r.stderr
    assert not running(sock)
    r = gv(sock, vault, "status", GITVAULT_DAEMON="auto", CI="true")
    assert "started a background daemon" in r.stderr
    assert eventually(lambda: running(sock))


def test_inside_a_git_hook_no_daemon_starts(sock: Path, vault: Path) -> None:
    r = gv(sock, vault, "status", GITVAULT_DAEMON="", GIT_DIR=str(vault))
    assert r.returncode == 0 and not running(sock)


def test_help_starts_no_daemon(sock: Path, vault: Path) -> None:
    assert gv(sock, vault, "--help", GITVAULT_DAEMON="").returncode == 0
    assert not running(sock)


def test_no_daemon_starts_in_a_folder_others_can_write(sock: Path, vault: Path) -> None:
    sock.parent.mkdir(parents=True)
    sock.parent.chmod(0o777)
    r = gv(sock, vault, "status", GITVAULT_DAEMON="")
    assert r.returncode == 0 and "started" not in r.stderr
    assert not running(sock)


def test_a_test_that_strips_gitvault_settings_still_starts_no_daemon(
    sock: Path, vault: Path
) -> None:
    r = gv(sock, vault, "status", GITVAULT_DAEMON="", PYTEST_CURRENT_TEST="x (call)")
    assert r.returncode == 0 and "started" not in r.stderr
    assert not running(sock)
