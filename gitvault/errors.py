"""Every error a user can cause, in one tree.

Each class carries ``exit_code``, the status the CLI returns for it, and a message that names
the problem and how to fix it. The CLI catches :class:`GitVaultError` in one place; anything
else reaching a user is a bug.

::

    GitVaultError (1)
    ├── InputError (1)            bad argument or file given by the user
    │   ├── CodecError (1)        not canonical-able JSON (syntax, NaN, duplicate key, bad key)
    │   └── LegacyImportError (1) a legacy folder that cannot be imported
    ├── VaultError (1)            the vault itself
    │   ├── VaultNotFound, VaultExists, VaultBusy (lost races past the retry budget)
    │   └── StorageError          the disk or git refused a write
    ├── DaemonError (1)           `gitvault daemon` could not start, reach or stop the daemon
    │   └── DaemonUnsafe (1)      its socket folder is not private to the user
    ├── ConflictError (3)         the merge found true conflicts; ``report`` says which
    ├── LeaseError (4)
    │   ├── NoLease, LeaseExpired, LeaseHeld (exclusive), LeaseFenced (stale token)
│   └── LeaseWaitTimeout      `checkout --wait` gave up
    └── NotAllowed (5)            the writer may not do this: not who it claims, no right for
                                  that agent or that part of the document, quarantined, or a
                                  missing or wrong signature; ``rule`` names what said no
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class GitVaultError(Exception):
    """Base of every error a user can cause. ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form for ``--json`` output and the MCP server."""
        return {"error": type(self).__name__, "message": str(self), "exit_code": self.exit_code}


class InputError(GitVaultError):
    """A bad argument, option or input file."""


class CodecError(InputError):
    """A document that cannot be stored as canonical JSON."""


class LegacyImportError(InputError):
    """A legacy folder that cannot be imported; nothing was written."""


class VaultError(GitVaultError):
    """A problem with the vault repository itself."""


class VaultNotFound(VaultError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"no gitvault at {path}; create one with `gitvault init --vault {path}` "
            "or point --vault / $GITVAULT_DIR at an existing vault"
        )
        self.path = path


class VaultExists(VaultError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} already exists and is not empty; choose another path "
            "(init never overwrites)"
        )
        self.path = path


class VaultBusy(VaultError):
    """Lost a compare-and-swap race more times than the retry budget allows."""

    def __init__(self, what: str, attempts: int) -> None:
        super().__init__(
            f"{what}: the vault kept changing under us ({attempts} attempts); "
            "try again, or run `gitvault status` to look for a stuck writer"
        )
        self.what, self.attempts = what, attempts


class StorageError(VaultError):
    """The disk or libgit2 refused a read or a write."""


class DaemonError(GitVaultError):
    """``gitvault daemon start|stop|status`` failed; commands themselves never need a daemon."""


class DaemonUnsafe(DaemonError):
    """The socket's folder could be entered by someone else, who would see every command."""

    def __init__(self, folder: str, why: str) -> None:
        super().__init__(
            f"{folder} {why}; the daemon's socket needs a folder only you can enter: "
            "remove it, or set GITVAULT_DAEMON_SOCKET to a path in such a folder"
        )
        self.folder = folder


class ConflictError(GitVaultError):
    """True merge conflicts; main is unchanged."""

    exit_code = 3

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), **self.report}


class LeaseError(GitVaultError):
    exit_code = 4


class NoLease(LeaseError):
    def __init__(self, agent: str) -> None:
        super().__init__(f"{agent!r} holds no lease; run `gitvault checkout {agent!r}` first")
        self.agent = agent


class LeaseExpired(LeaseError):
    def __init__(self, agent: str, expired_at: datetime, kept: str | None = None) -> None:
        keep = (f"; the proposal is kept as conflict {kept} (`gitvault resolve {kept} "
                "--take theirs` merges it)" if kept else "")
        super().__init__(
            f"lease of {agent!r} expired at {expired_at:%Y-%m-%d %H:%M:%S}Z; "
            f"run `gitvault checkout {agent!r}` again{keep}"
        )
        self.agent, self.expired_at, self.kept = agent, expired_at, kept


class LeaseHeld(LeaseError):
    def __init__(self, agent: str, holders: list[str], exclusive: bool,
                 queued: bool = False) -> None:
        who = ", ".join(repr(h) for h in holders)
        if queued:
            msg = (f"{who} queue(s) for the lease; wait your turn with "
                   f"`gitvault checkout {agent} --exclusive --wait SECONDS`")
        elif exclusive:
            msg = f"{who} holds an exclusive lease; {agent!r} must wait until it is released"
        else:
            msg = (
                f"cannot take an exclusive lease for {agent!r}: {who} hold(s) live leases; "
                "wait for them or take a shared lease"
            )
        super().__init__(msg)
        self.agent, self.holders, self.exclusive = agent, holders, exclusive


class LeaseWaitTimeout(LeaseError):
    """``checkout --wait`` gave up: the lease did not come free in time (exit 4)."""

    def __init__(self, agent: str, waited: float, where: str) -> None:
        super().__init__(f"{agent!r} waited {waited:g} s for its lease and gave up ({where}); "
                         "wait longer with --wait SECONDS")
        self.agent, self.waited = agent, waited


class LeaseFenced(LeaseError):
    def __init__(self, agent: str, given: int, current: int, kept: str | None = None) -> None:
        keep = (f"; the proposal is kept as conflict {kept} (`gitvault resolve {kept} "
                "--take theirs` merges it)" if kept else "")
        super().__init__(
            f"lease token {given} of {agent!r} is stale (current token is {current}); "
            f"run `gitvault checkout {agent!r}` again{keep}"
        )
        self.agent, self.given, self.current, self.kept = agent, given, current, kept


class NotAllowed(GitVaultError):
    """A rule of the vault refused the writer; ``rule`` says which rule, for people and tools."""

    exit_code = 5

    def __init__(self, message: str, rule: str = "", **details: Any) -> None:
        super().__init__(message)
        self.rule, self.details = rule, details

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "rule": self.rule, **self.details}
