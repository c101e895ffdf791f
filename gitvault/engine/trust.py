"""Where the vault stops trusting claims: required signatures, path rules, propose-only agents.

Every way onto main passes here, with the same rules and the same refusal (exit 5, the
commit and the rule named, nothing changed):

- checkin and patch checkin (:func:`guard_checkin`: the agent's own commit, before it lands),
- a pushed branch, in pre-receive (:func:`check_push`: every new commit, and the branch's
  net change, so a forbidden change cannot arrive hidden in a merge of someone else's work),
- the fold of a pushed branch into main (:func:`guard_fold`) and ``resolve``
  (:func:`guard_resolve`).

``gitvault.requireSigned`` (vault config only): ``off``; ``agents``: every agent's commit
must be signed by a key that allowed_signers gives its ``Agent-Id`` at its commit time and
at its arrival; ``all``: in ``gitvault verify`` also the vault's own commits. A commit the
vault signed with its own key (principal ``gitvault``) is vouched for by the vault.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pygit2
from pygit2.enums import SortMode

from gitvault.engine import pathcheck, signing
from gitvault.engine.signing import SIGNERS_PATH
from gitvault.engine.verification import Verdict, Verifier
from gitvault.errors import GitVaultError, InputError, NotAllowed
from gitvault.git.storage import MAIN, Store
from gitvault.model import access, pathrules, settings
from gitvault.model.branches import new_commits
from gitvault.model.provenance import parse_trailers

ZERO = "0" * 40


def mode(store: Store) -> str:
    return str(settings.value(store, "requireSigned"))


CACHE = "gitvault-verified"  # in the vault folder: verdicts by allowed_signers version


def verifier(store: Store, cached: bool = False) -> Verifier:
    """A verifier for main's allowed signers; ``cached``: reuse and keep verdicts in
    ``<vault>/gitvault-verified/`` (for reading history; writes are always checked afresh)."""
    return Verifier(
        signing.main_signers(store), os.path.join(store.path, CACHE) if cached else None
    )


def _short(commit: pygit2.Commit | str) -> str:
    return str(commit.id if isinstance(commit, pygit2.Commit) else commit)[:12]


def unsigned_refusal(v: Verdict, m: str, what: str) -> NotAllowed:
    return NotAllowed(
        f"{what}: commit {v.commit[:12]} (Agent-Id {v.agent}) is refused: {v.reason}; this "
        f"vault requires signed commits (gitvault.requireSigned={m}); nothing changed. Sign "
        "with --sign-key PATH or $GITVAULT_SIGNING_KEY, with a key `gitvault keys add` gave "
        "this agent",
        rule=f"gitvault.requireSigned={m}",
        commit=v.commit,
        reason=v.reason,
        verified=v.verified,
        fingerprint=v.fingerprint,
    )


def require_signed(
    store: Store, commit: pygit2.Commit, now: float, what: str, ver: Verifier | None = None
) -> None:
    m = mode(store)
    if m == "off":
        return
    own = ver is None
    ver = ver or verifier(store)
    try:
        v = ver.check(commit, also_at=now)
    finally:
        if own:
            ver.close()
    if not v.ok:
        raise unsigned_refusal(v, m, what)


def _propose_only(vault: Any, rules: Any, agent: str, proposal: pygit2.Commit, what: str) -> None:
    only = pathrules.proposes_only(rules, agent)
    if only is None:
        return
    kept = vault.conflicts.keep(agent, proposal.id)
    raise NotAllowed(
        f"{what}: {agent} may only propose (propose_only {only} in {access.ACCESS_PATH}); "
        f"main unchanged, the proposal is kept as conflict {kept.id} for an admin: "
        f"`gitvault resolve {kept.id} --agent ADMIN --take theirs`",
        rule=f"{access.ACCESS_PATH}: propose_only {only}",
        kept=kept.id,
        agent=agent,
    )


def guard_checkin(vault: Any, agent: str, proposal: pygit2.Commit | None) -> None:
    """Refuse the agent's own commit (made, not yet landed) if a rule says no."""
    if proposal is None:
        return
    store = vault.store
    what = f"checkin of {agent}"
    require_signed(store, proposal, vault.clock(), what)
    rules = access.load_main(store)
    if not rules.present:
        return
    parent = proposal.parents[0].tree if proposal.parents else None
    pathcheck.check(store, rules, agent, parent, proposal.tree, what)
    _propose_only(vault, rules, agent, proposal, what)


def guard_fold(vault: Any, agent: str, ref: str, base: pygit2.Commit, tip: pygit2.Commit) -> None:
    """A pushed branch's net change (merge base → tip) must be the agent's to make."""
    rules = access.load_main(vault.store)
    if not rules.present:
        return
    what = f"merge of {ref}"
    pathcheck.check(vault.store, rules, agent, base.tree, tip.tree, what)
    _propose_only(vault, rules, agent, tip, what)


