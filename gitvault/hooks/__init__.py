"""Git hooks: the vault guards every push, and folds agent branches into main.

Server side (installed in the vault by ``init`` / ``install-hooks``):

- ``pre-receive`` checks every pushed commit before any ref moves. Only
  ``refs/heads/agents/<agent>`` may be pushed (and ``refs/heads/main`` as a fast-forward whose
  commits all pass); every ``K.json`` must be canonical JSON under a valid key, schemas must
  hold, and each commit must carry the provenance trailers with ``Agent-Id`` = the branch's
  agent. ``refs/leases/*``, ``refs/notes/leases`` and ``refs/conflicts/*`` belong to the vault.
  Pushed objects are still quarantined, so the repository is opened ``FROM_ENV``.
- ``post-receive`` folds each updated agent branch into main with the merge engine, exactly like
  a checkin. It runs after the push is accepted, outside the quarantine, so it can write
  objects and move main by compare-and-swap; the pusher reads the outcome on stderr
  (``remote: gitvault: merged ...`` or the conflict report). A conflict leaves main unchanged
  and keeps the branch tip under ``refs/conflicts/<agent>/<n>``.

Client side (installed in a working copy by ``gitvault clone``): ``commit-msg`` fills in the
trailers an agent may omit and refuses a commit without ``Source``; ``pre-commit`` refuses
non-canonical or invalid JSON and names the fix (``gitvault fmt``).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pygit2

from gitvault.core import codec
from gitvault.errors import CodecError, GitVaultError, InputError, from_os_error
from gitvault.git import shards
from gitvault.git.refs import RefTx
from gitvault.git.storage import MAIN, Store
from gitvault.hooks import identity
from gitvault.model import changes, quarantine, schemas
from gitvault.model.branches import REQUESTS, agent_of, new_commits
from gitvault.model.problems import LeaseProblem, Problem
from gitvault.model.problems import exit_code as problems_exit_code
from gitvault.model.provenance import (
    escape,
    parse_confidence,
    parse_trailers,
    unescape_agent,
)

ZERO = "0" * 40
REQUIRED_TRAILERS = ("Agent-Id", "Source")  # the rest of TRAILERS have defaults


@dataclass(frozen=True)
class Update:
    old: str
    new: str
    ref: str


def parse_updates(lines: Iterable[str]) -> list[Update]:
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            out.append(Update(*parts))
    return out


# -- checking pushed commits ---------------------------------------------------------------
def check_tree(store: Store, tree: pygit2.Tree, changed: Iterable[str] | None) -> list[str]:
    """Problems of one commit's tree: file names, canonical JSON, schemas."""
    problems = []
    seen: set[str | None] = set()
    for entry in tree:
        name = entry.name or ""
        if name == codec.RESERVED and entry.type_str == "tree":
            continue
        sharded = entry.type_str == "tree"
        key = name if sharded else codec.key_of(name)
        if key in seen:
            problems.append(f"{key}: stored both as {key}.json and as {key}/; keep one")
            continue
        seen.add(key)
        if key is None or entry.type_str not in ("blob", "tree"):
            problems.append(
                f"{name}: only K.json files, sharded K/ folders and .gitvault/ may be at the top"
            )
            continue
        try:
            codec.check_key(key)
            if sharded:
                layout = shards.problems(store.repo[entry.id], store.layout, name)  # type: ignore[arg-type]
                if layout:
                    problems += layout
                    continue
            data = store.blob(entry.id)
            if codec.canonical(data, name) != data:
                problems.append(
                    f"{name}: not canonical JSON (indent 2, sorted keys, final "
                    "newline); run `gitvault fmt` on it"
                )
            elif not sharded and shards.wanted(data):
                problems.append(
                    f"{name}: an array of {shards.SHARD_BYTES} bytes or more is "
                    f"stored sharded as {key}/ (see the README); check it in with "
                    "gitvault, which lays it out"
                )
        except CodecError as e:
            problems.append(str(e))
    if not problems:
        keys = changed if changed is not None else [k[:-5] for k in store.key_blobs(tree)]
        problems += [
            f"{p['pointer']} fails its schema: {p['message']}"
            for p in schemas.validate_tree(store, tree, keys)
        ]
    return problems


