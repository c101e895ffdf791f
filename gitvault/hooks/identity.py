"""Who pushed, and whether they may: the authenticated pusher checked against the access rules.

The pusher is a fact only when the hosting layer vouches for it. gitolite sets ``GL_USER``
from the SSH key that logged in; Apache sets ``REMOTE_USER`` after basic auth and passes it to
``git http-backend``. But a push to a local path runs the hooks in the pusher's own
environment, where anyone can ``export REMOTE_USER=admin``. So the hooks trust a variable only
when both hold:

1. the vault's own config file names the host: ``gitvault.identityFrom`` is ``gitolite``,
   ``http`` or ``env`` (then ``gitvault.identityVariables`` lists the variables). It is read
   from the vault's file alone, never from ``$GITVAULT_*`` or a ``~/.gitconfig`` the pusher
   controls; and
2. the hook runs as the hosting account, the user that owns the vault's ``config``. Pushes
   through gitolite or the web server run as that account; a local push by any other user runs
   as that user, and their variables prove nothing.

Whoever can push as the hosting account through the filesystem can rewrite the vault's refs
anyway: the check cannot (and need not) protect against them.

With no vouched-for pusher, ``gitvault.requireIdentity`` decides: off (the default) pushes
are checked as before access rules existed, except that a change of the access file needs an
authenticated admin; on (``init --hosted``), every such push is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pygit2

from gitvault.errors import GitVaultError, InputError, NotAllowed
from gitvault.git.storage import Store
from gitvault.model import access, settings
from gitvault.model.branches import new_commits
from gitvault.model.conflicts import ConflictStore
from gitvault.model.provenance import parse_trailers, unescape_agent

VARIABLES = {"gitolite": ("GL_USER",), "http": ("REMOTE_USER",)}
ZERO = "0" * 40


@dataclass(frozen=True)
class Pusher:
    user: str | None  # None: nobody the host vouches for
    how: str  # where the user came from, or why none is known


def pusher(store: Store, env: Mapping[str, str] | None = None) -> Pusher:
    """The authenticated user this hook runs for (see the module docstring for when)."""
    env = os.environ if env is None else env
    source = settings.value(store, "identityFrom")
    if source == "env":
        names = tuple(
            v.strip()
            for v in str(settings.value(store, "identityVariables")).split(",")
            if v.strip()
        )
    else:
        names = VARIABLES.get(source, ())
    if not names:
        claimed = [v for v in ("GL_USER", "REMOTE_USER") if env.get(v)]
        extra = (
            f" (${claimed[0]} is set, but anyone pushing to a path can set it)" if claimed else ""
        )
        return Pusher(
            None, f"gitvault.identityFrom is {source}: no host vouches for the pusher{extra}"
        )
    owner = _owner(store)
    me = os.geteuid() if hasattr(os, "geteuid") else None
    if owner is not None and me is not None and me != owner:
        return Pusher(
            None,
            f"the hook runs as uid {me}, not as the hosting account (uid "
            f"{owner}, the owner of the vault) that {source} runs as; a variable "
            "set here is the pusher's own",
        )
    for name in names:
        user = env.get(name, "").strip()
        if user:
            return Pusher(user, f"${name} ({source})")
    return Pusher(None, f"the host set none of ${', $'.join(names)}")


def _owner(store: Store) -> int | None:
    try:
        return os.stat(os.path.join(store.path, "config")).st_uid
    except OSError:
        return None


# -- the checks of one push ----------------------------------------------------------------
def check_push(
    store: Store,
    updates: Iterable[tuple[str, str, str]],
    options: Mapping[str, str],
    who: Pusher | None = None,
) -> list[NotAllowed]:
    """Every refusal of this push by identity and access rules (empty: allowed).

    ``updates`` are (old, new, ref). Judged by the rules on main as the push arrives.
    """
    from gitvault.model.branches import REQUESTS, agent_of

    updates = list(updates)
    who = pusher(store) if who is None else who
    try:
        rules = access.load_main(store)
    except InputError as e:  # a broken access file refuses everything until an admin fixes it
        return [
            NotAllowed(
                f"{e}; nothing can be pushed until it is fixed on the vault's machine",
                rule=access.ACCESS_PATH,
            )
        ]
    out: list[NotAllowed] = []
    if who.user is None and settings.value(store, "requireIdentity"):
        return [
            NotAllowed(
                f"{ref}: this vault requires an authenticated pusher "
                f"(gitvault.requireIdentity=true) and has none: {who.how}",
                rule="gitvault.requireIdentity",
                ref=ref,
            )
            for _old, _new, ref in updates
        ]
    user = who.user
    for _old, new, ref in updates:
        acting: list[tuple[str, str]] = []  # (agent, what) the pusher acts as
        if ref.startswith(REQUESTS):
            acting = _request_agents(store, options)
        elif (agent := agent_of(ref)) is not None:
            acting = [(agent, f"pushing {ref}")]
        commits = list(new_commits(store, new)) if new != ZERO else []
        for c in commits:
            claimed = parse_trailers(c.message).get("Agent-Id")
            if claimed:
                acting.append((claimed, f"commit {str(c.id)[:12]} Agent-Id"))
            if access.changed_by(store, c):
                out += _admin_change(store, c, user, who, rules)
        if user is not None:
            for agent, what in acting:
                try:
                    rules.check(user, agent, what)
                except NotAllowed as e:
                    e.details["ref"] = ref
                    out.append(e)
    return out


def _admin_change(
    store: Store, commit: pygit2.Commit, user: str | None, who: Pusher, rules: access.Rules
) -> list[NotAllowed]:
    where = f"commit {str(commit.id)[:12]}"
    if user is None or not rules.is_admin(user):
        name = repr(user) if user else f"an unauthenticated pusher ({who.how})"
        return [
            NotAllowed(
                f"{where} changes {access.ACCESS_PATH}, which only an authenticated admin may "
                f"push, and the pusher is {name}; change the rules with `gitvault access ...` on "
                "the vault's machine or as an admin",
                rule=f"{access.ACCESS_PATH}: admins",
                user=user,
            )
        ]
    oid = access.blob_id(commit.tree)
    try:
        if oid is None:
            raise InputError(
                f"{access.ACCESS_PATH} deleted; keep the file (empty sections are fine)"
            )
        access.parse(store.blob(oid))
    except GitVaultError as e:
        return [NotAllowed(f"{where}: {e}", rule=access.ACCESS_PATH, user=user)]
    return []


def _request_agents(store: Store, options: Mapping[str, str]) -> list[tuple[str, str]]:
    """The agents a lease or conflict request acts as: its agent, and the conflict's owner."""
    op = options.get("op", "")
    out = []
    if options.get("agent"):
        try:
            out.append((unescape_agent(options["agent"]), f"{op} request"))
        except (UnicodeDecodeError, ValueError):
            out.append((options["agent"], f"{op} request"))
    if op in ("resolve", "drop") and options.get("id"):
        try:
            kept = ConflictStore(store).get(options["id"])
            out.append((kept.agent, f"{op} of conflict {kept.id}"))
        except InputError:
            pass  # no such conflict: the request fails on its own, changing nothing
    return out


def report(refusals: list[NotAllowed]) -> dict[str, object]:
    """The ``gitvault-report`` of a refused push: exit 5 with the first refusal's rule."""
    first = refusals[0]
    return {
        **first.to_json(),
        "error": "NotAllowed",
        "exit_code": 5,
        "message": "; ".join(str(r) for r in refusals),
    }
