"""Crash safety: writers killed with SIGKILL at random moments, and a paused lease holder.

The crash harness restarts a checkin loop (``tests/system/crash_worker.py``) again and again,
kills it
0-50 ms after it has opened the vault (every tenth time, after its first acknowledged write). A
write is *acknowledged* when its checkin returned: the worker only then appends
``<commit> <agent> <n>`` to its acks file (fsynced). After every kill:

- main parses (``Vault.open(p).read()``) and only ever moves forward;
- every acknowledged item is in main's document and its commit is reachable from main;
- the next checkin as the killed agent succeeds. A ``*.lock`` left behind by the kill is
  recorded (which file, how often, whether it made that checkin fail at once with VaultBusy);
  the locks are then aged past ``gitvault.staleLockSeconds`` and
  the checkin must now succeed by itself, gitvault breaking them (were it not to, they are
  removed by hand, as ``gitvault doctor --fix`` does, and the run fails);

and at the end ``git fsck --full`` reports no errors (dangling objects are fine), every commit on
main holds valid JSON, and ``git gc`` then a second fsck pass too. The vault keeps its default
``gitvault.fsync=true``; only the automatic ``git gc`` of checkins is off during the run.

Set ``GITVAULT_CRASH_SEED`` to replay a run; the figures are printed (``pytest -s``).

The fencing tests pause a lease holder with SIGSTOP between checkout and checkin (issue 7, item
4), and one test freezes a writer *inside* its ref transaction, past staleLockSeconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pygit2
import pytest

import gitvault.git.storage
import gitvault.git.transact
from gitvault import Vault
from gitvault.core import codec
from gitvault.errors import VaultBusy
from gitvault.model.leases import lease_ref

WORKER = Path(__file__).with_name("crash_worker.py")
AGENT = "w"
MAX_DELAY = 0.050  # a kill comes 0-50 ms after the worker is ready
ACK_EVERY = 10  # ... and in every tenth round 0-50 ms after its first acknowledged checkin, so
# that acknowledged writes pile up however slow a checkin is on a loaded machine
QUICK_LOCK_ATTEMPTS = 5  # ~10 ms of backoff: plenty when no one else writes, and room to break
# up to three stale locks (one per attempt)
_HEX_OBJECT = re.compile(r"[0-9a-f]{38}")


# -- processes --------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    """No GIT_* from a hook or a developer shell, no GITVAULT_* overrides (fsync stays on)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITVAULT_"))}


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("gitvault")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gitvault"]


class Lines:
    """Lines from a child's stdout pipe, with a timeout (select on the raw fd, no buffering)."""

    def __init__(self, fd: int, stderr: Path) -> None:
        self.fd, self.stderr, self.buf = fd, stderr, b""

    def read(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0.0))
            chunk = os.read(self.fd, 4096) if ready else b""
            if not chunk:
                raise AssertionError(
                    f"no line from the worker ({'EOF' if ready else 'timeout'}); its stderr:\n"
                    + self.stderr.read_text(errors="replace")[-4000:]
                )
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()


class Launcher(Protocol):
    """Starts one checkin loop per call and reaps it after the kill."""

    def start(self, agent: str) -> int:
        """The worker's pid, once it has opened the vault."""
        ...

    def wait_ack(self, pid: int) -> None:
        """Until the worker has acknowledged a checkin."""
        ...

    def reap(self, pid: int) -> str:
        """How it ended: ``signal 9``, or ``code N`` if it died on its own."""
        ...

    def close(self) -> None:
        """Kill (by pid) and reap any worker still running, then stop."""
        ...

    def log(self) -> str: ...


