"""Who may act as which agent: the access rules kept on main in ``.gitvault/access.json``.

The rules live in the vault itself, so they are versioned, reviewed and read like any other
file (``git show main:.gitvault/access.json``), and a push is judged by the rules main held
when it arrived. The file is canonical JSON::

    {
      "admins": ["root"],
      "grants": {"alice": ["alice", "alice-*"], "bob": ["bob"]},
      "version": 1
    }

- ``admins``: authenticated users who may act as any agent and change this file.
- ``grants``: user (or ``fnmatch`` pattern of users) → the agent patterns it may act as.
- ``version``: the format; sections a later gitvault adds (path rules, signers) raise the
  version, and a gitvault that does not know a section refuses the file rather than
  silently ignoring a rule.
- ``paths`` and ``propose_only`` (issue 16): which agents may change which JSON Pointers,
  and which may only propose; parsed and applied by :mod:`gitvault.engine.pathcheck`.

A vault without the file has no rules: every pusher may act as every agent, as before access
rules existed. The first rules are written on the vault's own machine (``gitvault access ...``
or ``init --admin NAME``), where filesystem access is the root of trust; after that only an
admin changes them, by a commit on main.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

import pygit2

from gitvault.core import codec
from gitvault.errors import InputError, NotAllowed
from gitvault.git.storage import MAIN, Store
from gitvault.model import vaultfiles
from gitvault.model.provenance import check_agent

ACCESS_PATH = ".gitvault/access.json"
VERSION = 1
SECTIONS = ("admins", "grants", "version", "paths", "propose_only")
EXTENSIONS = ("paths", "propose_only")  # parsed and checked by gitvault.engine.pathcheck
ATTEMPTS = 200


@dataclass(frozen=True)
class Rules:
    """The parsed access file; immutable, so a change is a new value to compare-and-swap."""

    admins: tuple[str, ...] = ()
    grants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    present: bool = False  # False: the vault has no access file (no rules at all)
    extra: Mapping[str, Any] = field(default_factory=dict)  # EXTENSIONS (gitvault.engine.pathcheck)

    @classmethod
    def from_json(cls, data: Any, where: str = ACCESS_PATH) -> Rules:
        if not isinstance(data, dict):
            raise InputError(f"{where}: must be a JSON object with admins and grants")
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown or data.get("version", VERSION) != VERSION:
            raise InputError(
                f"{where}: unknown section(s) {unknown} or version "
                f"{data.get('version')!r}; this gitvault knows version {VERSION} "
                f"({', '.join(SECTIONS)}): upgrade gitvault"
            )
        admins = data.get("admins", [])
        grants = data.get("grants", {})
        if not isinstance(admins, list) or not all(isinstance(a, str) and a for a in admins):
            raise InputError(f"{where}: admins must be a list of user names")
        if (
            not isinstance(grants, dict)
            or not all(
                isinstance(v, list) and all(isinstance(p, str) and p for p in v)
                for v in grants.values()
            )
            or "" in grants
        ):
            raise InputError(f"{where}: grants must map each user to a list of agent patterns")
        from gitvault.model.pathrules import check_sections

        extra = check_sections({k: data[k] for k in EXTENSIONS if k in data}, where)
        return cls(tuple(admins), {u: tuple(p) for u, p in grants.items()}, True, extra)

    def to_json(self) -> dict[str, Any]:
        return {
            "admins": sorted(set(self.admins)),
            "grants": {u: sorted(set(p)) for u, p in sorted(self.grants.items()) if p},
            "version": VERSION,
            **{k: v for k, v in sorted(self.extra.items()) if v},
        }

    def is_admin(self, user: str) -> bool:
        return user in self.admins

    def rule_for(self, user: str, agent: str) -> str | None:
        """The rule that lets ``user`` act as ``agent``, as text; None when none does."""
        if not self.present:
            return "no access rules"
        if self.is_admin(user):
            return f"admin {user}"
        for who, patterns in sorted(self.grants.items()):
            if fnmatchcase(user, who):
                for p in patterns:
                    if fnmatchcase(agent, p):
                        return f"grant {who} {p}"
        return None

    def patterns_of(self, user: str) -> list[str]:
        return sorted({p for who, ps in self.grants.items() if fnmatchcase(user, who) for p in ps})

    def check(self, user: str, agent: str, what: str) -> str:
        """The allowing rule, or :class:`NotAllowed` naming user, agent and what is missing."""
        rule = self.rule_for(user, agent)
        if rule is not None:
            return rule
        mine = self.patterns_of(user)
        has = f"grants of {user}: {', '.join(mine)}" if mine else f"{user} has no grants"
        raise NotAllowed(
            f"user {user!r} may not act as agent {agent!r} ({what}): no rule of {ACCESS_PATH} "
            f"allows it ({has}); an admin can run `gitvault access grant {user} '{agent}'`",
            rule=f"{ACCESS_PATH}: no grant for {user} matches {agent}",
            user=user,
            agent=agent,
        )

    # -- changes (each returns the new rules) ------------------------------------------------
    def grant(self, user: str, pattern: str) -> Rules:
        _name(user, "user")
        check_agent(pattern)
        grants = dict(self.grants)
        grants[user] = tuple(sorted({*grants.get(user, ()), pattern}))
        return replace(self, grants=grants, present=True)

    def revoke(self, user: str, pattern: str | None = None) -> Rules:
        grants = dict(self.grants)
        if user not in grants or (pattern is not None and pattern not in grants[user]):
            raise InputError(
                f"{user} has no grant {pattern or ''}".rstrip()
                + "; `gitvault access list` shows the grants"
            )
        kept = tuple(p for p in grants.pop(user) if pattern is not None and p != pattern)
        if kept:
            grants[user] = kept
        return replace(self, grants=grants, present=True)

    def add_admin(self, user: str) -> Rules:
        return replace(
            self, admins=tuple(sorted({*self.admins, _name(user, "admin")})), present=True
        )

    def remove_admin(self, user: str) -> Rules:
        if user not in self.admins:
            raise InputError(f"{user} is not an admin; `gitvault access list` shows them")
        return replace(self, admins=tuple(a for a in self.admins if a != user), present=True)


def _name(text: str, what: str) -> str:
    if not text or any(c in text for c in "\x00\n\r") or text != text.strip():
        raise InputError(
            f"{what} name {text!r}: give a non-empty name without newlines or surrounding spaces"
        )
    return text


def parse(data: bytes, where: str = ACCESS_PATH) -> Rules:
    """Rules from the file's bytes, which must be canonical (as every file of the vault)."""
    if codec.canonical(data, where) != data:
        raise InputError(
            f"{where}: not canonical JSON; write it with `gitvault access ...` or `gitvault fmt`"
        )
    return Rules.from_json(codec.loads(data, where), where)


