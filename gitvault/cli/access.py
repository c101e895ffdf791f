"""``gitvault access ...``: who may act as which agent (the rules in ``.gitvault/access.json``).

Each change is one commit on main. On the vault's machine it is written directly; against a
URL it is pushed to main, where the vault's pre-receive lets only an authenticated admin
change the file.
"""

# No `from __future__ import annotations`, as in cli.py: typer evaluates the annotations.

from typing import TYPE_CHECKING, Annotated, Any

import typer

from gitvault.cli.common import JsonOpt, VaultOpt, _err, _Group, _open, _out

if TYPE_CHECKING:
    from gitvault.model.access import Rules

access_app = typer.Typer(
    cls=_Group,
    rich_markup_mode=None,
    no_args_is_help=True,
    help=(
        "Who may act as which agent: grants of agent patterns to authenticated users, and admins. "
        "Kept on main in .gitvault/access.json (see docs/hosting.md)."
    ),
)
admin_app = typer.Typer(
    cls=_Group,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Admins: users who may act as any agent and change the rules.",
)
access_app.add_typer(admin_app, name="admin")

ByOpt = Annotated[str, typer.Option("--by", help="Agent id the rules commit is written as.")]
User = Annotated[
    str,
    typer.Argument(
        help="Authenticated user (GL_USER / REMOTE_USER); a glob pattern matches several."
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(access_app, name="access")


def set_up_hosting(v: "Any", hosted: bool, admins: list[str], identity_from: str | None) -> None:
    """``init --hosted / --admin / --identity-from``: the settings, then the first rules."""
    if identity_from is not None:
        v.config_set("identityFrom", identity_from)
    if hosted:
        v.config_set("requireIdentity", "true")
    for name in admins:
        v.change_access(lambda r, name=name: r.add_admin(name), "gitvault", f"admin add {name}")


def _changed(
    ctx: typer.Context, vault: str | None, as_json: bool, what: str, by: str, change: "Any"
) -> None:
    v = _open(ctx, vault, as_json)
    commit = v.change_access(change, by, what)
    if as_json:
        _out({"commit": commit, "change": what, "rules": v.access().to_json()})
    else:
        typer.echo(commit)
        _err(f"access: {what}")


@access_app.command("grant")
def grant(
    ctx: typer.Context,
    user: User,
    pattern: Annotated[str, typer.Argument(help="Agent id or glob pattern, e.g. 'alice-*'.")],
    by: ByOpt = "gitvault",
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let USER act as the agents matching PATTERN."""
    _changed(ctx, vault, as_json, f"grant {user} {pattern}", by, lambda r: r.grant(user, pattern))


@access_app.command("revoke")
def revoke(
    ctx: typer.Context,
    user: User,
    pattern: Annotated[
        str | None, typer.Argument(help="The pattern to take back (default: all of USER's grants).")
    ] = None,
    by: ByOpt = "gitvault",
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take back USER's grant of PATTERN (or all of USER's grants)."""
    _changed(
        ctx,
        vault,
        as_json,
        f"revoke {user} {pattern or '(all)'}",
        by,
        lambda r: r.revoke(user, pattern),
    )


@access_app.command("list")
def list_rules(ctx: typer.Context, vault: VaultOpt = None, as_json: JsonOpt = False) -> None:
    """Print the admins and grants on main, one rule a line."""
    from gitvault.model.access import describe

    rules: Rules = _open(ctx, vault, as_json).access()
    if as_json:
        _out({**rules.to_json(), "present": rules.present})
    else:
        for line in describe(rules):
            typer.echo(line)


@access_app.command("may")
def may(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="Authenticated user.")],
    agent: Annotated[str, typer.Argument(help="Agent id.")],
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Say which rule lets USER act as AGENT (exit 5 when none does)."""
    rule = _open(ctx, vault, as_json).access().check(user, agent, "access may")
    _out({"user": user, "agent": agent, "allowed": True, "rule": rule}) if as_json else (
        typer.echo(rule)
    )


@admin_app.command("add")
def admin_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Authenticated user to make an admin.")],
    by: ByOpt = "gitvault",
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make NAME an admin."""
    _changed(ctx, vault, as_json, f"admin add {name}", by, lambda r: r.add_admin(name))


@admin_app.command("remove")
def admin_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Admin to remove.")],
    by: ByOpt = "gitvault",
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove NAME from the admins."""
    _changed(ctx, vault, as_json, f"admin remove {name}", by, lambda r: r.remove_admin(name))
