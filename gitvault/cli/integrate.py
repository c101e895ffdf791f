"""``gitvault integrate [--watch]``: the command of :mod:`gitvault.hooks.fold`.

Its own module so that the CLI's start-up imports no git code for it.
"""

# No `from __future__ import annotations`, as in cli.py: typer evaluates the annotations.

from typing import TYPE_CHECKING, Annotated, Any

import typer

from gitvault.cli.common import JsonOpt, VaultOpt, _out, _path, _want_json

if TYPE_CHECKING:
    from gitvault.hooks.fold import Outcome


def register(app: typer.Typer) -> None:
    """Add ``gitvault integrate`` to the CLI (cli.py only calls this)."""

    @app.command("integrate")
    def integrate(
        ctx: typer.Context,
        watch_: Annotated[
            bool,
            typer.Option("--watch", help="Keep integrating, a round every --interval seconds."),
        ] = False,
        interval: Annotated[
            float, typer.Option("--interval", help="Seconds between rounds with --watch.")
        ] = 10.0,
        rounds: Annotated[
            int | None,
            typer.Option(
                "--rounds", help="Stop after N rounds (default: one, or forever with --watch)."
            ),
        ] = None,
        on_conflict: Annotated[
            str | None, typer.Option("--on-conflict", help="fail | ours | theirs | confidence.")
        ] = None,
        vault: VaultOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Fold pushed agents/* branches into main for a host that runs no gitvault hooks.

        Checks each new commit as the vault's pre-receive would, merges with the same engine,
        and pushes main back atomically (see docs/hosting.md). --vault is the vault's URL.
        """
        from gitvault.hooks.fold import Integrator, text, watch

        _want_json(ctx, as_json)
        workdir = (ctx.find_root().obj or {}).get("workdir")
        it = Integrator(_path(ctx, vault), workdir, on_conflict)
        seen: list[dict[str, Any]] = []

        def say(o: "Outcome") -> None:
            if as_json:
                seen.append(o.to_json())
            else:
                typer.echo(text(o))

        watch(it, interval, rounds if rounds is not None else (None if watch_ else 1), say)
        if as_json:
            _out(seen)
