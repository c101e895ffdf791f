"""Quarantined agents: who may not write, since when, and by whose decision.

The record is ``.gitvault/quarantine.json`` on main (``git show main:.gitvault/quarantine.json``
reads it), an object mapping each quarantined agent to when, by whom and why. It lives in the
vault's history like the schemas, so lifting or imposing a quarantine is itself a commit that
``git log`` shows. Only ``gitvault quarantine`` writes it: checkins keep ``.gitvault/`` of their
base, and pre-receive refuses a push that changes it.

Every write path asks :func:`check` first (checkout, checkin, patch checkins, pushes, the MCP
server's calls); a quarantined agent gets :class:`~gitvault.errors.NotAllowed` (exit 5).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import pygit2
from pygit2.enums import FileMode, SortMode

from gitvault.core import codec
from gitvault.errors import NotAllowed
from gitvault.git.storage import MAIN, Store
from gitvault.model.problems import NotAllowedProblem
from gitvault.model.provenance import parse_trailers

PATH = ".gitvault/quarantine.json"


@dataclass(frozen=True)
class Entry:
    """One quarantine: the agent, when it began (ISO-8601 UTC), who decided it and why."""

    agent: str
    since: str
    by: str
    source: str
    justification: str = ""
    window_since: str | None = None  # the window of writes that was undone
    window_until: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read(store: Store, tree: pygit2.Tree) -> dict[str, Entry]:
    """The quarantines recorded in a tree (none when the file is absent or unreadable)."""
    try:
        oid = tree[PATH].id
    except KeyError:
        return {}
    data = codec.loads_trusted(store.blob(oid), PATH)
    if not isinstance(data, dict):
        return {}
    out = {}
    for agent, row in data.items():
        if isinstance(row, dict):
            out[agent] = Entry(
                agent,
                str(row.get("since", "")),
                str(row.get("by", "")),
                str(row.get("source", "")),
                str(row.get("justification", "")),
                row.get("window_since"),
                row.get("window_until"),
            )
    return out


def on_main(store: Store) -> dict[str, Entry]:
    head = store.ref(MAIN)
    return read(store, store.commit(head).tree) if head is not None else {}


def refusal(entry: Entry) -> NotAllowed:
    return NotAllowed(
        f"agent {entry.agent!r} is quarantined since {entry.since} by {entry.by} "
        f"({entry.source}); nothing it writes is accepted until "
        f"`gitvault quarantine --lift {entry.agent}`",
        rule="quarantine",
        agent=entry.agent,
        since=entry.since,
        by=entry.by,
    )


def check(store: Store, agent: str) -> None:
    """Refuse (exit 5) if ``agent`` is quarantined on main. Costs one tree lookup when not."""
    head = store.ref(MAIN)
    if head is None:
        return
    tree = store.commit(head).tree
    if PATH not in tree:
        return
    entry = read(store, tree).get(agent)
    if entry is not None:
        raise refusal(entry)


def changed_by(store: Store, old: pygit2.Tree | None, new: pygit2.Tree) -> bool:
    """Whether a commit changes the record (pushes may not)."""

    def oid(tree: pygit2.Tree | None) -> pygit2.Oid | None:
        try:
            return tree[PATH].id if tree is not None else None
        except KeyError:
            return None

    return oid(old) != oid(new)


def write(store: Store, tree: pygit2.Tree, entries: dict[str, Entry]) -> pygit2.Oid:
    """``tree`` with the record replaced by ``entries`` (removed when empty)."""
    index = pygit2.Index()
    index.read_tree(tree)
    if entries:
        body = {
            a: {k: v for k, v in e.to_json().items() if k != "agent"}
            for a, e in sorted(entries.items())
        }
        index.add(pygit2.IndexEntry(PATH, store.write_blob(codec.dumps(body)), FileMode.BLOB))
    elif PATH in index:
        index.remove(PATH)
    return store.objects(functools.partial(index.write_tree, store.repo))


def push_problems(
    store: Store, ref: str, agent: str | None, tip: pygit2.Oid
) -> list[NotAllowedProblem]:
    """Why pre-receive refuses a push for undo's sake: the branch's agent, or the writer of a
    commit pushed to main, is quarantined; a pushed commit changes the record; or it claims
    to be an undo (``exposure`` never lists undo commits, so the claim must not be forgeable)."""
    entries = on_main(store)
    if agent is not None and agent in entries:
        return [NotAllowedProblem(f"{ref}: {refusal(entries[agent])}")]
    problems: list[NotAllowedProblem] = []
    walker = store.repo.walk(tip, SortMode.TOPOLOGICAL)
    head = store.ref(MAIN)
    if head is not None:
        walker.hide(head)
    for commit in walker:
        trailers = parse_trailers(commit.message)
        writer = trailers.get("Agent-Id", commit.author.name)
        if "Reverts" in trailers or "Restores" in trailers:
            problems.append(
                NotAllowedProblem(
                    f"{ref} {str(commit.id)[:12]}: Reverts:/Restores: are written by "
                    "`gitvault revert`/`restore` only; drop them"
                )
            )
        if writer in entries:
            problems.append(
                NotAllowedProblem(f"{ref} {str(commit.id)[:12]}: {refusal(entries[writer])}")
            )
        if (
            all(changed_by(store, p.tree, commit.tree) for p in commit.parents)
            if commit.parents
            else changed_by(store, None, commit.tree)
        ):
            problems.append(
                NotAllowedProblem(
                    f"{ref} {str(commit.id)[:12]}: {PATH} changes only through "
                    "`gitvault quarantine`; leave it as it is"
                )
            )
    return problems
