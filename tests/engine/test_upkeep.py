"""Reliability: stale locks, doctor, gc, expired leases keep their work, disk errors."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pygit2
import pytest

from gitvault import Vault
from gitvault.errors import LeaseExpired, StorageError

from ..conftest import Cli, Git


def old_lock(vault: Vault, ref: str, age: float = 3600) -> Path:
    path = Path(vault.path) / (ref + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_a_stale_lock_left_by_a_killed_writer_is_broken(vault: Vault) -> None:
    lock = old_lock(vault, "refs/heads/main")
    with vault.lease("a") as co:
        co.doc["patterns"]["x"] = 1
        r = co.commit(source="s")
    assert r.commit == vault.head() and not lock.exists()


def test_a_live_writers_lock_is_waited_for_never_broken(vault: Vault) -> None:
    lock = Path(vault.path) / "refs/heads/main.lock"
    lock.write_text("")
    inode = lock.stat().st_ino
    seen: list[int] = []

    def holder() -> None:
        time.sleep(0.5)  # the "live writer" holds the lock for half a second
        seen.append(lock.stat().st_ino)
        lock.unlink()

    t = threading.Thread(target=holder)
    co = vault.checkout("a")
    co.document["patterns"]["x"] = 1
    t.start()
    r = vault.checkin("a", co.document, "s")
    t.join()
    assert seen == [inode] and r.commit == vault.head()


def test_doctor_reports_and_fixes_stale_locks_orphans_and_hooks(
    vault: Vault, cli: Cli, git: Git
) -> None:
    vault.checkout("a")
    old_lock(vault, "refs/notes/leases")
    blob = subprocess.run(
        ["git", "-C", vault.path, "hash-object", "-w", "--stdin"],
        input="orphan",
        capture_output=True,
        text=True,
    ).stdout.strip()
    git("update-ref", "refs/leases/ghost", blob)
    (Path(vault.path) / "hooks" / "pre-receive").unlink()
    r = cli("doctor", "--json")
    assert r.exit_code == 1, r.output
    bad = {c["check"] for c in json.loads(r.stdout)["checks"] if not c["ok"]}
    assert bad == {"stale-locks", "lease-notes", "hooks"}
    r = cli("doctor", "--fix")
    assert r.exit_code == 0, r.output
    r = cli("doctor")
    assert r.exit_code == 0, r.output
    assert git("for-each-ref", "--format=%(refname)", "refs/leases/").split() == ["refs/leases/a"]


def test_gc_prunes_expired_leases_and_packs(vault_path: Path, git: Git, cli: Cli) -> None:
    clock = [1_900_000_000.0]
    Vault.init(vault_path)
    v = Vault.open(vault_path, clock=lambda: clock[0])
    for i in range(5):
        with v.lease(f"w{i}") as co:
            co.doc[f"k{i}"] = i
            co.commit(source="s")
    v.checkout("old", 10)
    v.checkout("fresh", 1000)
    clock[0] += 100
    r = v.gc()
    assert r["pruned_leases"] == ["old"] and r["loose_after"] < r["loose_before"]
    assert git("for-each-ref", "--format=%(refname)", "refs/leases/").split() == [
        "refs/leases/fresh"
    ]
    git("fsck", "--full")
    assert v.read() == {f"k{i}": i for i in range(5)}


def test_checkins_start_gc_past_the_loose_object_threshold(vault: Vault, git: Git) -> None:
    git("config", "gitvault.gcLooseObjects", "1")
    v = Vault.open(vault.path)
    objects = Path(vault.path) / "objects"
    for i in range(40):
        with v.lease("a") as co:
            co.doc["patterns"][f"p{i}"] = i
            co.commit(source="s")
        if list((objects / "pack").glob("*.pack")):
            break
    deadline = time.time() + 30
    while not list((objects / "pack").glob("*.pack")) and time.time() < deadline:
        time.sleep(0.1)  # git gc --auto runs detached
    assert list((objects / "pack").glob("*.pack"))


def test_an_expired_lease_refuses_but_keeps_the_work(vault_path: Path, git: Git) -> None:
    clock = [1_900_000_000.0]
    Vault.init(vault_path)
    v = Vault.open(vault_path, clock=lambda: clock[0])
    co = v.checkout("a", 10)
    head = v.head()
    clock[0] += 11
    co.document["notes"] = "written while paused"
    with pytest.raises(LeaseExpired) as e:
        v.checkin("a", co.document, "s")
    assert e.value.exit_code == 4 and e.value.kept == "a/1" and v.head() == head
    kept = git("rev-parse", "refs/conflicts/a/1").strip()
    assert json.loads(git("show", f"{kept}:notes.json")) == "written while paused"
    v.resolve("a/1", take="theirs")
    assert v.read()["notes"] == "written while paused"


class _FullDisk:
    """The vault's repository, but every object write fails as on a full disk."""

    def __init__(self, repo: pygit2.Repository, after: int) -> None:
        self._repo, self._left = repo, after

    def _spend(self) -> None:
        if self._left <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._left -= 1

    def create_blob(self, data: bytes) -> pygit2.Oid:
        self._spend()
        return self._repo.create_blob(data)

    def create_commit(self, *args: Any) -> pygit2.Oid:
        self._spend()
        return self._repo.create_commit(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repo, name)

    def __getitem__(self, key: Any) -> Any:
        return self._repo[key]


@pytest.mark.parametrize("after", [0, 1, 2])
def test_a_full_disk_gives_a_typed_error_and_main_stays(
    vault: Vault, after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    co = vault.checkout("a")
    co.document["patterns"]["x"] = {"big": "y" * 1000}
    co.document["bugs"].append({"id": "B-9"})
    head = vault.head()
    monkeypatch.setattr(vault.store, "repo", _FullDisk(vault.store.repo, after))
    with pytest.raises(StorageError, match="No space left"):
        vault.checkin("a", co.document, "s")
    monkeypatch.undo()
    assert vault.head() == head
    assert vault.checkin("a", co.document, "s").commit == vault.head()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, where the machine lets us mount one (root in a sandbox)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_really_full_disk_keeps_main_good_and_recovers(tiny_disk: Path) -> None:
    v = Vault.init(tiny_disk / "v.git")
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * 400_000)  # what the user will delete to free space
    good = v.head()
    co = v.checkout("a")
    failed = False
    for i in range(200):
        co.document[f"k{i}"] = ["x" * 100 + str(j) for j in range(i * 20)]
        try:
            good = v.checkin("a", co.document, "s").commit
        except StorageError as e:
            assert e.exit_code == 1
            failed = True
            break
    assert failed, "the disk never filled"
    assert v.head() == good
    Vault.open(v.path).read()  # main is still valid JSON
    filler.unlink()
    co = v.checkout("a")
    co.document.clear()
    co.document["small"] = 1
    assert v.checkin("a", co.document, "s").commit == v.head()
    r = subprocess.run(["git", "-C", v.path, "fsck", "--full"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
