"""Questions about the past: who last wrote a value, what changed when.

Walks commits newest first and compares only the blob of the key concerned: a commit whose
blob for that key equals its first parent's cannot have written the value, so it is skipped
without parsing anything. Parsed blobs are cached by id, so a walk parses each version of a key
at most once.

Attribution follows *first parents*: a value that came into main through a merge is credited to
the merge commit, whose ``Agent-Id`` is the merged agent (the one whose change survived). That is
also what ``git log --first-parent`` shows as the history of main.

Paths are JSON Pointers with optional id steps (``/tasks/[id=T-004]/status``); an id step finds
the item wherever it sits in each version, so a value keeps its history when its array is
reordered.
"""

from __future__ import annotations

from gitvault.history.blame import BlameEntry, blame, id_form
from gitvault.history.common import LastWriter, last_writer, parse_time, value_at
from gitvault.history.diff import DiffResult, diff, diff_documents, positional
from gitvault.history.log import LogEntry, entry_of, legacy_events, log
from gitvault.history.show import export, revision, show

__all__ = [
    "BlameEntry",
    "DiffResult",
    "LastWriter",
    "LogEntry",
    "blame",
    "diff",
    "diff_documents",
    "entry_of",
    "export",
    "id_form",
    "last_writer",
    "legacy_events",
    "log",
    "parse_time",
    "positional",
    "revision",
    "show",
    "value_at",
]
