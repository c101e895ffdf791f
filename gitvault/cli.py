"""The ``gitvault`` command: parse, call :class:`gitvault.Vault`, print, map errors to exit codes.

No git and no JSON rules live here. Errors are turned into exit codes in one place,
:class:`_Group.invoke`: ``gitvault: <message>`` on stderr and the error's ``exit_code``.
Data goes to stdout, messages to stderr.
"""

# Deliberately no `from __future__ import annotations`: with string annotations typer evals
# every parameter's Annotated[...] twice on each start (~10 ms per command, issue 8).
# Names imported only for type checking are quoted instead.

import functools
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
        from .report import conflict_text

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
    workdir: Annotated[str | None, typer.Option(
        "--workdir", help="Cache clone for a remote vault (default ~/.cache/gitvault/...).")
    ] = None,
    sign_key: Annotated[str | None, typer.Option(
        "--sign-key", help="Sign the agent's commits with this SSH key (a private key, or a "
        ".pub held by ssh-agent); default $GITVAULT_SIGNING_KEY.")] = None,
) -> None:
    ctx.obj = {"vault": vault, "workdir": workdir, "sign_key": sign_key}


def _path(ctx: typer.Context, vault: str | None) -> str:
    root = ctx.find_root().obj or {}
    return vault or root.get("vault") or os.environ.get("GITVAULT_DIR") or DEFAULT_VAULT


def _open(ctx: typer.Context, vault: str | None, as_json: bool = False) -> "Vault":
    """The vault at a path, or behind a git URL (through a local cache clone)."""
    from .remote import RemoteVault, is_remote
    from .vault import Vault

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
    from .leases import iso

    return (f"lease: {lease.agent} token {lease.token} ({lease.mode}), base {lease.base[:12]}, "
            f"expires {iso(lease.expires)} ({lease.ttl} s)")


