"""``.gitvault/allowed_signers`` on main: adding, revoking and listing the agents' keys.

Each change is one commit on main, compare-and-swap like every ref write, in the same shape
as the access rules' commits (:mod:`gitvault.model.access`). On the vault's machine the change is
written directly (filesystem access is the root of trust, as for ``gitvault access``); over
a push, only an authenticated admin may change the file (:mod:`gitvault.engine.trust`).
"""

from __future__ import annotations

from collections.abc import Callable

import pygit2

from gitvault.engine.signing import (
    SIGNERS_PATH,
    VAULT_PRINCIPAL,
    SignerLine,
    check_principal,
    format_signers,
    parse_signers,
    parse_time,
    read_public_key,
    stamp,
)
from gitvault.errors import InputError
from gitvault.git.storage import MAIN, Store
from gitvault.model import vaultfiles

ATTEMPTS = 200
Change = Callable[[list[SignerLine]], list[SignerLine]]


def load(store: Store, tree: pygit2.Tree) -> list[SignerLine]:
    try:
        return parse_signers(store.blob(tree[SIGNERS_PATH].id))
    except KeyError:
        return []


def load_main(store: Store) -> list[SignerLine]:
    main = store.ref(MAIN)
    return [] if main is None else load(store, store.commit(main).tree)


def add(agent: str, pub: str, valid_after: str | None, now: float) -> Change:
    """A change adding ``pub`` (a .pub file) for ``agent``, valid from ``valid_after``.

    By default a key is valid from the moment it is added: the allowed signers as they were
    at a commit's time, so a key registered today does not vouch for commits made before."""
    check_principal(agent)
    keytype, key, comment = read_public_key(pub)
    start = now if valid_after is None else parse_time(valid_after)
    options: tuple[tuple[str, str | None], ...] = (("valid-after", stamp(start)),)

    def change(lines: list[SignerLine]) -> list[SignerLine]:
        for ln in lines:
            if ln.key == key and agent in ln.principals and ln.valid_before is None:
                raise InputError(
                    f"{agent} already has key {ln.fingerprint}; `gitvault keys list` shows the keys"
                )
            if ln.key == key and ln.valid_before is not None and ln.valid_before <= now:
                raise InputError(
                    f"key {ln.fingerprint} was revoked; a revoked key cannot be "
                    "added again (make a new key)"
                )
        return [*lines, SignerLine((agent,), options, keytype, key, comment)]

    return change


def revoke(agent: str, key: str, now: float) -> Change:
    """A change ending ``agent``'s key (a .pub file or its fingerprint) at ``now``."""

    def matches(ln: SignerLine) -> bool:
        if agent not in ln.principals or ln.valid_before is not None:
            return False
        if key.startswith("SHA256:"):
            return ln.fingerprint == key
        return ln.key == read_public_key(key)[1]

    def change(lines: list[SignerLine]) -> list[SignerLine]:
        if not any(matches(ln) for ln in lines):
            raise InputError(f"{agent} has no live key {key}; `gitvault keys list` shows them")
        return [
            ln.with_option("valid-before", stamp(_end(ln, now))) if matches(ln) else ln
            for ln in lines
        ]

    return change


def _end(line: SignerLine, now: float) -> float:
    """When a key revoked ``now`` stops vouching. ssh-keygen refuses a line whose valid-before
    is not after its valid-after (times are whole seconds), so a key revoked in the very
    second it became valid ends at the close of that second."""
    start = line.valid_after
    return max(now, start + 1) if start is not None else now


def add_vault_key(lines: list[SignerLine], pub: tuple[str, str, str]) -> list[SignerLine]:
    return [*lines, SignerLine((VAULT_PRINCIPAL,), (), pub[0], pub[1], pub[2])]


def signers_commit(
    store: Store, main: pygit2.Commit, lines: list[SignerLine], by: str, what: str, now: float
) -> pygit2.Oid:
    """A commit on ``main`` whose allowed signers are ``lines`` (landed by the caller)."""
    tree = vaultfiles.with_file(store, main, SIGNERS_PATH, format_signers(lines))
    return vaultfiles.admin_commit(store, main, tree, by, "keys", what, f"keys: {what}", now)
