"""An opt-in resident "fork server" that lets every ``gitvault`` command skip its start-up.

Why: a CLI call spends ~22 ms starting Python and ~95 ms importing pygit2, typer and gitvault
before ~10 ms of work; only a process that stays resident can remove that. As git's
fsmonitor daemon, dmypy and nailgun do, ``gitvault daemon start`` leaves one process running that
has imported everything a command needs but never opens a repository. The tiny client
(:mod:`gitvault.daemon.client`, the console script) connects to its Unix socket and sends argv, cwd,
environment, umask and its real stdin/stdout/stderr (SCM_RIGHTS). Per call the server forks; the
child *becomes* that command -- the client's descriptors on 0/1/2 with std streams built like the
client's, its cwd, environment, umask and argv, default signal handlers -- then runs
``gitvault.cli.main`` like a fresh process, and sends back the exit code. Output and exit codes
are therefore the ones of an in-process run, and each command reads the vault as it is on disk
(no cached state: the fork is a copy of a process that never opened one).

Safety: the socket lives in a folder only its user can enter (created 0700, its owner checked)
and both ends check the peer's uid (SO_PEERCRED), since the client sends its environment. The
server records a :func:`gitvault.daemon.client.fingerprint` when it starts; a call whose fingerprint
differs because gitvault or its packages changed on disk is answered "fallback" and the server
exits, so an upgrade or an edit never runs old code. A command whose client is gone (killed)
has its worker terminated; Ctrl-C in the client is forwarded to the worker.

Files beside the socket ``D/daemon.sock``: ``D/daemon.pid`` (the pid, flock-ed by the live
server, so a stale file is told apart from a live one without trusting the pid) and
``D/daemon.log``.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import gc
import importlib
import io
import json
import locale
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from gitvault import __version__
from gitvault.daemon import client
from gitvault.daemon.control import Info, Main, _remove_stale, files, private_folder
from gitvault.errors import DaemonError

DRAIN_SECONDS = 10.0  # running commands get this long to finish when the server stops
MAX_REQUEST = 8 << 20
FORWARDED = frozenset({signal.SIGINT, signal.SIGTERM})
#: Loaded lazily by commands, so loaded here once: third-party modules they may need.
PRELOAD_EXTRA = (
    "pygit2",
    "typer",
    "jsonpatch",
    "jsonschema.validators",
    "cryptography.hazmat.primitives.serialization",  # signs in-process (engine.sshsig)
    "cryptography.hazmat.primitives.asymmetric.ed25519",
)
#: Never loaded by the server: the MCP server and the review page (servers of their own,
#: pydantic and starlette, never routed here), the deepdiff summary, and the entry points.
NO_PRELOAD = frozenset({"summary", "__main__"})
NO_PRELOAD_PKG = ("gitvault.mcp", "gitvault.web")


# -- the server --
def serve_main(main: Main) -> None:
    """Body of the server process (``python -P -c ... SOCKET IDLE``): serve ``main``."""
    from gitvault.errors import GitVaultError

    sock, idle = sys.argv[1], float(sys.argv[2])
    try:
        Server(sock, idle, main).run()
    except GitVaultError as e:
        _log(f"gitvault: {e}")
        raise SystemExit(e.exit_code) from None


def _log(msg: str) -> None:
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S')} gitvault daemon[{os.getpid()}]: {msg}",
        file=sys.stderr,
        flush=True,
    )


@dataclass
class _Worker:
    """A forked child running one command, and the connection to that command's client."""

    conn: socket.socket
    forwarded: set[int] = field(default_factory=set)
    client_gone: bool = False


