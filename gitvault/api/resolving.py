"""Kept conflicts and schemas on the :class:`~gitvault.api.vault.Vault` facade: list, drop and
resolve kept proposals, read and set a key's schema. Each write lands on main through
:func:`gitvault.engine.advance.advance`, like a checkin (mixed into ``Vault``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pygit2

from gitvault.core import codec
from gitvault.core.jsonmerge import Conflict
from gitvault.engine import integrate, trust
from gitvault.engine.advance import Step, advance, move_main
from gitvault.engine.checkin import CheckinResult
from gitvault.engine.merge import merge_trees
from gitvault.errors import ConflictError, InputError
from gitvault.git.refs import RefTx
from gitvault.git.storage import MAIN, Store
from gitvault.model import changes, quarantine, schemas, vaultfiles
from gitvault.model.conflicts import ConflictStore
from gitvault.model.provenance import (
    Provenance,
    check_agent,
    checkin_trailers,
    identity,
    message,
    parse_confidence,
    parse_trailers,
    subject_for,
)


class Resolving:
    """Conflicts and schemas for a vault (mixed into :class:`~gitvault.api.vault.Vault`)."""

    store: Store
    conflicts: ConflictStore
    clock: Callable[[], float]
    limits: codec.Limits

    def _main(self) -> pygit2.Oid:
        raise NotImplementedError  # the vault's own, see Vault._main

    # -- conflicts -------------------------------------------------------------------------
    def pending_conflicts(self) -> list[dict[str, Any]]:
        """Kept proposals, each with what conflicts now against main."""
        out = []
        main = self.store.commit(self._main())
        for k in self.conflicts.all():
            proposal = self.store.commit(k.commit)
            base = proposal.parents[0] if proposal.parents else proposal
            trailers = parse_trailers(proposal.message)
            outcome = merge_trees(self.store, base.tree, main.tree, proposal.tree)
            out.append(
                {
                    "id": k.id,
                    "ref": k.ref,
                    "agent": k.agent,
                    "proposal": k.commit,
                    "base": str(base.id),
                    "time": proposal.commit_time,
                    "source": trailers.get("Source", ""),
                    "confidence": trailers.get("Confidence"),
                    "conflicts": integrate.conflict_entries(
                        self.store, base.id, main.id, outcome.conflicts
                    ),
                }
            )
        return out

    def drop_conflict(self, conflict_id: str) -> str:
        """Forget a kept proposal (its commit stays reachable from the reflog until gc)."""
        return self.conflicts.drop(conflict_id).ref

    def resolve(
        self,
        conflict_id: str,
        take: str | None = None,
        picks: Mapping[str, str] | None = None,
        document: Mapping[str, Any] | None = None,
        agent: str | None = None,
        source: str | None = None,
    ) -> CheckinResult:
        """Finish a kept proposal: merge it into main with the given choices.

        ``take`` (``ours``/``theirs``) decides every conflict, ``picks`` maps a pointer (id
        form or positional, as the report shows) to a side and wins over ``take``;
        ``document`` instead gives the whole resolved document. A conflict left undecided
        refuses (exit 3) and changes nothing. The merge commit keeps the proposal's
        provenance and records each decision in ``Resolved`` trailers; with ``source`` it is
        instead the resolver's own write (``Agent-Id`` = ``agent``, that ``Source``,
        confidence 1), as a person's decision in the review page is.
        """
        kept = self.conflicts.get(conflict_id)
        if take not in (None, "ours", "theirs"):
            raise InputError(f"--take {take!r}: use ours, theirs or a FILE")
        for ptr, side in (picks or {}).items():
            if side not in ("ours", "theirs"):
                raise InputError(f"{ptr}={side}: choose ours or theirs")
        proposal = self.store.commit(kept.commit)
        base = proposal.parents[0]
        t = parse_trailers(proposal.message)
        prov = Provenance(
            kept.agent,
            t.get("Source") or "resolve",
            parse_confidence(t.get("Confidence")),
            t.get("Justification", ""),
        )
        resolver = check_agent(agent or kept.agent)
        quarantine.check(self.store, resolver)
        quarantine.check(self.store, kept.agent)
        if source is not None:  # the resolver's own write (the review page): its provenance
            prov = Provenance(resolver, source, 1.0, f"resolved {kept.id} of {kept.agent}").check()
        extra = [("Resolved-By", resolver), ("Conflict", kept.id)]

        def attempt(_n: int) -> Step[CheckinResult]:
            main = self.store.commit(self._main())
            if document is not None:
                target = self._resolve_with(document, main, proposal, prov, t, extra)
            else:

                def decide(c: Conflict) -> tuple[str, str] | None:
                    side = (picks or {}).get(c.path) or (picks or {}).get(c.pointer) or take
                    return (side, f"by {resolver}") if side else None

                try:
                    target = integrate.plan(
                        self.store,
                        base,
                        main,
                        proposal,
                        prov,
                        t.get("Lease", ""),
                        [],
                        decide,
                        self.clock(),
                        extra,
                    ).target
                except integrate.Refused as refused:
                    raise ConflictError(
                        f"{len(refused.entries)} conflict(s) of {kept.id} left undecided; "
                        "nothing changed",
                        {"id": kept.id, "ref": kept.ref, "conflicts": refused.entries},
                    ) from None

            trust.guard_resolve(self, kept, resolver, main, proposal, target)

            def step(rtx: RefTx) -> CheckinResult | None:
                if rtx.get(kept.ref) is None:
                    raise InputError(f"conflict {kept.id} was resolved or dropped meanwhile")
                if not move_main(rtx, main.id, target, f"resolve {kept.id}"):
                    return None
                rtx.delete(kept.ref)
                changed = codec.changed_keys(self._encoded(main), self._encoded(target))
                return CheckinResult(str(target), changed, None, True)  # no lease involved

            return step

        return advance(self.store, f"resolve {kept.id}", [MAIN, kept.ref], attempt)

    def _resolve_with(
        self,
        document: Mapping[str, Any],
        main: pygit2.Commit,
        proposal: pygit2.Commit,
        prov: Provenance,
        t: Mapping[str, str],
        extra: list[tuple[str, str]],
    ) -> pygit2.Oid:
        files = codec.encode_document(document, self.limits)
        tree = self.store.build_tree(main.tree, files)
        tree_obj = self._tree(tree)
        keys = [k[:-5] for k in files]
        schemas.require_valid(self.store, tree_obj, keys, "the resolved document fails its schema")
        trailers = checkin_trailers(prov, t.get("Lease", ""), str(proposal.parents[0].id))
        trailers += [("Merged-Commit", str(proposal.id)), ("Resolved", "all -> file"), *extra]
        trailers += changes.trailers(changes.between(self.store, main.tree, tree_obj, files))
        msg = message(subject_for(prov.agent, "merge", sorted(k[:-5] for k in files)), trailers)
        return self.store.write_commit(
            tree, [main.id, proposal.id], identity(prov.agent), msg, self.clock()
        )

    # -- schemas ---------------------------------------------------------------------------
    def schema(self, key: str) -> Any | None:
        """The JSON Schema of ``key`` on main, or None."""
        return schemas.read_schema(self.store, self.store.commit(self._main()).tree, key)

    def set_schema(self, key: str, schema: Any, agent: str = "gitvault") -> str:
        """Store ``schema`` for ``key`` in a commit on main; refuses if main's value fails it."""
        schemas.check_schema(schema, f"schema for {key}")
        path = schemas.schema_path(key)

        def attempt(_n: int) -> Step[str]:
            main = self.store.commit(self._main())
            tree = vaultfiles.with_file(self.store, main, path, codec.dumps(schema))
            schemas.require_valid(
                self.store, tree, [key], f"main's {key} fails this schema", "; fix the data first"
            )
            commit = vaultfiles.admin_commit(
                self.store,
                main,
                tree,
                agent,
                "schema",
                f"schema for {key}",
                f"schema {key}",
                self.clock(),
            )

            return lambda rtx: (
                str(commit) if move_main(rtx, main.id, commit, f"schema {key}") else None
            )

        return advance(self.store, f"schema set {key}", [MAIN], attempt)

    # -- helpers ---------------------------------------------------------------------------

    def _tree(self, oid: pygit2.Oid) -> pygit2.Tree:
        tree = self.store.repo[oid]
        assert isinstance(tree, pygit2.Tree)
        return tree

    def _encoded(self, commit: pygit2.Oid | pygit2.Commit) -> dict[str, bytes]:
        c = commit if isinstance(commit, pygit2.Commit) else self.store.commit(commit)
        return {n: self.store.blob(o) for n, o in self.store.key_blobs(c.tree).items()}