class ForkServer:
    """``crash_worker.py serve``: each start is a fresh fork of an interpreter that has done the
    imports and opened nothing, so a restart costs milliseconds instead of ~150 ms. Each child
    re-initialises libgit2, as a new process would (``crash_worker.reinit_libgit2``)."""

    def __init__(self, vault: Path, work: Path) -> None:
        self.err = work / "server.stderr"
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER), "serve", str(vault), str(work)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=_env(),
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin
        self.lines = Lines(self.proc.stdout.fileno(), self.err)
        self.live: set[int] = set()
        self.acks: Counter[int] = Counter()

    def _read(self) -> str:
        """The next line that is not an ``acked`` line of a worker (those are counted)."""
        while True:
            line = self.lines.read()
            if not line.startswith("acked "):
                return line
            self.acks[int(line.split()[1])] += 1

    def _send(self, line: str) -> None:
        self.stdin.write(line.encode() + b"\n")
        self.stdin.flush()

    def start(self, agent: str) -> int:
        self._send(f"start {agent}")
        started = ready = None
        while started is None or ready is None:  # the two lines may come in either order
            word, pid = self._read().split()
            if word == "started":
                started = int(pid)
            else:
                assert word == "ready", word
                ready = int(pid)
        assert started == ready, (started, ready)
        self.live.add(started)
        return started

    def wait_ack(self, pid: int) -> None:
        while not self.acks[pid]:
            line = self.lines.read()
            assert line.startswith("acked "), line
            self.acks[int(line.split()[1])] += 1

    def reap(self, pid: int) -> str:
        self._send(f"wait {pid}")
        word, got, how, value = self._read().split()
        assert (word, int(got)) == ("exited", pid)
        self.live.discard(pid)
        return f"{how} {value}"

    def close(self) -> None:
        for pid in sorted(self.live):  # a run that failed half-way: stop our own workers
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.reap(pid)
        self.stdin.close()
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def log(self) -> str:
        return self.err.read_text(errors="replace")[-4000:]


