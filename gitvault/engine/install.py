"""Installing gitvault's hook shims: into a vault (server side, by ``init``) or into a working
copy (client side, by ``gitvault clone``). Each shim runs the interpreter that installed it."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable

from gitvault.git.storage import Store

SERVER_HOOKS = ("pre-receive", "post-receive")
CLIENT_HOOKS = ("commit-msg", "pre-commit")
_SHIM = """#!/bin/sh
# gitvault {name} hook, installed by gitvault; runs the gitvault that installed it.
exec '{python}' -m gitvault hook {name} "$@"
"""


def install(path: str, names: Iterable[str] = SERVER_HOOKS, python: str | None = None) -> list[str]:
    """Write hook shims calling this interpreter's gitvault into ``path`` (a hooks folder)."""
    os.makedirs(path, exist_ok=True)
    written = []
    for name in names:
        target = os.path.join(path, name)
        with open(target, "w", encoding="utf-8") as f:
            f.write(_SHIM.format(name=name, python=python or sys.executable))
        os.chmod(target, os.stat(target).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        written.append(target)
    return written


def install_server(store: Store) -> list[str]:
    store.repo.config["receive.advertisePushOptions"] = "true"
    return install(os.path.join(store.path, "hooks"))