def guard_resolve(
    vault: Any,
    kept: Any,
    resolver: str,
    main: pygit2.Commit,
    proposal: pygit2.Commit,
    target: pygit2.Oid,
) -> None:
    """A resolution lands the proposal: it must be signed (when required), and what the
    resolution changes on main must be the resolver's to change (admins: anything)."""
    store = vault.store
    what = f"resolve of {kept.id}"
    require_signed(store, proposal, vault.clock(), what)
    rules = access.load_main(store)
    if not rules.present:
        return
    admin = rules.is_admin(resolver)
    only = pathrules.proposes_only(rules, kept.agent)
    if only is not None and not admin:
        raise NotAllowed(
            f"{what}: {kept.agent} may only propose (propose_only {only}); only an admin "
            f"({', '.join(rules.admins) or 'none named'}) may resolve its conflicts, and "
            f"{resolver} is not one; nothing changed",
            rule=f"{access.ACCESS_PATH}: propose_only {only}",
            agent=resolver,
        )
    if not admin:
        landed = store.repo[target]
        assert isinstance(landed, pygit2.Commit)
        pathcheck.check(store, rules, resolver, main.tree, landed.tree, what)


# -- pushes ------------------------------------------------------------------------------------
def _signers_changed(commit: pygit2.Commit) -> bool:
    def blob(tree: pygit2.Tree) -> pygit2.Oid | None:
        try:
            return tree[SIGNERS_PATH].id
        except KeyError:
            return None

    mine = blob(commit.tree)
    if not commit.parents:
        return mine is not None
    return all(blob(p.tree) != mine for p in commit.parents)


def check_push(
    store: Store,
    updates: Iterable[tuple[str, str, str]],
    user: str | None,
    now: float | None = None,
) -> list[NotAllowed]:
    """Every refusal of this push by signatures, allowed signers and path rules."""
    from gitvault.model.branches import REQUESTS, agent_of

    now = time.time() if now is None else now
    try:
        rules = access.load_main(store)
        ver = verifier(store)
    except InputError as e:
        return [NotAllowed(f"{e}; fix it on the vault's machine", rule=SIGNERS_PATH)]
    m = mode(store)
    out: list[NotAllowed] = []
    main = store.ref(MAIN)
    try:
        for _old, new, ref in updates:
            if new == ZERO or ref.startswith(REQUESTS):
                continue
            agent = agent_of(ref)
            for c in new_commits(store, new):
                claimed = parse_trailers(c.message).get("Agent-Id") or agent or c.author.name
                what = f"{ref} {_short(c)}"
                if m != "off":
                    v = ver.check(c, also_at=now)
                    if not v.ok:
                        out.append(unsigned_refusal(v, m, what))
                if _signers_changed(c):
                    out += _signers_change(store, c, user, rules, what)
                bad = pathcheck.forbidden_merge(store, rules, claimed, c) if rules.present else []
                if bad:
                    out.append(pathrules.refusal(rules, claimed, bad[0], what))
            if agent is not None and main is not None and pathrules.has_rules(rules):
                base = store.repo.merge_base(main, pygit2.Oid(hex=new))
                if base is not None:
                    bad = pathcheck.forbidden(
                        store, rules, agent, store.commit(base).tree, store.commit(new).tree
                    )
                    if bad:
                        out.append(
                            pathrules.refusal(
                                rules, agent, bad[0], f"{ref} (what the branch brings to main)"
                            )
                        )
    finally:
        ver.close()
    return out


def _signers_change(
    store: Store, c: pygit2.Commit, user: str | None, rules: Any, what: str
) -> list[NotAllowed]:
    if user is None or not rules.is_admin(user):
        who = repr(user) if user else "an unauthenticated pusher"
        return [
            NotAllowed(
                f"{what} changes {SIGNERS_PATH}, which only an authenticated admin may push, and "
                f"the pusher is {who}; change keys with `gitvault keys ...` on the vault's machine",
                rule=f"{SIGNERS_PATH}: admins",
                user=user,
            )
        ]
    data = signing.signers_blob(store, c.tree)
    try:
        if data is None:
            raise InputError(f"{SIGNERS_PATH} deleted; revoke keys instead of deleting them")
        signing.parse_signers(data)
    except GitVaultError as e:
        return [NotAllowed(f"{what}: {e}", rule=SIGNERS_PATH, user=user)]
    return []


# -- the confidence policy ---------------------------------------------------------------------
def writer_check(store: Store) -> Any:
    """With signatures required: a test of whether a writer's commit is verified (its
    Confidence then counts); None when signatures are not required."""
    if mode(store) == "off":
        return None
    ver = verifier(store)
    return lambda commit: ver.check(store.commit(commit)).ok


