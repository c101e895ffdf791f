"""The conflict policies: what a merge does with a value both sides changed.

One enum, used by the engine, the ``gitvault.onConflict`` setting, the CLI's choices and the MCP
tools' schema, so a new policy is added in one place.
"""

from __future__ import annotations

from enum import StrEnum


class ConflictPolicy(StrEnum):
    FAIL = "fail"  # refuse, keep the proposal under refs/conflicts/
    OURS = "ours"  # main's value wins
    THEIRS = "theirs"  # the proposal's value wins
    CONFIDENCE = "confidence"  # the higher Confidence trailer of the last writers wins; ties refuse


POLICIES = tuple(p.value for p in ConflictPolicy)
