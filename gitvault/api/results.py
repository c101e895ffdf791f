"""What the API hands back: a checkout, a vault's status, an agent's working session.

The types callers hold on to live apart from :class:`~gitvault.api.vault.Vault` so that a
remote vault returns the very same ones (:class:`~gitvault.engine.checkin.CheckinResult` is
the engine's, re-exported by :mod:`gitvault.api.vault`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gitvault.core.codec import Document
from gitvault.engine.checkin import CheckinResult
from gitvault.model import quarantine
from gitvault.model.leases import Lease


@dataclass(frozen=True)
class Checkout:
    """What ``checkout`` hands an agent: the document at the lease's base, and the lease."""

    document: Document
    lease: Lease


@dataclass(frozen=True)
class KeyInfo:
    key: str
    size: int
    blob: str


@dataclass(frozen=True)
class Status:
    path: str
    head: str | None
    commits: int
    keys: list[KeyInfo]
    leases: list[Lease]
    conflicts: list[str]
    now: float = field(repr=False)
    quarantined: list[quarantine.Entry] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "vault": self.path,
            "head": self.head,
            "commits": self.commits,
            "keys": {k.key: {"size": k.size, "blob": k.blob} for k in self.keys},
            "leases": [x.to_json(self.now) for x in self.leases],
            "conflicts": self.conflicts,
            "quarantined": [q.to_json() for q in self.quarantined],
        }


class Backend(Protocol):
    """What a :class:`Session` needs of a vault, local or remote (see gitvault.api.backend)."""

    def checkin(
        self,
        agent: str,
        document: Mapping[str, Any],
        source: str,
        confidence: float | str | None = None,
        justification: str = "",
        lease: int | None = None,
        on_conflict: str | None = None,
    ) -> CheckinResult: ...

    def read(self, rev: str | None = None) -> Document: ...


class Session:
    """One agent's working copy under a lease (see :meth:`Vault.lease`).

    ``doc`` is the document at the lease's base; change it in place and :meth:`commit`. After a
    commit the lease stands on the new head, so the session can keep working.
    """

    def __init__(self, vault: Backend, checkout: Checkout) -> None:
        self.vault, self.doc, self.lease = vault, checkout.document, checkout.lease

    def commit(
        self,
        source: str,
        confidence: float | None = None,
        justification: str = "",
        on_conflict: str | None = None,
    ) -> CheckinResult:
        """Check ``doc`` in with this lease's token (a newer checkout fences it)."""
        r = self.vault.checkin(
            self.lease.agent,
            self.doc,
            source,
            confidence,
            justification,
            lease=self.lease.token,
            on_conflict=on_conflict,
        )
        if r.lease is not None:
            self.lease = r.lease
        if r.merged:
            self.doc = self.vault.read(r.commit)
        return r
