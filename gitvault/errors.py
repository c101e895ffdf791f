"""Every error a user can cause, in one tree.

Each class carries ``exit_code``, the status the CLI returns for it, and a message that names
the problem and how to fix it. The CLI catches :class:`GitVaultError` in one place; anything
else reaching a user is a bug.

::

    GitVaultError (1)
    ├── InputError (1)            bad argument or file given by the user
    │   ├── CodecError (1)        not canonical-able JSON (syntax, NaN, duplicate key, bad key)
    │   ├── LegacyImportError (1) a legacy folder that cannot be imported
    │   ├── QueryError (1)        a JMESPath expression that does not parse; ``position`` says where
    │   ├── SchemaError (1)       a value that fails its key's JSON Schema, or a bad schema
    │   └── RemoteUnsupported (1) a write a remote vault cannot carry out; run it at the vault
    ├── RemoteError (1..5)        the vault's hooks refused a push; carries their exit code
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


class QueryError(InputError):
    """A query expression that does not parse; ``position`` is where (0-based), if known."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "position": self.position}


class CodecError(InputError):
    """A document that cannot be stored as canonical JSON."""


class LegacyImportError(InputError):
    """A legacy folder that cannot be imported; nothing was written."""


class SchemaError(InputError):
    """A value that fails its key's JSON Schema, or a schema that is not one."""

    def __init__(self, message: str, problems: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "problems": self.problems}


class RemoteUnsupported(InputError):
    """A write that cannot travel to a remote vault; refused before anything is written, so it
    never lands in the local cache alone."""

    def __init__(self, what: str, url: str) -> None:
        super().__init__(
            f"{what} cannot be done through {url}: run it on the machine that holds the vault "
            "(`--vault /path/to/vault.git`); nothing was changed"
        )
        self.what, self.url = what, url


class RemoteError(GitVaultError):
    """A refusal the vault's hooks reported over a push; carries their exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def from_os_error(e: OSError) -> GitVaultError:
    """The user error an ``OSError`` stands for: a file the user named, or a disk that refused.

    The CLI, the MCP server and the hooks all map through here, so the same failure reads the
    same everywhere (exit 1, the file and the system's reason).
    """
    where = f"{e.filename}: " if e.filename else ""
    return StorageError(f"{where}{e.strerror or e}")


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
            f"{path} already exists and is not empty; choose another path (init never overwrites)"
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
        keep = (
            f"; the proposal is kept as conflict {kept} (`gitvault resolve {kept} "
            "--take theirs` merges it)"
            if kept
            else ""
        )
        super().__init__(
            f"lease of {agent!r} expired at {expired_at:%Y-%m-%d %H:%M:%S}Z; "
            f"run `gitvault checkout {agent!r}` again{keep}"
        )
        self.agent, self.expired_at, self.kept = agent, expired_at, kept


class LeaseHeld(LeaseError):
    def __init__(
        self, agent: str, holders: list[str], exclusive: bool, queued: bool = False
    ) -> None:
        who = ", ".join(repr(h) for h in holders)
        if queued:
            msg = (
                f"{who} queue(s) for the lease; wait your turn with "
                f"`gitvault checkout {agent} --exclusive --wait SECONDS`"
            )
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
        super().__init__(
            f"{agent!r} waited {waited:g} s for its lease and gave up ({where}); "
            "wait longer with --wait SECONDS"
        )
        self.agent, self.waited = agent, waited


class LeaseFenced(LeaseError):
    def __init__(self, agent: str, given: int, current: int, kept: str | None = None) -> None:
        keep = (
            f"; the proposal is kept as conflict {kept} (`gitvault resolve {kept} "
            "--take theirs` merges it)"
            if kept
            else ""
        )
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
