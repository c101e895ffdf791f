"""The undo commands: ``revert``, ``restore``, ``quarantine``, ``exposure`` (engine.undo).

Parse, call :class:`gitvault.Vault`, print. ``cli.py`` calls :func:`register` once.
"""

# No `from __future__ import annotations` (see cli.py: typer would evaluate them twice).

from typing import TYPE_CHECKING, Annotated, Any

import typer

from gitvault.cli.common import JsonOpt, VaultOpt, _err, _open, _out

if TYPE_CHECKING:
    from gitvault.engine.undo import UndoResult
    from gitvault.history.exposure import Exposed

ByOpt = Annotated[str, typer.Option("--by", help="Who performs the undo (its Agent-Id).")]
SourceOpt = Annotated[str, typer.Option("--source", help="Where the finding came from.")]
WhyOpt = Annotated[str, typer.Option("--justification", help="Why.")]
PathOpt = Annotated[
    str | None,
    typer.Option("--path", help="Only the value at this pointer, e.g. /tasks/[id=T-004]/status."),
]
PolicyOpt = Annotated[
    str | None,
    typer.Option(
        "--on-conflict", help="fail | ours | theirs | confidence (default gitvault.onConflict)."
    ),
]
DryOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the JSON Patch and the conflicts; change nothing.")
]


def _print(r: "UndoResult", as_json: bool, what: str) -> None:
    import json

    from gitvault.api.report import conflict_text

    if as_json:
        _out(r.to_json())
        return
    if r.dry_run:
        typer.echo(json.dumps(r.patch, indent=2, ensure_ascii=False, sort_keys=True))
        if r.conflicts:
            _err(
                conflict_text({"conflicts": r.conflicts}).replace("CONFLICT:", "would conflict:", 1)
            )
        _err(
            f"dry run: {what} would undo {len(r.reverted)} commit(s), change "
            f"{', '.join(r.changed) or 'nothing'}; nothing changed"
        )
        return
    if r.commit is None:
        _err(f"nothing to {what}: main already has those values")
        return
    typer.echo(r.commit)
    _err(f"{what}: {', '.join(r.changed) or 'no keys'} ({len(r.reverted)} commit(s) undone)")


def _exposure_text(found: list["Exposed"]) -> str:
    if not found:
        return "no later commit had it in its base\n"
    lines = []
    for e in found:
        lines.append(f"{e.commit[:12]}  {e.iso}  {e.agent:<16} {e.kind:<8} {', '.join(e.pointers)}")
        if e.touched:
            lines.append(f"    touched: {', '.join(e.touched)}")
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    """Add the undo commands to the ``gitvault`` app."""

    @app.command()
    def revert(
        ctx: typer.Context,
        revisions: Annotated[list[str], typer.Argument(help="Commits to undo.")],
        by: ByOpt,
        source: SourceOpt,
        justification: WhyOpt = "",
        confidence: Annotated[
            str | None, typer.Option("--confidence", help="In [0, 1] (default 1.0).")
        ] = None,
        path: PathOpt = None,
        on_conflict: PolicyOpt = None,
        dry_run: DryOpt = False,
        vault: VaultOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Undo the changes of REVISIONS as one new commit on main (history is kept).

        A 3-way merge of the inverse changes, as a checkin: a value changed since is a
        conflict (exit 3), kept for `gitvault resolve`. A merge is undone against its first
        parent (what it brought in). The commit carries `Reverts:` trailers.
        """
        r = _open(ctx, vault, as_json).revert(
            revisions, by, source, confidence, justification, path, on_conflict, dry_run
        )
        _print(r, as_json, "revert")

    @app.command()
    def restore(
        ctx: typer.Context,
        by: ByOpt,
        source: SourceOpt,
        rev: Annotated[str | None, typer.Argument(help="The past revision.")] = None,
        at: Annotated[str | None, typer.Option("--at", help="Or the state at this time.")] = None,
        justification: WhyOpt = "",
        path: PathOpt = None,
        dry_run: DryOpt = False,
        vault: VaultOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Put the document (or one key or value) back as it was, as one new commit."""
        r = _open(ctx, vault, as_json).restore(
            rev,
            at=at,
            by=by,
            source=source,
            justification=justification,
            path=path,
            dry_run=dry_run,
        )
        _print(r, as_json, "restore")

    @app.command()
    def quarantine(
        ctx: typer.Context,
        agent: Annotated[str, typer.Argument(help="The agent to quarantine.")],
        by: ByOpt,
        source: Annotated[
            str, typer.Option("--source", help="Where the finding came from.")
        ] = "quarantine",
        since: Annotated[
            str | None, typer.Option("--since", help="Undo its writes from then.")
        ] = None,
        until: Annotated[str | None, typer.Option("--until", help="Up to then.")] = None,
        justification: WhyOpt = "",
        with_derived: Annotated[
            bool,
            typer.Option(
                "--with-derived",
                help="Also undo others' commits that changed its values "
                "(`exposure` lists them as derived).",
            ),
        ] = False,
        lift: Annotated[bool, typer.Option("--lift", help="End AGENT's quarantine.")] = False,
        on_conflict: PolicyOpt = None,
        dry_run: DryOpt = False,
        vault: VaultOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Undo what AGENT wrote (in the window) and refuse its writes until --lift.

        Everyone else's work stays, later work included; values others changed since are
        conflicts as in revert. Recorded in .gitvault/quarantine.json on main; AGENT's lease
        is revoked and its checkouts, checkins, pushes and MCP calls exit 5.
        """
        v = _open(ctx, vault, as_json)
        if lift:
            entry = v.lift_quarantine(agent, by=by, source=source, justification=justification)
            if as_json:
                _out(
                    {
                        "agent": agent,
                        "lifted": entry is not None,
                        "head": v.head(),
                        "quarantine": entry.to_json() if entry else None,
                    }
                )
            else:
                _err(
                    f"lifted the quarantine of {agent}" if entry else f"{agent} was not quarantined"
                )
            return
        r = v.quarantine(
            agent,
            by=by,
            source=source,
            since=since,
            until=until,
            justification=justification,
            dry_run=dry_run,
            with_derived=with_derived,
            on_conflict=on_conflict,
        )
        _print(r, as_json, f"quarantine {agent}")
        if not as_json and not dry_run:
            _err(
                f"{agent} is quarantined: its writes are refused until "
                f"`gitvault quarantine --lift {agent}`"
            )

    @app.command()
    def exposure(
        ctx: typer.Context,
        rev: Annotated[str | None, typer.Argument(help="The bad commit.")] = None,
        agent: Annotated[
            str | None,
            typer.Option("--agent", help="Or every commit of this agent (with --since)."),
        ] = None,
        since: Annotated[
            str | None, typer.Option("--since", help="ISO time or unix seconds.")
        ] = None,
        until: Annotated[
            str | None, typer.Option("--until", help="ISO time or unix seconds.")
        ] = None,
        vault: VaultOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Later commits whose writers had the bad change in their lease base.

        Each with the pointers it changed: derived (it changed values the bad change wrote)
        or exposed (other values). Review it before deciding what else to withdraw.
        """
        found = _open(ctx, vault, as_json).exposure(rev, agent=agent, since=since, until=until)
        if as_json:
            _out([e.to_json() for e in found])
        else:
            typer.echo(_exposure_text(found), nl=False)

    _unused: Any = (revert, restore, quarantine, exposure)
