"""``gitvault watch`` and ``gitvault serve``: the live feed for agents and the review page.

Thin like the rest of the CLI: the feed is :class:`gitvault.history.watch.Watcher`, the page is
:mod:`gitvault.web`. ``cli.py`` calls :func:`register` once. Both commands run until stopped;
Ctrl-C and SIGTERM end them with exit 0 and no traceback.
"""

# No `from __future__ import annotations`: typer reads these Annotated hints at start-up.

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from gitvault.history.watch import Change


@contextlib.contextmanager
def _until_stopped(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` instead of raising somewhere in the middle of a read."""

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _line(change: "Change") -> str:
    e = change.entry
    conf = "" if e.confidence is None else f" confidence {e.confidence}"
    kind = " merge" if e.merged else ""
    return (
        f"{change.commit[:12]}{kind}  {e.iso}  {e.agent}  source {e.source}{conf}  "
        f"changed {', '.join(change.pointers) or '-'}"
    )


def register(app: typer.Typer) -> None:
    """Add ``watch`` and ``serve`` to the ``gitvault`` app."""
    from gitvault.cli.common import JsonOpt, VaultOpt, _open, _path, _want_json

    @app.command()
    def watch(
        ctx: typer.Context,
        path: Annotated[
            str | None,
            typer.Option(
                "--path", help="Only commits that may change the value at this JSON Pointer."
            ),
        ] = None,
        key: Annotated[str | None, typer.Option("--key", help="Only commits changing KEY.")] = None,
        since: Annotated[
            str | None,
            typer.Option("--since", help="Start after this revision (default: main as it is now)."),
        ] = None,
        limit: Annotated[
            int | None,
            typer.Option(
                "-n", "--limit", min=1, help="Stop after N commits (default: run until stopped)."
            ),
        ] = None,
        interval: Annotated[
            float,
            typer.Option("--interval", min=0.01, help="Seconds between two looks at the ref."),
        ] = 0.2,
        vault: VaultOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Print each new commit on main that touches the selection, until stopped.

        Uses the commits' Changed: index: the document is never read. With --json, one JSON
        object per line (the fields of `log --json`, plus `pointers` and `head`).
        """
        from gitvault.history.watch import Selection, Watcher

        v = _open(ctx, vault, as_json)
        w = Watcher(v.store_for("watch"), Selection(key, path), since, interval)
        stop = threading.Event()
        with _until_stopped(stop), contextlib.suppress(BrokenPipeError):
            typer.echo(f"watching main from {str(w.last)[:12]} (Ctrl-C to stop)", err=True)
            for change in w.follow(stop, limit):
                text = (
                    json.dumps(change.to_json(), ensure_ascii=False, sort_keys=True)
                    if as_json
                    else _line(change)
                )
                sys.stdout.write(text + "\n")
                sys.stdout.flush()

    @app.command()
    def serve(
        ctx: typer.Context,
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[
            int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")
        ] = 8770,
        read_only: Annotated[
            bool, typer.Option("--read-only", help="No write actions (resolve, drop) at all.")
        ] = False,
        name: Annotated[
            str | None,
            typer.Option(
                "--name",
                help="Who resolves in the browser: the Agent-Id of its writes (default $USER).",
            ),
        ] = None,
        token: Annotated[
            str | None,
            typer.Option(
                "--token",
                envvar="GITVAULT_SERVE_TOKEN",
                show_envvar=True,
                help="Token every write must carry (default: a new random one, printed).",
            ),
        ] = None,
        vault: VaultOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Serve the review page: timeline, commits, document, conflicts, leases.

        Listens on 127.0.0.1 unless --host says otherwise. Writes need the token printed at
        start-up and are recorded as Agent-Id NAME with Source review-ui.
        """
        from gitvault.web import serve as run

        _want_json(ctx, as_json)
        run(
            _path(ctx, vault),
            host=host,
            port=port,
            read_only=read_only,
            name=name,
            token=token,
            as_json=as_json,
        )
