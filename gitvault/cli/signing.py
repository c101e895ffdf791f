"""``gitvault keys ...``, ``gitvault verify`` and the path rules of ``gitvault access ...``.

Thin as every command: parse, call :class:`gitvault.Vault`, print. Keys and rules are
commits on main (see :mod:`gitvault.engine.signers` and :mod:`gitvault.engine.pathcheck`).
"""

# No `from __future__ import annotations`, as in cli.py: typer evaluates the annotations.

from typing import Annotated, Any

import typer

from gitvault.cli.access import ByOpt, access_app
from gitvault.cli.common import JsonOpt, VaultOpt, _err, _Group, _open, _out
from gitvault.errors import GitVaultError, InputError

keys_app = typer.Typer(
    cls=_Group,
    rich_markup_mode=None,
    no_args_is_help=True,
    help=(
        "Agents' signing keys: the allowed signers kept on main in .gitvault/allowed_signers "
        "(git's format; principal = agent id)."
    ),
)

Agent = Annotated[str, typer.Argument(help="Agent id (the key's principal).")]


class VerifyFailed(GitVaultError):
    """``gitvault verify`` found bad commits (listed on stdout)."""

    exit_code = 5


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.command("verify")(verify)


@keys_app.command("add")
def keys_add(
    ctx: typer.Context,
    agent: Agent,
    key: Annotated[str, typer.Argument(metavar="KEY.pub", help="The agent's public key file.")],
    valid_after: Annotated[
        str | None,
        typer.Option(
            "--valid-after",
            help="Valid from this time (ISO 8601, unix seconds or "
            "YYYYMMDDHHMMSSZ); default: now, so it vouches for no earlier commit.",
        ),
    ] = None,
    by: ByOpt = "gitvault",
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let AGENT sign its commits with KEY (a commit on main)."""
    v = _local(_open(ctx, vault, as_json))
    commit = v.add_key(agent, key, valid_after, by)
    _done(v, commit, f"added a key of {agent}", as_json)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    agent: Agent,
    key: Annotated[
        str,
        typer.Argument(metavar="KEY", help="The key: its .pub file or its SHA256: fingerprint."),
    ],
    by: ByOpt = "gitvault",
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """End AGENT's KEY now (valid-before): older commits stay verified, newer are refused."""
    v = _local(_open(ctx, vault, as_json))
    commit = v.revoke_key(agent, key, by)
    _done(v, commit, f"revoked a key of {agent}", as_json)


def _local(v: Any) -> Any:
    """Keys are changed on the vault's machine: a remote handle would write only its cache."""
    from gitvault.api.remote import RemoteVault

    if isinstance(v, RemoteVault):
        raise InputError(
            "change keys on the vault's machine (`gitvault keys ...` with a path), or as an "
            "admin push a commit of .gitvault/allowed_signers to main"
        )
    return v


def _done(v: Any, commit: str, what: str, as_json: bool) -> None:
    if as_json:
        _out({"commit": commit, "change": what, "keys": [k.to_json() for k in v.allowed_signers()]})
    else:
        typer.echo(commit)
        _err(f"keys: {what}")


@keys_app.command("list")
def keys_list(ctx: typer.Context, vault: VaultOpt = None, as_json: JsonOpt = False) -> None:
    """Print the allowed signers on main: principal, fingerprint, validity."""
    keys = _open(ctx, vault, as_json).allowed_signers()
    if as_json:
        _out([k.to_json() for k in keys])
        return
    for k in keys:
        when = " ".join(
            f"{n}={k.option(n)}" for n in ("valid-after", "valid-before") if k.option(n)
        )
        typer.echo(f"{','.join(k.principals)} {k.fingerprint} {k.keytype} {when}".rstrip())


@keys_app.command("export")
def keys_export(
    ctx: typer.Context,
    out: Annotated[str | None, typer.Argument(help="Write here (default stdout).")] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write main's allowed signers for git's gpg.ssh.allowedSignersFile."""
    from gitvault.engine.signing import format_signers

    data = format_signers(_open(ctx, vault, as_json).allowed_signers())
    if out is None:
        typer.echo(data.decode(), nl=False)
    else:
        with open(out, "wb") as f:
            f.write(data)
        _out({"out": out}) if as_json else _err(f"wrote {out}")


def verify(
    ctx: typer.Context,
    rev: Annotated[
        str | None, typer.Argument(help="Check the history up to REV (default main).")
    ] = None,
    require: Annotated[
        str,
        typer.Option(
            "--require",
            help="all: every commit signed; agents: the vault's own "
            "unsigned merges pass; off: only wrong signatures count.",
        ),
    ] = "all",
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Ignore verdicts kept from earlier runs in "
            "<vault>/gitvault-verified/; run ssh-keygen on every commit.",
        ),
    ] = False,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check every signature up to REV against the allowed signers as they were at each
    commit, and that main's history was never rewritten. One line per bad commit; exit 5 if
    there is any."""
    r = _open(ctx, vault, as_json).verify(rev, require, fresh)
    if as_json:
        _out(r.to_json())
    else:
        for b in r.bad:
            typer.echo(f"{b['commit']} {b.get('agent') or '-'}: {b['problem']}")
        c = r.counts
        _err(
            f"checked {r.checked} commit(s): {c['verified']} verified, {c['unsigned']} "
            f"unsigned, {c['bad']} bad; {len(r.bad)} problem(s)"
        )
    if not r.ok:
        ctx.exit(VerifyFailed.exit_code)


# -- path rules (in the access file) ------------------------------------------------------------
def _changed(
    ctx: typer.Context, vault: str | None, as_json: bool, what: str, by: str, change: Any
) -> None:
    v = _open(ctx, vault, as_json)
    commit = v.change_access(change, by, what)
    if as_json:
        _out({"commit": commit, "change": what, "rules": v.access().to_json()})
    else:
        typer.echo(commit)
        _err(f"access: {what}")


Pointer = Annotated[
    str,
    typer.Argument(
        help="JSON Pointer; * is one step, '' the whole document, e.g. '/tasks/*/status'."
    ),
]
AgentPattern = Annotated[str, typer.Argument(help="Agent id or glob pattern, e.g. 'intern-*'.")]


@access_app.command("allow")
def allow(
    ctx: typer.Context,
    agent: AgentPattern,
    pointer: Pointer,
    by: ByOpt = "gitvault",
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let the agents matching AGENT change the value at POINTER and below (once any path
    rule exists, agents no rule names may change nothing)."""
    from gitvault.model.pathrules import allow as allow_rule

    _changed(
        ctx, vault, as_json, f"allow {agent} {pointer}", by, lambda r: allow_rule(r, agent, pointer)
    )


@access_app.command("disallow")
def disallow(
    ctx: typer.Context,
    agent: AgentPattern,
    pointer: Annotated[
        str | None, typer.Argument(help="The pointer (default: all of AGENT's).")
    ] = None,
    by: ByOpt = "gitvault",
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take back a path rule of AGENT."""
    from gitvault.model.pathrules import disallow as disallow_rule

    _changed(
        ctx,
        vault,
        as_json,
        f"disallow {agent} {pointer or '(all)'}",
        by,
        lambda r: disallow_rule(r, agent, pointer),
    )


@access_app.command("propose-only")
def propose_only(
    ctx: typer.Context,
    agent: AgentPattern,
    off: Annotated[bool, typer.Option("--off", help="Let these agents merge again.")] = False,
    by: ByOpt = "gitvault",
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Keep every checkin of the agents matching AGENT under refs/conflicts/ for an admin."""
    from gitvault.model.pathrules import set_propose_only

    _changed(
        ctx,
        vault,
        as_json,
        f"propose-only {agent}{' off' if off else ''}",
        by,
        lambda r: set_propose_only(r, agent, not off),
    )


@access_app.command("check")
def check(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="Agent id.")],
    pointer: Pointer,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Say which rule lets AGENT change POINTER (exit 5 when none does)."""
    from gitvault.model.pathrules import proposes_only, refusal, rule_for

    rules = _open(ctx, vault, as_json).access()
    rule = rule_for(rules, agent, pointer)
    if rule is None:
        raise refusal(rules, agent, pointer, "access check")
    only = proposes_only(rules, agent)
    if as_json:
        _out(
            {
                "agent": agent,
                "pointer": pointer,
                "allowed": True,
                "rule": rule,
                "propose_only": only,
            }
        )
    else:
        typer.echo(rule + (f" (propose only: {only})" if only else ""))
