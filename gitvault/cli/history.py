"""History commands: log, show, diff, blame, export."""

# Deliberately no `from __future__ import annotations`: with string annotations typer evals
# every parameter's Annotated[...] twice on each start (~10 ms per command; bench/README.md).
# Names imported only for type checking are quoted instead.

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gitvault.cli.common import JsonOpt, VaultOpt, _err, _open, _out, app
from gitvault.errors import InputError

if TYPE_CHECKING:
    pass


@app.command()
def log(
    ctx: typer.Context,
    rev: Annotated[str | None, typer.Argument(help="Start here (default main).")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only commits changing KEY.")] = None,
    path: Annotated[
        str | None, typer.Option("--path", help="Only commits changing the value at this pointer.")
    ] = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this source.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO time or unix seconds.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO time or unix seconds.")] = None,
    limit: Annotated[int | None, typer.Option("-n", "--limit", help="At most N entries.")] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Checkins and merges, newest first, with their provenance; legacy events last."""
    from gitvault.api.report import log_text

    entries = _open(ctx, vault, as_json).log(
        rev,
        agent=agent,
        key=key,
        path=path,
        source=source,
        since=since,
        until=until,
        limit=limit,
        verify=as_json,
    )
    _out([e.to_json() for e in entries]) if as_json else typer.echo(log_text(entries), nl=False)


@app.command()
def show(
    ctx: typer.Context,
    rev: Annotated[str | None, typer.Argument(help="Revision (default main).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="The state at this time instead.")] = None,
    path: Annotated[
        str | None, typer.Option("--path", help="Only the value at this pointer.")
    ] = None,
    vault: VaultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the document (or one value) at a revision or a point in time.

    With --json: {"rev", "at", "path", "value", "commit", "verified", "fingerprint", "signer"}.
    """
    from gitvault.core.codec import dumps

    v = _open(ctx, vault, as_json)
    value = v.show(rev, at=at, path=path)
    if as_json:
        sig = v.verdict(rev, at)  # the signature of the commit shown
        _out(
            {
                "rev": rev or "main",
                "at": at,
                "path": path,
                "value": value,
                "commit": sig.commit,
                "verified": sig.verified,
                "fingerprint": sig.fingerprint,
                "signer": sig.signer,
            }
        )
        return
    sys.stdout.buffer.write(dumps(value))
    sys.stdout.flush()


@app.command()
def diff(
    ctx: typer.Context,
    rev1: Annotated[str | None, typer.Argument(help="From (default: REV2's parent).")] = None,
    rev2: Annotated[str | None, typer.Argument(help="To (default main).")] = None,
    path: Annotated[str | None, typer.Option("--path", help="Only under this pointer.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="patch (RFC 6902 JSON) or text.")] = "text",
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
    from gitvault.api.report import blame_text

    entries = _open(ctx, vault, as_json).blame(path, rev, verify=as_json)
    _out([e.to_json() for e in entries]) if as_json else typer.echo(blame_text(entries), nl=False)


@app.command()
def export(
    ctx: typer.Context,
    rev: Annotated[str | None, typer.Argument(help="Revision (default main).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or jsonl.")] = "json",
    with_history: Annotated[
        bool, typer.Option("--history", help="Include the checkin log.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
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
