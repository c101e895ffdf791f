"""Starting, asking and stopping the daemon: its socket, pid file and log, and the three
commands (``gitvault daemon start|stop|status``). The server itself is
:mod:`gitvault.daemon.server`; this module never runs it in-process except for
``start --foreground``."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from gitvault.daemon import client
from gitvault.errors import DaemonError, DaemonUnsafe

DEFAULT_IDLE = 600.0
READY_SECONDS = 30.0  # how long `start` waits for a new server to answer (imports ~0.3 s)
STOP_SECONDS = 20.0  # how long `stop` waits for the server to exit

Info = dict[str, Any]


# -- where: socket, pid file, log --
def files(sock: str) -> tuple[str, str]:
    """The pid file and the log beside the socket (``daemon.sock`` -> ``daemon.pid``, ``.log``)."""
    stem = os.path.splitext(sock)[0]
    return stem + ".pid", stem + ".log"


def private_folder(sock: str) -> None:
    """Create the socket's folder 0700, or check that an existing one is the user's alone."""
    if not hasattr(socket, "SO_PEERCRED") or not hasattr(os, "fork"):
        raise DaemonError(
            "the gitvault daemon needs Linux (fork, SO_PEERCRED); commands run without it"
        )
    if len(os.fsencode(sock)) > 107:
        raise DaemonError(
            f"socket path {sock} is longer than Unix sockets allow (107 bytes); "
            "set GITVAULT_DAEMON_SOCKET to a shorter path"
        )
    folder = os.path.dirname(sock)
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    st = os.stat(folder)
    if st.st_uid != os.getuid():
        raise DaemonUnsafe(folder, f"belongs to uid {st.st_uid}, not to you ({os.getuid()})")
    if st.st_mode & 0o022:
        raise DaemonUnsafe(folder, f"is writable by others (mode {stat.filemode(st.st_mode)})")


# -- asking a running server --
def ask(sock: str, op: str, timeout: float = 5.0) -> Info | None:
    """One request and its reply (``status``, ``stop``); None when nothing of ours answers."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        if client.peer_uid(s) != os.getuid():
            raise DaemonUnsafe(os.path.dirname(sock), "holds a socket of another user")
        s.sendall(json.dumps({"op": op, "fingerprint": client.fingerprint()}).encode() + b"\n")
        return client.read_reply(s)
    except OSError:  # no socket file, nothing listening, a server that went away or hangs
        return None
    finally:
        s.close()


def locked_pid(pidfile: str) -> int | None:
    """The pid of the live server holding ``pidfile``'s lock, or None if no server holds it."""
    try:
        fd = os.open(pidfile, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.read(fd, 64).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)  # closing drops our shared lock too
    return None


def _wait_gone(pidfile: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while locked_pid(pidfile) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- the three commands --
def status(sock: str | None = None) -> Info:
    """What ``gitvault daemon status`` reports; ``running`` says whether one answers."""
    sock = sock or client.socket_path()
    info = ask(sock, "status")
    if info is not None:
        return {"running": True, **info}
    pid = locked_pid(files(sock)[0])
    if pid is not None:
        return {"running": False, "socket": sock, "pid": pid, "answering": False}
    return {"running": False, "socket": sock}


Main = Callable[[], None]  # the CLI's entry point, handed in by whoever starts the server


def start(launcher: str, idle: float = DEFAULT_IDLE, foreground: bool = False) -> Info:
    """Start a server on the user's socket and wait until it answers; one running is fine.

    A running server whose code is stale (see :func:`gitvault.daemon.client.fingerprint`) is
    replaced. With ``foreground`` this process becomes the server (logs on stderr) and never
    returns. ``launcher`` is ``module:function`` of the CLI's server entry (the daemon package
    runs the CLI but never imports it: the CLI is the layer above, and hands itself in).
    """
    if idle < 0:
        raise DaemonError(f"--idle {idle:g}: give a number of seconds, 0 for never")
    sock = client.socket_path()
    private_folder(sock)
    info = ask(sock, "status")
    if info is not None and info.get("fresh"):
        return {"running": True, "already": True, **info}
    if info is not None:
        stop(sock)  # older code: replace it
    pidfile, logfile = files(sock)
    module, function = launcher.split(":")
    cmd = [
        sys.executable,
        "-P",
        "-c",
        f"from {module} import {function}; {function}()",
        sock,
        repr(idle),
    ]
    if foreground:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, cmd)
    with open(logfile, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/", start_new_session=True
        )
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        info = ask(sock, "status")
        if info is not None:
            return {"running": True, "already": info.get("pid") != proc.pid, **info}
        if proc.poll() is not None and locked_pid(pidfile) is None:
            tail = _last_line(logfile)
            raise DaemonError(
                f"the daemon exited with status {proc.returncode} before "
                f"answering: {tail or 'no message'} (log: {logfile})"
            )
        time.sleep(0.02)
    raise DaemonError(
        f"the daemon did not answer on {sock} within {READY_SECONDS:g} s; see {logfile}"
    )


def stop(sock: str | None = None) -> Info:
    """Ask the server to finish its running commands and exit; wait until it has."""
    sock = sock or client.socket_path()
    pidfile = files(sock)[0]
    info = ask(sock, "stop")
    pid = info.get("pid") if info else locked_pid(pidfile)
    if pid is None:
        _remove_stale(sock)
        return {"running": False, "stopped": False, "socket": sock}
    if info is None and pid > 0:
        os.kill(pid, signal.SIGTERM)  # holds the lock but does not answer: wedged
    if not _wait_gone(pidfile, STOP_SECONDS):
        raise DaemonError(
            f"the daemon (pid {pid}) did not stop within {STOP_SECONDS:g} s; "
            f"end it with `kill {pid}`"
        )
    return {"running": False, "stopped": True, "pid": pid, "socket": sock}


def describe(info: Info) -> str:
    """One line for a human about ``start``/``stop``/``status``'s result."""
    sock = info.get("socket", "?")
    if info.get("stopped"):
        return f"stopped the gitvault daemon (pid {info['pid']}) on {sock}"
    if not info.get("running"):
        if info.get("answering") is False:
            return (
                f"a gitvault daemon (pid {info['pid']}) holds {sock} but does not answer; "
                "`gitvault daemon stop` ends it"
            )
        return f"no gitvault daemon runs on {sock}"
    idle = f"{info['idle']:g} s" if info.get("idle") else "never"
    line = (
        f"gitvault daemon (pid {info['pid']}) listening on {sock}: "
        f"{info['served']} command(s) served, idle timeout {idle}"
    )
    if "already" in info:
        line = ("already running: " if info["already"] else "started: ") + line
    return line


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _remove_stale(sock: str) -> None:
    """Remove a socket file nothing listens on (only a socket: never a user's file)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(sock).st_mode):
            os.unlink(sock)
