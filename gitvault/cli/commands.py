"""The memory's own commands: init, the four of the old script (checkout, checkin, release,
status), conflicts, resolve and schemas."""

# Deliberately no `from __future__ import annotations`: with string annotations typer evals
# every parameter's Annotated[...] twice on each start (~10 ms per command; bench/README.md).
# Names imported only for type checking are quoted instead.

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gitvault.cli.common import (
    JsonOpt,
    VaultOpt,
    _err,
    _Group,
    _lease_line,
    _open,
    _out,
    _path,
    _read_input,
    _want_json,
    app,
)
from gitvault.errors import InputError
from gitvault.model.policy import ConflictPolicy

if TYPE_CHECKING:
    from collections.abc import Callable


@app.command()
def init(
    ctx: typer.Context,
    import_dir: Annotated[
        Path | None,
        typer.Option("--import", help="Legacy memory folder to import as the first commit."),
    ] = None,
    hosted: Annotated[
        bool,
        typer.Option(
            "--hosted",
            help="For a git server: refuse pushes whose pusher the host did not "
            "authenticate (gitvault.requireIdentity=true).",
        ),
    ] = False,
    admin: Annotated[
        list[str] | None,
        typer.Option("--admin", help="Make this authenticated user an admin (repeatable)."),
    ] = None,
    identity_from: Annotated[
        str | None,
        typer.Option(
            "--identity-from",
            help="Who vouches for the pusher: gitolite, http or env "
            "(gitvault.identityFrom; see docs/hosting.md).",
        ),
    ] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a new bare vault (never overwrites); optionally import a legacy folder."""
    from gitvault.api.remote import is_remote
    from gitvault.api.vault import Vault

    _want_json(ctx, as_json)
    if is_remote(_path(ctx, vault)):
        raise InputError("create vaults on the machine that will hold them (a path, not a URL)")
    v = Vault.init(_path(ctx, vault), import_dir)
    if hosted or admin or identity_from:
        from gitvault.cli.access import set_up_hosting

        set_up_hosting(v, hosted, admin or [], identity_from)
    st = v.status()
    if as_json:
        _out(st.to_json())
    else:
        _err(f"created vault {v.path} at {st.head} with {len(st.keys)} key(s)")


def _waiting_notice() -> "Callable[[Any, int], None]":
    """A callback that says once, on stderr, that the checkout waits in the queue."""
    told: list[bool] = []

    def say(entry: Any, position: int) -> None:
        if not told:
            told.append(True)
            _err(f"waiting for the lease: position {position} in the queue")

    return say


@app.command()
def checkout(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="Agent id.")],
    ttl: Annotated[
        int | None,
        typer.Argument(help="Lease time-to-live in seconds (default gitvault.defaultTtl, 900)."),
    ] = None,
    exclusive: Annotated[
        bool,
        typer.Option(
            "--exclusive", help="Refuse while others hold live leases; block them while held."
        ),
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the document here.")] = None,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            help="Queue (first come, first served) up to SECONDS for the lease instead of "
            "being refused.",
        ),
    ] = None,
    path: Annotated[
        list[str] | None,
        typer.Option(
            "--path",
            help="Print only the value at this pointer (repeatable); the lease is "
            "still on the whole document.",
        ),
    ] = None,
    keys: Annotated[
        str | None,
        typer.Option("--keys", help="Print only these top-level keys, e.g. tasks,roadmap."),
    ] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take or renew AGENT's lease on main and print the document.

    With --path/--keys it prints {pointer: value} for the parts named, not a document:
    check in with --patch, whose pointers stay relative to the document's root.
    """
    from gitvault.core.codec import dumps_document

    if path or keys:
        return _checkout_parts(ctx, agent, ttl, exclusive, out, path or [], keys, vault, as_json)
    co = _open(ctx, vault, as_json).checkout(agent, ttl, exclusive, wait, _waiting_notice())
    data = dumps_document(co.document)
    if out is not None:
        out.write_bytes(data)
    if as_json:
        now = co.lease.acquired
        _out(
            {
                "lease": co.lease.to_json(now),
                **({"out": str(out)} if out else {"document": co.document}),
            }
        )
    elif out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    _err(_lease_line(co.lease))


def _checkout_parts(
    ctx: typer.Context,
    agent: str,
    ttl: int | None,
    exclusive: bool,
    out: Path | None,
    paths: list[str],
    keys: str | None,
    vault: str | None,
    as_json: bool,
) -> None:
    from gitvault.core.codec import dumps
    from gitvault.history.reading import wanted_paths

    wanted = wanted_paths(paths, [k for k in (keys or "").split(",") if k])
    co, parts = _open(ctx, vault, as_json).checkout_parts(agent, wanted, ttl, exclusive)
    data = dumps(parts.values)
    if out is not None:
        out.write_bytes(data)
    if as_json:
        _out(
            {
                "lease": co.lease.to_json(co.lease.acquired),
                "pointers": parts.positions,
                **({"out": str(out)} if out else {"parts": parts.values}),
            }
        )
    elif out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    _err(_lease_line(co.lease))


@app.command()
def checkin(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="Agent id (must hold a live lease).")],
    proposed: Annotated[
        str,
        typer.Argument(
            help="The whole new document (or with --patch an RFC 6902 JSON Patch): a file, "
            "or - for stdin."
        ),
    ],
    source: Annotated[str, typer.Argument(help="Where the change came from.")],
    confidence: Annotated[
        str | None, typer.Argument(help="Confidence in [0, 1] (default 0.5).")
    ] = None,
    justification: Annotated[str, typer.Argument(help="Why the change was made.")] = "",
    lease: Annotated[
        int | None,
        typer.Option("--lease", help="Refuse unless the lease still has this token (fencing)."),
    ] = None,
    on_conflict: Annotated[
        ConflictPolicy | None,
        typer.Option(
            "--on-conflict",
            help="fail | ours | theirs | confidence (default gitvault.onConflict, else fail).",
        ),
    ] = None,
    patch: Annotated[
        bool, typer.Option("--patch", help="PROPOSED is a JSON Patch against the lease's base.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the diff against the lease's base; commit nothing."),
    ] = False,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Commit PROPOSED as AGENT's change, with its provenance as trailers; merge if main moved.

    Exit 3 on a true conflict: main is unchanged, the report goes to stdout and the proposal
    is kept for `gitvault resolve`.
    """
    from gitvault.core.codec import loads

    v = _open(ctx, vault, as_json)
    data = _read_input(proposed)
    if dry_run:
        doc = v.patched(agent, loads(data, proposed), lease) if patch else v.parse(data, proposed)
        d = v.preview(agent, doc, lease)
        _out(d.to_json()) if as_json else typer.echo(d.text, nl=False)
        return
    if patch:
        r = v.checkin_patch(
            agent, loads(data, proposed), source, confidence, justification, lease, on_conflict
        )
    else:
        r = v.checkin(
            agent, v.parse(data, proposed), source, confidence, justification, lease, on_conflict
        )
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
        _out(
            {
                "agent": agent,
                "released": dropped is not None,
                "token": dropped.token if dropped else None,
            }
        )
    else:
        _err(f"released lease of {agent}" if dropped else f"{agent} held no lease")


@app.command()
def status(
    ctx: typer.Context,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Head, commit count, keys and sizes, leases (live and expired), pending conflicts."""
    from gitvault.api.report import status_text

    st = _open(ctx, vault, as_json).status()
    if as_json:
        _out(st.to_json())
    else:
        typer.echo(status_text(st), nl=False)


conflicts_app = typer.Typer(
    cls=_Group,
    rich_markup_mode=None,
    help="List or drop kept conflicting proposals.",
    invoke_without_command=True,
)
app.add_typer(conflicts_app, name="conflicts")


@conflicts_app.callback()
def conflicts(ctx: typer.Context, vault: VaultOpt = None, as_json: JsonOpt = False) -> None:
    """List pending conflicts, each with what still conflicts against main."""
    if ctx.invoked_subcommand is not None:
        return
    from gitvault.api.report import pending_text

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
    take: Annotated[
        str | None,
        typer.Option(
            "--take",
            help="ours (main wins), theirs (the proposal wins), or a FILE holding the "
            "whole resolved document.",
        ),
    ] = None,
    pick: Annotated[
        list[str] | None,
        typer.Option(
            "--pick", help="POINTER=ours|theirs for one conflict (repeatable; wins over --take)."
        ),
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Who resolves (default: the proposal's agent).")
    ] = None,
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


schema_app = typer.Typer(
    cls=_Group,
    rich_markup_mode=None,
    help="JSON Schemas that keys must satisfy on main.",
    no_args_is_help=True,
)
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
    from gitvault.core.codec import loads

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
