"""Undo on the :class:`~gitvault.api.vault.Vault` facade: revert, restore, quarantine, exposure.

Each method delegates to :mod:`gitvault.engine.undo` or :mod:`gitvault.history.exposure`;
mixed into ``Vault`` (whose store, leases, conflicts and clock the engine works on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pygit2

from gitvault.git.storage import Store
from gitvault.model.conflicts import ConflictStore
from gitvault.model.leases import LeaseBook


class Undoing:
    """Undo for a vault (mixed into :class:`~gitvault.api.vault.Vault`)."""

    store: Store
    leases: LeaseBook
    conflicts: ConflictStore
    clock: Callable[[], float]

    @property
    def path(self) -> str:
        raise NotImplementedError  # the vault's own

    def _main(self) -> pygit2.Oid:
        raise NotImplementedError  # the vault's own, see Vault._main

    # -- undo (engine.undo, history.exposure) ------------------------------------------------
    def revert(
        self,
        revs: list[str],
        by: str,
        source: str,
        confidence: float | str | None = None,
        justification: str = "",
        path: str | None = None,
        on_conflict: str | None = None,
        dry_run: bool = False,
    ) -> Any:
        """Undo the changes of ``revs`` as one new commit on main (a 3-way merge)."""
        from gitvault.engine import undo

        return undo.revert(
            self, revs, by, source, confidence, justification, path, on_conflict, dry_run
        )

    def restore(
        self,
        rev: str | None = None,
        *,
        at: str | None = None,
        by: str,
        source: str,
        confidence: float | str | None = None,
        justification: str = "",
        path: str | None = None,
        dry_run: bool = False,
    ) -> Any:
        """Put the document (or the value at ``path``) back as it was at ``rev``/``at``."""
        from gitvault.engine import undo

        return undo.restore(self, rev, at, by, source, confidence, justification, path, dry_run)

    def quarantine(
        self,
        agent: str,
        *,
        by: str,
        source: str,
        since: str | None = None,
        until: str | None = None,
        justification: str = "",
        dry_run: bool = False,
        with_derived: bool = False,
        on_conflict: str | None = None,
    ) -> Any:
        """Undo what ``agent`` wrote in the window and refuse its writes until lifted."""
        from gitvault.engine import undo

        return undo.quarantine_agent(
            self, agent, by, source, since, until, justification, dry_run, with_derived, on_conflict
        )

    def lift_quarantine(
        self, agent: str, *, by: str, source: str = "quarantine", justification: str = ""
    ) -> Any:
        """End ``agent``'s quarantine; None when it was not quarantined."""
        from gitvault.engine import undo

        return undo.lift(self, agent, by, source, justification)

    def exposure(
        self,
        rev: str | None = None,
        *,
        agent: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[Any]:
        """Later commits whose writers had the bad change in their lease base."""
        from gitvault.history import exposure

        return exposure.report(self.store, self._main(), rev, agent, since, until)