# -- showing verification ----------------------------------------------------------------------
def annotate(store: Store, entries: list[Any]) -> list[Any]:
    """Log or blame entries with ``verified`` and ``fingerprint`` filled in."""
    commits = sorted({e.commit for e in entries if getattr(e, "commit", None)})
    if not commits:
        return entries
    with verifier(store, cached=True) as ver:
        verdicts = dict(zip(commits, _check_all(store, ver, commits), strict=True))
    return [
        replace(
            e,
            verified=verdicts[e.commit].verified,
            fingerprint=verdicts[e.commit].fingerprint,
            signer=verdicts[e.commit].signer,
        )
        if getattr(e, "commit", None)
        else e
        for e in entries
    ]


def _check_all(store: Store, ver: Verifier, commits: list[str], workers: int = 4) -> list[Verdict]:
    """Verdicts in order; ssh-keygen runs in a few threads (each call is a process)."""
    objs = [store.commit(c) for c in commits]
    if len(objs) < 8:
        return [ver.check(c) for c in objs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(ver.check, objs))


@dataclass(frozen=True)
class VerifyReport:
    rev: str
    head: str
    require: str
    checked: int
    bad: list[dict[str, Any]] = field(default_factory=list)
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.bad

    def to_json(self) -> dict[str, Any]:
        return {
            "rev": self.rev,
            "head": self.head,
            "require": self.require,
            "checked": self.checked,
            "ok": self.ok,
            "bad": self.bad,
            "counts": dict(self.counts),
        }


def _vault_made(commit: pygit2.Commit) -> bool:
    t = parse_trailers(commit.message)
    return t.get("Agent-Id") == signing.VAULT_PRINCIPAL or (
        len(commit.parents) > 1 and "Merged-Commit" in t
    )


def verify(store: Store, rev: str | None, require: str, fresh: bool = False) -> VerifyReport:
    """Every commit reachable from ``rev``: signed as ``require`` demands, by a key allowed
    for its Agent-Id at its time (main's allowed signers); signed commits not dated before
    their parents; ``rev`` on main's line; and main's reflog only ever fast-forwarding.
    ``fresh``: ignore the verdicts kept from earlier runs (someone with write access to the
    vault folder could have planted them) and run ssh-keygen on every commit."""
    if require not in settings.SIGNED_MODES:
        raise InputError(f"--require {require!r}: use {', '.join(settings.SIGNED_MODES)}")
    head = store.resolve(rev or MAIN)
    commits = [c for c in store.repo.walk(head.id, SortMode.TOPOLOGICAL)]
    bad: list[dict[str, Any]] = []
    counts = {"verified": 0, "bad": 0, "unsigned": 0}
    with verifier(store, cached=not fresh) as ver:
        verdicts = _check_all(store, ver, [str(c.id) for c in commits])
    for c, v in zip(commits, verdicts, strict=True):
        counts["verified" if v.ok else "unsigned" if v.verified == "unsigned" else "bad"] += 1
        unsigned_ok = require == "off" or (require == "agents" and _vault_made(c))
        if v.verified is False or (v.verified == "unsigned" and not unsigned_ok):
            bad.append({**v.to_json(), "problem": v.reason})
        elif v.ok and c.parents and c.commit_time < max(p.commit_time for p in c.parents):
            bad.append(
                {
                    **v.to_json(),
                    "problem": "dated before its parent (backdated to before a key's revocation?)",
                }
            )
    bad += _rewrites(store, head)
    return VerifyReport(rev or MAIN, str(head.id), require, len(commits), bad, counts)


def _rewrites(store: Store, head: pygit2.Commit) -> list[dict[str, Any]]:
    repo = store.repo
    main = store.ref(MAIN)
    out: list[dict[str, Any]] = []
    if (
        main is not None
        and head.id != main
        and not repo.descendant_of(main, head.id)
        and not repo.descendant_of(head.id, main)
    ):
        out.append(
            {
                "commit": str(head.id),
                "verified": None,
                "problem": "not on main's line: neither an ancestor nor a descendant",
            }
        )
    try:
        entries = list(repo.references[MAIN].log())
    except (KeyError, pygit2.GitError):
        return out
    for e in entries:
        old, new = e.oid_old, e.oid_new
        if str(old) == ZERO or old == new:
            continue
        try:
            kept = repo.descendant_of(new, old)
        except (KeyError, pygit2.GitError):
            continue  # a value main once had is gone (pruned): nothing to compare
        if not kept:
            out.append(
                {
                    "commit": str(new),
                    "verified": None,
                    "problem": f"main was rewritten: moved from {str(old)[:12]} to "
                    f"{str(new)[:12]}, which does not contain it ({e.message})",
                }
            )
    return out