def check_commit(store: Store, commit: pygit2.Commit, agent: str | None) -> list[str]:
    trailers = parse_trailers(commit.message)
    # what git already knows (Base: the first parent) or the CLI defaults (Confidence 0.5,
    # Justification empty, no Lease) may be left out; only who and from where must be said
    problems = [f"missing trailer {t}:" for t in REQUIRED_TRAILERS if t not in trailers]
    lease = trailers.get("Lease")
    if lease is not None and lease not in ("", "none") and not lease.isdigit():
        problems.append(
            f"Lease: {lease!r} is not a lease token; give the number `gitvault "
            "checkout` printed, or leave the trailer out"
        )
    if agent is not None and "Agent-Id" in trailers and trailers["Agent-Id"] != agent:
        problems.append(
            f"Agent-Id {trailers['Agent-Id']!r} does not match the branch's agent {agent!r}"
        )
    if not trailers.get("Source", "x").strip():
        problems.append("Source: is empty")
    if "Confidence" in trailers:
        try:
            parse_confidence(trailers["Confidence"])
        except InputError as e:
            problems.append(str(e))
    parent = commit.parents[0] if commit.parents else None
    changed = None
    if parent is not None:
        old, new = store.key_blobs(parent.tree), store.key_blobs(commit.tree)
        changed = [k[:-5] for k in set(old) | set(new) if old.get(k) != new.get(k)]
    claimed = changes.raw_lines(commit.message)
    if claimed:  # log and blame trust these lines to skip commits: they must be exact
        actual = changes.between(store, parent.tree, commit.tree) if parent is not None else []
        if sorted(claimed) != sorted(escape(p) for p in actual):
            problems.append(
                f"{changes.TRAILER}: lines {sorted(claimed)!r} do not match the "
                f"commit's changes {actual!r}; drop them (gitvault writes them)"
            )
    return problems + check_tree(store, commit.tree, changed)


def check_push(store: Store, updates: list[Update]) -> list[str]:
    """Every reason to refuse this push (empty: accept), each naming ref, commit and file."""
    repo = store.repo
    problems: list[str] = []
    options = push_options()
    main = store.ref(MAIN)
    for u in updates:
        agent = agent_of(u.ref)
        if u.ref.startswith(REQUESTS):
            new = pygit2.Oid(hex=u.new) if u.new != ZERO else None
            if (
                u.old != ZERO
                or new is None
                or main is None
                or not (new == main or repo.descendant_of(main, new))
            ):
                problems.append(f"{u.ref}: a request must create the ref at a commit of main")
            continue
        if agent is not None and "lease" in options and u.new != ZERO:
            problems += _lease_problems(store, agent, options["lease"])
        if u.ref == MAIN:
            if u.new == ZERO or u.old == ZERO:
                problems.append(f"{u.ref}: main cannot be deleted or created by a push")
                continue
            if not repo.descendant_of(pygit2.Oid(hex=u.new), pygit2.Oid(hex=u.old)):
                problems.append(
                    f"{u.ref}: not a fast-forward of main; push your branch to "
                    f"refs/heads/agents/<you> and let the vault merge it"
                )
                continue
        elif agent is None:
            problems.append(
                f"{u.ref}: only refs/heads/agents/<agent> (and fast-forwards of "
                "main) may be pushed; leases, notes and conflicts belong to the vault"
            )
            continue
        if u.new == ZERO:
            continue  # deleting one's own branch
        problems += quarantine.push_problems(store, u.ref, agent, pygit2.Oid(hex=u.new))
        for commit in new_commits(store, u.new):
            for p in check_commit(store, commit, agent):
                problems.append(f"{u.ref} {str(commit.id)[:12]}: {p}")
    return problems


def _lease_problems(store: Store, agent: str, token: str) -> list[Problem]:
    """A remote checkin's lease, checked before anything is accepted (read-only)."""
    import time

    from gitvault.model.leases import LeaseBook

    lease = LeaseBook(store, time.time).get(agent)
    if lease is None:
        return [LeaseProblem(f"{agent!r} holds no lease; run `gitvault checkout {agent}` first")]
    if token.isdigit() and int(token) != lease.token:
        return [LeaseProblem(f"lease token {token} of {agent!r} is stale (current {lease.token})")]
    if not lease.live(time.time()):
        return [
            LeaseProblem(f"lease of {agent!r} has expired; run `gitvault checkout {agent}` again")
        ]
    return []


