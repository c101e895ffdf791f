"""Undo as new commits: revert changes, restore a past state, quarantine an agent.

History is never rewritten. Reverting commit C (first parent P) is git's classic revert: a
3-way merge of main with P's tree, from base C, through the same engine as a checkin
(:func:`gitvault.engine.merge.merge_trees`: git's tree merge, then the structural JSON merge, the
conflict policies and their ``Resolved:`` decisions, then the schema gate of
:func:`gitvault.engine.integrate.plan`). A value that someone changed after C is a conflict, and the
proposal is kept under ``refs/conflicts/<who>/<n>`` for ``gitvault resolve``, as a checkin's.
A merge commit is reverted against its first parent, which undoes what it brought in.

Several commits (``revert A B``, a quarantine) are reverted newest first, each merged into the
result of the one before, in memory; the outcome is one commit on main, parent main, moved by
compare-and-swap (recomputed on a lost race). Its trailers are the usual provenance (Agent-Id
is whoever undoes) plus one ``Reverts: <commit>`` per commit undone and the ``Changed:`` index.

Undo touches the memory only, never ``.gitvault/``: schemas and quarantines have their own
commands, so a revert cannot lift a quarantine or drop a schema by accident.

When several commits are reverted and some values conflict, the kept proposal is a pair of
commits built so that ``resolve`` sees exactly those conflicts: its base is main with each
conflicting value as the reverted commit left it, and its tip is the revert's result with
each conflicting value put back. Against main, everything else merges cleanly and each
conflicting value conflicts with base = what the revert expected, current = main's, proposed =
the value before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pygit2

from gitvault.core import codec, pointers
from gitvault.engine import integrate
from gitvault.engine.advance import Done, advance, move_main
from gitvault.engine.advance import Step as Step_
from gitvault.engine.parts import VaultParts as Vault
from gitvault.engine.undo_merge import (
    Step,
    _Outcome,
    _run,
    _theirs,
    _tree,
    _with_values,
    keys_changed,
    newest_first,
    tree_patch,
)
from gitvault.errors import ConflictError, InputError
from gitvault.git.refs import RefTx
from gitvault.git.storage import MAIN
from gitvault.history import revision, value_at
from gitvault.history.exposure import agent_of, commits_by, first_parents
from gitvault.model import changes, quarantine, schemas
from gitvault.model.leases import NOTES, iso, lease_ref
from gitvault.model.provenance import (
    Provenance,
    check_agent,
    checkin_trailers,
    identity,
    message,
    parse_confidence,
    subject_for,
)

__all__ = [
    "Step",
    "UndoResult",
    "agent_of",
    "commits_by",
    "first_parents",
    "lift",
    "quarantine_agent",
    "restore",
    "revert",
]


@dataclass(frozen=True)
class UndoResult:
    """What an undo did (or with ``dry_run``, would do)."""

    commit: str | None  # the new head of main; None when nothing changed or a dry run
    reverted: list[str]  # the commits undone, newest first
    changed: list[str]  # keys changed
    patch: list[dict[str, Any]]  # RFC 6902 patch from main to the result
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # those the policy left
    resolved: list[str] = field(default_factory=list)  # decisions a policy took
    dry_run: bool = False
    kept: str | None = None  # the conflict id when the undo was kept for `resolve`
    quarantine: dict[str, Any] | None = None

    @property
    def noop(self) -> bool:
        return self.commit is None

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "reverted": self.reverted,
            "changed": self.changed,
            "patch": self.patch,
            "conflicts": self.conflicts,
            "resolved": self.resolved,
            "dry_run": self.dry_run,
            "kept": self.kept,
            "quarantine": self.quarantine,
            "noop": self.noop,
        }


def _message(
    prov: Provenance,
    main: pygit2.Commit,
    verb: str,
    keys: list[str],
    trailers: Iterable[tuple[str, str]],
    index: list[str],
) -> str:
    # "revert alice: tasks"; "quarantine mallory by alice: tasks"
    subject = subject_for(f"by {prov.agent}" if " " in verb else prov.agent, verb, keys)
    return message(
        subject,
        [*checkin_trailers(prov, "none", str(main.id)), *trailers, *changes.trailers(index)],
    )


class _Undo:
    """One undo against a vault: compute against main, land by compare-and-swap, retry."""

    def __init__(self, vault: Vault, prov: Provenance, policy: str) -> None:
        self.vault, self.store, self.prov, self.policy = vault, vault.store, prov, policy

    def main(self) -> pygit2.Commit:
        return self.store.resolve(MAIN)

    def land(
        self, main: pygit2.Commit, tree: pygit2.Tree, msg: str, revoke: str | None = None
    ) -> Callable[[RefTx], pygit2.Oid | None]:
        """The step that puts a commit of ``tree`` on main, if main is still ``main``, and
        revokes a lease with it (for :func:`gitvault.engine.advance.advance`)."""
        commit = self.store.write_commit(
            tree.id, [main.id], identity(self.prov.agent), msg, self.vault.clock()
        )

        def step(rtx: RefTx) -> pygit2.Oid | None:
            if not move_main(rtx, main.id, commit, msg.split("\n", 1)[0]):
                return None
            if revoke is not None:
                self.vault.leases.revoke(rtx, revoke, "quarantined")
            return commit

        return step

    def names(self, revoke: str | None) -> list[str]:
        return [MAIN, NOTES, lease_ref(revoke)] if revoke is not None else [MAIN]

    def keep(
        self,
        main: pygit2.Commit,
        steps: Sequence[Step],
        out: _Outcome,
        reverts: list[tuple[str, str]],
    ) -> ConflictError:
        """Keep the conflicting undo for ``resolve`` and describe it (see the module doc)."""
        store, prov = self.store, self.prov
        if len(steps) == 1:
            step = steps[0]
            base = step.commit
            theirs = _theirs(store, step)
        else:
            try:
                seen: set[str] = set()
                expected = []
                for c, _ in out.undecided:
                    if c.path not in seen:
                        seen.add(c.path)
                        expected.append((c.path, c.base))
                btree = _tree(store, _with_values(store, main.tree, expected))
                theirs = _tree(
                    store,
                    _with_values(store, out.tree, [(c.path, c.theirs) for c, _ in out.undecided]),
                )
            except InputError as e:
                return ConflictError(
                    f"{len(out.entries)} conflict(s) undoing; not kept ({e})",
                    {"conflicts": out.entries},
                )
            bmsg = message(
                subject_for(prov.agent, "revert base", keys_changed(store, main.tree, btree)),
                [
                    *checkin_trailers(prov, "none", str(main.id)),
                    ("Undo-Base", "what the revert expected to find"),
                ],
            )
            base = store.commit(
                store.write_commit(
                    btree.id, [main.id], identity(prov.agent), bmsg, self.vault.clock()
                )
            )
        keys = keys_changed(store, base.tree, theirs)
        msg = _message(
            prov, main, "revert", keys, reverts, changes.between(store, base.tree, theirs)
        )
        proposal = store.write_commit(
            theirs.id, [base.id], identity(prov.agent), msg, self.vault.clock()
        )
        kept = self.vault.conflicts.keep(prov.agent, proposal)
        report = {
            "id": kept.id,
            "ref": kept.ref,
            "agent": prov.agent,
            "proposal": str(proposal),
            "base": str(base.id),
            "main": str(main.id),
            "conflicts": out.entries,
        }
        what = ", ".join(e["path"] for e in out.entries[:3])
        more = f" and {len(out.entries) - 3} more" if len(out.entries) > 3 else ""
        return ConflictError(
            f"undo conflicts at {what}{more} (changed since); main keeps them, the undo is kept "
            f"as {kept.ref}; finish with `gitvault resolve {kept.id} --take ours|theirs|FILE`",
            report,
        )


def _provenance(
    by: str, source: str, confidence: float | str | None, justification: str
) -> Provenance:
    return Provenance(
        check_agent(by),
        source,
        parse_confidence(1.0 if confidence is None else confidence),
        justification,
    ).check()


def _policy(vault: Vault, on_conflict: str | None) -> str:
    from gitvault.model import settings

    return integrate.check_policy(on_conflict or settings.value(vault.store, "onConflict"))


def step_of(commit: pygit2.Commit, path: str | None = None) -> Step:
    return Step(commit, commit.parents[0].tree if commit.parents else None, path)


def undo_steps(
    vault: Vault,
    steps: Callable[[pygit2.Commit], list[Step]],
    prov: Provenance,
    policy: str,
    dry_run: bool,
    what: str,
    record: Callable[[pygit2.Tree], pygit2.Oid] | None = None,
    revoke: str | None = None,
) -> UndoResult:
    """The loop every undo shares: steps against the current main, then one commit."""
    u = _Undo(vault, prov, policy)
    store = vault.store
    waiting: list[tuple[pygit2.Commit, list[Step], _Outcome, list[tuple[str, str]]]] = []

    def attempt(_n: int) -> Step_[Any] | Done[Any]:
        waiting.clear()
        main = u.main()
        todo = steps(main)
        out = _run(store, main, todo, policy, prov.confidence)
        reverts = [("Reverts", str(s.commit.id)) for s in todo]
        keys = keys_changed(store, main.tree, out.tree)
        reverted = [str(s.commit.id) for s in todo]
        if dry_run:
            return Done(
                UndoResult(
                    None,
                    reverted,
                    keys,
                    tree_patch(store, main.tree, out.tree),
                    out.entries,
                    out.decisions,
                    True,
                )
            )
        if out.entries:
            if record is None:
                raise u.keep(main, todo, out, reverts)
            # the quarantine holds even though its undo waits: record it, then keep the undo
            waiting.append((main, todo, out, reverts))
            tree = _tree(store, record(main.tree))
            return u.land(main, tree, _message(prov, main, what, [], [], []), revoke)
        tree = out.tree
        if record is not None:
            tree = _tree(store, record(tree))
        elif not keys:
            return Done(UndoResult(None, reverted, [], [], [], out.decisions))
        schemas.require_valid(
            store, tree, keys, "the undone document fails its schema", "; nothing changed"
        )
        index = changes.between(store, main.tree, tree)
        msg = _message(
            prov, main, what, keys, [*reverts, *(("Resolved", d) for d in out.decisions)], index
        )
        land = u.land(main, tree, msg, revoke)

        def step(rtx: RefTx) -> UndoResult | None:
            commit = land(rtx)
            if commit is None:
                return None
            return UndoResult(
                str(commit), reverted, keys, tree_patch(store, main.tree, tree), [], out.decisions
            )

        return step

    result = advance(store, what, u.names(revoke), attempt)
    if waiting:
        raise u.keep(*waiting[0])
    assert isinstance(result, UndoResult)
    return result


# -- the commands -------------------------------------------------------------------------
def revert(
    vault: Vault,
    revs: Sequence[str],
    by: str,
    source: str,
    confidence: float | str | None = None,
    justification: str = "",
    path: str | None = None,
    on_conflict: str | None = None,
    dry_run: bool = False,
) -> UndoResult:
    """Undo the changes of ``revs`` (only at ``path`` if given) as one new commit on main."""
    if not revs:
        raise InputError("name at least one commit to revert (e.g. main~1 or a commit id)")
    prov = _provenance(by, source, confidence, justification)
    policy = _policy(vault, on_conflict)
    if path is not None:
        codec.check_key(pointers.top_key(path))
    commits = newest_first(vault.store, [vault.store.resolve(r) for r in revs])
    main = vault.store.resolve(MAIN)
    for c in commits:
        if c.id != main.id and not vault.store.repo.descendant_of(main.id, c.id):
            raise InputError(
                f"{str(c.id)[:12]} is not in main's history; only what reached main can be reverted"
            )

    return undo_steps(
        vault, lambda _main: [step_of(c, path) for c in commits], prov, policy, dry_run, "revert"
    )


def restore(
    vault: Vault,
    rev: str | None,
    at: str | None,
    by: str,
    source: str,
    confidence: float | str | None = None,
    justification: str = "",
    path: str | None = None,
    dry_run: bool = False,
) -> UndoResult:
    """Put the document (or the value at ``path``) back as it was at ``rev`` or time ``at``.

    A deliberate overwrite, not a merge: what others wrote since at that place is replaced.
    """
    if (rev is None) == (at is None):
        raise InputError("give exactly one of a revision or --at TIME")
    prov = _provenance(by, source, confidence, justification)
    store = vault.store
    past = revision(store, rev, at)
    if path is not None:
        codec.check_key(pointers.top_key(path))
    u = _Undo(vault, prov, "fail")

    def attempt(_n: int) -> Step_[UndoResult] | Done[UndoResult]:
        main = u.main()
        if path is None:
            tree = _tree(store, store.build_tree(main.tree, dict(store.key_blobs(past.tree))))
        else:
            tree = _tree(
                store, _with_values(store, main.tree, [(path, value_at(store, past.tree, path))])
            )
        keys = keys_changed(store, main.tree, tree)
        patch = tree_patch(store, main.tree, tree)
        if dry_run or not keys:
            return Done(UndoResult(None, [], keys, patch, dry_run=dry_run))
        schemas.require_valid(
            store, tree, keys, "the undone document fails its schema", "; nothing changed"
        )
        msg = _message(
            prov,
            main,
            "restore",
            keys,
            [("Restores", str(past.id))],
            changes.between(store, main.tree, tree),
        )
        land = u.land(main, tree, msg)

        def step(rtx: RefTx) -> UndoResult | None:
            commit = land(rtx)
            return UndoResult(str(commit), [], keys, patch) if commit is not None else None

        return step

    return advance(store, "restore", [MAIN], attempt)


def quarantine_agent(
    vault: Vault,
    agent: str,
    by: str,
    source: str,
    since: str | None = None,
    until: str | None = None,
    justification: str = "",
    dry_run: bool = False,
    with_derived: bool = False,
    on_conflict: str | None = None,
) -> UndoResult:
    """Undo ``agent``'s writes in the window, record the quarantine and revoke its lease."""
    from gitvault.history.exposure import exposure

    check_agent(agent)
    prov = _provenance(by, source, None, justification or f"quarantine {agent}")
    policy = _policy(vault, on_conflict)
    store = vault.store
    held = quarantine.on_main(store).get(agent)
    if held is not None:
        raise InputError(
            f"{agent!r} is already quarantined since {held.since} by {held.by}; "
            f"lift it first with `gitvault quarantine --lift {agent}`"
        )
    entry = quarantine.Entry(
        agent, iso(vault.clock()), prov.agent, source, justification, since, until
    )

    def steps(main: pygit2.Commit) -> list[Step]:
        bad = commits_by(store, main.id, agent, since, until)
        if with_derived and bad:  # (all on main's first-parent chain, like ``bad``)
            derived = {e.commit for e in exposure(store, main.id, bad) if e.kind == "derived"}
            derived |= {str(c.id) for c in bad}
            bad = [c for c in first_parents(store, main.id) if str(c.id) in derived]
        return [step_of(c) for c in bad]  # newest first, as the chain

    def record(tree: pygit2.Tree) -> pygit2.Oid:
        entries = quarantine.read(store, tree)
        entries[agent] = entry
        return quarantine.write(store, tree, entries)

    try:
        result = undo_steps(
            vault, steps, prov, policy, dry_run, f"quarantine {agent}", record, revoke=agent
        )
    except ConflictError as e:
        raise ConflictError(
            f"{agent} is quarantined (its writes are refused from now on), but its {e}",
            {**e.report, "quarantine": entry.to_json()},
        ) from None
    return UndoResult(
        result.commit,
        result.reverted,
        result.changed,
        result.patch,
        result.conflicts,
        result.resolved,
        result.dry_run,
        result.kept,
        entry.to_json(),
    )


def lift(
    vault: Vault, agent: str, by: str, source: str = "quarantine", justification: str = ""
) -> quarantine.Entry | None:
    """End ``agent``'s quarantine (a commit on main); None when it was not quarantined."""
    check_agent(agent)
    prov = _provenance(by, source, None, justification or f"lift quarantine of {agent}")
    u = _Undo(vault, prov, "fail")
    store = vault.store

    def attempt(_n: int) -> Step_[Any] | Done[Any]:
        main = u.main()
        entries = quarantine.read(store, main.tree)
        entry = entries.pop(agent, None)
        if entry is None:
            return Done(None)
        tree = _tree(store, quarantine.write(store, main.tree, entries))
        msg = _message(prov, main, f"lift quarantine {agent}", [], [("Lifts", agent)], [])
        land = u.land(main, tree, msg)
        return lambda rtx: entry if land(rtx) is not None else None

    lifted: quarantine.Entry | None = advance(store, f"lift quarantine of {agent}", [MAIN], attempt)
    return lifted
