"""Durability with ``gitvault.fsync`` on: objects reach the disk before a ref points at them, and
the ref before the write returns, at the price of two file-system flushes per write instead of
an fsync per object, directory, ref and reflog.

The system-call counts come from the real ``strace`` around a checkin in a child process (the
tests skip where strace is missing or ptrace is not allowed); the ordering is checked in-process
by watching main on disk at each flush; ``git fsck`` has the last word on the repository. A
power cut between an object's write and the flush is simulated by emptying its file and
changing the recorded boot id.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest

from gitvault import Vault
from gitvault.errors import StorageError
from gitvault.git.refs import RefTx
from gitvault.git.storage import MAIN, Identity, Store
from gitvault.git.transact import BOOT

from ..conftest import fast, git_in

SYNC_CALL = re.compile(r"^\d+\s+(fsync|fdatasync|syncfs|sync)\((\d+)<([^>]*)>")

# a child that checks in N times as "a", with the lease token it is given; "per-file" makes it
# take the path of a file system without a trustworthy syncfs
CHILD = """
import sys
import gitvault.git.storage
from gitvault import Vault

path, n, token, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if mode == "per-file":
    gitvault.git.storage.Store._batched = lambda self: False
v = Vault.open(path)
for i in range(n):
    assert v.checkin("a", {"n": i}, "test", 0.9, "durability", lease=token).commit
