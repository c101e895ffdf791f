"""``gitvault integrate``: fold pushed agent branches into main where the host runs no hooks.

Some hosts (a managed GitHub/GitLab/Gitea, a plain ``git daemon``) accept pushes but will not
run gitvault's pre-receive and post-receive. There an integrator does their work from the
outside, in rounds:

1. fetch the vault's branches and kept conflicts into a local mirror;
2. for each ``refs/heads/agents/<agent>`` whose tip is neither on main nor already kept as a
   conflict, check every new commit exactly as pre-receive would (canonical JSON, valid keys,
   schemas, ``Agent-Id`` = the branch's agent, ``Source``; no change of the access file,
   since nobody is authenticated here), then fold it with :meth:`Vault.fold_branch`, the
   engine post-receive uses;
3. push the new main and any new ``refs/conflicts/*`` back in one atomic push that expects
   main where it was fetched (``--force-with-lease``): if anyone moved main meanwhile, the
   whole push is refused and the next round starts again from the new main.

What it cannot do is know *who* pushed: the host's own branch protection must keep user ``U``
to the branches ``agents/U*`` (see docs/hosting.md). Leases need the hooks, so agents on such
a host push plain commits.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pygit2
from pygit2.enums import SortMode

from gitvault import hooks
from gitvault.api.remote import cache_path
from gitvault.api.vault import Vault
from gitvault.errors import ConflictError, GitVaultError, InputError, VaultNotFound
from gitvault.git.storage import MAIN, Store
from gitvault.model import access
from gitvault.model.branches import AGENTS, agent_of
from gitvault.model.conflicts import PREFIX as CONFLICTS

FETCH = [
    "+refs/heads/*:refs/heads/*",
    "+refs/conflicts/*:refs/conflicts/*",
    "+refs/notes/*:refs/notes/*",
]


@dataclass
class Outcome:
    ref: str
    status: str  # merged | conflict | refused | pending (main moved under us)
    detail: str = ""
    commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "status": self.status,
            "detail": self.detail,
            "commit": self.commit,
        }


@dataclass
class Integrator:
    """One vault behind ``url``, integrated from a local mirror in ``workdir``."""

    url: str
    workdir: str | None = None
    on_conflict: str | None = None
    refused: set[str] = field(default_factory=set)  # tips already reported as refused

    def __post_init__(self) -> None:
        self.path = cache_path(self.url + "#integrate", self.workdir)
        if not os.path.isdir(self.path):
            _git("init", "--quiet", "--bare", self.path)
            _git("-C", self.path, "config", "gitvault.fsync", "false")  # a cache, refetched

    def round(self) -> list[Outcome]:
        """One pass: fetch, check and fold every waiting branch, push main back."""
        r = subprocess.run(
            ["git", "-C", self.path, "fetch", "--quiet", "--prune", self.url, *FETCH],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise VaultNotFound(self.url)
        vault = Vault(Store.open(self.path))
        main = vault.store.ref(MAIN)
        if main is None:
            raise InputError(f"{self.url} has no main branch; is it a gitvault?")
        out = [
            o
            for ref in sorted(vault.store.refs_under(AGENTS))
            if (o := self._one(vault, ref)) is not None
        ]
        if any(o.status in ("merged", "conflict") for o in out):
            self._push_back(vault, main, out)
        return out

    def _one(self, vault: Vault, ref: str) -> Outcome | None:
        store = vault.store
        tip, main = store.ref(ref), store.ref(MAIN)
        agent = agent_of(ref)
        if tip is None or main is None or agent is None:
            return None
        if tip == main or store.repo.descendant_of(main, tip) or str(tip) in self.refused:
            return None
        if tip in store.refs_under(CONFLICTS).values():
            return None  # kept in an earlier round; `gitvault resolve` finishes it
        problems = [
            f"{str(c.id)[:12]}: {p}"
            for c in _new(store, tip, main)
            for p in _problems(store, c, agent)
        ]
        if problems:
            self.refused.add(str(tip))
            return Outcome(ref, "refused", "; ".join(problems))
        try:
            r = vault.fold_branch(ref, self.on_conflict)
        except ConflictError as e:
            return Outcome(ref, "conflict", str(e), str(e.report.get("id", "")))
        except GitVaultError as e:
            self.refused.add(str(tip))
            return Outcome(ref, "refused", str(e))
        return Outcome(ref, "merged", ", ".join(r.changed), r.commit)

    def _push_back(self, vault: Vault, fetched: pygit2.Oid, out: list[Outcome]) -> None:
        main = vault.store.ref(MAIN)
        kept = [ref for ref in vault.store.refs_under(CONFLICTS)]
        args = [
            "git",
            "-C",
            self.path,
            "push",
            "--quiet",
            "--atomic",
            "--porcelain",
            f"--force-with-lease=refs/heads/main:{fetched}",
            self.url,
            f"{main}:refs/heads/main",
            *[f"{r}:{r}" for r in kept],
        ]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:  # main moved, or the host refused: nothing landed; next round
            for o in out:
                if o.status in ("merged", "conflict"):
                    o.status, o.detail = "pending", f"push back failed: {_last(r.stderr)}"


def _git(*args: str) -> None:
    r = subprocess.run(["git", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise InputError(f"git {args[0]} failed: {_last(r.stderr)}")


def _last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _new(store: Store, tip: pygit2.Oid, main: pygit2.Oid) -> Iterator[pygit2.Commit]:
    walker = store.repo.walk(tip, SortMode.TOPOLOGICAL)
    walker.hide(main)
    yield from walker


def _problems(store: Store, commit: pygit2.Commit, agent: str) -> list[str]:
    found = hooks.check_commit(store, commit, agent)
    if access.changed_by(store, commit):
        found.append(
            f"changes {access.ACCESS_PATH}: on a host without gitvault's hooks nobody "
            "is authenticated; change the rules on the vault's machine"
        )
    return found


def watch(
    integrator: Integrator,
    interval: float,
    rounds: int | None,
    say: Callable[[Outcome], None],
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run rounds until ``rounds`` are done (None: forever); returns how many branches merged."""
    merged, done = 0, 0
    while rounds is None or done < rounds:
        for o in integrator.round():
            merged += o.status == "merged"
            say(o)
        done += 1
        if rounds is None or done < rounds:
            sleep(interval)
    return merged


def text(o: Outcome) -> str:
    if o.status == "merged":
        return f"merged {o.ref} into main as {o.commit} ({o.detail or 'no key changed'})"
    if o.status == "conflict":
        return f"{o.ref}: conflict, kept as {o.commit}: {o.detail}"
    return f"{o.ref} {o.status}: {o.detail}"
