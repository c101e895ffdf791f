"""What the engine's vault-wide operations (upkeep, undo) work on: the parts of a vault.

The API's :class:`~gitvault.api.vault.Vault` is one; the engine sits below the API, so it names
only what it uses instead of importing it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gitvault.git.storage import Store
from gitvault.model.conflicts import ConflictStore
from gitvault.model.leases import LeaseBook


class VaultParts(Protocol):
    """A vault's store, leases, kept conflicts and clock."""

    store: Store
    leases: LeaseBook
    conflicts: ConflictStore
    clock: Callable[[], float]

    @property
    def path(self) -> str: ...