"""


def checked_out(path: Path, fsync: bool = True) -> tuple[Vault, int]:
    Vault.init(path)
    if not fsync:
        fast(path)
    v = Vault.open(path)
    return v, v.checkout("a").lease.token


def traced_checkins(
    path: Path, token: int, n: int, tmp: Path, mode: str = "batched"
) -> list[tuple[str, str]]:
    """``(syscall, path)`` of every fsync/fdatasync/syncfs/sync of ``n`` checkins."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    out = tmp / "strace.txt"
    r = subprocess.run(
        [
            "strace",
            "-f",
            "-y",
            "-o",
            str(out),
            "-e",
            "trace=fsync,fdatasync,syncfs,sync",
            sys.executable,
            "-c",
            CHILD,
            str(path),
            str(n),
            str(token),
            mode,
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 and "ptrace" in r.stderr:
        pytest.skip(f"strace cannot trace here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    return [(m[1], m[3]) for line in out.read_text().splitlines() if (m := SYNC_CALL.match(line))]


def batched(path: Path) -> bool:
    return Store.open(str(path))._batched()


def test_a_checkin_with_fsync_flushes_the_file_system_twice_and_fsyncs_no_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v.git"
    _v, token = checked_out(path)
    if not batched(path):
        pytest.skip("this file system keeps per-file fsync")
    calls = traced_checkins(path, token, 5, tmp_path)
    assert [c for c, _ in calls] == ["syncfs"] * 10, calls


def test_a_checkin_with_fsync_off_flushes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "v.git"
    _v, token = checked_out(path, fsync=False)
    assert traced_checkins(path, token, 5, tmp_path) == []


def test_without_syncfs_the_objects_and_the_moved_refs_are_fsynced_one_by_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v.git"
    _v, token = checked_out(path)
    calls = traced_checkins(path, token, 1, tmp_path, "per-file")
    assert {c for c, _ in calls} == {"fsync"}, calls
    synced = {p for _, p in calls}
    vault = str(path.resolve())
    for ref in (MAIN, "refs/notes/leases"):
        assert f"{vault}/{ref}" in synced, sorted(synced)
    assert f"{vault}/logs/{MAIN}" in synced and f"{vault}/refs/heads" in synced, sorted(synced)
    assert any("/objects/" in p for p in synced), sorted(synced)


class Flushes:
    """Stands in for the syncfs calls of a store: records main on disk (read by git) and the
    loose objects present at each flush."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[tuple[str, set[str]]] = []

    def __call__(self, store: Store, what: str) -> None:
        main = git_in(self.path)("rev-parse", "--verify", "--quiet", MAIN, check=False).strip()
        objects = {
            f"{d.name}{f.name}"
            for d in (self.path / "objects").iterdir()
            if len(d.name) == 2
            for f in d.iterdir()
        }
        self.seen.append((main, objects))


@pytest.fixture
def flushes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Flushes:
    rec = Flushes(tmp_path / "v.git")
    monkeypatch.setattr(Store, "_batched", lambda self: True)
    monkeypatch.setattr(Store, "_syncfs_all", lambda self, what: rec(self, what))
    return rec


def test_the_new_commit_is_flushed_before_main_moves_and_main_before_checkin_returns(
    tmp_path: Path, flushes: Flushes
) -> None:
    v, token = checked_out(tmp_path / "v.git")
    before = v.head()
    flushes.seen.clear()
    new = v.checkin("a", {"k": 1}, "test", 0.9, "ordering", lease=token).commit
    assert new is not None
    (main_at_first, objects_at_first), (main_at_second, _) = flushes.seen
    assert main_at_first == before and new in objects_at_first
    assert main_at_second == new
    assert len(flushes.seen) == 2


def test_a_transaction_that_changes_no_ref_flushes_nothing(
    tmp_path: Path, flushes: Flushes
) -> None:
    store = Vault.init(tmp_path / "v.git").store
    flushes.seen.clear()
    assert store.transact([MAIN], lambda rtx: rtx.get(MAIN), "look") is not None
    assert flushes.seen == []


def test_a_failed_transaction_flushes_nothing_and_moves_nothing(
    tmp_path: Path, flushes: Flushes
) -> None:
    store = Vault.init(tmp_path / "v.git").store
    head = store.ref(MAIN)
    assert head is not None
    tree = store.commit(head).tree_id
    oid = store.write_commit(tree, [head], Identity("t", "t@localhost"), "never lands")
    flushes.seen.clear()

    def fn(rtx: RefTx) -> None:
        rtx.set(MAIN, oid, "x")
        raise RuntimeError("the caller changed its mind")

    with pytest.raises(RuntimeError):
        store.transact([MAIN], fn, "fail")
    assert flushes.seen == [] and store.ref(MAIN) == head


def test_deleting_a_ref_flushes_once_after_the_delete(tmp_path: Path, flushes: Flushes) -> None:
    store = Vault.init(tmp_path / "v.git").store
    head = store.ref(MAIN)
    assert head is not None
    ref = "refs/conflicts/a/1"
    flushes.seen.clear()
    store.transact([ref], lambda rtx: rtx.set(ref, head, "keep"), "keep")
    assert len(flushes.seen) == 2
    flushes.seen.clear()
    store.transact([ref], lambda rtx: rtx.delete(ref), "drop")
    assert len(flushes.seen) == 1 and store.ref(ref) is None


def test_many_checkins_with_fsync_leave_git_fsck_clean(tmp_path: Path) -> None:
    path = tmp_path / "v.git"
    v, token = checked_out(path)
    assert v.store.fsync
    for i in range(40):
        assert v.checkin(
            "a", {"n": i, "tags": [str(j) for j in range(i)]}, "test", 0.9, "fsck", lease=token
        ).commit
    v.release("a")
    git = git_in(path)
    r = subprocess.run(
        ["git", "-C", str(path), "fsck", "--full", "--strict"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "error" not in r.stderr, r.stderr
    assert git("rev-list", "--count", MAIN).strip() == "41"
    assert len(git("reflog", "show", MAIN).splitlines()) == 41


def loose(path: Path, oid: str) -> Path:
    return path / "objects" / oid[:2] / oid[2:]


@pytest.fixture
def after_power_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A vault whose newest blob was written but never flushed when the power went: its file
    is empty, and the machine has rebooted since (another boot id in gitvault-boot)."""
    if not Path("/proc/sys/kernel/random/boot_id").exists():
        pytest.skip("no boot id on this system")
    monkeypatch.setattr(Store, "_batched", lambda self: True)
    path = tmp_path / "v.git"
    store = Vault.init(path).store
    oid = str(store.write_blob(b'{"lost": true}\n'))
    loose(path, oid).chmod(0o644)
    loose(path, oid).write_bytes(b"")
    (path / BOOT).write_text("an-earlier-boot\n")
    return path, oid


def test_the_first_store_after_a_reboot_deletes_empty_objects_so_they_are_written_again(
    after_power_cut: tuple[Path, str],
) -> None:
    path, oid = after_power_cut
    store = Store.open(str(path))
    assert not loose(path, oid).exists()
    assert str(store.write_blob(b'{"lost": true}\n')) == oid
    assert store.blob(pygit2.Oid(hex=oid)) == b'{"lost": true}\n'
    r = subprocess.run(["git", "-C", str(path), "fsck", "--full"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_empty_objects_are_only_looked_for_once_per_boot(after_power_cut: tuple[Path, str]) -> None:
    path, oid = after_power_cut
    Store.open(str(path))
    loose(path, oid).write_bytes(b"")  # cannot happen without a reboot: proves the scan ran once
    Store.open(str(path))
    assert loose(path, oid).exists()


def test_an_object_write_raced_by_gits_prune_is_retried(tmp_path: Path) -> None:
    """git gc deletes empty objects/xx/ folders; libgit2's rename then fails with ENOENT."""
    store = Store.create(str(tmp_path / "v.git"))
    calls = []

    def write() -> pygit2.Oid:
        calls.append(1)
        if len(calls) == 1:
            raise pygit2.GitError(
                "failed to rename lockfile to 'objects/cc/fa56': No such file or directory"
            )
        return store.repo.create_blob(b"x")

    assert store.objects(write) == pygit2.hash(b"x") and len(calls) == 2

    def broken() -> pygit2.Oid:
        raise pygit2.GitError("disk quota exceeded")

    with pytest.raises(StorageError, match="quota"):
        store.objects(broken)
