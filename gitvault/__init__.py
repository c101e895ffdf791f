"""gitvault: versioned, shared memory for teams of AI agents, kept in a bare git repository.

``from gitvault import Vault`` is the whole API. The names are loaded on first use (PEP 562)
so that ``gitvault --help`` does not pay for pygit2.
"""

from __future__ import annotations

# Not `from typing import ...`, nor errors eagerly: `gitvault.console`, the console script,
# starts with this file and hands most calls to the daemon; typing and datetime would cost it ~4 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gitvault.api.vault import CheckinResult, Checkout, Session, Status, Vault
    from gitvault.errors import GitVaultError
    from gitvault.model.leases import Lease

__all__ = [
    "CheckinResult",
    "Checkout",
    "GitVaultError",
    "Lease",
    "Session",
    "Status",
    "Vault",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "GitVaultError":
        from gitvault.errors import GitVaultError

        return GitVaultError
    if name == "Lease":
        from gitvault.model.leases import Lease

        return Lease
    if name in ("CheckinResult", "Checkout", "Session", "Status", "Vault"):
        from gitvault.api import vault

        return getattr(vault, name)
    raise AttributeError(f"module 'gitvault' has no attribute {name!r}")
