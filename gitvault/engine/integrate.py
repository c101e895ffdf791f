"""Folding an agent's commit into main: fast-forward, or a merge commit, or a refusal.

Shared by checkin, ``resolve`` and (later) pushed agent branches, so every path to main applies
the same rules: git's merge then the structural one (:mod:`gitvault.engine.merge`), the conflict
policy, and the schema gate. Nothing here moves a ref; callers do that under their lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pygit2

from gitvault.core.jsonmerge import MISSING, Conflict
from gitvault.engine.merge import Decide, MergeOutcome, merge_trees
from gitvault.errors import InputError
from gitvault.git.storage import Store
from gitvault.history import last_writer
from gitvault.model import changes, schemas
from gitvault.model.policy import POLICIES
from gitvault.model.provenance import Provenance, checkin_trailers, identity, message, subject_for


class Refused(Exception):
    """Not a user error: the merge left conflicts (or broke a schema). Callers catch it, keep
    the proposal and raise :class:`~gitvault.errors.ConflictError`, which is what users see."""

    def __init__(self, entries: list[dict[str, Any]], outcome: MergeOutcome | None) -> None:
        super().__init__(f"{len(entries)} conflict(s)")
        self.entries, self.outcome = entries, outcome
        self.main: pygit2.Oid | None = None  # the main it was planned against, when locked


@dataclass(frozen=True)
class Plan:
    target: pygit2.Oid  # what main should point at
    merged: bool
    outcome: MergeOutcome | None = None


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise InputError(f"unknown conflict policy {policy!r}; use one of {', '.join(POLICIES)}")
    return policy


def _plain(v: Any) -> dict[str, Any]:
    return {} if v is MISSING else {"value": v}


def conflict_entries(
    store: Store, base: pygit2.Oid, main: pygit2.Oid, conflicts: Iterable[Conflict]
) -> list[dict[str, Any]]:
    """Report rows: pointer, base/current/proposed (absent when missing), current's writer."""
    rows = []
    for c in conflicts:
        row: dict[str, Any] = {"pointer": c.pointer, "path": c.path, "kind": c.kind}
        for name, v in (("base", c.base), ("current", c.ours), ("proposed", c.theirs)):
            if v is not MISSING:
                row[name] = v
        if c.kind != "file":
            w = last_writer(store, main, c.path, hide=base)
            row["current_writer"] = w.agent if w else None
            row["current_commit"] = w.commit if w else None
        rows.append(row)
    return rows


def decider(
    store: Store, policy: str, base: pygit2.Oid, main: pygit2.Oid, confidence: float
) -> Decide | None:
    """The automatic resolution for a policy; None for ``fail``."""
    if policy == "ours":
        return lambda c: ("ours", "policy ours")
    if policy == "theirs":
        return lambda c: ("theirs", "policy theirs")
    if policy == "confidence":
        from gitvault.engine.trust import writer_check

        counts = writer_check(store)  # signatures required: only verified writers count

        def by_confidence(c: Conflict) -> tuple[str, str] | None:
            w = last_writer(store, main, c.path, hide=base)
            if w is not None and counts is not None and not counts(w.commit):
                return "theirs", f"the current value's writer {w.agent} is not verified"
            if w is None or w.confidence is None or w.confidence == confidence:
                return None  # unknown or tie: refuse
            side = "ours" if w.confidence > confidence else "theirs"
            return side, f"confidence {w.confidence!r} ({w.agent}) vs {confidence!r}"

        return by_confidence
    return None


def merge_message(
    prov: Provenance,
    lease: int | str,
    base: str,
    proposal: pygit2.Oid,
    outcome: MergeOutcome,
    extra: Iterable[tuple[str, str]] = (),
) -> str:
    keys = sorted(outcome.how)
    body = f"Merge {str(proposal)[:12]} (checkin of {prov.agent} on {base[:12]}) into main."
    trailers = [*checkin_trailers(prov, lease, base), ("Merged-Commit", str(proposal))]
    if keys:
        trailers.append(("Merge-Strategy", ", ".join(f"{k}={outcome.how[k]}" for k in keys)))
    trailers += [("Resolved", f"{c.path} -> {side} ({why})") for c, side, why in outcome.decisions]
    trailers += list(extra)
    subject = subject_for(prov.agent, "merge", keys or ["no overlapping keys"])
    return message(subject, trailers, body)


def plan(
    store: Store,
    base: pygit2.Commit,
    main: pygit2.Commit,
    proposal: pygit2.Commit,
    prov: Provenance,
    lease: int | str,
    changed: Iterable[str],
    decide: Decide | None,
    when: float,
    extra: Iterable[tuple[str, str]] = (),
) -> Plan:
    """What main becomes when ``proposal`` (made on ``base``) lands on ``main``.

    Raises :class:`Refused` with report rows when conflicts remain or a schema fails.
    """
    changed = list(changed)
    if main.id == base.id:
        schemas.require_valid(store, proposal.tree, changed, "the proposal fails its schema")
        return Plan(proposal.id, False)
    outcome = merge_trees(store, base.tree, main.tree, proposal.tree, decide)
    if outcome.conflicts:
        raise Refused(conflict_entries(store, base.id, main.id, outcome.conflicts), outcome)
    assert outcome.tree is not None
    tree = store.repo[outcome.tree]
    assert isinstance(tree, pygit2.Tree)
    problems = schemas.validate_tree(store, tree, set(changed) | set(outcome.how))
    if problems:
        raise Refused([{**p, "kind": "schema", "path": p["pointer"]} for p in problems], outcome)
    who = identity(prov.agent)
    msg = merge_message(
        prov,
        lease,
        str(base.id),
        proposal.id,
        outcome,
        [*extra, *changes.trailers(changes.between(store, main.tree, tree))],
    )
    return Plan(
        store.write_commit(outcome.tree, [main.id, proposal.id], who, msg, when), True, outcome
    )