def blob_id(tree: pygit2.Tree) -> pygit2.Oid | None:
    try:
        return tree[ACCESS_PATH].id
    except KeyError:
        return None


def load(store: Store, tree: pygit2.Tree) -> Rules:
    """The rules of a tree (main's, usually); no file: no rules."""
    oid = blob_id(tree)
    return Rules() if oid is None else parse(store.blob(oid))


def load_main(store: Store) -> Rules:
    main = store.ref(MAIN)
    return Rules() if main is None else load(store, store.commit(main).tree)


def changed_by(store: Store, commit: pygit2.Commit) -> bool:
    """Whether a commit brings a version of the access file that none of its parents had."""
    mine = blob_id(commit.tree)
    if not commit.parents:
        return mine is not None
    return all(blob_id(p.tree) != mine for p in commit.parents)


def _main(store: Store) -> pygit2.Oid:
    main = store.ref(MAIN)
    if main is None:
        raise InputError("the vault has no main yet")
    return main


def rules_commit(
    store: Store, main: pygit2.Commit, rules: Rules, by: str, what: str, when: float
) -> pygit2.Oid:
    tree = vaultfiles.with_file(store, main, ACCESS_PATH, codec.dumps(rules.to_json()))
    return vaultfiles.admin_commit(store, main, tree, by, "access", what, f"access: {what}", when)


def describe(rules: Rules) -> list[str]:
    """One line per rule, as ``access list`` prints them."""
    if not rules.present:
        return ["no access rules: every pusher may act as every agent"]
    lines = [f"admin {a}" for a in sorted(rules.admins)]
    lines += [f"grant {u} {p}" for u, ps in sorted(rules.grants.items()) for p in sorted(ps)]
    from gitvault.model.pathrules import describe as describe_paths

    lines += describe_paths(rules)
    return lines or ["an empty access file: only authenticated admins may act (there are none)"]


def users_of(rules: Rules) -> Iterable[str]:
    return sorted({*rules.admins, *rules.grants})
