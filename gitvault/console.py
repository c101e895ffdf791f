"""The ``gitvault`` console script: hand the call to a running daemon, else run the CLI here.

This is the one module above every entry point (it composes :mod:`gitvault.daemon.client` and
:mod:`gitvault.cli`), and it must stay cheap: until a command runs in-process it imports
nothing but the standard library and the daemon's stdlib-only client.
"""

from __future__ import annotations

import os
import sys

from gitvault.daemon.client import (
    LOCAL_COMMANDS,
    autostart,
    command_name,
    may_autostart,
    socket_path,
    via_daemon,
)

DAEMON_LAUNCHER = "gitvault.cli:serve_daemon"  # what a started daemon serves (gitvault.cli)


def main() -> None:
    """Console-script entry point (``gitvault``, ``python -m gitvault``)."""
    args = sys.argv[1:]
    if os.environ.get("GITVAULT_DAEMON", "") != "0" and command_name(args) not in LOCAL_COMMANDS:
        code = via_daemon(sys.argv)
        if code is not None:
            raise SystemExit(code)
        if may_autostart(args):
            autostart(socket_path(), DAEMON_LAUNCHER)
    if args[:1] == ["hook"] and len(args) > 1 and not args[1].startswith("-"):
        from gitvault.hooks import main as run_hook  # the shims: no typer start-up per push

        run_hook(args[1:])
    from gitvault.cli import main as run_here

    run_here()
