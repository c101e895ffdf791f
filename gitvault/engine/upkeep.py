"""Keeping a vault healthy: ``doctor`` (check, and with ``--fix`` repair what is safe) and ``gc``.

libgit2 has no gc, so packing goes through the git binary. Checkins estimate the loose-object
count the way git does (one fan-out folder times 256) and start a detached ``git gc``
past ``gitvault.gcLooseObjects``, so 100k checkins do not leave 400k loose files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitvault.core import codec
from gitvault.engine.install import install_server
from gitvault.engine.parts import VaultParts as Vault
from gitvault.errors import CodecError, StorageError
from gitvault.git.refs import RefTx
from gitvault.git.storage import MAIN
from gitvault.history import pathindex
from gitvault.model import schemas, settings
from gitvault.model.leases import NOTES, PREFIX

if TYPE_CHECKING:
    from gitvault.git.storage import Store


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    fixed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "fixed": self.fixed}


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok or c.fixed for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_json() for c in self.checks]}


def loose_objects(path: str, exact: bool = False) -> int:
    """Loose objects in the vault; estimated from 4 of the 256 fan-out folders unless exact."""
    objects = os.path.join(path, "objects")
    if not exact:
        sample = 0
        for d in ("00", "40", "80", "c0"):
            try:
                sample += len(os.listdir(os.path.join(objects, d)))
            except FileNotFoundError:
                continue
        return sample * 64
    return sum(
        len(os.listdir(os.path.join(objects, d)))
        for d in os.listdir(objects)
        if len(d) == 2 and os.path.isdir(os.path.join(objects, d))
    )


GC_ARGS = ("-c", "gc.writeCommitGraph=true", "gc", "--quiet")
GC_STAMP = "gitvault-gc"  # touched by the checkin that last started a gc
GC_INTERVAL = 10.0  # seconds between two gcs that checkins start


def maybe_gc(store: Store) -> bool:
    """Start a detached ``git gc`` when the loose-object estimate passes the threshold.

    At most once in :data:`GC_INTERVAL` seconds, and not while a gc runs. A gc of a large
    vault takes seconds, during which every checkin found the loose objects still there and
    started another ``git`` (refused by gc.pid, but forked and exec'd: 756 of them in 10,000
    fast checkins, each slowing its checkin and the gc); and recent unreachable objects, which
    gc keeps for two weeks, can hold the count above the threshold after a gc too.
    """
    limit = int(settings.value(store, "gcLooseObjects"))
    if loose_objects(store.path, exact=limit < 256) <= limit:
        return False
    now = time.time()
    for name, fresh in ((GC_STAMP, GC_INTERVAL), ("gc.pid", 3600.0)):
        try:
            if now - os.stat(os.path.join(store.path, name)).st_mtime < fresh:
                return False
        except FileNotFoundError:
            continue
    with open(os.path.join(store.path, GC_STAMP), "w", encoding="utf-8") as stamp:
        stamp.write(f"{os.getpid()}\n")
    # git gc itself refuses to run twice at once (gc.pid), so concurrent checkins are safe
    subprocess.Popen(
        ["git", "-C", store.path, *GC_ARGS],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return True


def prune_expired_leases(vault: Vault) -> list[str]:
    """Drop leases that expired (they never count as held); returns the agents."""
    now = vault.clock()
    return [
        x.agent
        for x in vault.leases.all()
        if not x.live(now) and vault.leases.release_if_expired(x.agent, x.token)
    ]


def gc(vault: Vault) -> dict[str, Any]:
    """Prune expired leases, then pack objects and refs with ``git gc``."""
    before = loose_objects(vault.path, exact=True)
    pruned = prune_expired_leases(vault)
    r = subprocess.run(["git", "-C", vault.path, *GC_ARGS], capture_output=True, text=True)
    if r.returncode != 0:
        raise StorageError(f"git gc failed: {r.stderr.strip()}")
    from gitvault.history.wordindex import prune

    head = vault.store.ref(MAIN)
    indexed = pathindex.build(vault.store, head) if head is not None else 0
    return {
        "pruned_leases": pruned,
        "path_index_commits": indexed,
        "loose_before": before,
        "loose_after": loose_objects(vault.path, exact=True),
        "pruned_word_index": prune(vault.store),
    }


def doctor(vault: Vault, fix: bool = False) -> Report:
    """Check refs, main's JSON, leases, conflicts, hooks, locks and loose objects."""
    store, rep = vault.store, Report()
    head = store.ref(MAIN)
    rep.checks.append(Check("main", head is not None, str(head) if head else "no main branch"))
    if head is not None:
        bad = []
        tree = store.commit(head).tree
        for name, oid in store.key_blobs(tree).items():
            try:
                data = store.blob(oid)
                if codec.canonical(data, name) != data:
                    bad.append(f"{name} not canonical")
            except CodecError as e:
                bad.append(str(e))
        bad += [
            f"{p['pointer']}: {p['message']}"
            for p in schemas.validate_tree(store, tree, [k[:-5] for k in store.key_blobs(tree)])
        ]
        rep.checks.append(Check("main-json", not bad, "; ".join(bad) or "valid and canonical"))
    locks = store.stale_locks()
    fixed_locks = fix and all(store.break_stale_lock(name) for name in locks)
    rep.checks.append(
        Check("stale-locks", not locks, ", ".join(locks) or "none", bool(locks and fixed_locks))
    )
    _lease_checks(vault, rep, fix)
    conflicts = vault.conflicts.all()
    rep.checks.append(Check("conflicts", True, f"{len(conflicts)} pending"))
    hooks_ok, detail = _hooks_ok(store.path)
    fixed_hooks = False
    if not hooks_ok and fix:
        install_server(store)
        fixed_hooks = True
    rep.checks.append(Check("hooks", hooks_ok, detail, fixed_hooks))
    loose = loose_objects(store.path, exact=True)
    limit = int(settings.value(store, "gcLooseObjects"))
    rep.checks.append(
        Check(
            "loose-objects", loose <= limit, f"{loose} loose (gc past {limit}; run `gitvault gc`)"
        )
    )
    return rep


