"""Refused proposals, kept so nothing is lost: ``refs/conflicts/<escaped agent>/<n>``.

The ref points at the agent's own commit (made on its lease's base, with its trailers), so
``git log refs/conflicts/...`` shows exactly what was proposed. The id users type is
``<agent>/<n>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pygit2

from gitvault.errors import InputError
from gitvault.git.refs import RefTx
from gitvault.git.storage import Store
from gitvault.model.provenance import escape_agent, unescape_agent

PREFIX = "refs/conflicts/"


@dataclass(frozen=True)
class Kept:
    id: str
    ref: str
    agent: str
    commit: str


def _parse_ref(ref: str, target: pygit2.Oid) -> Kept | None:
    rest = ref[len(PREFIX) :]
    esc, _, n = rest.rpartition("/")
    if not esc or not n.isdigit():
        return None
    try:
        agent = unescape_agent(esc)
    except (UnicodeDecodeError, ValueError):
        return None
    return Kept(f"{agent}/{n}", ref, agent, str(target))


class ConflictStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def all(self) -> list[Kept]:
        out = [
            k
            for ref, t in self.store.refs_under(PREFIX).items()
            if (k := _parse_ref(ref, t)) is not None
        ]
        return sorted(out, key=lambda k: (k.agent, int(k.id.rsplit("/", 1)[1])))

    def keep(self, agent: str, commit: pygit2.Oid) -> Kept:
        """Store ``commit`` under the agent's next free number (compare-and-swap create)."""
        esc = escape_agent(agent)
        while True:
            taken = [
                int(r.rsplit("/", 1)[1])
                for r in self.store.refs_under(f"{PREFIX}{esc}/")
                if r.rsplit("/", 1)[1].isdigit()
            ]
            n = max(taken, default=0) + 1
            ref = f"{PREFIX}{esc}/{n}"

            def fn(rtx: RefTx, ref: str = ref) -> bool:
                if rtx.get(ref) is not None:
                    return False
                rtx.set(ref, commit, "conflict: kept proposal")
                return True

            if self.store.transact([ref], fn, f"keep conflict of {agent}"):
                return Kept(f"{agent}/{n}", ref, agent, str(commit))

    def get(self, conflict_id: str) -> Kept:
        for k in self.all():
            if conflict_id in (k.id, k.ref, k.ref[len(PREFIX) :]):
                return k
        raise InputError(f"no pending conflict {conflict_id!r}; `gitvault conflicts` lists them")

    def drop(self, conflict_id: str) -> Kept:
        k = self.get(conflict_id)

        def fn(rtx: RefTx) -> None:
            if rtx.get(k.ref) is None:
                raise InputError(f"conflict {conflict_id!r} was already resolved or dropped")
            rtx.delete(k.ref)

        self.store.transact([k.ref], fn, f"drop conflict {conflict_id}")
        return k
