"""The resident daemon: commands through it behave exactly as commands run in their own process.

Real processes throughout: a daemon started with `gitvault daemon start` on a socket of the
test's own, and the CLI run as `python -m gitvault` subprocesses, once through the daemon and
once with GITVAULT_DAEMON=0. Every daemon is stopped by the fixture's finalizer, which also
checks that no server or worker is left behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import gitvault
from gitvault.daemon.control import locked_pid

from ..conftest import EXAMPLE

Run = Callable[..., subprocess.CompletedProcess[bytes]]
PACKAGE = Path(gitvault.__file__).parent


def alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def eventually(check: Callable[[], bool], seconds: float = 20.0) -> bool:
    """Poll ``check`` until it holds (a process ending is observed, not waited for blindly)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def sock() -> Iterator[Path]:
    """A socket path of the test's own (short: Unix sockets allow 107 bytes); stopped after."""
    folder = Path(tempfile.mkdtemp(prefix="gvd-"))
    path = folder / "run" / "daemon.sock"
    yield path
    env = {**os.environ, "GITVAULT_DAEMON_SOCKET": str(path)}
    pid = locked_pid(str(folder / "run" / "daemon.pid"))
    subprocess.run(
        [sys.executable, "-m", "gitvault", "daemon", "stop"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    leftover = locked_pid(str(folder / "run" / "daemon.pid"))
    if leftover and leftover > 0:
        os.kill(leftover, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)
    assert leftover is None, f"daemon {leftover} survived `gitvault daemon stop`"
    assert pid is None or eventually(lambda: not alive(pid)), f"daemon {pid} still runs"


@pytest.fixture
def env(sock: Path) -> dict[str, str]:
    out = {**os.environ, "GITVAULT_DAEMON_SOCKET": str(sock)}
    out["GITVAULT_DAEMON"] = "1"  # the daemon the test starts, never a self-started one
    return out


@pytest.fixture
def gv(env: dict[str, str], tmp_path: Path) -> Run:
    """``python -m gitvault ARGS`` in tmp_path; ``daemon=False`` sets GITVAULT_DAEMON=0."""

    def run(
        *args: str,
        daemon: bool = True,
        input: bytes | None = None,
        extra: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        e = {**env, **(extra or {})}
        if not daemon:
            e["GITVAULT_DAEMON"] = "0"
        return subprocess.run(
            [sys.executable, "-m", "gitvault", *args],
            env=e,
            input=input,
            capture_output=True,
            cwd=tmp_path,
            timeout=120,
        )

    return run


@pytest.fixture
def started(gv: Run) -> dict[str, Any]:
    r = gv("daemon", "start", "--idle", "300", "--json")
    assert r.returncode == 0, r.stderr
    info: dict[str, Any] = json.loads(r.stdout)
    return info


def daemon_status(gv: Run) -> dict[str, Any]:
    r = gv("daemon", "status", "--json")
    assert r.returncode == 0, r.stderr
    info: dict[str, Any] = json.loads(r.stdout)
    return info


# What differs between two runs of one command a few ms apart: the clock (lease times, commit
# times and so the ids of new commits). Everything else must be the same bytes.
TIME_DEPENDENT = [
    (re.compile(rb"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?"), b"<time>"),
    (re.compile(rb'"seconds_left": [0-9.]+'), b'"seconds_left": <n>'),
    (re.compile(rb"\b[0-9hms]+ (left|ago)\b"), b"<duration> \\1"),
    (re.compile(rb"\b[0-9a-f]{40}\b"), b"<commit>"),
]


def stable(data: bytes) -> bytes:
    for pattern, repl in TIME_DEPENDENT:
        data = pattern.sub(repl, data)
    return data


def test_commands_through_the_daemon_match_running_them_in_process(
    gv: Run, started: dict[str, Any], tmp_path: Path
) -> None:
    vault, before = tmp_path / "vault.git", tmp_path / "before.git"
    doc = json.dumps({"tasks": [{"id": "T-1", "status": "doing"}]}).encode()
    commands: list[tuple[list[str], bytes | None, int]] = [
        (["init"], None, 0),
        (["checkout", "A", "--out", "F.json"], None, 0),
        (["checkin", "A", "-", "src", "0.9", "why"], doc, 0),
        (["checkin", "A", "-", "src", "0.9", "why"], b'{"tasks": [', 1),
        (["checkin", "nobody", "-", "src", "0.9", "why"], doc, 4),
        (["status", "--json"], None, 0),
        (["status"], None, 0),
        (["--help"], None, 0),
    ]
    for args, stdin, code in commands:
        # the same command on the same vault: through the daemon, then (vault restored) here
        shutil.rmtree(before, ignore_errors=True)
        if vault.exists():
            shutil.copytree(vault, before, symlinks=True)
        via = gv("--vault", "vault.git", *args, input=stdin)
        out_via = (tmp_path / "F.json").read_bytes() if "--out" in args else b""
        shutil.rmtree(vault, ignore_errors=True)
        if before.exists():
            before.rename(vault)
        here = gv("--vault", "vault.git", *args, input=stdin, daemon=False)
        out_here = (tmp_path / "F.json").read_bytes() if "--out" in args else b""
        assert (via.returncode, here.returncode) == (code, code), (args, via.stderr)
        assert stable(via.stdout) == stable(here.stdout), args
        assert stable(via.stderr) == stable(here.stderr), args
        assert out_via == out_here
    served = daemon_status(gv)["served"]
    assert served == len(commands), "some commands did not go through the daemon"


def test_error_messages_are_one_line_through_the_daemon(gv: Run, started: dict[str, Any]) -> None:
    r = gv("--vault", "missing.git", "status")
    assert r.returncode == 1
    assert r.stderr.decode().count("\n") == 1 and b"Traceback" not in r.stderr
    assert daemon_status(gv)["served"] == 1


def test_served_client_loads_neither_pygit2_nor_typer(
    gv: Run, env: dict[str, str], started: dict[str, Any], tmp_path: Path
) -> None:
    assert gv("--vault", "vault.git", "init").returncode == 0
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gitvault", "--vault", "vault.git", "status"],
        env=env,
        capture_output=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in r.stderr.decode().splitlines()
        if line.startswith("import time:")
    }
    assert "gitvault.daemon.client" in imported
    assert not imported & {"pygit2", "typer", "click", "gitvault.cli", "gitvault.api.vault"}
    assert b"head:" in r.stdout


def test_daemon_status_json_names_the_running_daemon(
    gv: Run, started: dict[str, Any], sock: Path
) -> None:
    info = daemon_status(gv)
    assert info["running"] is True
    assert info["pid"] == started["pid"] and alive(info["pid"])
    assert info["socket"] == str(sock) and info["fresh"] is True
    assert (sock.parent.stat().st_mode & 0o777) == 0o700


def test_start_when_one_runs_says_so(gv: Run, started: dict[str, Any]) -> None:
    r = gv("daemon", "start")
    assert r.returncode == 0
    assert r.stderr.decode().startswith("already running: ")
    assert daemon_status(gv)["pid"] == started["pid"]


def test_stop_ends_the_daemon_and_commands_run_in_process_again(
    gv: Run, started: dict[str, Any], sock: Path
) -> None:
    r = gv("daemon", "stop", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stopped"] is True
    assert eventually(lambda: not alive(started["pid"]))
    assert not sock.exists()
    assert gv("--vault", "vault.git", "init").returncode == 0


def test_stop_and_status_when_none_runs_say_so(gv: Run) -> None:
    r = gv("daemon", "stop")
    assert r.returncode == 0 and b"no gitvault daemon runs" in r.stderr
    assert daemon_status(gv)["running"] is False


def test_a_stale_socket_file_is_replaced_by_start(gv: Run, sock: Path) -> None:
    import socket

    sock.parent.mkdir(mode=0o700)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    s.close()  # a socket file nothing listens on, as a killed daemon leaves it
    assert gv("status").returncode == 1  # the client quietly ran it here (no vault)
    r = gv("daemon", "start", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["already"] is False


def test_idle_daemon_exits_by_itself(gv: Run, sock: Path) -> None:
    r = gv("daemon", "start", "--idle", "0.5", "--json")
    assert r.returncode == 0, r.stderr
    pid = json.loads(r.stdout)["pid"]
    assert eventually(
        lambda: not sock.exists() and locked_pid(str(sock.with_suffix(".pid"))) is None
    )
    assert eventually(lambda: not alive(pid))


def test_changed_code_makes_the_daemon_step_aside(
    env: dict[str, str], tmp_path: Path, sock: Path
) -> None:
    """A copy of the package, so that touching it leaves other tests' daemons alone."""
    root = tmp_path / "pkg"
    shutil.copytree(PACKAGE, root / "gitvault", ignore=shutil.ignore_patterns("__pycache__"))
    e = {**env, "PYTHONPATH": os.pathsep.join([str(root), env.get("PYTHONPATH", "")])}

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "gitvault", *args],
            env=e,
            capture_output=True,
            cwd=tmp_path,
            timeout=120,
        )

    r = run("daemon", "start", "--json")
    assert r.returncode == 0, r.stderr
    pid = json.loads(r.stdout)["pid"]
    future = time.time() + 3600
    os.utime(root / "gitvault" / "api" / "report.py", (future, future))  # in a subpackage
    r = run("--vault", "vault.git", "init")
    assert r.returncode == 0, r.stderr
    assert b"created vault" in r.stderr
    assert eventually(lambda: not alive(pid))
    assert not sock.exists()


def test_ctrl_c_reaches_the_command(
    gv: Run, env: dict[str, str], started: dict[str, Any], tmp_path: Path
) -> None:
    assert gv("--vault", "vault.git", "init").returncode == 0
    codes = []
    for daemon in (True, False):
        r, w = os.pipe()  # stdin stays open: the command blocks reading it
        e = env if daemon else {**env, "GITVAULT_DAEMON": "0"}
        p = subprocess.Popen(
            [sys.executable, "-m", "gitvault", "--vault", "vault.git", "checkin", "A", "-", "src"],
            stdin=r,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=e,
            cwd=tmp_path,
        )
        os.close(r)
        if daemon:
            assert eventually(lambda: bool(daemon_status(gv)["workers"]))
        else:
            time.sleep(1)  # no observable "it is reading stdin" for a plain process
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        os.close(w)
        codes.append((p.returncode, out, err))
    assert codes[0] == codes[1]
    assert eventually(lambda: not daemon_status(gv)["workers"])


def test_worker_of_a_killed_client_is_ended(
    gv: Run, env: dict[str, str], started: dict[str, Any], tmp_path: Path
) -> None:
    assert gv("--vault", "vault.git", "init").returncode == 0
    r, w = os.pipe()
    p = subprocess.Popen(
        [sys.executable, "-m", "gitvault", "--vault", "vault.git", "checkin", "A", "-", "src"],
        stdin=r,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
    )
    os.close(r)
    assert eventually(lambda: bool(daemon_status(gv)["workers"]))
    worker = daemon_status(gv)["workers"][0]
    p.kill()
    p.wait()
    assert eventually(lambda: not alive(worker))
    os.close(w)
    assert daemon_status(gv)["workers"] == []


def test_a_worker_that_dies_is_reported(
    gv: Run, env: dict[str, str], started: dict[str, Any], tmp_path: Path
) -> None:
    assert gv("--vault", "vault.git", "init").returncode == 0
    r, w = os.pipe()
    p = subprocess.Popen(
        [sys.executable, "-m", "gitvault", "--vault", "vault.git", "checkin", "A", "-", "src"],
        stdin=r,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    os.close(r)
    assert eventually(lambda: bool(daemon_status(gv)["workers"]))
    os.kill(daemon_status(gv)["workers"][0], signal.SIGKILL)
    _, err = p.communicate(timeout=60)
    os.close(w)
    assert p.returncode == 1
    assert err.decode() == (
        "gitvault: the daemon's worker died (killed by signal 9 (SIGKILL)); "
        "run again with GITVAULT_DAEMON=0\n"
    )


def test_a_folder_others_can_write_is_refused(gv: Run, sock: Path) -> None:
    sock.parent.mkdir()
    sock.parent.chmod(0o777)
    r = gv("daemon", "start")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert err.startswith("gitvault: ") and err.count("\n") == 1, err
    assert "only you can enter" in err


def test_a_too_long_socket_path_is_refused(gv: Run, tmp_path: Path) -> None:
    r = gv("daemon", "start", extra={"GITVAULT_DAEMON_SOCKET": str(tmp_path / ("x" * 120))})
    assert r.returncode == 1
    assert b"longer than Unix sockets allow" in r.stderr and r.stderr.count(b"\n") == 1


def test_no_daemon_means_in_process(gv: Run, tmp_path: Path) -> None:
    r = gv("--vault", "vault.git", "init", "--import", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "vault.git").is_dir()