def _hooks_ok(path: str) -> tuple[bool, str]:
    for name in ("pre-receive", "post-receive"):
        hook = os.path.join(path, "hooks", name)
        if not os.access(hook, os.X_OK):
            return False, f"{name} missing; run `gitvault install-hooks`"
        text = Path(hook).read_text(encoding="utf-8")
        python = text.split("exec '", 1)[-1].split("'", 1)[0]
        if "gitvault hook" not in text or not os.access(python, os.X_OK):
            return False, f"{name} does not run an installed gitvault ({python})"
    return True, f"installed ({sys.executable})"


def _lease_checks(vault: Vault, rep: Report, fix: bool) -> None:
    store = vault.store
    now = vault.clock()
    leases = vault.leases.all()
    expired = [x.agent for x in leases if not x.live(now)]
    rep.checks.append(
        Check(
            "leases",
            True,
            f"{len(leases) - len(expired)} live, "
            f"{len(expired)} expired (`gitvault gc` prunes expired)",
        )
    )
    refs = store.refs_under(PREFIX)
    notes_tip = store.ref(NOTES)
    noted = {e.name for e in store.commit(notes_tip).tree} if notes_tip else set()
    orphans = sorted(r for r, t in refs.items() if str(t) not in noted)
    fixed = False
    if orphans and fix:

        def drop(rtx: RefTx) -> None:
            for r in orphans:
                if rtx.get(r) == refs[r]:
                    rtx.delete(r)

        store.transact([NOTES, *orphans], drop, "doctor: drop orphaned lease refs")
        fixed = True
    rep.checks.append(
        Check(
            "lease-notes",
            not orphans,
            ", ".join(orphans) + " have no note" if orphans else "every lease ref has its note",
            fixed,
        )
    )