@app.command()
def init(
    ctx: typer.Context,
    import_dir: Annotated[Path | None, typer.Option(
        "--import", help="Legacy memory folder to import as the first commit.")] = None,
    hosted: Annotated[bool, typer.Option(
        "--hosted", help="For a git server: refuse pushes whose pusher the host did not "
        "authenticate (gitvault.requireIdentity=true).")] = False,
    admin: Annotated[list[str] | None, typer.Option(
        "--admin", help="Make this authenticated user an admin (repeatable).")] = None,
    identity_from: Annotated[str | None, typer.Option(
        "--identity-from", help="Who vouches for the pusher: gitolite, http or env "
        "(gitvault.identityFrom; see docs/hosting.md).")] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a new bare vault (never overwrites); optionally import a legacy folder."""
    from .remote import is_remote
    from .vault import Vault

    _want_json(ctx, as_json)
    if is_remote(_path(ctx, vault)):
        raise InputError("create vaults on the machine that will hold them (a path, not a URL)")
    v = Vault.init(_path(ctx, vault), import_dir)
    if hosted or admin or identity_from:
        from .cli_access import set_up_hosting

        set_up_hosting(v, hosted, admin or [], identity_from)
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
        help="The whole new document (or with --patch an RFC 6902 JSON Patch): a file, "
        "or - for stdin.")],
    source: Annotated[str, typer.Argument(help="Where the change came from.")],
    confidence: Annotated[str | None, typer.Argument(
        help="Confidence in [0, 1] (default 0.5).")] = None,
    justification: Annotated[str, typer.Argument(help="Why the change was made.")] = "",
    lease: Annotated[int | None, typer.Option(
        "--lease", help="Refuse unless the lease still has this token (fencing).")] = None,
    on_conflict: Annotated[str | None, typer.Option(
        "--on-conflict", help="fail | ours | theirs | confidence (default gitvault.onConflict, "
        "else fail).")] = None,
    patch: Annotated[bool, typer.Option(
        "--patch", help="PROPOSED is a JSON Patch against the lease's base.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the diff against the lease's base; commit nothing.")] = False,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Commit PROPOSED as AGENT's change, with its provenance as trailers; merge if main moved.

    Exit 3 on a true conflict: main is unchanged, the report goes to stdout and the proposal
    is kept for `gitvault resolve`.
    """
    from .codec import loads

    v = _open(ctx, vault, as_json)
    data = _read_input(proposed)
    if dry_run:
        doc = v.patched(agent, loads(data, proposed), lease) if patch else v.parse(data, proposed)
        d = v.preview(agent, doc, lease)
        _out(d.to_json()) if as_json else typer.echo(d.text, nl=False)
        return
    if patch:
        r = v.checkin_patch(agent, loads(data, proposed), source, confidence, justification,
                            lease, on_conflict)
    else:
        r = v.checkin(agent, v.parse(data, proposed), source, confidence, justification, lease,
                      on_conflict)
    if as_json:
        _out(r.to_json())
    elif r.noop:
        _err(f"no change: the proposal equals {agent}'s base; nothing committed")
    else:
        typer.echo(r.commit)
        how = "merged into main" if r.merged else "committed"
        _err(f"{how}: {', '.join(r.changed)} by {agent}")


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


conflicts_app = typer.Typer(cls=_Group, rich_markup_mode=None,
    help="List or drop kept conflicting proposals.",
                            invoke_without_command=True)
app.add_typer(conflicts_app, name="conflicts")


@conflicts_app.callback()
def conflicts(ctx: typer.Context, vault: VaultOpt = None, as_json: JsonOpt = False) -> None:
    """List pending conflicts, each with what still conflicts against main."""
    if ctx.invoked_subcommand is not None:
        return
    from .report import pending_text

    pending = _open(ctx, vault, as_json).pending_conflicts()
    if as_json:
        _out(pending)
    else:
        typer.echo(pending_text(pending), nl=False)


@conflicts_app.command("drop")
def conflicts_drop(
    ctx: typer.Context,
    conflict_id: Annotated[str, typer.Argument(metavar="ID", help="Conflict id (AGENT/N).")],
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Forget a kept proposal."""
    ref = _open(ctx, vault, as_json).drop_conflict(conflict_id)
    if as_json:
        _out({"dropped": conflict_id, "ref": ref})
    else:
        _err(f"dropped {ref}")


@app.command()
def resolve(
    ctx: typer.Context,
    conflict_id: Annotated[str, typer.Argument(metavar="ID", help="Conflict id (AGENT/N).")],
    take: Annotated[str | None, typer.Option(
        "--take", help="ours (main wins), theirs (the proposal wins), or a FILE holding the "
        "whole resolved document.")] = None,
    pick: Annotated[list[str] | None, typer.Option(
        "--pick", help="POINTER=ours|theirs for one conflict (repeatable; wins over --take).")
    ] = None,
    agent: Annotated[str | None, typer.Option(
        "--agent", help="Who resolves (default: the proposal's agent).")] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Finish a kept conflict: merge the proposal into main with your choices."""
    v = _open(ctx, vault, as_json)
    picks = dict(_pick(p) for p in pick or [])
    if take is not None and take not in ("ours", "theirs"):
        doc = v.parse(_read_input(take), take)
        r = v.resolve(conflict_id, document=doc, agent=agent)
    else:
        r = v.resolve(conflict_id, take, picks, agent=agent)
    if as_json:
        _out(r.to_json())
    else:
        typer.echo(r.commit)
        _err(f"resolved {conflict_id}: {', '.join(r.changed) or 'no key changed'}")


def _pick(text: str) -> tuple[str, str]:
    pointer, sep, side = text.rpartition("=")
    if not sep or not pointer:
        raise InputError(f"--pick {text!r}: write POINTER=ours or POINTER=theirs")
    return pointer, side


schema_app = typer.Typer(cls=_Group, rich_markup_mode=None,
    help="JSON Schemas that keys must satisfy on main.",
                         no_args_is_help=True)
app.add_typer(schema_app, name="schema")


@schema_app.command("set")
def schema_set(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Top-level key.")],
    file: Annotated[str, typer.Argument(help="JSON Schema file, or - for stdin.")],
    agent: Annotated[str, typer.Option("--agent", help="Who sets it.")] = "gitvault",
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store FILE as KEY's schema (refused if main's value fails it)."""
    from .codec import loads

    commit = _open(ctx, vault, as_json).set_schema(key, loads(_read_input(file), file), agent)
    if as_json:
        _out({"key": key, "commit": commit})
    else:
        typer.echo(commit)


@schema_app.command("show")
def schema_show(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Top-level key.")],
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print KEY's schema (exit 1 when it has none)."""
    schema = _open(ctx, vault, as_json).schema(key)
    if schema is None:
        raise InputError(f"{key} has no schema; add one with `gitvault schema set {key} FILE`")
    _out(schema)


@app.command()
def log(
    ctx: typer.Context,
    rev: Annotated[str | None, typer.Argument(help="Start here (default main).")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only commits changing KEY.")] = None,
    path: Annotated[str | None, typer.Option(
        "--path", help="Only commits changing the value at this pointer.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this source.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO time or unix seconds.")
                     ] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO time or unix seconds.")
                     ] = None,
    limit: Annotated[int | None, typer.Option("-n", "--limit", help="At most N entries.")
                     ] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Checkins and merges, newest first, with their provenance; legacy events last."""
    from .report import log_text

    entries = _open(ctx, vault, as_json).log(rev, agent=agent, key=key, path=path, source=source,
                                             since=since, until=until, limit=limit,
                                             verify=as_json)
    _out([e.to_json() for e in entries]) if as_json else typer.echo(log_text(entries), nl=False)


@app.command()
def show(
    ctx: typer.Context,
    rev: Annotated[str | None, typer.Argument(help="Revision (default main).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="The state at this time instead.")
                  ] = None,
    path: Annotated[str | None, typer.Option("--path", help="Only the value at this pointer.")
                    ] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the document (or one value) at a revision or a point in time.

    With --json: {"rev", "at", "path", "value", "commit", "verified", "fingerprint", "signer"}.
    """
    from .codec import dumps

    v = _open(ctx, vault, as_json)
    value = v.show(rev, at=at, path=path)
    if as_json:
        sig = v.verdict(rev, at)  # the signature of the commit shown
        _out({"rev": rev or "main", "at": at, "path": path, "value": value,
              "commit": sig.commit, "verified": sig.verified, "fingerprint": sig.fingerprint,
              "signer": sig.signer})
        return
    sys.stdout.buffer.write(dumps(value))
    sys.stdout.flush()


@app.command()
def diff(
    ctx: typer.Context,
    rev1: Annotated[str | None, typer.Argument(help="From (default: REV2's parent).")] = None,
    rev2: Annotated[str | None, typer.Argument(help="To (default main).")] = None,
    path: Annotated[str | None, typer.Option("--path", help="Only under this pointer.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="patch (RFC 6902 JSON) or text.")
                   ] = "text",
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed between two states, as a JSON Patch or a readable summary."""
    if fmt not in ("patch", "text"):
        raise InputError(f"--format {fmt!r}: use patch or text")
    d = _open(ctx, vault, as_json).diff(rev1, rev2, path=path)
    if as_json:
        _out(d.to_json())
    elif fmt == "patch":
        _out(d.patch)
    else:
        typer.echo(d.text, nl=False)
    if not d.patch:
        _err("no changes")


@app.command()
def blame(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="Pointer, e.g. /tasks/[id=T-004]/status.")],
    rev: Annotated[str | None, typer.Option("--rev", help="Revision (default main).")] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Who last set the value at PATH (or each leaf under it), from what source, how sure."""
    from .report import blame_text

    entries = _open(ctx, vault, as_json).blame(path, rev, verify=as_json)
    _out([e.to_json() for e in entries]) if as_json else typer.echo(blame_text(entries), nl=False)


@app.command()
def export(
    ctx: typer.Context,
    rev: Annotated[str | None, typer.Argument(help="Revision (default main).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or jsonl.")] = "json",
    with_history: Annotated[bool, typer.Option("--history", help="Include the checkin log.")
                            ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")
                   ] = None,
    vault: VaultOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Write the document (and its history) for other tools."""
    fmt = "json" if as_json else fmt
    if fmt not in ("json", "jsonl"):
        raise InputError(f"--format {fmt!r}: use json or jsonl")
    text = _open(ctx, vault).export(rev, fmt=fmt, history=with_history)
    if out is not None:
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.flush()


config_app = typer.Typer(cls=_Group, rich_markup_mode=None,
    help="Settings: flag > $GITVAULT_* > vault git config.",
                         no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("list")
def config_list(ctx: typer.Context, vault: VaultOpt = None, as_json: JsonOpt = False) -> None:
    """Every setting with its value and where it came from."""
    rows = _open(ctx, vault, as_json).config()
    if as_json:
        _out(rows)
        return
    for r in rows:
        typer.echo(f"{r['name']:<12} {_setting_text(r['value']):<10} ({r['source']}; "
                   f"${r['env']})  {r['help']}")


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
    agent: Annotated[str | None, typer.Option(
        "--agent", help="The agent this server acts for (else each call names one).")] = None,
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP on 127.0.0.1.")
                    ] = False,
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = 8765,
    vault: VaultOpt = None,
) -> None:
    """Run an MCP server (stdio by default) exposing the vault's tools to an agent."""
    from .mcp_server import run

    key = (ctx.find_root().obj or {}).get("sign_key")
    if key:  # every call opens the vault afresh; the key reaches it as $GITVAULT_SIGNING_KEY
        os.environ["GITVAULT_SIGNING_KEY"] = os.path.abspath(key)
    run(_path(ctx, vault), agent=agent, transport="streamable-http" if http else "stdio",
        port=port)


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
        _err(f"pruned {len(r['pruned_leases'])} expired lease(s); loose objects "
             f"{r['loose_before']} -> {r['loose_after']}")


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
    from .remote import clone as do_clone

    path = do_clone(url, dest, agent)
    if as_json:
        _out({"path": str(path), "agent": agent})
    _err(f"cloned into {path}; edit the JSON files, `git commit --trailer Source=...`, "
         "`git push`")


@app.command()
def fmt(
    files: Annotated[list[Path], typer.Argument(help="JSON files to rewrite canonically.")],
    as_json: JsonOpt = False,
) -> None:
    """Rewrite JSON files in the vault's canonical form (indent 2, sorted keys, newline)."""
    from .hooks import fmt as do_fmt

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
    from .hooks import run

    code = run(name, args or [], sys.stdin, lambda line: typer.echo(line, err=True))
    raise typer.Exit(code)


daemon_app = typer.Typer(cls=_Group, rich_markup_mode=None, no_args_is_help=True, help=(
    "A resident process that makes every gitvault command start ~4x faster (opt-in). While it "
    "runs, `gitvault` hands each call to it; without it, or with GITVAULT_DAEMON=0, commands run "
    "in their own process as always. Socket: $GITVAULT_DAEMON_SOCKET, else "
    "$XDG_RUNTIME_DIR/gitvault/daemon.sock, else /tmp/gitvault-UID/daemon.sock."))
app.add_typer(daemon_app, name="daemon")


@daemon_app.command("start")
def daemon_start(
    ctx: typer.Context,
    idle: Annotated[float, typer.Option(
        "--idle", help="Exit after this many seconds without a command (0: never).")] = 600,
    foreground: Annotated[bool, typer.Option(
        "--foreground", help="Serve from this process, logging to stderr, instead of detaching.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start the daemon and wait until it answers (one already running: says so, exit 0).

    It imports pygit2, typer and gitvault once, never opens a vault, and forks a worker per
    command. It exits by itself after --idle seconds without a command, or when gitvault
    changes on disk (the next command then runs without it).
    """
    from . import daemon

    _want_json(ctx, as_json)
    info = daemon.start(idle, foreground)
    _out(info) if as_json else _err(daemon.describe(info))


@daemon_app.command("stop")
def daemon_stop(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Stop the daemon once its running commands finish (none running: says so, exit 0)."""
    from . import daemon

    _want_json(ctx, as_json)
    info = daemon.stop()
    _out(info) if as_json else _err(daemon.describe(info))


@daemon_app.command("status")
def daemon_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Whether a daemon answers on the socket, its pid and how many commands it served."""
    from . import daemon

    _want_json(ctx, as_json)
    info = daemon.status()
    _out(info) if as_json else _err(daemon.describe(info))


@functools.cache
def _command() -> Any:
    """The click command typer builds from ``app``: ~4 ms each time, so built once per process
    (the daemon builds it before forking its workers)."""
    return typer.main.get_command(app)


def main() -> None:
    """The command's entry point, in-process and in each daemon worker (gitvault.daemon).

    ``app(prog_name=...)`` minus typer's developer-traceback hook, which is off here anyway.
    """
    _command()(prog_name="gitvault")


from . import cli_access  # noqa: E402  (its commands use the helpers above)

cli_access.register(app)
from . import cli_signing  # noqa: E402

cli_signing.register(app)