class Exec:
    """A new interpreter per start (``crash_worker.py loop``): slower, nothing inherited."""

    def __init__(self, vault: Path, work: Path) -> None:
        self.vault, self.work = vault, work
        self.err = work / "exec.stderr"
        self.procs: dict[int, tuple[subprocess.Popen[bytes], Lines]] = {}

    def start(self, agent: str) -> int:
        with self.err.open("ab") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER),
                    "loop",
                    str(self.vault),
                    agent,
                    str(self.work / f"{agent}.acks"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=_env(),
            )
        assert proc.stdout is not None
        lines = Lines(proc.stdout.fileno(), self.err)
        word, pid = lines.read().split()
        assert (word, int(pid)) == ("ready", proc.pid)
        self.procs[proc.pid] = proc, lines
        return proc.pid

    def wait_ack(self, pid: int) -> None:
        word, *_ = self.procs[pid][1].read().split()
        assert word == "acked", word

    def reap(self, pid: int) -> str:
        proc, _ = self.procs.pop(pid)
        code = proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
        return f"signal {-code}" if code < 0 else f"code {code}"

    def close(self) -> None:
        for pid in list(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.reap(pid)

    def log(self) -> str:
        return self.err.read_text(errors="replace")[-4000:]


# -- what a kill may leave behind -------------------------------------------------------------
def find_locks(vault: Path, objects: bool = False) -> list[str]:
    """``*.lock`` files in the vault (refs, logs, packed-refs, config...), relative paths.

    ``objects/`` is skipped unless asked (git and libgit2 write objects through temp files,
    not locks, and walking thousands of loose objects after every kill is slow)."""
    found = []
    for root, dirs, files in os.walk(vault):
        if not objects and Path(root) == vault and "objects" in dirs:
            dirs.remove("objects")
        found += [
            os.path.relpath(os.path.join(root, f), vault) for f in files if f.endswith(".lock")
        ]
    return sorted(found)


def stray_object_files(vault: Path) -> list[str]:
    """Temp files of interrupted object writes: libgit2's ``objects/tmp_object_git2_*``, and
    anything in ``objects/xx/`` that is not a loose object (``git gc`` removes both once old)."""
    out = []
    for sub in (vault / "objects").iterdir():
        if sub.is_file():
            out.append(sub.name)
        elif len(sub.name) == 2:
            out += [
                f"{sub.name}/{f.name}" for f in sub.iterdir() if not _HEX_OBJECT.fullmatch(f.name)
            ]
    return sorted(out)


def running_gc(vault: Path) -> int | None:
    """The pid of a ``git gc`` at work on the vault (checkins start one past a loose-object
    count); its ``gc.pid`` says which process. Probed with signal 0, never signalled."""
    try:
        pid = int((vault / "gc.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def wait_for_gc(vault: Path, timeout: float = 240.0) -> bool:
    """Let a running ``git gc`` finish (its locks are live, not ours to count or remove)."""
    deadline, waited = time.monotonic() + timeout, False
    while running_gc(vault) is not None:
        assert time.monotonic() < deadline, "git gc is still running on the vault"
        waited = True
        time.sleep(0.02)
    return waited


def remove(vault: Path, locks: Sequence[str]) -> None:
    for lock in locks:
        with contextlib.suppress(FileNotFoundError):
            os.remove(vault / lock)


def age(vault: Path, locks: Sequence[str], seconds: float = 3600.0) -> None:
    then = time.time() - seconds
    for lock in locks:
        with contextlib.suppress(FileNotFoundError):
            os.utime(vault / lock, (then, then))


@contextlib.contextmanager
def lock_budget(attempts: int) -> Iterator[None]:
    """Give up on a held ref lock after about ``attempts`` tries (the default waits a minute)."""
    saved = gitvault.git.transact.LOCK_TIMEOUT
    gitvault.git.transact.LOCK_TIMEOUT = attempts * 0.002
    try:
        yield
    finally:
        gitvault.git.transact.LOCK_TIMEOUT = saved


def git_fsck(vault: Path) -> tuple[int, str]:
    r = subprocess.run(
        ["git", f"--git-dir={vault}", "fsck", "--full", "--no-dangling"],
        capture_output=True,
        text=True,
        env=_env(),
    )
    return r.returncode, (r.stdout + r.stderr).strip()


def fsck_errors(output: str) -> list[str]:
    """Lines of ``git fsck`` output that are errors (dangling objects are not reported)."""
    words = {"error", "fatal", "missing", "broken", "bad", "corrupt"}
    return [
        line for line in output.splitlines() if line.split(" ", 1)[0].rstrip(":").lower() in words
    ]


# -- the harness ------------------------------------------------------------------------------
@dataclass
class Ack:
    commit: str
    agent: str
    n: int


@dataclass
class CrashRun:
    seed: int
    kills: int = 0
    acked: int = 0
    lost: list[str] = field(default_factory=list)
    stale_locks: Counter[str] = field(default_factory=Counter)  # lock file -> kills leaving it
    lock_sets: Counter[str] = field(default_factory=Counter)  # "a + b" -> kills leaving them
    kills_leaving_locks: int = 0
    blocked: int = 0  # kills after which the next checkin failed at once with VaultBusy
    healed: int = 0  # refused checkins that succeeded by themselves once the locks were old
    by_hand: int = 0  # ... or only once they were removed by hand
    gc_waits: int = 0  # kills after which a `git gc` started by a checkin was still running
    orphaned_leases: int = 0  # kills leaving refs/leases/<agent> without its note (cut between
    # the ref renames of one transaction: libgit2 commits a multi-ref transaction ref by ref)
    stray_objects: int = 0
    fsck_code: int = -1
    fsck_output: str = ""
    gc_code: int = -1  # `git gc` of the vault as the kills left it
    gc_output: str = ""
    fsck_after_gc_code: int = -1
    fsck_after_gc_output: str = ""
    commits_on_main: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        locks = ", ".join(f"{k} x{v}" for k, v in self.stale_locks.most_common()) or "none"
        sets = "; ".join(f"{k} x{v}" for k, v in self.lock_sets.most_common()) or "none"
        return (
            f"crash run (seed {self.seed}): {self.kills} kills in {self.seconds:.1f} s, "
            f"{self.acked} acknowledged checkins, {len(self.lost)} lost; "
            f"{self.kills_leaving_locks} kills left a stale lock (per file: {locks}; "
            f"together: {sets}); the next checkin failed at once with VaultBusy after "
            f"{self.blocked} kills, then succeeded by itself once the locks had aged "
            f"{self.healed} times and only after removing them by hand {self.by_hand} "
            f"times; {self.orphaned_leases} kills left a lease ref without its note; "
            f"a git gc was running after {self.gc_waits} kills; "
            f"{self.stray_objects} stray temp object files; {self.commits_on_main} commits "
            f"on main; git fsck --full exit {self.fsck_code}"
            + (f": {self.fsck_output}" if self.fsck_output else ", no output")
            + f"; then git gc exit {self.gc_code}"
            + (
                f" ({len(self.gc_output.splitlines())} lines of output, first: "
                f"{self.gc_output.splitlines()[0]})"
                if self.gc_output
                else ""
            )
            + ", git fsck --full exit "
            f"{self.fsck_after_gc_code}"
            + (f": {self.fsck_after_gc_output}" if self.fsck_after_gc_output else ", no output")
        )


def read_acks(path: Path) -> list[Ack]:
    if not path.exists():
        return []
    acks = []
    for line in path.read_bytes().split(b"\n"):
        if line:  # one write() per line: a kill cannot tear it, but never trust a partial one
            commit, agent, n = line.decode().split(" ")
            acks.append(Ack(commit, agent, int(n)))
    return acks


class Checker:
    """The invariants after each kill, with main's history walked incrementally."""

    def __init__(self, vault: Path, work: Path, agents: Sequence[str], run: CrashRun) -> None:
        self.vault, self.work, self.agents, self.run = vault, work, agents, run
        self.reachable: set[str] = set()
        self.head: str | None = None

    def _walk_main(self, repo: pygit2.Repository, head: str) -> None:
        if self.head is not None:
            assert head == self.head or repo.descendant_of(head, self.head), (
                f"main went backwards: {self.head} -> {head}"
            )
        walker = repo.walk(head)
        if self.head is not None:
            walker.hide(self.head)
        self.reachable.update(str(c.id) for c in walker)
        self.head = head

    def after_kill(self) -> None:
        vault = Vault.open(self.vault)
        doc = vault.read()  # main parses, with the vault's own strict codec
        head = vault.head()
        assert head is not None
        self._walk_main(vault.store.repo, head)
        self.run.orphaned_leases += any(
            vault.store.ref(lease_ref(agent)) is not None and vault.leases.get(agent) is None
            for agent in self.agents
        )
        items = doc.get("items", {})
        acks = [a for agent in self.agents for a in read_acks(self.work / f"{agent}.acks")]
        for ack in acks:
            key = f"{ack.agent}/{ack.n}"
            if items.get(key) != ack.n or ack.commit not in self.reachable:
                what = f"{key} of {ack.commit}"
                if what not in self.run.lost:
                    self.run.lost.append(what)
        self.run.acked = len(acks)

    def next_checkin(self, agent: str, round_: int) -> str:
        """Checkout + checkin as the killed agent, as its restart would do.

        This process is never killed, so its own writes skip fsync (a SIGKILL loses nothing
        that reached the page cache either way); the workers keep the vault's fsync=true.
        """
        vault = Vault.open(self.vault)
        vault.store.fsync = False
        co = vault.checkout(agent, 3600)
        doc = dict(co.document)
        checks = dict(doc.get("checks", {}))
        checks[f"{agent}/{round_}"] = round_
        doc["checks"] = checks
        r = vault.checkin(
            agent, doc, "crash-check", 1.0, "the checkin after a kill", lease=co.lease.token
        )
        assert r.commit is not None and r.commit == Vault.open(self.vault).head()
        return r.commit

    def all_of_main_parses(self) -> int:
        """Every blob of every commit on main decodes as canonical JSON; the commit count."""
        vault = Vault.open(self.vault)
        store, commits = vault.store, 0
        seen: set[pygit2.Oid] = set()
        for commit in store.repo.walk(store.ref(gitvault.git.storage.MAIN)):
            commits += 1
            for name, oid in store.key_blobs(commit.tree).items():
                if oid not in seen:
                    seen.add(oid)
                    codec.loads(store.blob(oid), name)
        return commits


def after_kill_checkins(
    vault: Path, checker: Checker, agents: Sequence[str], round_: int, run: CrashRun
) -> bool:
    """The next checkin of each killed agent; True if a lock left by the kill refused one.

    The first tries give up at the first held lock (no one else writes now, so only a lock
    left by the kill can refuse them; the default budget would wait ``staleLockSeconds``
    and then break it). For the refused, the locks are aged past staleLockSeconds (what that
    wait does) and the checkin tried again; if it is still refused they are removed by hand, as
    ``gitvault doctor --fix`` does, and it must succeed then.
    """
    refused = []
    with lock_budget(1):
        for agent in agents:
            try:
                checker.next_checkin(agent, round_)
            except VaultBusy:
                refused.append(agent)
    if not refused:
        return False
    locks = find_locks(vault)
    assert locks, f"VaultBusy with no lock left behind (seed {run.seed})"
    age(vault, locks)
    with lock_budget(QUICK_LOCK_ATTEMPTS):
        for agent in refused:
            try:
                checker.next_checkin(agent, round_)
                run.healed += 1
            except VaultBusy:
                remove(vault, find_locks(vault))
                checker.next_checkin(agent, round_)
                run.by_hand += 1
    return True


def crash_run(
    vault: Path,
    work: Path,
    launcher: Launcher,
    kills: int,
    agents: Sequence[str] = (AGENT,),
    check_every: int = 1,
) -> CrashRun:
    """Kill the checkin loop ``kills`` times (all ``agents`` at once) and check after each."""
    seed = int(os.environ.get("GITVAULT_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    run = CrashRun(seed)
    checker = Checker(vault, work, agents, run)
    started = time.monotonic()
    try:
        for round_ in range(kills):
            pids = [launcher.start(agent) for agent in agents]
            if round_ % ACK_EVERY == ACK_EVERY - 1:
                for pid in pids:
                    launcher.wait_ack(pid)
            time.sleep(rng.uniform(0.0, MAX_DELAY))
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            for pid in pids:
                how = launcher.reap(pid)
                assert how == "signal 9", (
                    f"worker {pid} ended on its own ({how}) in round {round_}, seed {seed}:\n"
                    + launcher.log()
                )
            run.kills += 1
            run.gc_waits += wait_for_gc(vault)
            locks = find_locks(vault)
            run.stale_locks.update(locks)
            if locks:
                run.lock_sets[" + ".join(locks)] += 1
                run.kills_leaving_locks += 1
            checker.after_kill()
            assert run.lost == [], f"lost acknowledged writes (seed {seed}): {run.lost}"
            if not locks and round_ % check_every:
                continue
            run.blocked += after_kill_checkins(vault, checker, agents, round_, run)
            run.gc_waits += wait_for_gc(vault)
            remove(vault, find_locks(vault))  # left, but in nobody's way: remove all the same
    finally:
        launcher.close()
    wait_for_gc(vault)
    checker.after_kill()
    assert run.lost == [], f"lost acknowledged writes (seed {seed}): {run.lost}"
    run.commits_on_main = checker.all_of_main_parses()
    run.stray_objects = len(stray_object_files(vault))
    assert find_locks(vault, objects=True) == []
    run.fsck_code, run.fsck_output = git_fsck(vault)
    gc = subprocess.run(
        ["git", f"--git-dir={vault}", "gc", "--quiet"], capture_output=True, text=True, env=_env()
    )
    run.gc_code, run.gc_output = gc.returncode, (gc.stdout + gc.stderr).strip()
    run.fsck_after_gc_code, run.fsck_after_gc_output = git_fsck(vault)
    run.seconds = time.monotonic() - started
    print("\n" + run.summary())
    return run


def assert_crash_safe(run: CrashRun, kills: int) -> None:
    assert run.kills == kills
    assert run.lost == []
    assert run.acked > 0, "no checkin was ever acknowledged: the kills come too early"
    assert run.by_hand == 0, "a lock left by a kill was not broken once stale"
    assert run.fsck_code == 0, run.fsck_output
    assert fsck_errors(run.fsck_output) == [], run.fsck_output
    assert run.gc_code == 0, run.gc_output
    assert run.fsck_after_gc_code == 0, run.fsck_after_gc_output
    assert fsck_errors(run.fsck_after_gc_output) == [], run.fsck_after_gc_output


@pytest.fixture
def durable_vault(tmp_path: Path) -> Path:
    """A new vault with the defaults (fsync on), but no automatic ``git gc``.

    A checkin past ``gitvault.gcLooseObjects`` starts a detached ``git gc``; its own ref locks
    would be live, not left by a kill, and are not the harness's to count or remove. The run
    ends with an explicit ``git gc`` of what the kills left instead.
    """
    path = tmp_path / "vault.git"
    Vault.init(path)
    subprocess.run(
        ["git", "config", "-f", str(path / "config"), "gitvault.gcLooseObjects", str(10**9)],
        check=True,
        env=_env(),
    )
    assert Vault.open(path).store.fsync
    return path


def test_killed_checkin_loop_loses_no_acknowledged_write_and_leaves_git_clean(
    durable_vault: Path, tmp_path: Path
) -> None:
    run = crash_run(durable_vault, tmp_path, ForkServer(durable_vault, tmp_path), kills=300)
    assert_crash_safe(run, 300)


@pytest.mark.stress
def test_a_thousand_kills_lose_no_acknowledged_write_and_leave_git_clean(
    durable_vault: Path, tmp_path: Path
) -> None:
    run = crash_run(durable_vault, tmp_path, ForkServer(durable_vault, tmp_path), kills=1000)
    assert_crash_safe(run, 1000)


@pytest.mark.stress
def test_two_writers_killed_while_merging_lose_no_acknowledged_write(
    durable_vault: Path, tmp_path: Path
) -> None:
    run = crash_run(
        durable_vault, tmp_path, ForkServer(durable_vault, tmp_path), kills=300, agents=("w1", "w2")
    )
    assert_crash_safe(run, 300)


@pytest.mark.stress
def test_writers_restarted_as_new_interpreters_lose_no_acknowledged_write(
    durable_vault: Path, tmp_path: Path
) -> None:
    run = crash_run(durable_vault, tmp_path, Exec(durable_vault, tmp_path), kills=200)
    assert_crash_safe(run, 200)


# -- a writer frozen inside its critical section ----------------------------------------------
def stall(vault: Path, agent: str, key: str, value: Any) -> subprocess.Popen[bytes]:
    """A child stopped (SIGSTOP) inside the transaction that moves main, its locks held."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "stall", str(vault), agent, key, json.dumps(value)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith(b"stalled"), proc.communicate()[1].decode(errors="replace")
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    return proc


def finish(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=60)
    lines = out.decode().splitlines()
    assert lines, err.decode(errors="replace")
    outcome: dict[str, Any] = json.loads(lines[-1])
    return outcome


def test_a_writer_frozen_inside_its_critical_section_keeps_its_locks(tmp_path: Path) -> None:
    """A writer stopped while holding ref locks still holds the writers' flock, so its locks
    are never broken however old they get: the next writer waits, main is never corrupted,
    and both checkins land once the frozen one resumes."""
    vault = tmp_path / "vault.git"
    Vault.init(vault)
    subprocess.run(
        ["git", "config", "-f", str(vault / "config"), "gitvault.staleLockSeconds", "1"],
        check=True,
        env=_env(),
    )
    frozen = stall(vault, "agent-a", "a_work", 1)  # holds main.lock, notes.lock
    time.sleep(1.3)  # its locks are now older than staleLockSeconds
    code = (
        "import sys; from gitvault import Vault; v = Vault.open(sys.argv[1]); "
        "co = v.checkout('agent-c'); co.document['c_work'] = 3; "
        "print(v.checkin('agent-c', co.document, 's').commit)"
    )
    later = subprocess.Popen(
        [sys.executable, "-c", code, str(vault)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    time.sleep(1.5)
    assert later.poll() is None, "the second writer broke a live (stopped) writer's locks"
    outcome = finish(frozen)
    _out, err = later.communicate(timeout=60)
    assert later.returncode == 0, err.decode(errors="replace")
    git = ["git", f"--git-dir={vault}"]
    main = subprocess.run(
        [*git, "rev-parse", "--verify", "--quiet", "refs/heads/main^{commit}"],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert main.returncode == 0, (vault / "refs/heads/main").read_bytes()
    code_, output = git_fsck(vault)
    assert code_ == 0 and fsck_errors(output) == [], output
    doc = Vault.open(vault).read()
    assert "commit" in outcome and doc["a_work"] == 1 and doc["c_work"] == 3, (outcome, doc)


# -- fencing: a paused holder comes back after its lease was taken over (issue 7, item 4) -----
@dataclass
class Holder:
    """A child that has checked out and is stopped (SIGSTOP) before its checkin."""

    proc: subprocess.Popen[bytes]
    token: int
    expires: float
    proposal: dict[str, Any]


def pause_holder(vault: Path, agent: str, ttl: int, key: str, value: Any) -> Holder:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", str(vault), agent, str(ttl), key, json.dumps(value)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdin is not None and proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.communicate()[1].decode(errors="replace")
    info = json.loads(line)
    os.kill(proc.pid, signal.SIGSTOP)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)  # returns once it is really stopped
    assert os.WIFSTOPPED(status)
    proc.stdin.write(b"go\n")  # it will check in the moment it runs again
    proc.stdin.flush()
    doc = Vault.open(vault).read(info["base"])
    return Holder(proc, int(info["token"]), float(info["expires"]), {**doc, key: value})


def resume(holder: Holder) -> tuple[int, dict[str, Any]]:
    os.kill(holder.proc.pid, signal.SIGCONT)
    out, err = holder.proc.communicate(timeout=60)
    lines = out.decode().splitlines()
    assert lines, err.decode(errors="replace")
    outcome: dict[str, Any] = json.loads(lines[-1])
    return holder.proc.returncode, outcome


def all_refs(vault: Path, conflicts: bool = True) -> str:
    """``git for-each-ref``; without ``refs/conflicts/`` (where a refusal may keep work)."""
    r = subprocess.run(
        ["git", f"--git-dir={vault}", "for-each-ref", "--format=%(refname) %(objectname)"],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )
    return "".join(
        line
        for line in r.stdout.splitlines(keepends=True)
        if conflicts or not line.startswith("refs/conflicts/")
    )


@dataclass
class Fenced:
    vault: Path
    holder: Holder
    code: int
    outcome: dict[str, Any]
    refs_before: str
    refs_after: str
    main: dict[str, Any]
    cli: subprocess.CompletedProcess[str]
    refs_after_cli: str


A_WORK = {"by": "agent-a", "note": "written before the pause"}


def _late_checkin(vault: Path, holder: Holder, agent: str, work: Path) -> Fenced:
    """Resume the holder, then try the same stale checkin through the CLI."""
    refs_before = all_refs(vault, conflicts=False)
    code, outcome = resume(holder)
    refs_after = all_refs(vault, conflicts=False)
    main = Vault.open(vault).read()
    proposal = work / "a-proposal.json"
    proposal.write_text(json.dumps(holder.proposal), encoding="utf-8")
    cli = subprocess.run(
        [
            *_cli(),
            "--vault",
            str(vault),
            "checkin",
            agent,
            str(proposal),
            "fencing-test",
            "0.5",
            "--lease",
            str(holder.token),
        ],
        capture_output=True,
        text=True,
        env=_env(),
    )
    return Fenced(
        vault,
        holder,
        code,
        outcome,
        refs_before,
        refs_after,
        main,
        cli,
        all_refs(vault, conflicts=False),
    )


@pytest.fixture(scope="module")
def taken_over(tmp_path_factory: pytest.TempPathFactory) -> Fenced:
    """A holds a 1 s lease and is paused; after it expires, B takes an exclusive lease and
    checks in; then A resumes and checks in with its old token."""
    work = tmp_path_factory.mktemp("fencing")
    vault = work / "vault.git"
    Vault.init(vault)
    holder = pause_holder(vault, "agent-a", 1, "a_work", A_WORK)
    time.sleep(max(0.0, holder.expires - time.time()) + 0.3)  # the one sleep: past A's TTL
    b = Vault.open(vault)
    co = b.checkout("agent-b", 60, exclusive=True)  # granted: A's lease has expired
    doc = dict(co.document)
    doc["b_work"] = {"by": "agent-b"}
    assert b.checkin("agent-b", doc, "fencing-test", 0.9, lease=co.lease.token).commit
    return _late_checkin(vault, holder, "agent-a", work)


def test_a_paused_holder_whose_lease_expired_and_was_taken_is_refused_with_exit_4(
    taken_over: Fenced,
) -> None:
    assert taken_over.code == 4, taken_over.outcome
    assert taken_over.outcome["error"] in {"LeaseExpired", "LeaseFenced"}, taken_over.outcome


def test_a_refused_late_checkin_leaves_main_the_leases_and_their_notes_unchanged(
    taken_over: Fenced,
) -> None:
    assert "a_work" not in taken_over.main
    assert taken_over.main["b_work"] == {"by": "agent-b"}
    assert taken_over.refs_after == taken_over.refs_before
    assert taken_over.refs_after_cli == taken_over.refs_before


def test_the_cli_refuses_the_stale_token_with_exit_4_and_one_line(taken_over: Fenced) -> None:
    assert taken_over.cli.returncode == 4, taken_over.cli.stderr
    assert taken_over.cli.stdout == ""
    lines = taken_over.cli.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gitvault: "), taken_over.cli.stderr


def kept_work(vault_path: Path) -> list[str]:
    """The refs under ``refs/conflicts/`` that hold A's paused work."""
    vault = Vault.open(vault_path)
    return [
        ref
        for ref in vault.store.refs_under("refs/conflicts/")
        if vault.read(ref).get("a_work") == A_WORK
    ]


def test_a_refused_late_checkin_keeps_the_agents_work_under_refs_conflicts(
    taken_over: Fenced,
) -> None:
    assert kept_work(taken_over.vault), f"A's work is on no ref:\n{all_refs(taken_over.vault)}"


@pytest.fixture
def renewed_meanwhile(tmp_path: Path) -> Fenced:
    """A's first process is paused; a second process of A checks out (a newer token) and checks
    in; then the first resumes and checks in with its old token. No lease expires."""
    vault = tmp_path / "vault.git"
    Vault.init(vault)
    holder = pause_holder(vault, "agent-a", 60, "a_work", A_WORK)
    v = Vault.open(vault)
    co = v.checkout("agent-a", 60)
    assert co.lease.token > holder.token
    doc = dict(co.document)
    doc["a_work"] = {"by": "agent-a", "note": "the newer process"}
    assert v.checkin("agent-a", doc, "fencing-test", 0.9, lease=co.lease.token).commit
    return _late_checkin(vault, holder, "agent-a", tmp_path)


def test_a_paused_holder_whose_lease_was_renewed_by_another_process_is_fenced(
    renewed_meanwhile: Fenced,
) -> None:
    fenced = renewed_meanwhile
    assert (fenced.code, fenced.outcome["error"]) == (4, "LeaseFenced"), fenced.outcome
    assert fenced.cli.returncode == 4, fenced.cli.stderr
    assert fenced.main["a_work"]["note"] == "the newer process"
    assert fenced.refs_after == fenced.refs_before == fenced.refs_after_cli


def test_a_fenced_late_checkin_keeps_the_agents_work_under_refs_conflicts(
    renewed_meanwhile: Fenced,
) -> None:
    assert kept_work(renewed_meanwhile.vault), (
        f"A's work is on no ref:\n{all_refs(renewed_meanwhile.vault)}"
    )
