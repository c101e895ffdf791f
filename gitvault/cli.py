"""The ``gitvault`` command: parse, call :class:`gitvault.Vault`, print, map errors to exit codes.

No git and no JSON rules live here. Errors are turned into exit codes in one place,
:class:`_Group.invoke`: ``gitvault: <message>`` on stderr and the error's ``exit_code``.
Data goes to stdout, messages to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from .errors import ConflictError, GitVaultError, InputError

if TYPE_CHECKING:
    from .leases import Lease
    from .vault import Vault

DEFAULT_VAULT = "vault.git"


class _Group(TyperGroup):
    """The one error handler: a GitVaultError becomes a message and its exit code."""

    def invoke(self, ctx: Any) -> Any:  # click's Context (vendored or not, by typer version)
        try:
            return super().invoke(ctx)
        except GitVaultError as e:
            _fail(ctx, e)
        except OSError as e:  # a file the user named, a disk that refused
            _fail(ctx, InputError(f"{e.filename or ''}: {e.strerror or e}".lstrip(": ")))


def _fail(ctx: typer.Context, e: GitVaultError) -> NoReturn:
    sub = ctx.invoked_subcommand and ctx.obj and ctx.obj.get("json")
    if isinstance(e, ConflictError) or sub:
        _print_error_report(e, bool(sub))
    typer.echo(f"gitvault: {e}", err=True)
    ctx.exit(e.exit_code)
    raise AssertionError("unreachable")


def _print_error_report(e: GitVaultError, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(e.to_json(), indent=2, ensure_ascii=False, sort_keys=True))
    elif isinstance(e, ConflictError) and e.report.get("conflicts"):
        from .report import conflict_text

        typer.echo(conflict_text(e.report))


app = typer.Typer(
    cls=_Group,
    help="Versioned, shared memory for teams of AI agents, kept in a bare git repository.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

VaultOpt = Annotated[
    str | None,
    typer.Option("--vault", help="Vault path (default: $GITVAULT_DIR, else ./vault.git).",
                 show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"gitvault {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    vault: VaultOpt = None,
    version: Annotated[bool | None, typer.Option("--version", callback=_version,
                                                 is_eager=True, help="Show the version.")] = None,
) -> None:
    ctx.obj = {"vault": vault}


def _path(ctx: typer.Context, vault: str | None) -> str:
    root = ctx.find_root().obj or {}
    return vault or root.get("vault") or os.environ.get("GITVAULT_DIR") or DEFAULT_VAULT


def _open(ctx: typer.Context, vault: str | None, as_json: bool = False) -> Vault:
    from .vault import Vault

    ctx.find_root().obj = {**(ctx.find_root().obj or {}), "json": as_json}
    return Vault.open(_path(ctx, vault))


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


def _lease_line(lease: Lease) -> str:
    from .leases import iso

    return (f"lease: {lease.agent} token {lease.token} ({lease.mode}), base {lease.base[:12]}, "
            f"expires {iso(lease.expires)} ({lease.ttl} s)")


@app.command()
def init(
    ctx: typer.Context,
    import_dir: Annotated[Path | None, typer.Option(
        "--import", help="Legacy memory folder to import as the first commit.")] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a new bare vault (never overwrites); optionally import a legacy folder."""
    from .vault import Vault

    ctx.find_root().obj = {**(ctx.find_root().obj or {}), "json": as_json}
    v = Vault.init(_path(ctx, vault), import_dir)
    st = v.status()
    if as_json:
        _out(st.to_json())
    else:
        _err(f"created vault {v.path} at {st.head} with {len(st.keys)} key(s)")


@app.command()
def checkout(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="Agent id.")],
    ttl: Annotated[int | None, typer.Argument(
        help="Lease time-to-live in seconds (default gitvault.defaultTtl, 900).")] = None,
    exclusive: Annotated[bool, typer.Option(
        "--exclusive",
        help="Refuse while others hold live leases; block them while held.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the document here.")] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take or renew AGENT's lease on main and print the document."""
    from .codec import dumps_document

    co = _open(ctx, vault, as_json).checkout(agent, ttl, exclusive)
    data = dumps_document(co.document)
    if out is not None:
        out.write_bytes(data)
    if as_json:
        now = co.lease.acquired
        _out({"lease": co.lease.to_json(now),
              **({"out": str(out)} if out else {"document": co.document})})
    elif out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    _err(_lease_line(co.lease))


@app.command()
def checkin(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="Agent id (must hold a live lease).")],
    proposed: Annotated[str, typer.Argument(
        help="The whole new document: a file, or - for stdin.")],
    source: Annotated[str, typer.Argument(help="Where the change came from.")],
    confidence: Annotated[str | None, typer.Argument(
        help="Confidence in [0, 1] (default 0.5).")] = None,
    justification: Annotated[str, typer.Argument(help="Why the change was made.")] = "",
    lease: Annotated[int | None, typer.Option(
        "--lease", help="Refuse unless the lease still has this token (fencing).")] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Commit PROPOSED as AGENT's change, with its provenance as trailers."""
    from .codec import loads_document

    v = _open(ctx, vault, as_json)
    doc = loads_document(_read_input(proposed), proposed)
    r = v.checkin(agent, doc, source, confidence, justification, lease)
    if as_json:
        _out(r.to_json())
    elif r.noop:
        _err(f"no change: the proposal equals {agent}'s base {r.lease.base[:12]}; "
             "nothing committed")
    else:
        typer.echo(r.commit)
        how = "merged into main" if r.merged else "committed"
        _err(f"{how}: {', '.join(r.changed)} by {agent} (lease {r.lease.token})")


@app.command()
def release(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="Agent id.")],
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Drop AGENT's lease (no lease: says so, exit 0)."""
    dropped = _open(ctx, vault, as_json).release(agent)
    if as_json:
        _out({"agent": agent, "released": dropped is not None,
              "token": dropped.token if dropped else None})
    else:
        _err(f"released lease of {agent}" if dropped else f"{agent} held no lease")


@app.command()
def status(
    ctx: typer.Context,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Head, commit count, keys and sizes, leases (live and expired), pending conflicts."""
    from .report import status_text

    st = _open(ctx, vault, as_json).status()
    if as_json:
        _out(st.to_json())
    else:
        typer.echo(status_text(st), nl=False)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="gitvault")
