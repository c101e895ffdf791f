"""Upkeep and plumbing: config, the MCP server, doctor, gc, hooks, clone, fmt and the daemon."""

# Deliberately no `from __future__ import annotations`: with string annotations typer evals
# every parameter's Annotated[...] twice on each start (~10 ms per command; bench/README.md).
# Names imported only for type checking are quoted instead.

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gitvault.cli.common import (
    DAEMON_LAUNCHER,
    JsonOpt,
    VaultOpt,
    _err,
    _Group,
    _open,
    _out,
    _path,
    _want_json,
    app,
)

if TYPE_CHECKING:
    pass


config_app = typer.Typer(
    cls=_Group,
    rich_markup_mode=None,
    help="Settings: flag > $GITVAULT_* > vault git config.",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")


@config_app.command("list")
def config_list(ctx: typer.Context, vault: VaultOpt = None, as_json: JsonOpt = False) -> None:
    """Every setting with its value and where it came from."""
    rows = _open(ctx, vault, as_json).config()
    if as_json:
        _out(rows)
        return
    for r in rows:
        typer.echo(
            f"{r['name']:<12} {_setting_text(r['value']):<10} ({r['source']}; "
            f"${r['env']})  {r['help']}"
        )


@config_app.command("get")
def config_get(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Setting name, e.g. defaultTtl.")],
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print one setting's effective value."""
    value = _open(ctx, vault, as_json).config_get(name)
    _out({"name": name, "value": value}) if as_json else typer.echo(_setting_text(value))


def _setting_text(value: object) -> str:
    """A setting as git config writes it (booleans lower-case)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@config_app.command("set")
def config_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Setting name.")],
    value: Annotated[str, typer.Argument(help="New value (checked against its type).")],
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a setting in the vault's git config."""
    stored = _open(ctx, vault, as_json).config_set(name, value)
    _out({"name": name, "value": stored}) if as_json else _err(f"{name} = {value}")


@app.command()
def mcp(
    ctx: typer.Context,
    agent: Annotated[
        str | None,
        typer.Option("--agent", help="The agent this server acts for (else each call names one)."),
    ] = None,
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP on 127.0.0.1.")
    ] = False,
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = 8765,
    allow_quarantine: Annotated[
        bool,
        typer.Option(
            "--allow-quarantine",
            help="Offer the quarantine tool (an admin action; admin-only once admin rules exist).",
        ),
    ] = False,
    vault: VaultOpt = None,
) -> None:
    """Run an MCP server (stdio by default) exposing the vault's tools to an agent."""
    from gitvault.mcp.server import run

    key = (ctx.find_root().obj or {}).get("sign_key")
    if key:  # every call opens the vault afresh; the key reaches it as $GITVAULT_SIGNING_KEY
        os.environ["GITVAULT_SIGNING_KEY"] = os.path.abspath(key)
    run(
        _path(ctx, vault),
        agent=agent,
        transport="streamable-http" if http else "stdio",
        port=port,
        allow_quarantine=allow_quarantine,
    )


@app.command()
def doctor(
    ctx: typer.Context,
    fix: Annotated[bool, typer.Option("--fix", help="Repair what is safe to repair.")] = False,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check refs, main's JSON, leases, conflicts, hooks, stale locks, loose objects."""
    rep = _open(ctx, vault, as_json).doctor(fix)
    if as_json:
        _out(rep.to_json())
    else:
        for c in rep.checks:
            mark = "fixed" if c.fixed else ("ok" if c.ok else "PROBLEM")
            typer.echo(f"{mark:<8} {c.name:<14} {c.detail}")
    if not rep.ok:
        raise typer.Exit(1)


@app.command()
def gc(ctx: typer.Context, vault: VaultOpt = None, as_json: JsonOpt = False) -> None:
    """Prune expired leases and pack the repository (runs git gc)."""
    r = _open(ctx, vault, as_json).gc()
    if as_json:
        _out(r)
    else:
        _err(
            f"pruned {len(r['pruned_leases'])} expired lease(s); loose objects "
            f"{r['loose_before']} -> {r['loose_after']}"
        )


@app.command("install-hooks")
def install_hooks(ctx: typer.Context, vault: VaultOpt = None, as_json: JsonOpt = False) -> None:
    """(Re)install the vault's pre-receive/post-receive hooks for this gitvault."""
    paths = _open(ctx, vault, as_json).install_hooks()
    if as_json:
        _out({"installed": paths})
    for path in paths:
        _err(f"installed {path}")


@app.command()
def clone(
    url: Annotated[str, typer.Argument(help="The vault: path, file://, git:// or ssh:// URL.")],
    dest: Annotated[str, typer.Argument(metavar="DIR", help="New working copy.")],
    agent: Annotated[str, typer.Option("--agent", help="Who commits in this clone.")],
    as_json: JsonOpt = False,
) -> None:
    """A working copy for AGENT: edit K.json, `git commit`, `git push` to agents/AGENT."""
    from gitvault.api.remote import clone as do_clone

    path = do_clone(url, dest, agent)
    if as_json:
        _out({"path": str(path), "agent": agent})
    _err(f"cloned into {path}; edit the JSON files, `git commit --trailer Source=...`, `git push`")


@app.command()
def fmt(
    files: Annotated[list[Path], typer.Argument(help="JSON files to rewrite canonically.")],
    as_json: JsonOpt = False,
) -> None:
    """Rewrite JSON files in the vault's canonical form (indent 2, sorted keys, newline)."""
    from gitvault.hooks import fmt as do_fmt

    changed = do_fmt([str(f) for f in files])
    if as_json:
        _out({"formatted": changed})
    for path in changed:
        _err(f"formatted {path}")


@app.command(hidden=True)
def hook(
    name: Annotated[str, typer.Argument(help="pre-receive, post-receive, commit-msg, ...")],
    args: Annotated[list[str] | None, typer.Argument(help="The hook's arguments.")] = None,
) -> None:
    """Run a git hook (called by the shims gitvault installs)."""
    from gitvault.hooks import run

    code = run(name, args or [], sys.stdin, lambda line: typer.echo(line, err=True))
    raise typer.Exit(code)


daemon_app = typer.Typer(
    cls=_Group,
    rich_markup_mode=None,
    no_args_is_help=True,
    help=(
        "A resident process that makes every gitvault command start ~4x faster. The first "
        "checkout, checkin, status, log... that finds none starts one (said once on stderr; it "
        "exits after 10 idle minutes); not under CI or in git hooks, and never with "
        "GITVAULT_DAEMON=0 (GITVAULT_DAEMON=1: use one, never start one). While it runs, "
        "`gitvault` hands each call to it; without it commands run in their own process as "
        "always. Socket: $GITVAULT_DAEMON_SOCKET, else "
        "$XDG_RUNTIME_DIR/gitvault/daemon.sock, else /tmp/gitvault-UID/daemon.sock."
    ),
)
app.add_typer(daemon_app, name="daemon")


@daemon_app.command("start")
def daemon_start(
    ctx: typer.Context,
    idle: Annotated[
        float,
        typer.Option("--idle", help="Exit after this many seconds without a command (0: never)."),
    ] = 600,
    foreground: Annotated[
        bool,
        typer.Option(
            "--foreground", help="Serve from this process, logging to stderr, instead of detaching."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start the daemon and wait until it answers (one already running: says so, exit 0).

    It imports pygit2, typer and gitvault once, never opens a vault, and forks a worker per
    command. It exits by itself after --idle seconds without a command, or when gitvault
    changes on disk (the next command then runs without it).
    """
    from gitvault.daemon import control as daemon

    _want_json(ctx, as_json)
    info = daemon.start(DAEMON_LAUNCHER, idle, foreground)
    _out(info) if as_json else _err(daemon.describe(info))


@daemon_app.command("stop")
def daemon_stop(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Stop the daemon once its running commands finish (none running: says so, exit 0)."""
    from gitvault.daemon import control as daemon

    _want_json(ctx, as_json)
    info = daemon.stop()
    _out(info) if as_json else _err(daemon.describe(info))


@daemon_app.command("status")
def daemon_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Whether a daemon answers on the socket, its pid and how many commands it served."""
    from gitvault.daemon import control as daemon

    _want_json(ctx, as_json)
    info = daemon.status()
    _out(info) if as_json else _err(daemon.describe(info))
