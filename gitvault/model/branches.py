"""Where agents' work lives in the vault's refs: ``refs/heads/agents/<agent>`` branches and the
request refs through which remote clients ask the hooks for lease operations.

Shared by the hooks (which check and fold pushes), the remote vault (which pushes) and the API
(which folds a branch): the naming is part of the model, not of any one entry point.
"""

from __future__ import annotations

from collections.abc import Iterator

import pygit2
from pygit2.enums import SortMode

from gitvault.errors import InputError
from gitvault.git.storage import Store
from gitvault.model.provenance import escape_agent, unescape_agent

AGENTS = "refs/heads/agents/"
REQUESTS = "refs/gitvault/requests/"  # a push here asks post-receive for a lease operation


def agent_of(ref: str) -> str | None:
    """The agent an ``agents/<escaped>`` branch belongs to (None for other refs)."""
    if not ref.startswith(AGENTS) or "/" in ref[len(AGENTS) :] or ref == AGENTS:
        return None
    try:
        agent = unescape_agent(ref[len(AGENTS) :])
        return agent if escape_agent(agent) == ref[len(AGENTS) :] else None
    except (UnicodeDecodeError, ValueError, InputError):
        return None


def branch_for(agent: str) -> str:
    return AGENTS + escape_agent(agent)


def new_commits(store: Store, new: str) -> Iterator[pygit2.Commit]:
    """The commits a push of ``new`` brings that no branch of the vault has yet: what
    pre-receive must check (a commit already on a branch was checked when it arrived)."""
    repo = store.repo
    walker = repo.walk(pygit2.Oid(hex=new), SortMode.TOPOLOGICAL)
    for name in list(repo.references):
        if name.startswith("refs/heads/"):
            target = repo.references[name].target
            if isinstance(target, pygit2.Oid):
                walker.hide(target)
    yield from walker