def request(vault: Any, options: dict[str, str]) -> dict[str, Any]:
    """Carry out one remote lease/conflict operation (post-receive, outside the quarantine)."""
    op = options.get("op", "")
    agent = unescape_agent(options.get("agent", "")) if options.get("agent") else ""
    if op == "checkout":
        ttl = int(options["ttl"]) if options.get("ttl", "").isdigit() else None
        wait = _wait_option(options.get("wait"))
        co = vault.checkout(agent, ttl, options.get("exclusive") == "1", wait, _waiting)
        return {"lease": co.lease.to_json(co.lease.acquired)}
    if op == "release":
        dropped = vault.release(agent)
        return {"released": dropped is not None}
    if op == "drop":
        return {"dropped": vault.drop_conflict(options.get("id", ""))}
    if op == "resolve":
        picks = json.loads(options.get("picks") or "{}")
        r = vault.resolve(
            options.get("id", ""), options.get("take") or None, picks, agent=agent or None
        )
        return dict(r.to_json())
    raise InputError(f"unknown remote operation {op!r}")


def _wait_option(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"push option wait={text!r} must be a number of seconds") from None


def _waiting(entry: Any, position: int) -> None:
    """Tell the pusher, every few seconds, that its checkout waits; when the pusher is gone
    the write fails, this hook ends and its queue entry goes with it."""
    sys.stderr.write(f"gitvault: waiting for the lease: position {position} in the queue\n")
    sys.stderr.flush()


def _delete(rtx: RefTx, ref: str) -> None:
    rtx.delete(ref)


def _report(say: Callable[[str], None], data: dict[str, Any]) -> None:
    say("gitvault-report: " + json.dumps(data, ensure_ascii=False, sort_keys=True))


# -- client side ---------------------------------------------------------------------------
def fill_trailers(message: str, agent: str, base: str) -> str:
    """The commit message with default trailers added; raises if Source is missing."""
    present = parse_trailers(message)
    if not present.get("Source", "").strip():
        raise InputError(
            "add a Source trailer: git commit --trailer 'Source=where this came "
            "from' (and --trailer Confidence=0.8 --trailer 'Justification=why')"
        )
    defaults = {
        "Agent-Id": agent,
        "Confidence": "0.5",
        "Justification": "",
        "Lease": "none",
        "Base": base,
    }
    missing = [f"{k}: {v}" for k, v in defaults.items() if k not in present]
    if "Agent-Id" in present and present["Agent-Id"] != agent:
        raise InputError(f"Agent-Id {present['Agent-Id']!r} is not this clone's agent {agent!r}")
    body = message.rstrip("\n")
    return body + ("\n" + "\n".join(missing) if missing else "") + "\n"


def fmt(paths: Iterable[str]) -> list[str]:
    """Rewrite JSON files in canonical form; returns the ones that changed."""
    changed = []
    for p in paths:
        data = Path(p).read_bytes()
        canon = codec.canonical(data, p)
        if canon != data:
            Path(p).write_bytes(canon)
            changed.append(p)
    return changed


def refuse_lines(problems: list[str]) -> list[str]:
    return [
        "gitvault: push refused:",
        *[f"gitvault:   {p}" for p in problems],
        "gitvault: nothing was changed",
    ]


def push_options() -> dict[str, str]:
    out = {}
    for i in range(int(os.environ.get("GIT_PUSH_OPTION_COUNT", "0") or 0)):
        key, _, value = os.environ.get(f"GIT_PUSH_OPTION_{i}", "").partition("=")
        out[key] = value
    return out


