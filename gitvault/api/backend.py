"""The one interface of a vault, local or remote, and which of its methods write.

:class:`~gitvault.api.vault.Vault` holds the vault on this machine;
:class:`~gitvault.api.remote.RemoteVault` reaches one through git. They share no code path for
writes: the remote one implements every write itself (a push the vault's hooks carry out) or
refuses it with :class:`~gitvault.errors.RemoteUnsupported`, and reads from a fetched cache.
A remote vault that inherited local writes once acknowledged checkins that only ever reached
its cache; these two lists are how a test makes sure a new write cannot do that again.
"""

from __future__ import annotations

# Every public method of Vault is in exactly one of these (tests/test_backends.py checks it).
WRITES = frozenset(
    {
        "checkout",
        "lease",
        "release",
        "checkin",
        "checkin_patch",
        "resolve",
        "drop_conflict",
        "set_schema",
        "config_set",
        "gc",
        "doctor",
        "fold_branch",
        "install_hooks",
        "change_access",
        "checkout_parts",
        "revert",
        "restore",
        "quarantine",
        "lift_quarantine",
        "add_key",
        "revoke_key",
    }
)
READS = frozenset(
    {
        "head",
        "read",
        "status",
        "log",
        "show",
        "diff",
        "blame",
        "export",
        "schema",
        "config",
        "config_get",
        "pending_conflicts",
        "patched",
        "preview",
        "parse",
        "path",
        "access",
        "watch",
        "store_for",
        "query",
        "search",
        "show_cut",
        "exposure",
        "allowed_signers",
        "verdict",
        "verify",
        "sign_with",  # configures this handle (which key signs its commits); the vault is unchanged
    }
)
# Constructors: ``Vault.open``/``Vault.init`` (a path); ``RemoteVault(url)`` (a git URL).
CONSTRUCTORS = frozenset({"open", "init"})
