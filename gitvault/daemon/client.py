"""The ``gitvault`` command's front door: hand the call to a resident daemon, else run it here.

A ``gitvault`` call spends ~22 ms starting Python and ~95 ms importing pygit2, typer and gitvault
before ~10 ms of work. When ``gitvault daemon start`` left a server running (see
:mod:`gitvault.daemon.server`), this module sends it the call -- argv, cwd, environment, umask and
the real stdin/stdout/stderr descriptors -- and exits with the code it answers, so a command costs
little more than the interpreter's own start-up. It therefore imports only the standard library's
cheapest modules: ``_socket`` (``socket`` would add ~4 ms of enum building) and ``json``; never
pygit2 or typer.

Anything unusual -- no socket, nothing listening, a daemon of another user, a daemon running older
code (``stale``), a closed standard stream, ``GITVAULT_DAEMON=0`` -- runs the command in this
process, silently: the daemon is an optimisation, never a requirement.
"""

from __future__ import annotations

import _socket
import json
import os
import sys

from gitvault import __version__

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs this module ~2 ms
if TYPE_CHECKING:
    from typing import Any, NoReturn

#: Commands that never go through the daemon: managing it, and the long-lived servers/feeds.
LOCAL_COMMANDS = frozenset({"daemon", "mcp", "serve", "watch"})
#: Root options of ``gitvault`` that take a value (``--vault PATH``), to find the command name.
_VALUED_OPTIONS = frozenset({"--vault", "--workdir"})


def socket_path() -> str:
    """Where the daemon listens: $GITVAULT_DAEMON_SOCKET, else under $XDG_RUNTIME_DIR or /tmp."""
    explicit = os.environ.get("GITVAULT_DAEMON_SOCKET")
    if explicit:
        return os.path.abspath(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, "gitvault", "daemon.sock")
    return f"/tmp/gitvault-{os.getuid()}/daemon.sock"


def package_dir() -> str:
    """The installed ``gitvault`` package folder (this file is ``gitvault/daemon/client.py``)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _walk(pkg: str) -> list[tuple[str, list[str], list[str]]]:
    """Every folder of the package, subpackages included (a moved or added module anywhere
    must make a running daemon step aside); caches and data folders are skipped."""
    return [
        (d, subs, files)
        for d, subs, files in os.walk(pkg)
        if "__pycache__" not in d and os.path.exists(os.path.join(d, "__init__.py"))
    ]


def modules() -> list[str]:
    """Dotted names of every module of the package, for the daemon to preload."""
    pkg = package_dir()
    root = os.path.dirname(pkg)
    out = []
    for folder, _subs, files in _walk(pkg):
        dotted = os.path.relpath(folder, root).replace(os.sep, ".")
        for name in sorted(files):
            if name.endswith(".py"):
                out.append(dotted if name == "__init__.py" else f"{dotted}.{name[:-3]}")
    return sorted(out)


def fingerprint() -> str:
    """What must not have changed since a daemon started for it to run this call.

    gitvault's version, the interpreter, the package folder and the newest mtime of its files
    (an edit or a reinstall), and of the interpreter's site-packages folders (pip adds or
    removes a dist-info folder there whenever pygit2, typer or anything else changes).
    About 30 ``stat`` calls.
    """
    pkg = package_dir()
    newest = os.stat(pkg).st_mtime_ns
    for folder, _subdirs, files in _walk(pkg):
        newest = max(newest, os.stat(folder).st_mtime_ns)
        for name in files:
            if name.endswith(".py"):
                newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime_ns)
    sites = 0
    for p in sys.path:
        if p.endswith("site-packages"):
            try:
                sites = max(sites, os.stat(p).st_mtime_ns)
            except OSError:
                continue
    return f"{__version__} {sys.executable} {pkg} {newest} {sites}"


def command_name(args: list[str]) -> str | None:
    """The subcommand in ``gitvault [ROOT OPTIONS] COMMAND ...``, or None (``--help`` alone)."""
    it = iter(args)
    for a in it:
        if a in _VALUED_OPTIONS:
            next(it, None)
        elif not a.startswith("-"):
            return a
    return None


def peer_uid(sock: _socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # pid, uid, gid
    return int.from_bytes(creds[4:8], sys.byteorder)


def read_reply(sock: _socket.socket, buf: bytearray | None = None) -> dict[str, Any] | None:
    """One JSON line from the daemon; None if it closed the connection first.

    ``buf`` keeps what was read across a KeyboardInterrupt, so the caller can retry.
    """
    buf = bytearray() if buf is None else buf
    while b"\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    reply: dict[str, Any] = json.loads(buf[: buf.index(b"\n")])
    return reply


def _stream_specs() -> list[list[Any]] | None:
    """How this interpreter set up its std streams, for the worker to build the same ones.

    Python decided encoding, errors and buffering from this process's environment and from
    whether each descriptor is a terminal; copying the result is exact by construction.
    """
    specs: list[list[Any]] = []
    for s in (sys.stdin, sys.stdout, sys.stderr):
        if s is None or not hasattr(s, "buffer"):
            return None  # a closed descriptor (Python set it to None) or a replaced stream
        specs.append(
            [
                s.encoding,
                s.errors,
                getattr(s, "line_buffering", False),
                getattr(s, "write_through", False),
                type(s.buffer).__name__ == "FileIO",
            ]
        )
    return specs


def _die_like(signum: int) -> NoReturn:
    """End this process by ``signum``, as the worker ended: the shell sees the same status."""
    import signal

    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)


def via_daemon(argv: list[str]) -> int | None:
    """Run ``argv`` in the daemon's worker and return its exit code; None: run it here."""
    path = socket_path()
    if not os.path.exists(path) or not hasattr(_socket, "SO_PEERCRED"):
        return None
    streams = _stream_specs()
    if streams is None:
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
            if peer_uid(sock) != os.getuid():
                return None  # someone else's socket: tell it nothing
            cwd = os.getcwd()
        except OSError:
            return None
        umask = os.umask(0o022)
        os.umask(umask)
        request = (
            json.dumps(
                {
                    "op": "run",
                    "argv": argv,
                    "cwd": cwd,
                    "env": dict(os.environ),
                    "umask": umask,
                    "streams": streams,
                    "utf8_mode": sys.flags.utf8_mode,
                    "fingerprint": fingerprint(),
                }
            ).encode()
            + b"\n"
        )
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
        try:
            sent = sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        except OSError:
            return None  # nothing reached the daemon: run it here
        try:
            if sent < len(request):
                sock.sendall(request[sent:])
        except OSError:
            pass  # the daemon may already be running it (a fast command can even be done and
            # its connection closed): never run it twice; its answer, or its silence, decides
        return _wait(sock)
    finally:
        sock.close()


