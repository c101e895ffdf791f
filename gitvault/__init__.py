"""gitvault: versioned, shared memory for teams of AI agents, kept in a bare git repository."""

from .errors import GitVaultError
from .leases import Lease
from .vault import CheckinResult, Checkout, Session, Status, Vault

__all__ = [
    "CheckinResult", "Checkout", "GitVaultError", "Lease", "Session", "Status", "Vault",
]
__version__ = "0.1.0"
