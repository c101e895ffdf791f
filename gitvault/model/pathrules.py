"""Who may change which part of the document: write rules by JSON Pointer.

Two sections of the access file (:mod:`gitvault.model.access`, on main in
``.gitvault/access.json``)::

    "paths": {"reviewer": ["/bugs", "/tasks/*/status"], "planner": ["/roadmap", "/tasks"]},
    "propose_only": ["intern-*"]

- ``paths``: agent pattern (``fnmatch``) → the pointers its agents may change. A pointer
  allows the value there and everything below it; ``*`` stands for exactly one step (an
  object member, an array index or an ``[id=...]`` item). ``""`` allows the whole document.
  Once any path rule exists, an agent that no pattern matches may change nothing.
- ``propose_only``: agent patterns whose checkins and pushes are never merged: they are kept
  under ``refs/conflicts/`` for an admin to resolve.

A vault without these sections behaves as before: any agent may change anything.

What a commit changes is computed from its blobs (the ``Changed:`` index says which elements
to compare, and pre-receive has already checked that index against the trees), then descended
as deep as the rules need: ``/tasks/[id=T-1]`` changed, and the rule is ``/tasks/*/status``,
so the old and new item are compared member by member.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from fnmatch import fnmatchcase
from typing import Any

from gitvault.core import pointers
from gitvault.errors import InputError, NotAllowed

PATHS, PROPOSE_ONLY = "paths", "propose_only"


ACCESS_PATH = ".gitvault/access.json"


EMPTY = '""'  # how the whole-document pointer is shown


def check_sections(extra: dict[str, Any], where: str) -> dict[str, Any]:
    """The path sections of an access file, checked (a bad rule refuses the whole file)."""
    paths = extra.get(PATHS, {})
    if not isinstance(paths, dict) or not all(
        isinstance(a, str) and a and isinstance(ps, list) and all(isinstance(p, str) for p in ps)
        for a, ps in paths.items()
    ):
        raise InputError(f"{where}: paths must map agent patterns to lists of JSON Pointers")
    for ps in paths.values():
        for p in ps:
            check_pointer(p, where)
    only = extra.get(PROPOSE_ONLY, [])
    if not isinstance(only, list) or not all(isinstance(a, str) and a for a in only):
        raise InputError(f"{where}: propose_only must be a list of agent patterns")
    return {k: v for k, v in extra.items() if v}


def check_pointer(pointer: str, where: str = "pointer") -> list[str]:
    try:
        return pointers.split(pointer)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def _paths(rules: Any) -> Mapping[str, list[str]]:
    return dict(rules.extra.get(PATHS, {}))


def has_rules(rules: Any) -> bool:
    return bool(_paths(rules))


def patterns_for(rules: Any, agent: str) -> list[tuple[str, str]]:
    """(agent pattern, pointer) of every path rule that applies to ``agent``."""
    return [(a, p) for a, ps in sorted(_paths(rules).items()) if fnmatchcase(agent, a) for p in ps]


def proposes_only(rules: Any, agent: str) -> str | None:
    for pattern in rules.extra.get(PROPOSE_ONLY, []):
        if fnmatchcase(agent, pattern):
            return str(pattern)
    return None


def _covers(pattern: list[str], tokens: list[str]) -> bool:
    return len(pattern) <= len(tokens) and all(
        p in ("*", t) for p, t in zip(pattern, tokens, strict=False)
    )


def rule_for(rules: Any, agent: str, pointer: str) -> str | None:
    """The rule that lets ``agent`` change the value at ``pointer``; None when none does."""
    if not has_rules(rules):
        return "no path rules"
    tokens = check_pointer(pointer)
    for a, p in patterns_for(rules, agent):
        if _covers(pointers.split(p), tokens):
            return f"paths {a} {p or '(whole document)'}"
    return None


def refusal(rules: Any, agent: str, pointer: str, what: str) -> NotAllowed:
    mine = [p or '""' for _a, p in patterns_for(rules, agent)]
    has = f"{agent} may change {', '.join(mine)}" if mine else f"no path rule names {agent}"
    return NotAllowed(
        f"{what}: {agent} may not change {pointer} ({has}; rules in {ACCESS_PATH}); nothing "
        f"changed. An admin can run `gitvault access allow {agent} '{pointer}'`",
        rule=f"{ACCESS_PATH}: paths ({has})",
        pointer=pointer,
        agent=agent,
    )


def allow(rules: Any, agent: str, pointer: str) -> Any:
    check_pointer(pointer)
    paths = {a: list(ps) for a, ps in _paths(rules).items()}
    paths[agent] = sorted({*paths.get(agent, []), pointer})
    return replace(rules, extra={**rules.extra, PATHS: paths}, present=True)


def disallow(rules: Any, agent: str, pointer: str | None) -> Any:
    paths = {a: list(ps) for a, ps in _paths(rules).items()}
    if agent not in paths or (pointer is not None and pointer not in paths[agent]):
        raise InputError(f"no path rule {agent} {pointer or ''}; `gitvault access list` shows them")
    kept = [p for p in paths.pop(agent) if pointer is not None and p != pointer]
    if kept:
        paths[agent] = kept
    return replace(rules, extra={**rules.extra, PATHS: paths}, present=True)


def set_propose_only(rules: Any, agent: str, on: bool) -> Any:
    only = [a for a in rules.extra.get(PROPOSE_ONLY, []) if a != agent]
    if on:
        only.append(agent)
    elif len(only) == len(rules.extra.get(PROPOSE_ONLY, [])):
        raise InputError(f"{agent} is not propose-only; `gitvault access list` shows them")
    return replace(rules, extra={**rules.extra, PROPOSE_ONLY: sorted(only)}, present=True)


def describe(rules: Any) -> list[str]:
    lines = [
        f"paths {a} {p or EMPTY}" for a, ps in sorted(_paths(rules).items()) for p in sorted(ps)
    ]
    lines += [f"propose-only {a}" for a in sorted(rules.extra.get(PROPOSE_ONLY, []))]
    return lines
