"""Working copies for agents elsewhere: clone, edit, commit with trailers, push a branch.

``gitvault clone`` is ``git clone`` plus what makes a correct push likely: the agent id in the
clone's config, pushes going to ``refs/heads/agents/<agent>``, a commit template listing the
trailers, and client hooks that add the trailers an agent may omit and refuse non-canonical
JSON before it ever reaches the vault (whose own hooks check again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from gitvault.api.vault import CheckinResult, Checkout, Session, Status, Vault
from gitvault.core import codec
from gitvault.core.codec import Document
from gitvault.engine.install import CLIENT_HOOKS, install
from gitvault.errors import (
    ConflictError,
    InputError,
    NotAllowed,
    RemoteError,
    RemoteUnsupported,
    VaultNotFound,
)
from gitvault.git.storage import MAIN, Store
from gitvault.model.branches import REQUESTS, branch_for
from gitvault.model.leases import Lease
from gitvault.model.provenance import (
    Provenance,
    check_agent,
    escape_agent,
    identity,
    parse_confidence,
)

TEMPLATE = "\n".join(
    [
        "",
        "",
        "# Say what changed above. Source is required; Agent-Id, Lease and Base are added for you.",
        "Source: ",
        "Confidence: 0.5",
        "Justification: ",
        "",
    ]
)


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
    for key, value in (
        ("gitvault.agent", agent),
        ("user.name", who.name),
        ("user.email", who.email),
        ("remote.origin.push", f"HEAD:{branch_for(agent)}"),
        ("commit.template", str(git_dir / "gitvault-template")),
    ):
        _git("-C", dest, "config", key, value)
    (git_dir / "gitvault-template").write_text(TEMPLATE, encoding="utf-8")
    install(str(git_dir / "hooks"), CLIENT_HOOKS)
    return Path(dest)


# -- a vault behind a git URL ----------------------------------------------------------------
def is_remote(spec: str) -> bool:
    """A git URL (``file://``, ``git://``, ``ssh://``, ``user@host:path``) rather than a path."""
    return "://" in spec or bool(re.match(r"^[^/\s:]+@[^/\s:]+:", spec))


def cache_path(url: str, workdir: str | None = None) -> str:
    base = workdir or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gitvault"
    )
    return os.path.join(base, hashlib.sha256(url.encode()).hexdigest()[:16] + ".git")


_REPORT = re.compile(r"gitvault-report: (\{.*\})")
_FETCH = [
    "+refs/heads/*:refs/heads/*",
    "+refs/leases/*:refs/leases/*",
    "+refs/notes/*:refs/notes/*",
    "+refs/conflicts/*:refs/conflicts/*",
]


