"""The ``gitvault`` command: parse, call :class:`gitvault.Vault`, print, map errors to exit codes.

No git and no JSON rules live here. Errors are turned into exit codes in one place,
:class:`_Group.invoke`: ``gitvault: <message>`` on stderr and the error's ``exit_code``.
Data goes to stdout, messages to stderr.
"""

# Deliberately no `from __future__ import annotations`: with string annotations typer evals
# every parameter's Annotated[...] twice on each start (~10 ms per command; bench/README.md).
# Names imported only for type checking are quoted instead.

import functools
from typing import Any

import typer

from gitvault.cli.common import app

__all__ = ["app", "main", "serve_daemon"]

# Importing a module registers its commands; the order here is the order of `gitvault --help`.
# isort: off
from gitvault.cli import commands  # noqa: F401
from gitvault.cli import history  # noqa: F401
from gitvault.cli import admin  # noqa: F401
from gitvault.cli import web as web_commands
from gitvault.cli import query as query_commands
from gitvault.cli import undo as undo_commands
from gitvault.cli import access as access_commands
from gitvault.cli import integrate as integrate_commands
from gitvault.cli import signing as signing_commands
# isort: on

web_commands.register(app)
query_commands.register(app)
undo_commands.register(app)
access_commands.register(app)
integrate_commands.register(app)
signing_commands.register(app)


@functools.cache
def _command() -> Any:
    """The click command typer builds from ``app``: ~4 ms each time, so built once per process
    (the daemon builds it before forking its workers)."""
    return typer.main.get_command(app)


def serve_daemon() -> None:
    """The daemon's server process: serve this CLI (the daemon package never imports it)."""
    from gitvault.daemon import server

    server.serve_main(main)


def main() -> None:
    """The command's entry point, in-process and in each daemon worker (gitvault.daemon.server).

    ``app(prog_name=...)`` minus typer's developer-traceback hook, which is off here anyway.
    """
    _command()(prog_name="gitvault")
