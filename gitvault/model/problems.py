"""Reasons a push is refused, typed by the error they stand for.

A problem reads as text (the pusher sees it on stderr, one line each), and its type carries the
exit code of that error, so pre-receive's report takes its code from the kind of problem,
never from matching words in the text. Model code that judges pushes (quarantine, access
rules) returns these; the hooks print them.
"""

from __future__ import annotations

from gitvault.errors import GitVaultError, LeaseError, NotAllowed


class Problem(str):
    __slots__ = ()
    exit_code = GitVaultError.exit_code


class LeaseProblem(Problem):
    __slots__ = ()
    exit_code = LeaseError.exit_code


class NotAllowedProblem(Problem):
    __slots__ = ()
    exit_code = NotAllowed.exit_code


def exit_code(problems: list[str]) -> int:
    """The code of a refused push: the most specific of its problems' (plain text counts 1)."""
    return max(
        (getattr(p, "exit_code", GitVaultError.exit_code) for p in problems),
        default=GitVaultError.exit_code,
    )