class RemoteVault:
    """A vault reached through git: reads from a local cache clone, writes by pushing.

    It implements :mod:`gitvault.api.backend`'s interface without inheriting from
    :class:`Vault`: reads go to ``self.cache`` (a Vault over the fetched clone), and every
    write is either carried out by the vault's hooks or refused with
    :class:`RemoteUnsupported` before anything is written. Checkins push the agent's commit to
    ``refs/heads/agents/<agent>`` with the push option ``lease=<token>``; lease and conflict
    operations push a request ref that post-receive carries out (only the hooks write
    ``refs/leases/*``). The hooks' verdict comes back as a ``gitvault-report:`` line, mapped to
    the same results and errors as a local vault.
    """

    def __init__(
        self, url: str, workdir: str | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        path = cache_path(url, workdir)
        if not os.path.isdir(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _git("init", "--quiet", "--bare", path)
        self.url = url
        self._fetch(path)
        self.cache = Vault(Store.open(path), clock)

    @property
    def path(self) -> str:
        return self.cache.path

    def _fetch(self, path: str | None = None) -> None:
        r = subprocess.run(
            [
                "git",
                "-C",
                path or self.cache.path,
                "fetch",
                "--quiet",
                "--prune",
                self.url,
                *_FETCH,
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise VaultNotFound(self.url)

    def _push(
        self, src: str, ref: str, options: dict[str, str], force: bool = True
    ) -> dict[str, Any]:
        args = [
            "git",
            "-C",
            self.cache.path,
            "push",
            "--quiet",
            "--porcelain",
            self.url,
            f"{'+' if force else ''}{src}:{ref}",
        ]
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
        if code == 5:
            details = {
                k: v
                for k, v in report.items()
                if k not in ("error", "message", "exit_code", "rule")
            }
            raise NotAllowed(
                report.get("message", "not allowed by the vault"),
                str(report.get("rule", "")),
                **details,
            )
        if code:
            raise RemoteError(report.get("message", "refused by the vault"), code)
        return report

    def _request(self, op: str, **options: str) -> dict[str, Any]:
        main = self.cache.head()
        if main is None:
            raise VaultNotFound(self.url)
        ref = f"{REQUESTS}{uuid.uuid4().hex}"
        return self._push(str(main), ref, {"op": op, **options})

    def checkout(
        self,
        agent: str,
        ttl: int | None = None,
        exclusive: bool = False,
        wait: float | None = None,
        on_wait: Callable[[Any, int], None] | None = None,
    ) -> Checkout:
        """The vault's post-receive hook takes the lease; with ``wait`` it waits there, in the
        vault's queue, while this push waits for its answer (no polling over the wire)."""
        check_agent(agent)
        extra = {"wait": repr(float(wait))} if wait is not None else {}
        self._request(
            "checkout",
            agent=escape_agent(agent),
            ttl=str(ttl or ""),
            exclusive="1" if exclusive else "0",
            **extra,
        )
        lease = self.cache.leases.get(agent)
        if lease is None:
            raise RemoteError(f"the vault granted no lease to {agent!r}", 4)
        return Checkout(self.cache.read(lease.base), lease)

    @contextlib.contextmanager
    def lease(
        self, agent: str, ttl: int | None = None, exclusive: bool = False
    ) -> Iterator[Session]:
        """As :meth:`Vault.lease`, through the remote vault's hooks."""
        session = Session(self, self.checkout(agent, ttl, exclusive))
        try:
            yield session
        finally:
            self.release(agent)

    def release(self, agent: str) -> Lease | None:
        held = self.cache.leases.get(check_agent(agent))
        report = self._request("release", agent=escape_agent(agent))
        return held if report.get("released") else None

    def checkin(
        self,
        agent: str,
        document: Mapping[str, Any],
        source: str,
        confidence: float | str | None = None,
        justification: str = "",
        lease: int | None = None,
        on_conflict: str | None = None,
    ) -> CheckinResult:
        """Commit on the lease's base in the cache, then push it: the vault's hooks check the
        lease and merge, exactly as a local checkin would."""
        prov = Provenance(agent, source, parse_confidence(confidence), justification).check()
        files = codec.encode_document(document, self.cache.limits)
        held = self.cache.checkins.held(agent, lease)
        changed, proposal = self.cache.checkins.propose(agent, held, files, prov)
        if proposal is None:
            return CheckinResult(None, [], held)
        options = {"lease": str(held.token)}
        if on_conflict:
            options["on-conflict"] = on_conflict
        report = self._push(str(proposal.id), branch_for(agent), options)
        return CheckinResult(
            report.get("commit"),
            changed,
            self.cache.leases.get(agent),
            bool(report.get("merged")),
            dict(report.get("strategy") or {}),
        )

    def checkin_patch(
        self,
        agent: str,
        patch: list[dict[str, Any]],
        source: str,
        confidence: float | str | None = None,
        justification: str = "",
        lease: int | None = None,
        on_conflict: str | None = None,
    ) -> CheckinResult:
        """Apply the patch to the lease's base as fetched, and push that as a checkin."""
        held = self.cache.checkins.held(agent, lease)
        document = self.cache.patched(agent, patch, held.token)
        return self.checkin(
            agent, document, source, confidence, justification, held.token, on_conflict
        )

    def drop_conflict(self, conflict_id: str) -> str:
        return str(self._request("drop", id=conflict_id)["dropped"])

    def resolve(
        self,
        conflict_id: str,
        take: str | None = None,
        picks: Mapping[str, str] | None = None,
        document: Mapping[str, Any] | None = None,
        agent: str | None = None,
        source: str | None = None,
    ) -> CheckinResult:
        if document is not None:
            raise InputError(
                "resolving with a whole document is not supported on a remote "
                "vault; use --take ours|theirs and --pick"
            )
        if source is not None:
            raise InputError(
                "resolving under the resolver's own Source is not supported on a "
                "remote vault; run `gitvault serve` where the vault is"
            )
        options = {"id": conflict_id, "take": take or "", "picks": json.dumps(dict(picks or {}))}
        if agent:
            options["agent"] = escape_agent(agent)
        r = self._request("resolve", **options)
        return CheckinResult(r.get("commit"), list(r.get("changed") or []), None, True)

    def change_access(
        self, change: Callable[[Any], Any], by: str = "gitvault", what: str = "access"
    ) -> str:
        """Push the rules commit to main; the vault's pre-receive lets only an admin do it."""
        from gitvault.model import access

        store = self.cache.store
        main = store.resolve(MAIN)
        rules = change(access.load(store, main.tree))
        commit = access.rules_commit(store, main, rules, by, what, self.cache.clock())
        report = self._push(str(commit), "refs/heads/main", {}, force=False)
        return str(report.get("commit", commit))

    def access(self) -> Any:
        return self.cache.access()

    def checkout_parts(
        self, agent: str, paths: list[str], ttl: int | None = None, exclusive: bool = False
    ) -> tuple[Checkout, Any]:
        """As :meth:`Vault.checkout_parts`: the lease through the hooks, the parts from it."""
        from gitvault.history import reading

        reading.check_paths(self.cache.store, paths)
        co = self.checkout(agent, ttl, exclusive)
        return co, reading.parts_of(co.document, paths)

    def sign_with(self, key: str | None) -> None:
        """Sign this agent's commits, which are made in the cache and pushed as they are."""
        self.cache.sign_with(key)

    # -- writes a push cannot carry: refused before anything is written ------------------------
    def add_key(self, *args: Any, **kwargs: Any) -> Any:
        raise RemoteUnsupported("keys add (an admin's change of the allowed signers)", self.url)

    def revoke_key(self, *args: Any, **kwargs: Any) -> Any:
        raise RemoteUnsupported("keys revoke (an admin's change of the allowed signers)", self.url)

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        raise RemoteUnsupported("revert", self.url)

    def restore(self, *args: Any, **kwargs: Any) -> Any:
        raise RemoteUnsupported("restore", self.url)

    def quarantine(self, *args: Any, **kwargs: Any) -> Any:
        raise RemoteUnsupported("quarantine", self.url)

    def lift_quarantine(self, *args: Any, **kwargs: Any) -> Any:
        raise RemoteUnsupported("quarantine --lift", self.url)

    def set_schema(self, key: str, schema: Any, agent: str = "gitvault") -> str:
        raise RemoteUnsupported("schema set", self.url)

    def config_set(self, name: str, value: str) -> Any:
        raise RemoteUnsupported("config set (the vault's own git config)", self.url)

    def gc(self) -> dict[str, Any]:
        raise RemoteUnsupported("gc", self.url)

    def doctor(self, fix: bool = False) -> Any:
        raise RemoteUnsupported("doctor", self.url)

    def fold_branch(
        self, ref: str, on_conflict: str | None = None, lease: int | None = None
    ) -> CheckinResult:
        raise RemoteUnsupported("folding a branch (the vault's hooks do it)", self.url)

    def install_hooks(self) -> list[str]:
        raise RemoteUnsupported("installing hooks", self.url)

    # -- reads that follow the vault's own refs: a fetched cache does not move by itself ---------
    def store_for(self, what: str) -> Store:
        raise RemoteUnsupported(what, self.url)

    def watch(
        self, key: str | None = None, path: str | None = None, since: str | None = None
    ) -> Any:
        raise RemoteUnsupported("watch", self.url)

    # -- reads: from the cache, as fetched -----------------------------------------------------
    def exposure(
        self,
        rev: str | None = None,
        *,
        agent: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[Any]:
        return self.cache.exposure(rev, agent=agent, since=since, until=until)

    def query(
        self,
        expression: str,
        rev: str | None = None,
        at: str | float | None = None,
        limit: int | None = None,
        with_pointers: bool = False,
        max_bytes: int | None = None,
        offset: int = 0,
    ) -> Any:
        return self.cache.query(expression, rev, at, limit, with_pointers, max_bytes, offset)

    def search(self, text: str, **options: Any) -> Any:
        return self.cache.search(text, **options)

    def show_cut(
        self,
        rev: str | None = None,
        at: str | None = None,
        path: str | None = None,
        max_bytes: int = 20000,
        offset: int = 0,
    ) -> Any:
        return self.cache.show_cut(rev, at, path, max_bytes, offset)

    def head(self) -> str | None:
        return self.cache.head()

    def read(self, rev: str | None = None) -> Document:
        return self.cache.read(rev)

    def status(self) -> Status:
        return self.cache.status()

    def log(self, rev: str | None = None, **filters: Any) -> list[Any]:
        return self.cache.log(rev, **filters)

    def show(self, rev: str | None = None, at: str | None = None, path: str | None = None) -> Any:
        return self.cache.show(rev, at, path)

    def diff(
        self, rev1: str | None = None, rev2: str | None = None, path: str | None = None
    ) -> Any:
        return self.cache.diff(rev1, rev2, path)

    def blame(self, path: str, rev: str | None = None, verify: bool = True) -> list[Any]:
        return self.cache.blame(path, rev, verify)

    def allowed_signers(self) -> list[Any]:
        return self.cache.allowed_signers()

    def verdict(self, rev: str | None = None, at: str | None = None) -> Any:
        return self.cache.verdict(rev, at)

    def verify(self, rev: str | None = None, require: str = "all", fresh: bool = False) -> Any:
        return self.cache.verify(rev, require, fresh)

    def export(self, rev: str | None = None, fmt: str = "json", history: bool = False) -> str:
        return self.cache.export(rev, fmt, history)

    def schema(self, key: str) -> Any | None:
        return self.cache.schema(key)

    def config(self) -> list[dict[str, Any]]:
        return self.cache.config()

    def config_get(self, name: str) -> Any:
        return self.cache.config_get(name)

    def pending_conflicts(self) -> list[dict[str, Any]]:
        return self.cache.pending_conflicts()

    def patched(
        self, agent: str, patch: list[dict[str, Any]], lease: int | None = None
    ) -> Document:
        return self.cache.patched(agent, patch, lease)

    def preview(self, agent: str, document: Mapping[str, Any], lease: int | None = None) -> Any:
        return self.cache.preview(agent, document, lease)

    def parse(self, data: bytes, name: str = "proposal") -> Document:
        return self.cache.parse(data, name)
