"""Commits that change one of the vault's own files under ``.gitvault/`` on main: a key's
schema, the access rules, the allowed signers.

Each is an administrative write, not a checkin: the acting person or agent, a ``Source``
naming the command, confidence 1.0, no lease, and main as its base, so that plain
``git log`` tells who changed the rules and when. The caller lands the commit on main
(compare-and-swap, see :func:`gitvault.engine.advance.commit_on_main`).
"""

from __future__ import annotations

import functools

import pygit2
from pygit2.enums import FileMode

from gitvault.git.storage import Store
from gitvault.model.provenance import check_agent, identity, message


def with_file(store: Store, main: pygit2.Commit, path: str, data: bytes) -> pygit2.Tree:
    """Main's tree with the file at ``path`` set to ``data`` (written, not yet committed)."""
    index = pygit2.Index()
    index.read_tree(main.tree)
    index.add(pygit2.IndexEntry(path, store.write_blob(data), FileMode.BLOB))
    oid = store.objects(functools.partial(index.write_tree, store.repo))
    tree = store.repo[oid]
    assert isinstance(tree, pygit2.Tree)
    return tree


def admin_commit(
    store: Store,
    main: pygit2.Commit,
    tree: pygit2.Tree,
    by: str,
    source: str,
    why: str,
    subject: str,
    when: float,
) -> pygit2.Oid:
    """The commit, on ``main``, of ``tree``: written by ``by`` through command ``source``."""
    trailers = [
        ("Agent-Id", check_agent(by)),
        ("Source", source),
        ("Confidence", "1.0"),
        ("Justification", why),
        ("Lease", "none"),
        ("Base", str(main.id)),
    ]
    return store.write_commit(tree.id, [main.id], identity(by), message(subject, trailers), when)
