"""Working copies for agents elsewhere: clone, edit, commit with trailers, push a branch.

``gitvault clone`` is ``git clone`` plus what makes a correct push likely: the agent id in the
clone's config, pushes going to ``refs/heads/agents/<agent>``, a commit template listing the
trailers, and client hooks that add the trailers an agent may omit and refuse non-canonical
JSON before it ever reaches the vault (whose own hooks check again).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import codec, hooks
from .errors import (
    ConflictError,
    GitVaultError,
    InputError,
    VaultNotFound,
)
from .leases import Lease
from .provenance import (
    Provenance,
    check_agent,
    escape_agent,
    identity,
    parse_confidence,
)
from .storage import Store
from .vault import CheckinResult, Checkout, Vault

TEMPLATE = "\n".join([
    "", "",
    "# Say what changed above. Source is required; Agent-Id, Lease and Base are added for you.",
    "Source: ", "Confidence: 0.5", "Justification: ", "",
])


def _git(*args: str) -> str:
    r = subprocess.run(["git", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise InputError(f"git {args[0]} failed: {r.stderr.strip().splitlines()[-1:]}")
    return r.stdout


def clone(url: str, dest: str, agent: str) -> Path:
    """Clone the vault at ``url`` into ``dest`` set up for ``agent``."""
    check_agent(agent)
    if os.path.exists(dest) and os.listdir(dest):
        raise InputError(f"{dest} exists and is not empty")
    _git("clone", "--quiet", url, dest)
    git_dir = Path(dest) / ".git"
    who = identity(agent)  # the author a checkin of this agent would have
    for key, value in (("gitvault.agent", agent), ("user.name", who.name),
                       ("user.email", who.email),
                       ("remote.origin.push", f"HEAD:{hooks.branch_for(agent)}"),
                       ("commit.template", str(git_dir / "gitvault-template"))):
        _git("-C", dest, "config", key, value)
    (git_dir / "gitvault-template").write_text(TEMPLATE, encoding="utf-8")
    hooks.install(str(git_dir / "hooks"), hooks.CLIENT_HOOKS)
    return Path(dest)


# -- a vault behind a git URL ----------------------------------------------------------------
def is_remote(spec: str) -> bool:
    """A git URL (``file://``, ``git://``, ``ssh://``, ``user@host:path``) rather than a path."""
    return "://" in spec or bool(re.match(r"^[^/\s:]+@[^/\s:]+:", spec))


def cache_path(url: str, workdir: str | None = None) -> str:
    base = workdir or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gitvault")
    return os.path.join(base, hashlib.sha256(url.encode()).hexdigest()[:16] + ".git")


class RemoteError(GitVaultError):
    """An error the vault's hooks reported; carries their exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_REPORT = re.compile(r"gitvault-report: (\{.*\})")
_FETCH = ["+refs/heads/*:refs/heads/*", "+refs/leases/*:refs/leases/*",
          "+refs/notes/*:refs/notes/*", "+refs/conflicts/*:refs/conflicts/*"]


class RemoteVault(Vault):
    """A vault reached through git: reads from a local cache clone, writes by pushing.

    Checkins push the agent's commit to ``refs/heads/agents/<agent>`` with the push option
    ``lease=<token>``; lease and conflict operations push a request ref that the vault's
    post-receive hook carries out (only the hooks write ``refs/leases/*``). The hooks' verdict
    comes back as a ``gitvault-report:`` line, mapped to the same results and errors as a
    local vault.
    """

    def __init__(self, url: str, workdir: str | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        path = cache_path(url, workdir)
        if not os.path.isdir(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _git("init", "--quiet", "--bare", path)
        self.url = url
        self._fetch(path)
        super().__init__(Store.open(path), clock)

    def _fetch(self, path: str | None = None) -> None:
        r = subprocess.run(["git", "-C", path or self.path, "fetch", "--quiet", "--prune",
                            self.url, *_FETCH], capture_output=True, text=True)
        if r.returncode != 0:
            raise VaultNotFound(self.url)

    def _push(self, src: str, ref: str, options: dict[str, str]) -> dict[str, Any]:
        args = ["git", "-C", self.path, "push", "--quiet", "--porcelain", self.url,
                f"+{src}:{ref}"]
        for k, v in options.items():
            args += ["-o", f"{k}={v}"]
        r = subprocess.run(args, capture_output=True, text=True)
        reports = _REPORT.findall(r.stderr)
        self._fetch()
        if not reports:
            raise RemoteError(f"push to {self.url} failed: {r.stderr.strip()[-300:]}", 1)
        report: dict[str, Any] = json.loads(reports[-1])
        code = int(report.get("exit_code", 0))
        if code == 3:
            raise ConflictError(report.get("message", "conflict"), report)
        if code:
            raise RemoteError(report.get("message", "refused by the vault"), code)
        return report

    def _request(self, op: str, **options: str) -> dict[str, Any]:
        main = self._main()
        ref = f"{hooks.REQUESTS}{uuid.uuid4().hex}"
        return self._push(str(main), ref, {"op": op, **options})

    def checkout(self, agent: str, ttl: int | None = None, exclusive: bool = False,
                 wait: float | None = None,
                 on_wait: Callable[[Any, int], None] | None = None) -> Checkout:
        """The vault's post-receive hook takes the lease; with ``wait`` it waits there, in the
        vault's queue, while this push waits for its answer (no polling over the wire)."""
        check_agent(agent)
        extra = {"wait": repr(float(wait))} if wait is not None else {}
        self._request("checkout", agent=escape_agent(agent), ttl=str(ttl or ""),
                      exclusive="1" if exclusive else "0", **extra)
        lease = self.leases.get(agent)
        if lease is None:
            raise RemoteError(f"the vault granted no lease to {agent!r}", 4)
        return Checkout(self.read(lease.base), lease)

    def release(self, agent: str) -> Lease | None:
        held = self.leases.get(check_agent(agent))
        report = self._request("release", agent=escape_agent(agent))
        return held if report.get("released") else None

    def checkin(self, agent: str, document: Mapping[str, Any], source: str,
                confidence: float | str | None = None, justification: str = "",
                lease: int | None = None, on_conflict: str | None = None) -> CheckinResult:
        prov = Provenance(agent, source, parse_confidence(confidence), justification).check()
        files = codec.encode_document(document, self.limits)
        held = self._held(agent, lease)
        changed, proposal = self._propose(agent, held, files, prov)
        if proposal is None:
            return CheckinResult(None, [], held)
        options = {"lease": str(held.token)}
        if on_conflict:
            options["on-conflict"] = on_conflict
        report = self._push(str(proposal.id), hooks.branch_for(agent), options)
        return CheckinResult(report.get("commit"), changed, self.leases.get(agent),
                             bool(report.get("merged")), dict(report.get("strategy") or {}))

    def drop_conflict(self, conflict_id: str) -> str:
        return str(self._request("drop", id=conflict_id)["dropped"])

    def resolve(self, conflict_id: str, take: str | None = None,
                picks: Mapping[str, str] | None = None, document: Mapping[str, Any] | None = None,
                agent: str | None = None) -> CheckinResult:
        if document is not None:
            raise InputError("resolving with a whole document is not supported on a remote "
                             "vault; use --take ours|theirs and --pick")
        options = {"id": conflict_id, "take": take or "", "picks": json.dumps(dict(picks or {}))}
        if agent:
            options["agent"] = escape_agent(agent)
        r = self._request("resolve", **options)
        return CheckinResult(r.get("commit"), list(r.get("changed") or []), None, True)

    def install_hooks(self) -> list[str]:
        raise InputError("install hooks on the machine that holds the vault")