def _wait(sock: _socket.socket) -> int | None:
    """Wait for the worker's answer; Ctrl-C here is passed on to the worker."""
    buf = bytearray()
    while True:
        try:
            reply = read_reply(sock, buf)
            break
        except KeyboardInterrupt:
            try:
                sock.sendall(b'{"signal": 2}\n')
            except OSError:
                reply = None
                break
        except OSError:
            reply = None
            break
    if reply is None:
        reason = "the connection closed without an exit code"
    elif "exit" in reply:
        return int(reply["exit"])
    elif "fallback" in reply:
        return None
    elif "signal" in reply:
        _die_like(int(reply["signal"]))
    else:
        reason = str(reply.get("died", reply))
    sys.stderr.write(
        f"gitvault: the daemon's worker died ({reason}); run again with GITVAULT_DAEMON=0\n"
    )
    return 1


#: Commands that start a daemon when none runs (the ones agents call again and again).
AUTOSTART_COMMANDS = frozenset(
    {
        "checkout",
        "checkin",
        "release",
        "status",
        "log",
        "show",
        "diff",
        "blame",
        "conflicts",
        "resolve",
        "export",
        "query",
        "search",
    }
)
AUTOSTART_IDLE = "600"
_NOTICE = (
    "gitvault: started a background daemon (pid {pid}, socket {sock}) so that the next "
    "commands start faster; it exits after 10 minutes without a command. "
    "`gitvault daemon stop` stops it, GITVAULT_DAEMON=0 never starts one "
    "(said once)\n"
)


def may_autostart(args: list[str]) -> bool:
    """Whether this call may start a daemon: by default yes for the hot commands, but never
    under CI, inside a git hook or under pytest unless GITVAULT_DAEMON=auto asks for it.

    GITVAULT_DAEMON: unset or ``auto`` start one on demand; ``1`` use one that runs, never
    start one; ``0`` never use one.
    """
    mode = os.environ.get("GITVAULT_DAEMON", "")
    if mode == "auto":
        return command_name(args) in AUTOSTART_COMMANDS
    if mode:
        return False
    env = os.environ
    if env.get("CI", "").lower() not in ("", "0", "false", "no"):
        return False
    if "PYTEST_CURRENT_TEST" in env:
        return False  # a test run: a test that strips GITVAULT_* must still leave no daemon
    if any(k in env for k in ("GIT_DIR", "GIT_QUARANTINE_PATH", "GIT_INDEX_FILE", "GIT_EXEC_PATH")):
        return False  # a git hook (or a command run by git)
    return sys.platform == "linux" and command_name(args) in AUTOSTART_COMMANDS


def _private(folder: str) -> bool:
    """The socket folder, created 0700 if missing; False when it is not the user's alone."""
    try:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        try:  # noqa: SIM105 - contextlib would cost this stdlib-only client start-up time
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        st = os.stat(folder)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def autostart(path: str, launcher: str) -> int | None:
    """Start a daemon on ``path`` in the background, without waiting for it; its pid.

    ``launcher`` is the ``module:function`` that serves (the CLI hands it in, as to
    :func:`gitvault.daemon.control.start`).

    This call goes on to run its command in its own process; the next ones find the daemon.
    One start at a time (a flock beside the socket); a daemon that is still starting holds
    ``daemon.pid``'s lock, and one that finds another holds it exits at once.
    """
    import fcntl

    folder = os.path.dirname(path)
    if len(os.fsencode(path)) > 107 or not _private(folder):
        return None
    stem = os.path.splitext(path)[0]
    lock = os.open(os.path.join(folder, "autostart.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # another call is starting one right now
        try:
            fd = os.open(stem + ".pid", os.O_RDONLY)
        except FileNotFoundError:
            fd = -1
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # a daemon holds it: starting, or not answering yet
            finally:
                os.close(fd)
        env = {k: v for k, v in os.environ.items() if k != "GITVAULT_DAEMON"}
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, stem + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        try:
            module, function = launcher.split(":")
            serve = f"import os; os.chdir('/'); from {module} import {function}; {function}()"
            pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-P", "-c", serve, path, AUTOSTART_IDLE],
                env,
                file_actions=actions,
                setsid=True,
            )
        except OSError:
            return None
    finally:
        os.close(lock)
    marker = os.path.join(folder, "autostart-noticed")
    if not os.path.exists(marker):
        try:  # noqa: SIM105 - as above
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError:
            pass
        sys.stderr.write(_NOTICE.format(pid=pid, sock=path))
    return pid
