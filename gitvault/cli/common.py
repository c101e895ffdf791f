"""What every command shares: the root app and its options, opening a vault, printing, and
the one error handler (:class:`_Group.invoke`: ``gitvault: <message>`` on stderr, the error's
``exit_code``)."""

# Deliberately no `from __future__ import annotations`: with string annotations typer evals
# every parameter's Annotated[...] twice on each start (~10 ms per command; bench/README.md).
# Names imported only for type checking are quoted instead.

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from gitvault.errors import ConflictError, GitVaultError, InputError, from_os_error

if TYPE_CHECKING:
    from gitvault.api.remote import RemoteVault
    from gitvault.api.vault import Vault
    from gitvault.model.leases import Lease


DEFAULT_VAULT = "vault.git"
DAEMON_LAUNCHER = "gitvault.cli:serve_daemon"  # the daemon's server process runs this CLI


class _Group(TyperGroup):
    """The one error handler: a GitVaultError becomes a message and its exit code."""

    def invoke(self, ctx: Any) -> Any:  # click's Context (vendored or not, by typer version)
        try:
            return super().invoke(ctx)
        except GitVaultError as e:
            _fail(ctx, e)
        except OSError as e:  # a file the user named, a disk that refused
            _fail(ctx, from_os_error(e))


def _fail(ctx: typer.Context, e: GitVaultError) -> NoReturn:
    sub = (ctx.find_root().obj or {}).get("json")
    if isinstance(e, ConflictError) or sub:
        _print_error_report(e, bool(sub))
    typer.echo(f"gitvault: {e}", err=True)
    ctx.exit(e.exit_code)
    raise AssertionError("unreachable")


def _print_error_report(e: GitVaultError, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(e.to_json(), indent=2, ensure_ascii=False, sort_keys=True))
    elif isinstance(e, ConflictError) and e.report.get("conflicts"):
        from gitvault.api.report import conflict_text

        typer.echo(conflict_text(e.report))


app = typer.Typer(
    cls=_Group,
    help="Versioned, shared memory for teams of AI agents, kept in a bare git repository.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: starts ~0.2 s faster than rich's, and greps well
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

VaultOpt = Annotated[
    str | None,
    typer.Option(
        "--vault", help="Vault path (default: $GITVAULT_DIR, else ./vault.git).", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def _version(value: bool) -> None:
    if value:
        from gitvault import __version__

        typer.echo(f"gitvault {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    vault: VaultOpt = None,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
    workdir: Annotated[
        str | None,
        typer.Option(
            "--workdir", help="Cache clone for a remote vault (default ~/.cache/gitvault/...)."
        ),
    ] = None,
    sign_key: Annotated[
        str | None,
        typer.Option(
            "--sign-key",
            help="Sign the agent's commits with this SSH key (a private key, or a "
            ".pub held by ssh-agent); default $GITVAULT_SIGNING_KEY.",
        ),
    ] = None,
) -> None:
    ctx.obj = {"vault": vault, "workdir": workdir, "sign_key": sign_key}


def _path(ctx: typer.Context, vault: str | None) -> str:
    root = ctx.find_root().obj or {}
    return vault or root.get("vault") or os.environ.get("GITVAULT_DIR") or DEFAULT_VAULT


def _open(ctx: typer.Context, vault: str | None, as_json: bool = False) -> "Vault | RemoteVault":
    """The vault at a path, or behind a git URL (through a local cache clone)."""
    from gitvault.api.remote import RemoteVault, is_remote
    from gitvault.api.vault import Vault

    _want_json(ctx, as_json)
    path = _path(ctx, vault)
    root = ctx.find_root().obj or {}
    v = RemoteVault(path, root.get("workdir")) if is_remote(path) else Vault.open(path)
    if root.get("sign_key"):
        v.sign_with(root["sign_key"])
    return v


def _want_json(ctx: typer.Context, as_json: bool) -> None:
    """Remember --json so the error handler answers in JSON too."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = {}
    root.obj["json"] = as_json


def _out(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True))


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror}") from None


def _lease_line(lease: "Lease") -> str:
    from gitvault.model.leases import iso

    return (
        f"lease: {lease.agent} token {lease.token} ({lease.mode}), base {lease.base[:12]}, "
        f"expires {iso(lease.expires)} ({lease.ttl} s)"
    )
