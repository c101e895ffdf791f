"""Working copies for agents elsewhere: clone, edit, commit with trailers, push a branch.

``gitvault clone`` is ``git clone`` plus what makes a correct push likely: the agent id in the
clone's config, pushes going to ``refs/heads/agents/<agent>``, a commit template listing the
trailers, and client hooks that add the trailers an agent may omit and refuse non-canonical
JSON before it ever reaches the vault (whose own hooks check again).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import hooks
from .errors import InputError
from .leases import escape_agent
from .provenance import check_agent

TEMPLATE = "\n".join([
    "", "",
    "# Say what changed above. Source is required; Agent-Id, Lease and Base are added for you.",
    "Source: ", "Confidence: 0.5", "Justification: ", "",
])


def _git(*args: str) -> str:
    r = subprocess.run(["git", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise InputError(f"git {args[0]} failed: {r.stderr.strip().splitlines()[-1:]}")
    return r.stdout


def clone(url: str, dest: str, agent: str) -> Path:
    """Clone the vault at ``url`` into ``dest`` set up for ``agent``."""
    check_agent(agent)
    if os.path.exists(dest) and os.listdir(dest):
        raise InputError(f"{dest} exists and is not empty")
    _git("clone", "--quiet", url, dest)
    git_dir = Path(dest) / ".git"
    esc = escape_agent(agent)
    for key, value in (("gitvault.agent", agent), ("user.name", agent),
                       ("user.email", f"{esc}@gitvault"),
                       ("remote.origin.push", f"HEAD:{hooks.branch_for(agent)}"),
                       ("commit.template", str(git_dir / "gitvault-template"))):
        _git("-C", dest, "config", key, value)
    (git_dir / "gitvault-template").write_text(TEMPLATE, encoding="utf-8")
    hooks.install(str(git_dir / "hooks"), hooks.CLIENT_HOOKS)
    return Path(dest)
