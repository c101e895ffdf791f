"""Checking a change against the path rules: which pointers a commit (or a merge) changes
that its agent may not, read from the trees themselves (the ``Changed:`` index is only a
claim)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pygit2

from gitvault.core import pointers
from gitvault.core.jsonmerge import MISSING, json_equal
from gitvault.git.storage import Store
from gitvault.history import value_at
from gitvault.model import changes
from gitvault.model.pathrules import _covers, has_rules, patterns_for, refusal


def _differences(tokens: list[str], old: Any, new: Any, pats: list[list[str]]) -> Iterator[str]:
    """Pointers under ``tokens`` that changed and that no pattern covers."""
    if old is not MISSING and new is not MISSING and json_equal(old, new):
        return
    if old is MISSING and new is MISSING:
        return
    if any(_covers(p, tokens) for p in pats):
        return
    deeper = [p for p in pats if len(p) > len(tokens) and _covers(p[: len(tokens)], tokens)]
    if deeper:
        if isinstance(old, dict) and isinstance(new, dict):
            for k in sorted(set(old) | set(new)):
                yield from _differences(
                    [*tokens, k], old.get(k, MISSING), new.get(k, MISSING), deeper
                )
            return
        if isinstance(old, list) and isinstance(new, list):
            steps = _item_steps(old, new)
            if steps is not None:
                for step, a, b in steps:
                    yield from _differences([*tokens, step], a, b, deeper)
                return
    yield pointers.join(tokens)


def _item_steps(old: list[Any], new: list[Any]) -> list[tuple[str, Any, Any]] | None:
    """Items paired by id (same ids in the same order) or by position (same length)."""

    def ids(items: list[Any]) -> list[str] | None:
        out = [f"[id={i['id']}]" for i in items if isinstance(i, dict) and "id" in i]
        return out if len(out) == len(items) and len(set(out)) == len(out) else None

    a, b = ids(old), ids(new)
    if a is not None and a == b:
        return list(zip(a, old, new, strict=True))
    if len(old) == len(new):
        return [(str(i), x, y) for i, (x, y) in enumerate(zip(old, new, strict=True))]
    return None


def forbidden(
    store: Store, rules: Any, agent: str, old: pygit2.Tree | None, new: pygit2.Tree
) -> list[str]:
    """The pointers ``old`` → ``new`` changes that ``agent`` may not change."""
    if not has_rules(rules):
        return []
    pats = [pointers.split(p) for _a, p in patterns_for(rules, agent)]
    keys: dict[tuple[pygit2.Oid, str], Any] = {}  # each key parsed once per side

    def at(tree: pygit2.Tree | None, tokens: list[str]) -> Any:
        if tree is None:
            return MISSING
        if (tree.id, tokens[0]) not in keys:
            keys[tree.id, tokens[0]] = value_at(store, tree, pointers.join(tokens[:1]))
        value = keys[tree.id, tokens[0]]
        for token in tokens[1:]:
            if value is MISSING:
                break
            value = pointers.step(value, token)
        return value

    out: list[str] = []
    for element in changes.between(store, old, new):
        tokens = pointers.split(element)
        out += _differences(tokens, at(old, tokens), at(new, tokens), pats)
    return out


def forbidden_merge(store: Store, rules: Any, agent: str, commit: pygit2.Commit) -> list[str]:
    """What a commit itself changes that ``agent`` may not: values it holds that differ from
    *every* parent (a merge of main into a branch brings main's values, not the agent's)."""
    if not commit.parents:
        return forbidden(store, rules, agent, None, commit.tree)
    found = None
    for parent in commit.parents:
        mine = set(forbidden(store, rules, agent, parent.tree, commit.tree))
        found = mine if found is None else found & mine
    return sorted(found or ())


def check(
    store: Store, rules: Any, agent: str, old: pygit2.Tree | None, new: pygit2.Tree, what: str
) -> None:
    bad = forbidden(store, rules, agent, old, new)
    if bad:
        raise refusal(rules, agent, bad[0], what)