class Server:
    """The accept loop: one forked worker per command, reaped and watched from here."""

    def __init__(self, sock: str, idle: float, main: Main) -> None:
        self.sock, self.idle, self.main = sock, idle, main
        self.pidfile = files(sock)[0]
        self.workers: dict[int, _Worker] = {}
        self.served = 0
        self.stopping: str | None = None
        self.drain_until = 0.0
        self.started = time.time()
        self.fingerprint = ""
        self.sel = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.bound_ino = 0
        self.lock_fd = -1
        self.wake_r, self.wake_w = socket.socketpair()

    def run(self) -> None:
        private_folder(self.sock)
        self._lock()
        _remove_stale(self.sock)  # we hold the lock: no live server owns it
        self._preload()
        self.fingerprint = client.fingerprint()  # after the imports wrote their .pyc files
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.sock)
        self.bound_ino = os.stat(self.sock).st_ino
        listener.listen(128)
        listener.setblocking(False)
        self.listener = listener
        for s in (self.wake_r, self.wake_w):
            s.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through the fd
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda signum, _: self._stop(f"signal {signum}"))
        self.sel.register(listener, selectors.EVENT_READ, None)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        gc.freeze()  # forked workers then share these pages instead of copying them on gc
        _log(
            f"listening on {self.sock} (python {sys.executable}, gitvault {__version__}, "
            f"idle timeout {self.idle:g} s)"
        )
        self._loop()
        self._cleanup()

    def _lock(self) -> None:
        """Hold ``daemon.pid``'s flock for life: one server per socket, told apart from a stale
        pid file without trusting the pid in it."""
        while True:
            fd = os.open(self.pidfile, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise DaemonError(f"a gitvault daemon already serves {self.sock}") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.pidfile).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not unlinked by a server exiting between our open and our lock
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.lock_fd = fd

    def _preload(self) -> None:
        """Import every module a command may need, then run `--help` once to warm typer."""
        for name in client.modules():
            if name.rsplit(".", 1)[-1] not in NO_PRELOAD and not name.startswith(NO_PRELOAD_PKG):
                importlib.import_module(name)
        for name in PRELOAD_EXTRA:
            importlib.import_module(name)
        main = self.main
        argv, out = sys.argv, io.StringIO()
        sys.argv = ["gitvault", "--help"]
        try:
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main()
        finally:
            sys.argv = argv

    # the loop
    def _loop(self) -> None:
        last = time.monotonic()
        while True:
            self._reap()
            now = time.monotonic()
            if self.workers:
                last = now
            if self.stopping and not self.workers:
                return
            if self.stopping and now > self.drain_until:
                for pid in self.workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
                self.drain_until = now + DRAIN_SECONDS
            timeout: float | None = None
            if self.stopping:
                timeout = max(0.0, self.drain_until - now)
            elif not self.workers and self.idle > 0:
                if now - last >= self.idle:
                    self._stop(f"idle for {self.idle:g} s")
                    continue
                timeout = last + self.idle - now
            for key, _ in self.sel.select(timeout):
                if key.fileobj is self.listener:
                    self._accept()
                    last = time.monotonic()
                elif key.fileobj is self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        while self.wake_r.recv(4096):
                            pass
                else:
                    self._from_client(key.data)

    def _stop(self, why: str) -> None:
        if self.stopping:
            return
        _log(f"stopping: {why}")
        self.stopping = why
        self.drain_until = time.monotonic() + DRAIN_SECONDS
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
            self._unlink_socket()  # new calls run in their own process from now on

    def _unlink_socket(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.sock).st_ino == self.bound_ino:
                os.unlink(self.sock)

    def _cleanup(self) -> None:
        self._unlink_socket()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.pidfile).st_ino == os.fstat(self.lock_fd).st_ino:
                os.unlink(self.pidfile)  # still holding the lock, so no one else uses it
        os.close(self.lock_fd)
        _log(f"exited after {self.served} command(s)")

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            if not w.client_gone:
                self.sel.unregister(w.conn)
            if not w.client_gone and not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                self._died(w, status)
            w.conn.close()

    def _died(self, w: _Worker, status: int) -> None:
        """Tell the client how its worker ended when the worker could not say it itself."""
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) in w.forwarded:
            reply: Info = {"signal": os.WTERMSIG(status)}
        elif os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            reply = {"died": f"killed by signal {sig} ({signal.Signals(sig).name})"}
        else:
            reply = {"died": f"exit status {os.WEXITSTATUS(status)} without an exit code"}
        with contextlib.suppress(OSError):
            w.conn.sendall(json.dumps(reply).encode() + b"\n")

    def _from_client(self, pid: int) -> None:
        """A running command's client sent a signal to pass on, or went away."""
        w = self.workers.get(pid)
        if w is None:
            return
        try:
            data = w.conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client is gone: nobody will read this command's output
            w.client_gone = True
            self.sel.unregister(w.conn)  # or select() would report the EOF forever
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # pid not reaped yet, so it is still our child
            return
        for line in data.splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                sig = int(json.loads(line)["signal"])
                if sig in FORWARDED:
                    w.forwarded.add(sig)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)

    # one connection
    def _accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        fds: list[int] = []
        try:
            conn.setblocking(True)
            conn.settimeout(5.0)
            if client.peer_uid(conn) != os.getuid():
                _log("refused a connection from another user")
                conn.close()
                return
            req, fds = self._read_request(conn)
            if req.get("op") == "run" and len(fds) == 3:
                if self._dispatch(conn, req, fds):
                    fds = []  # the worker has them now
                    return
            else:
                self._answer(conn, req)
        except (OSError, ValueError) as e:
            _log(f"dropped a connection: {e}")
        finally:
            for fd in fds:
                os.close(fd)
        conn.close()

    def _read_request(self, conn: socket.socket) -> tuple[Info, list[int]]:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        buf = bytearray(data)
        while b"\n" not in buf:
            chunk = conn.recv(1 << 16)
            if not chunk or len(buf) > MAX_REQUEST:
                raise ValueError("incomplete request")
            buf += chunk
        req: Info = json.loads(buf[: buf.index(b"\n")])
        return req, fds

    def _answer(self, conn: socket.socket, req: Info) -> None:
        op = req.get("op")
        reply: Info
        if op == "status":
            reply = {
                "pid": os.getpid(),
                "socket": self.sock,
                "version": __version__,
                "python": sys.executable,
                "idle": self.idle,
                "served": self.served,
                "workers": sorted(self.workers),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
                "fresh": req.get("fingerprint") == self.fingerprint,
            }
        elif op == "stop":
            reply = {"pid": os.getpid(), "stopping": True}
        else:
            reply = {"error": f"unknown request {op!r}"}
        conn.sendall(json.dumps(reply).encode() + b"\n")
        if op == "stop":
            self._stop("asked to stop")

    def _dispatch(self, conn: socket.socket, req: Info, fds: list[int]) -> bool:
        """Fork a worker for a command; False (after answering) when the client must run it."""
        why = None
        if req.get("fingerprint") != self.fingerprint:
            why = "stale"
            if client.fingerprint() != self.fingerprint:
                self._stop("gitvault changed on disk")  # our code is old: make way
            # else: a client of another installation shares the socket path; keep serving ours
        elif req.get("utf8_mode") != sys.flags.utf8_mode:
            why = "utf8 mode differs"
        if why:
            conn.sendall(json.dumps({"fallback": why}).encode() + b"\n")
            return False
        # Blocking from now on, and never toggled again: O_NONBLOCK belongs to the open file
        # that parent and worker share. The parent reads only when select() says it can.
        conn.settimeout(None)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the server
            try:
                self._become(conn, req, fds)
            finally:
                os._exit(70)
        self.served += 1
        for fd in fds:
            os.close(fd)
        self.workers[pid] = _Worker(conn)
        self.sel.register(conn, selectors.EVENT_READ, pid)
        return True

    # the worker
    def _become(self, conn: socket.socket, req: Info, fds: list[int]) -> NoReturn:
        """In the forked child: become the client's command, run it, report its exit code."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as the interpreter sets it
        self.sel.close()
        for s in (
            self.listener,
            self.wake_r,
            self.wake_w,
            *(w.conn for w in self.workers.values()),
        ):
            if s is not None:
                s.close()
        os.close(self.lock_fd)  # or the lock would outlive the server in a slow command
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        try:
            os.chdir(req["cwd"])
        except OSError:
            conn.sendall(b'{"fallback": "cwd"}\n')  # let the client meet the error itself
            os._exit(0)
        os.umask(int(req["umask"]))
        os.environ.clear()
        os.environ.update(req["env"])
        time.tzset()
        with contextlib.suppress(locale.Error):
            locale.setlocale(locale.LC_CTYPE, "")
        _std_streams(req["streams"])
        sys.argv = list(req["argv"])
        reply = _run_cli(self.main)
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(reply).encode() + b"\n")
        os._exit(0)


def _std_streams(specs: list[list[Any]]) -> None:
    """sys.stdin/stdout/stderr on fds 0/1/2, built as the client's interpreter built them."""
    streams = []
    for fd, (encoding, errors, line_buffering, write_through, raw) in enumerate(specs):
        mode = "rb" if fd == 0 else "wb"
        f = io.FileIO(fd, mode, closefd=False)
        buf: Any = f if raw else (io.BufferedReader(f) if fd == 0 else io.BufferedWriter(f))
        streams.append(
            io.TextIOWrapper(
                buf,
                encoding=encoding,
                errors=errors,
                newline="\n",
                line_buffering=line_buffering,
                write_through=write_through,
            )
        )
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams  # type: ignore[misc]


def _run_cli(main: Main) -> Info:
    """The CLI's ``main`` as the interpreter runs a script: its exit status, or its signal."""
    code = 0
    try:
        main()
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        _flush()
        return {"signal": int(signal.SIGINT)}
    except BaseException:  # noqa: BLE001 -- what an uncaught error does: traceback, status 1
        sys.excepthook(*sys.exc_info())
        code = 1
    atexit._run_exitfuncs()
    if not _flush() and code == 0:
        code = 120  # as the interpreter exits when it cannot flush stdout
    return {"exit": code}


def _flush() -> bool:
    ok = True
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except OSError:
            ok = False
    return ok