def post_receive(updates: list[Update], say: Callable[[str], None]) -> None:
    """Fold every pushed agent branch into main and tell the pusher what happened."""
    from gitvault.api.report import conflict_text
    from gitvault.api.vault import Vault
    from gitvault.errors import ConflictError

    vault = Vault(Store.open_env())
    options = push_options()
    policy = options.get("on-conflict")
    lease = int(options["lease"]) if options.get("lease", "").isdigit() else None
    for u in updates:
        if u.ref.startswith(REQUESTS) and u.new != ZERO:
            try:
                _report(say, {"ok": True, **request(vault, options)})
            except GitVaultError as e:
                say(f"gitvault: {e}")
                _report(say, e.to_json())
            finally:
                vault.store.transact([u.ref], functools.partial(_delete, ref=u.ref), "request")
            continue
        if u.ref == MAIN and u.new != ZERO:  # a checked fast-forward (e.g. an admin's rules)
            _report(say, {"ok": True, "ref": MAIN, "commit": u.new})
            continue
        if u.new == ZERO or agent_of(u.ref) is None:
            continue
        try:
            r = vault.fold_branch(u.ref, policy, lease)
        except ConflictError as e:
            for line in conflict_text(e.report).splitlines():
                say(f"gitvault: {line}")
            say("gitvault-report: " + json.dumps(e.to_json(), ensure_ascii=False, sort_keys=True))
            continue
        except GitVaultError as e:
            say(f"gitvault: {u.ref} not merged: {e}")
            _report(say, e.to_json())
            continue
        if r.commit is None:
            say(f"gitvault: {u.ref} is already on main")
        else:
            how = ", ".join(f"{k}={v}" for k, v in sorted(r.strategy.items())) or "fast-forward"
            say(f"gitvault: merged {u.ref} into main as {r.commit} ({how})")
        _report(say, {"ok": True, "ref": u.ref, **r.to_json()})


def run(name: str, args: list[str], stdin: TextIO, say: Callable[[str], None]) -> int:
    """Entry point of every hook shim: ``python -m gitvault hook NAME ARGS``."""
    if name == "pre-receive":
        store, updates = Store.open_env(), parse_updates(stdin)
        refusals = identity.check_push(
            store, [(u.old, u.new, u.ref) for u in updates], push_options()
        )
        from gitvault.engine import trust  # signatures, allowed signers, path rules

        refusals += trust.check_push(
            store, [(u.old, u.new, u.ref) for u in updates], identity.pusher(store).user
        )
        problems = [str(e) for e in refusals] + check_push(store, updates)
        for line in refuse_lines(problems) if problems else []:
            say(line)
        if refusals:
            _report(say, identity.report(refusals))
        elif problems:
            code = problems_exit_code(problems)
            _report(
                say, {"error": "PushRefused", "exit_code": code, "message": "; ".join(problems)}
            )
        return 1 if problems else 0
    if name == "post-receive":
        post_receive(parse_updates(stdin), say)
        return 0
    repo = pygit2.Repository(os.environ.get("GIT_DIR") or pygit2.discover_repository(os.getcwd()))
    if name == "commit-msg":
        agent = str(repo.config["gitvault.agent"]) if "gitvault.agent" in repo.config else None
        if agent is None:
            raise InputError(
                "this clone has no gitvault.agent; set it with `git config gitvault.agent <you>`"
            )
        base = "none" if repo.head_is_unborn else str(repo.head.target)
        msg_path = Path(args[0])
        msg_path.write_text(
            fill_trailers(msg_path.read_text(encoding="utf-8"), agent, base), encoding="utf-8"
        )
        return 0
    if name == "pre-commit":
        problems = []
        index_file = os.environ.get("GIT_INDEX_FILE")  # `git commit -a` stages into a temp index
        index = pygit2.Index(os.path.abspath(index_file)) if index_file else repo.index
        for entry in index:
            if "/" not in entry.path and codec.key_of(entry.path) is not None:
                data = repo[entry.id].read_raw()
                try:
                    codec.check_key(codec.key_of(entry.path))
                    if codec.canonical(data, entry.path) != data:
                        problems.append(
                            f"{entry.path}: not canonical; run `gitvault fmt "
                            f"{entry.path}` and `git add` it again"
                        )
                except CodecError as e:
                    problems.append(str(e))
        for p in problems:
            say(f"gitvault: {p}")
        return 1 if problems else 0
    raise InputError(f"unknown hook {name!r}")


def main(argv: list[str]) -> None:
    """``gitvault hook NAME ARGS`` as the shims call it, without the CLI's start-up (typer,
    ~0.1 s on every hook of every push); errors end as the CLI would end them."""

    def say(line: str) -> None:
        sys.stderr.write(line + "\n")

    try:
        code = run(argv[0], argv[1:], sys.stdin, say)
    except GitVaultError as e:
        say(f"gitvault: {e}")
        code = e.exit_code
    except OSError as e:  # the same mapping as the CLI's and the MCP server's
        mapped = from_os_error(e)
        say(f"gitvault: {mapped}")
        code = mapped.exit_code
    sys.stderr.flush()
    raise SystemExit(code)
