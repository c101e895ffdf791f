"""Child processes for ``tests/test_crash.py``: writers that the tests kill or pause.

``loop VAULT AGENT ACKS``
    Checks in one new item after another as AGENT (checkout, add ``items["AGENT/n"] = n``,
    checkin) and, only once a checkin has returned, appends ``<commit> <agent> <n>`` to ACKS
    (write, then fsync): an acknowledged write, then prints ``acked <pid> <n>``. Prints
    ``ready <pid>`` once the vault is open, then runs until it is killed.
``serve VAULT ACKS_DIR``
    A fork server, so that a test can restart the loop hundreds of times without paying for a
    new interpreter and the imports each time. Commands on stdin, one per line:
    ``start AGENT`` forks a fresh child that opens the vault and runs the loop above (its acks
    go to ``ACKS_DIR/AGENT.acks``; it prints ``ready <pid>``); ``wait PID`` reaps that child and
    prints ``exited <pid> signal <n>`` or ``exited <pid> code <n>``. The server opens no
    repository itself: each child starts from what is on disk, like a restarted process.
``hold VAULT AGENT TTL KEY VALUE``
    Checks out AGENT with TTL, sets ``KEY`` to the JSON VALUE in its copy, prints
    ``{"token", "base", "expires"}`` as one JSON line, then waits for a line on stdin before it
    checks in with that lease token (``lease=token``). Prints the outcome as one JSON line and
    exits with the CLI's code for it (0, or the error's ``exit_code``). A test pauses it with
    SIGSTOP between the two steps.
``stall VAULT AGENT KEY VALUE``
    Checks out AGENT and checks in ``KEY = VALUE``, but stops itself (SIGSTOP) inside the
    transaction that moves main: its ref locks taken and its new values decided, not yet
    written. Prints ``stalled <pid>`` just before it stops; once continued, prints the outcome
    like ``hold``. A process frozen inside its critical section (a VM pause, swap, a debugger).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import gitvault.git.storage
from gitvault import CheckinResult, GitVaultError, Vault
from gitvault.git.refs import RefTx

ITEMS = "items"
T = TypeVar("T")


def item_key(agent: str, n: int) -> str:
    return f"{agent}/{n}"


def next_n(doc: dict[str, Any], agent: str) -> int:
    """One past the highest item of ``agent`` on main (so a restart never repeats a number)."""
    prefix = agent + "/"
    ns = [int(k[len(prefix) :]) for k in doc.get(ITEMS, {}) if k.startswith(prefix)]
    return max(ns, default=0) + 1


def say(line: str) -> None:
    os.write(sys.stdout.fileno(), (line + "\n").encode())


def checkin_loop(vault_path: str, agent: str, acks_path: str) -> None:
    vault = Vault.open(vault_path)
    if not vault.store.fsync:
        raise SystemExit(
            "crash_worker: the vault runs with gitvault.fsync=false; the crash "
            "test is about the durable default"
        )
    acks = os.open(acks_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    n = next_n(vault.read(), agent)
    say(f"ready {os.getpid()}")
    while True:
        co = vault.checkout(agent, 3600)
        doc = dict(co.document)
        items = dict(doc.get(ITEMS, {}))
        items[item_key(agent, n)] = n
        doc[ITEMS] = items
        r = vault.checkin(agent, doc, "crash-test", 0.5, f"item {n}", lease=co.lease.token)
        if r.commit is None:
            raise SystemExit(f"crash_worker: the checkin of item {n} committed nothing")
        # acknowledged: the checkin returned. One write() of one line, then fsync.
        os.write(acks, f"{r.commit} {agent} {n}\n".encode())
        os.fsync(acks)
        say(f"acked {os.getpid()} {n}")
        n += 1


def reinit_libgit2() -> None:
    """Shut libgit2 down and initialise it again, as a new process would.

    libgit2 seeds the generator behind its temp file names (``objects/tmp_object_git2_*``)
    once, at init. A forked child inherits the server's seed, so every child would try the same
    names in the same order; after a few dozen kills had left those files behind, each new
    child's first object write failed with "failed to create temporary file ... File exists".
    A real restart gets a fresh seed (pid, time); so does this.
    """
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if line.count(" ") >= 5}
    lib = next(p for p in paths if os.path.basename(p).startswith("libgit2"))
    git2 = ctypes.CDLL(lib)
    inits = 0
    while git2.git_libgit2_shutdown() > 0:
        inits += 1
    for _ in range(inits + 1):
        git2.git_libgit2_init()


def _child(vault_path: str, agent: str, acks_dir: str) -> None:
    """The body of a forked child: never returns into the server's loop."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # the server's command pipe is not ours to read
        os.close(devnull)
        reinit_libgit2()
        checkin_loop(vault_path, agent, os.path.join(acks_dir, f"{agent}.acks"))
    except SystemExit as e:
        print(e, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - a child reports any failure and exits, never returns
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(1)


def serve(vault_path: str, acks_dir: str) -> None:
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "start":
            pid = os.fork()
            if pid == 0:
                _child(vault_path, arg, acks_dir)
            say(f"started {pid}")
        elif cmd == "wait":
            pid, status = os.waitpid(int(arg), 0)
            if os.WIFSIGNALED(status):
                say(f"exited {pid} signal {os.WTERMSIG(status)}")
            else:
                say(f"exited {pid} code {os.waitstatus_to_exitcode(status)}")
        else:
            raise SystemExit(f"crash_worker serve: unknown command {line!r}")


def hold(vault_path: str, agent: str, ttl: int, key: str, value: Any) -> int:
    vault = Vault.open(vault_path)
    co = vault.checkout(agent, ttl)
    doc = dict(co.document)
    doc[key] = value
    lease = co.lease
    say(json.dumps({"token": lease.token, "base": lease.base, "expires": lease.expires}))
    sys.stdin.readline()  # the test pauses us here (SIGSTOP), then lets us go
    return _outcome(
        lambda: vault.checkin(
            agent, doc, "fencing-test", 0.5, "work from before the pause", lease=lease.token
        )
    )


def _outcome(run: Callable[[], CheckinResult]) -> int:
    try:
        r = run()
    except GitVaultError as e:
        say(json.dumps({"error": type(e).__name__, "message": str(e), "exit_code": e.exit_code}))
        return e.exit_code
    say(json.dumps({"commit": r.commit}))
    return 0


def stall(vault_path: str, agent: str, key: str, value: Any) -> int:
    store_transact = gitvault.git.storage.Store.transact

    def transact(
        self: gitvault.git.storage.Store, names: Sequence[str], fn: Callable[[RefTx], T], what: str
    ) -> T:
        def stop_inside(rtx: RefTx) -> T:
            result = fn(rtx)
            if rtx.changed.get(gitvault.git.storage.MAIN) is not None:
                say(f"stalled {os.getpid()}")
                os.kill(os.getpid(), signal.SIGSTOP)
            return result

        return store_transact(self, names, stop_inside, what)

    gitvault.git.storage.Store.transact = transact  # type: ignore[method-assign,assignment]
    vault = Vault.open(vault_path)
    co = vault.checkout(agent, 600)
    doc = dict(co.document)
    doc[key] = value
    return _outcome(lambda: vault.checkin(agent, doc, "stall-test", 0.5, lease=co.lease.token))


def main(argv: list[str]) -> int:
    match argv:
        case ["loop", vault_path, agent, acks_path]:
            checkin_loop(vault_path, agent, acks_path)
        case ["serve", vault_path, acks_dir]:
            serve(vault_path, acks_dir)
        case ["stall", vault_path, agent, key, value]:
            return stall(vault_path, agent, key, json.loads(value))
        case ["hold", vault_path, agent, ttl, key, value]:
            return hold(vault_path, agent, int(ttl), key, json.loads(value))
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
