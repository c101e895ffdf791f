"""Hostile input, fuzzed with hypothesis, against the CLI and the library.

Whatever an agent sends, gitvault may only answer in one of a few ways:

- the CLI: exit 0; or exit 1, 3 or 4 with one line ``gitvault: ...`` on stderr; or exit 2, a
  usage error in typer's own format; never a traceback, never another exception;
- the library: a result, or a :class:`gitvault.errors.GitVaultError` with ``exit_code`` in 1..4;
- a refused command changes no ref (an expired lease or a conflict may keep the proposal under
  ``refs/conflicts/``), and no command ever makes a ref outside the vault's namespaces;
- an accepted checkin is a commit whose trailers, as ``git interpret-trailers --parse`` reads
  them, are exactly the six provenance keys with the values given: nothing forged;
- every commit on main holds canonical, valid JSON, and an accepted document is stored exactly.

Each checkin example makes at most one field hostile (or all of them), so that the oracles,
written from the contract and not from gitvault's code, can say whether it must be accepted.
Inputs: agent ids (NUL, control characters, unicode, very long, ``/``, ``..``, ``.lock``,
``%``), TTLs, confidences, sources and justifications (newlines, ``Key: value``, ``---``,
U+2028, lone surrogates as a shell passes undecodable bytes), proposals (deep nesting, huge
strings and numbers, -0.0, lone surrogates, BOMs, control characters, invalid UTF-8, duplicate
keys, non-objects, bad key names), JSON Patches, pointers, revisions and times.
``GITVAULT_FUZZ_SCALE=10`` multiplies every example budget.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import count
from pathlib import Path
from typing import Any
from unittest import mock

import pygit2
import pytest
import typer
import typer.testing
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from gitvault import Vault
from gitvault.cli import app
from gitvault.core.codec import loads_document
from gitvault.errors import CodecError, ConflictError, GitVaultError
from gitvault.git.storage import Store
from gitvault.model import changes
from gitvault.model.provenance import unescape

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "legacy"
SCALE = float(os.environ.get("GITVAULT_FUZZ_SCALE", "1"))
EXAMPLES: dict[str, int] = {}  # test name -> examples budget, for the report


def fuzz(examples: int) -> Callable[[Any], Any]:
    """Modest hypothesis settings: the whole file runs in well under a minute."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# Bugs this file found, each reproduced by an xfail test at the end of the file. While an entry
# is here the property tests let that one input through; delete the entry once gitvault is
# fixed, so that the properties hold it to the contract again.
KNOWN_BUGS: frozenset[str] = frozenset()  # fixed: surrogates, agent-newline, crud names
GIT_CRUD = set(" ,:;\"'\\")  # what libgit2 trims from a signature's name (controls: gitvault's ?)

TRAILERS = ["Agent-Id", "Source", "Confidence", "Justification", "Lease", "Base"]
MERGE_TRAILERS = {"Merged-Commit", "Merge-Strategy", "Resolved"}
ALLOWED_REF = re.compile(
    r"refs/(heads/main|heads/agents/.+|leases/[A-Za-z0-9_%-]+|notes/leases|conflicts/.+)"
)
KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
HEX40 = re.compile(r"[0-9a-f]{40}")
MAX_DEPTH, MAX_STRING_BYTES, MAX_KEYS, MAX_DOCUMENT_BYTES = 100, 16 * 2**20, 100_000, 64 * 2**20


# -- strategies ------------------------------------------------------------------------------
ANY_CHAR = st.characters(exclude_categories=())  # every code point, lone surrogates included
SOUND_CHAR = st.characters(codec="utf-8")  # ... except lone surrogates

HOSTILE_TEXT = [
    "",
    " ",
    "  padded  ",
    "\x00",
    "a\x00b",
    "\n",
    "a\nb",
    "\r\n",
    "\t",
    "\x1b[31mred",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "Key: value",
    "x\nAgent-Id: mallory",
    "x\n\nAgent-Id: mallory\nSource: forged",
    "---",
    "x\n---\nSource: forged",
    "Signed-off-by: A <a@b>",
    "\\n",
    "\\u000a",
    "\\",
    "%",
    "%2F",
    "%25",
    "%00",
    "/",
    "..",
    "a..b",
    ".lock",
    "x.lock",
    "a/b",
    "a/../b",
    "refs/heads/main",
    "HEAD",
    "@{1}",
    "~^:?*[\\",
    "-",
    "--",
    "-x",
    "--help",
    "#comment",
    "\ud800",
    "\udcff",
    "x\udc80y",
    "\ufeff",
    "é",
    "e\u0301",
    "☕",
    "\U0001d54f",
    "\U0010ffff",
    "İ",
    "a" * 80,
    "a" * 81,
    "é" * 40,
    "é" * 41,
    "x" * 10_000,
    "\u3000",
    "\xa0",
    "<a@b>",
    "a <b@c>",
    ":",
    " : ",
    "a:b",
]


def _sound(s: str) -> bool:
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in s)


hostile_texts = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(ANY_CHAR, max_size=24),
    st.text(alphabet="ab/.%-_~ :\n\x00\udcff", max_size=12),
)
sound_texts = st.one_of(
    st.sampled_from([t for t in HOSTILE_TEXT if _sound(t)]), st.text(SOUND_CHAR, max_size=24)
)


def agent_ok(agent: str) -> bool:
    """The contract's agent ids: non-empty, no NUL, valid Unicode, at most 80 UTF-8 bytes."""
    return agent != "" and "\x00" not in agent and _sound(agent) and len(agent.encode()) <= 80


def source_ok(source: str) -> bool:
    return bool(source.strip()) and _sound(source)


def confidence_ok(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list | dict):
        return False
    try:
        c = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(c) and 0.0 <= c <= 1.0


good_agents = st.one_of(
    sound_texts.filter(agent_ok),
    st.sampled_from(["planner-1", "a/b", "a..b", "x.lock", "%2F", "é", "☕"]),
)
hostile_agents = hostile_texts
good_sources = sound_texts.filter(source_ok)
CONFIDENCE_TEXT = [
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e308",
    "-1e308",
    "1e-308",
    "5e-324",
    "-0",
    "-0.0",
    "0",
    "1",
    "1.0",
    "1.0000000000000002",
    "0.99999999999999999",
    "",
    "0.5",
    " 0.5",
    "0x1",
    "1_0",
    "0_5",
    "\u0660.\u0665",
    "½",
    "None",
    "true",
    "0.5\n",
    "\x00",
    "1e-400",
    "0.5\u2028",
    "-1e-400",
]
good_cli_confidences = st.one_of(
    st.none(),
    st.floats(0, 1).map(repr),
    st.sampled_from([c for c in CONFIDENCE_TEXT if confidence_ok(c)]),
)
hostile_cli_confidences = st.one_of(
    st.sampled_from(CONFIDENCE_TEXT), st.floats().map(repr), st.text(ANY_CHAR, max_size=8)
)
good_lib_confidences: st.SearchStrategy[Any] = st.one_of(good_cli_confidences, st.floats(0, 1))
hostile_lib_confidences: st.SearchStrategy[Any] = st.one_of(
    hostile_cli_confidences,
    st.floats(),
    st.sampled_from([-0.0, 1e308, True, [0.5], {"c": 1}, float("nan"), -1e-400]),
)

CLI_TTLS = st.one_of(
    st.integers().map(str),
    st.sampled_from(
        [
            "abc",
            "",
            " 5",
            "5 ",
            "+5",
            "1e3",
            "0x10",
            "1_0",
            "\u0665",
            "nan",
            "-0",
            "0",
            "1",
            "86400",
            "86401",
            "9" * 30,
            "-" + "9" * 30,
            "600",
            "\x00",
        ]
    ),
    st.text(ANY_CHAR, max_size=6),
)
LIB_TTLS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.integers(),
    st.sampled_from(
        [
            0,
            -1,
            1,
            600,
            86400,
            86401,
            2**63,
            -(2**63),
            10**100,
            "60",
            1.5,
            True,
            float("nan"),
            "abc",
            [60],
        ]
    ),
)

VALID_KEYS = st.from_regex(KEY_RE, fullmatch=True)
BAD_KEYS = st.sampled_from(
    [
        "",
        ".",
        "..",
        ".gitvault",
        ".hidden",
        "-x",
        "_x",
        "a/b",
        "a\\b",
        "a b",
        "ä",
        "a\x00",
        "a\n",
        "\ud800",
        "a" * 129,
        "~",
        "a:b",
        "a*",
    ]
)
SPECIAL_FLOATS = [
    -0.0,
    1e308,
    -1e308,
    5e-324,
    2.2250738585072014e-308,
    0.1,
    1 / 3,
    1e-5,
    1e-7,
    1.5e-10,
    1e16,
    1e22,
    123456789.123,
    9007199254740993.0,
]
good_leaves: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(SPECIAL_FLOATS),
    st.text(SOUND_CHAR, max_size=16),
    sound_texts,
)
hostile_leaves: st.SearchStrategy[Any] = st.one_of(
    good_leaves, st.floats(), st.text(ANY_CHAR, max_size=16), st.sampled_from(HOSTILE_TEXT)
)


def json_trees(
    leaf: st.SearchStrategy[Any], names: st.SearchStrategy[str]
) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(names, c, max_size=4),
        max_leaves=12,
    )


good_values = json_trees(good_leaves, st.one_of(st.text(SOUND_CHAR, max_size=6), sound_texts))
hostile_values = json_trees(
    hostile_leaves, st.one_of(st.text(ANY_CHAR, max_size=6), st.sampled_from(HOSTILE_TEXT))
)
id_arrays: st.SearchStrategy[Any] = st.lists(
    st.fixed_dictionaries(
        {"id": st.one_of(st.text(max_size=4), st.integers(-3, 3))}, optional={"v": good_leaves}
    ),
    max_size=4,
)
good_documents: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    VALID_KEYS, st.one_of(good_values, id_arrays), max_size=4
)
hostile_documents: st.SearchStrategy[Any] = st.one_of(
    st.dictionaries(
        st.one_of(VALID_KEYS, BAD_KEYS), st.one_of(hostile_values, id_arrays), max_size=4
    ),
    hostile_values,  # mostly not an object
)

HUGE_STRING = b'{"big": "' + b"x" * 1_000_000 + b'"}'
GOOD_RAW = [
    b"{}",
    b"\xef\xbb\xbf{}",
    b'{"a": 1e308}',
    b'{"a": -0.0}',
    b'{"a": -0}',
    b'{"a": 5e-324}',
    b'{"a": 1e-400}',
    b'{"a": "\\ud83d\\ude00"}',
    b'{"a": "\\u0000"}',
    b'{"a": [{"id": 1}]}',
    b'{"ok": "\\u2028\\u2029\\u0085"}',
    b'{"a": 1' + b"0" * 400 + b".0}",
    b'{"a": 123456789012345678901234567890}',
    b'{"a.json": 1}',
    HUGE_STRING,
    b' \n\t{"a" : [ ] , "b":{}}\r\n',
    b'{"a": 1E+2, "b": 1e-5, "c": 0.00001}',
]
BAD_RAW = [
    b"",
    b" ",
    b"null",
    b"[]",
    b'"x"',
    b"1",
    b"true",
    b"{",
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": -Infinity}',
    b'{"a": 1e400}',
    b'{"a": -1e400}',
    b'{"a": "\\ud800"}',
    b'{"a": "\\udc00\\ud800"}',
    b'{"\\ud800": 1}',
    b'{"a": {"\\udfff": 1}}',
    b'{"a": "\xed\xa0\x80"}',
    b'{"a": "\xff"}',
    b'{"a": "\x01"}',
    b'{"a": "\x00"}',
    b'{"a": 1, "a": 2}',
    b'{"a": {"b": 1, "b": 1}}',
    b'{"a": 1' + b"0" * 5000 + b"}",
    b'{"": 1}',
    b'{".gitvault": 1}',
    b'{"a/b": 1}',
    b'{"..": 1}',
    b'{"a": 1}\x00',
    b'{"a": 1} {"b": 2}',
    b"{'a': 1}",
    b'{"a": 01}',
    b'{"a": .5}',
    b'{"a": +1}',
    b'{"a": 0x10}',
    b'{"a": [1,]}',
    b'{"a": 1,}',
    b"\xfe\xff\x00{\x00}",
    b"\xff\xfe{\x00}\x00",
    b"\xef\xbb\xbf\xef\xbb\xbf{}",
    b'{"deep": ' + b"[" * 100_000,
    b'{"deep": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b"[" * 200_000 + b"]" * 200_000,
    b'{"a": {"b": ' * 3000 + b"1" + b"}}" * 3000,
    b'{"a": "\\uDEAD\\uBEEF"}',
    b'{"a\\u0000": 1}',
]
INVALID_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82"]


def _encode(doc: Any, ascii_only: bool, indent: int | str | None) -> bytes:
    try:
        text = json.dumps(doc, ensure_ascii=ascii_only, indent=indent)
    except ValueError:  # an int past Python's digit limit: write one by hand
        text = '{"a": 1' + "0" * 5000 + "}"
    return text.encode("utf-8", "surrogatepass")  # raw lone surrogates: invalid UTF-8


@st.composite
def good_proposals(draw: st.DrawFn) -> bytes:
    """Valid documents, in any valid spelling."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(GOOD_RAW))
    data = _encode(
        draw(good_documents), draw(st.booleans()), draw(st.sampled_from([None, 2, "\t"]))
    )
    if n := draw(st.sampled_from([0, 0, 0, 1, 50, 99])):  # nesting up to the limit is fine
        data = (
            data[:-1]
            + (b", " if data != b"{}" else b"")
            + (b'"deep": ' + b"[" * n + b"]" * n + b"}")
        )
    return b"\xef\xbb\xbf" + data if draw(st.integers(0, 7)) == 0 else data


@st.composite
def hostile_proposals(draw: st.DrawFn) -> bytes:
    """Anything: often invalid, sometimes subtly."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.sampled_from(BAD_RAW))
    doc = draw(st.one_of(hostile_documents, good_documents))
    data = _encode(doc, draw(st.booleans()), draw(st.sampled_from([None, 2])))
    how = draw(
        st.sampled_from(
            ["none", "bom2", "truncate", "tail", "invalid", "nul", "dup", "wrap", "deep", "control"]
        )
    )
    pos = draw(st.integers(0, len(data)))
    if how == "bom2":
        data = b"\xef\xbb\xbf\xef\xbb\xbf" + data
    elif how == "truncate":
        data = data[:pos]
    elif how == "tail":
        data += draw(st.binary(min_size=1, max_size=8))
    elif how == "invalid":
        data = data[:pos] + draw(st.sampled_from(INVALID_UTF8)) + data[pos:]
    elif how == "nul":
        data = data[:pos] + b"\x00" + data[pos:]
    elif how == "dup" and data.startswith(b"{"):
        data = b'{"dup": 1, "dup": 2' + (b", " if isinstance(doc, dict) and doc else b"") + data[1:]
    elif how == "wrap":
        data = b"[" + data + b"]"
    elif how == "deep":
        n = draw(st.sampled_from([100, 101, 150, 1000, 50_000]))  # past maxDepth
        data = b'{"deep": ' + b"[" * n + b"]" * n + b"}"
    elif how == "control" and b'"' in data:
        i = data.index(b'"') + 1
        data = data[:i] + bytes([draw(st.integers(0, 31))]) + data[i:]
    return data


POINTER_SAMPLES = [
    "",
    "/",
    "//",
    "/a~2",
    "/~",
    "/a~",
    "tasks/0",
    "/tasks/0",
    "/tasks/-",
    "/tasks/-1",
    "/tasks/01",
    "/tasks/99999999999999999999",
    "/tasks/[id=",
    "/tasks/[id=]",
    "/tasks/[id=T-001]",
    "/tasks/[id=T-001]/status",
    "/tasks/[id=[id=x]]",
    "/[id=1]",
    "/tasks/[id=7]",
    "/tasks/[id=-0]",
    "/roadmap/vision",
    "/agents/planner",
    "/.gitvault",
    "/.gitvault/schemas",
    "/" + "a" * 200,
    "/x" * 20_000,
    "/\x00",
    "/\ud800",
    "/tasks/~1",
    "/tasks/0/~01",
    "/decisions",
    "/bugs/0/id",
    "/fuzz/a\nb",
    "/fuzz/\u2028",
    "/fuzz/ok",
]
pointers = st.one_of(
    st.sampled_from(POINTER_SAMPLES),
    st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "tasks",
                    "roadmap",
                    "agents",
                    "bugs",
                    "decisions",
                    "fuzz",
                    "0",
                    "1",
                    "-",
                    "[id=T-001]",
                    "[id=1]",
                    "~0",
                    "~1",
                    "~2",
                    "[id=",
                    "",
                ]
            ),
            st.text(ANY_CHAR, max_size=4),
        ),
        max_size=5,
    ).map(lambda ts: "".join("/" + t for t in ts)),
    st.text(ANY_CHAR, max_size=16),
)
REV_SAMPLES = [
    "main",
    "HEAD",
    "HEAD~1",
    "HEAD~2",
    "HEAD~999999",
    "HEAD~99999999999999999999",
    "HEAD^2",
    "HEAD^{tree}",
    "HEAD^{}",
    "HEAD:tasks.json",
    "main@{0}",
    "main@{1}",
    "main@{99999999}",
    "main@{1 year ago}",
    "main@{yesterday}",
    "@{-1}",
    ":/checkin",
    ":/",
    "0" * 40,
    "f" * 40,
    "abc",
    "a",
    "",
    " ",
    "..",
    "main..main",
    "main...HEAD",
    "refs/notes/leases",
    "refs/heads/agents/x",
    "^main",
    "main^!",
    "-",
    "--all",
    "\x00",
    "\ud800",
    "x" * 5000,
    "HEAD~-1",
    "HEAD@{-1}",
    "refs/leases",
    "main^{/legacy}",
    "main^{blob}",
    "v1.0",
]
TIME_SAMPLES = [
    "nan",
    "inf",
    "-inf",
    "1e308",
    "-1e308",
    "-1e20",
    "0",
    "-1",
    "1759309200",
    "1e10",
    "253402300800",
    "-62135596801",
    "9999-12-31T23:59:59Z",
    "10000-01-01",
    "0001-01-01",
    "0001-01-01T00:00:00+14:00",
    "2025-13-45",
    "2025-02-30",
    "",
    "now",
    "yesterday",
    "2025-10-01T09:00:00+25:00",
    "2025-10-01T09:00:00Z",
    "2025-10-01T09:00:00.123456789Z",
    "T",
    "\x00",
    "2100-01-01",
    "1970-01-01T00:00:00-23:59",
    "2025-W01",
    "--1",
]
times = st.one_of(
    st.none(),
    st.sampled_from(TIME_SAMPLES),
    st.floats().map(repr),
    st.integers().map(str),
    st.text(ANY_CHAR, max_size=10),
)
limits = st.one_of(st.none(), st.integers(), st.sampled_from([0, -1, 2**63, 10**30]))
patch_ops: st.SearchStrategy[Any] = st.one_of(
    st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"])},
        optional={"path": pointers, "from": pointers, "value": hostile_values | id_arrays},
    ),
    hostile_values,
)
PATCH_SEED: dict[str, Any] = {"tasks": [{"id": "T-001", "status": "todo"}], "fuzz": {"a": [1, 2]}}
PATCH_PATHS = [
    "",
    "/fuzz",
    "/fuzz/a",
    "/fuzz/a/0",
    "/fuzz/a/-",
    "/fuzz/a/9",
    "/fuzz/b",
    "/tasks",
    "/tasks/0",
    "/tasks/0/status",
    "/tasks/-",
    "/tasks/0/id",
    "/new",
    "/new/x",
    "/.gitvault",
    "/bad key",
    "/fuzz/\u2028",
]
applicable_ops: st.SearchStrategy[Any] = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["add", "add", "replace", "remove", "move", "copy", "test"]),
        "path": st.sampled_from(PATCH_PATHS),
        "from": st.sampled_from(PATCH_PATHS),
        "value": st.one_of(good_values, hostile_values),
    },
)
patches: st.SearchStrategy[Any] = st.one_of(
    st.lists(applicable_ops, min_size=1, max_size=3),
    st.lists(applicable_ops, min_size=1, max_size=3),
    st.lists(patch_ops, max_size=4),
    st.sampled_from(
        [
            {},
            None,
            "x",
            5,
            [[]],
            [{"op": "add"}],
            [{"op": "add", "path": 5}],
            [{"op": "replace", "path": "", "value": [1]}],
            [{"op": "replace", "path": "", "value": {"fresh": 1}}],
            [{"op": "add", "path": "/fuzz", "value": float("nan")}],
            [{"op": "add", "path": "/-", "value": 1}],
            [{"op": "move", "from": "/tasks", "path": "/tasks/0"}],
            [{"op": "add", "path": "/a~2", "value": 1}],
            [{"op": "add", "path": "/fuzz", "value": "\ud800"}],
            [{"op": "copy", "from": "/tasks", "path": "/bad key"}],
            [{"op": "test", "path": "/tasks", "value": 1}],
            [{"op": "add", "path": "/tasks/0/x", "value": 1}],
            [{"op": "add", "path": "/tasks/[id=T-001]/x", "value": 1}],
        ]
    ),
)


@dataclass(frozen=True)
class Checkin:
    """One checkin's inputs; ``hostile`` names the field drawn from the hostile pool."""

    hostile: str
    agent: str
    source: str
    confidence: Any
    justification: str
    proposal: bytes


@st.composite
def checkins(draw: st.DrawFn, cli: bool) -> Checkin:
    hostile = draw(
        st.sampled_from(
            [
                "none",
                "none",
                "agent",
                "source",
                "confidence",
                "justification",
                "proposal",
                "proposal",
                "all",
            ]
        )
    )

    def pick(name: str, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
        return draw(bad if hostile in (name, "all") else good)

    confidences = (
        (good_cli_confidences, hostile_cli_confidences)
        if cli
        else (good_lib_confidences, hostile_lib_confidences)
    )
    return Checkin(
        hostile,
        pick("agent", good_agents, hostile_agents),
        pick("source", good_sources, hostile_texts),
        pick("confidence", *confidences),
        pick("justification", sound_texts, hostile_texts),
        pick("proposal", good_proposals(), hostile_proposals()),
    )


# -- independent oracles ---------------------------------------------------------------------
class _Refused(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Refused("duplicate key")
    return out


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")


def _walk(value: Any) -> Iterator[Any]:
    """Every value, member name and item inside ``value`` (no recursion: any depth)."""
    stack = [value]
    while stack:
        v = stack.pop()
        yield v
        if isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def _depth(value: Any) -> int:
    stack, deepest = [(value, 1)], 0
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def verdict(data: bytes, shape_limits: bool = True) -> tuple[str | None, Any]:
    """Why the contract refuses ``data`` as a whole document (None: it must be accepted), and
    the parsed document. Written from the rules (DESIGN.md, README), not from gitvault's code.
    ``shape_limits``: also apply maxDepth, maxStringBytes and maxKeys."""
    if len(data) > MAX_DOCUMENT_BYTES:
        return "maxDocumentBytes", None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")  # strict: refuses encoded surrogates too
    except UnicodeDecodeError:
        return "invalid UTF-8", None
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except _Refused as e:
        return str(e), None
    except (ValueError, RecursionError):
        return "not JSON", None
    if not isinstance(value, dict):
        return "not an object", None
    if any(not KEY_RE.fullmatch(k) for k in value):
        return "bad top-level key", None
    items = list(_walk(value))
    if any(isinstance(v, str) and not _sound(v) for v in items):
        return "lone surrogate", None
    if any(isinstance(v, float) and not math.isfinite(v) for v in items):
        return "float overflow", None
    if shape_limits:
        if _depth(value) > MAX_DEPTH:
            return "maxDepth", None
        if any(isinstance(v, str) and len(v.encode()) > MAX_STRING_BYTES for v in items):
            return "maxStringBytes", None
        if any(isinstance(v, dict) and len(v) > MAX_KEYS for v in items):
            return "maxKeys", None
    return None, value


def canonical(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def escaped_ref(agent: str) -> str:
    """Every byte outside [A-Za-z0-9_-] as %XX (README, Storage layout)."""
    return "refs/leases/" + "".join(
        chr(b) if re.fullmatch(rb"[A-Za-z0-9_-]", bytes([b])) else f"%{b:02X}"
        for b in agent.encode()
    )


def _known(bug: str) -> bool:
    return bug in KNOWN_BUGS


# -- the harness -----------------------------------------------------------------------------
_COMMANDS: dict[int, Any] = {}


def _command_once(typer_app: typer.Typer) -> Any:
    if id(typer_app) not in _COMMANDS:
        _COMMANDS[id(typer_app)] = typer.main.get_command(typer_app)
    return _COMMANDS[id(typer_app)]


class Runner(CliRunner):
    """typer rebuilds the click command from the app on every invoke (about 90 ms of a
    100 ms CLI call here); build it once so that the fuzzer spends its time in gitvault."""

    def invoke(
        self,
        app: typer.Typer,
        args: str | Sequence[str] | None = None,
        input: bytes | str | None = None,
        env: Mapping[str, str | None] | None = None,
        catch_exceptions: bool = True,
        color: bool = False,
        **extra: Any,
    ) -> Result:
        with mock.patch.object(typer.testing, "_get_command", _command_once):
            return super().invoke(app, args, input, env, catch_exceptions, color, **extra)


def _git_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


@dataclass
class Fz:
    """One vault in a tmp dir, the CLI on it, and the real git binary to look at it."""

    path: Path
    tmp: Path
    runner: CliRunner = field(default_factory=Runner)
    files: Iterator[int] = field(default_factory=count)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def vault(self) -> Vault:
        return Vault.open(self.path)

    def git(self, *args: str) -> str:
        r = subprocess.run(
            ["git", f"--git-dir={self.path}", *args], capture_output=True, env=_git_env()
        )
        assert r.returncode == 0, f"git {args}: {r.stderr!r}"
        return r.stdout.decode("utf-8", "replace")

    def refs(self) -> dict[str, str]:
        out = self.git("for-each-ref", "--format=%(objectname) %(refname)")
        return {name: oid for oid, name in (line.split(" ", 1) for line in out.splitlines())}

    def cli(self, *args: str, input: bytes | None = None) -> Result:
        return self.runner.invoke(app, ["--vault", str(self.path), *args], input=input)

    def write(self, data: bytes) -> str:
        p = self.tmp / f"proposal-{next(self.files)}.json"
        p.write_bytes(data)
        return str(p)

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1


def make_vault(tmp: Path, example: bool = False) -> Fz:
    path = tmp / "vault.git"
    Vault.init(path, EXAMPLE if example else None)
    subprocess.run(
        ["git", "config", "-f", str(path / "config"), "gitvault.fsync", "false"], check=True
    )
    return Fz(path, tmp)


@pytest.fixture
def fz(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fz]:
    h = make_vault(tmp_path)
    yield h
    assert_vault_sound(h)
    if h.stats:
        print(f"\n{request.node.name}: {sum(h.stats.values())} examples {h.stats}")


@pytest.fixture
def fz_history(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fz]:
    """The example vault with a little history: checkins, a merge, a lease, a kept conflict."""
    h = make_vault(tmp_path, example=True)
    v = h.vault
    v.checkout("p/1", 600)
    v.checkout("q..2", 600)
    doc = v.read()
    doc["tasks"][0]["status"] = "done"
    doc["fuzz"] = {"a\nb": 1, "\u2028": [1, 2.5, -0.0], "ok": "x"}
    v.checkin("p/1", doc, "s", 0.9, "first")
    doc2 = v.read("HEAD~1")
    doc2["roadmap"] = {"vision": "merged"}
    v.checkin("q..2", doc2, "t", 0.4, "second")  # main moved: merged
    v.checkout("q..2", 600)
    doc3 = v.read()
    doc3["fuzz"]["ok"] = "q"
    v.checkout("p/1", 600)
    doc4 = v.read()
    doc4["fuzz"]["ok"] = "p"
    v.checkin("p/1", doc4, "s", 0.9, "third")
    with pytest.raises(ConflictError):
        v.checkin("q..2", doc3, "t", 0.4, "conflicting")
    yield h
    assert_vault_sound(h)
    print(f"\n{request.node.name}: {sum(h.stats.values())} examples {h.stats}")


# -- checks ----------------------------------------------------------------------------------
def assert_cli_outcome(res: Result, agent: str = "") -> int:
    """Exit 0; exit 1/3/4 with one ``gitvault:`` line; or a typer usage error (exit 2)."""
    exc = res.exception
    if exc is not None and not isinstance(exc, SystemExit):
        tb = "".join(traceback.format_exception(*res.exc_info)) if res.exc_info else repr(exc)
        raise AssertionError(f"uncaught {type(exc).__name__} reached the CLI user:\n{tb}")
    code = res.exit_code
    assert code in (0, 1, 2, 3, 4), (code, res.stderr[-2000:])
    assert "Traceback (most recent call last)" not in res.stderr, res.stderr[-2000:]
    if code in (1, 3, 4):
        assert res.stderr.startswith("gitvault: "), res.stderr[:2000]
        if not ("\n" in agent and _known("agent-newline-in-message")):
            assert res.stderr.count("\n") == 1 and res.stderr.endswith("\n"), (
                f"exit {code}: the message is not one line: {res.stderr[:2000]!r}"
            )
    elif code == 2:
        assert res.stderr.startswith("Usage: ") and "Error" in res.stderr, res.stderr[:2000]
    return code


def assert_library_error(e: BaseException) -> GitVaultError:
    if not isinstance(e, GitVaultError):
        tb = "".join(traceback.format_exception(e))
        raise AssertionError(f"the library raised {type(e).__name__}, not a GitVaultError:\n{tb}")
    assert e.exit_code in (1, 3, 4), e
    assert str(e), "an error without a message"
    return e


def _call(fn: Callable[[], Any]) -> tuple[Any, GitVaultError | None]:
    try:
        return fn(), None
    except BaseException as e:  # noqa: BLE001 - every exception type is under test
        return None, assert_library_error(e)


def assert_refs_allowed(refs: Mapping[str, str]) -> None:
    bad = [r for r in refs if not ALLOWED_REF.fullmatch(r)]
    assert bad == [], f"refs outside the vault's namespaces: {bad}"


def assert_refused_cleanly(before: Mapping[str, str], after: Mapping[str, str], code: int) -> None:
    """A refused command changes no ref; exit 3/4 may only add a kept proposal."""
    assert_refs_allowed(after)
    changed = {r for r in before if after.get(r) != before[r]}
    assert changed == set(), f"exit {code} moved or deleted {changed}"
    added = set(after) - set(before)
    if code in (3, 4):
        added = {r for r in added if not r.startswith("refs/conflicts/")}
    assert added == set(), f"exit {code} made refs {added}"


def parse_trailers_with_git(h: Fz, commit: str) -> list[tuple[str, str]]:
    msg = h.git("cat-file", "commit", commit).split("\n\n", 1)[1]
    r = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=msg.encode(),
        capture_output=True,
        env=_git_env(),
        cwd=h.tmp,
        check=True,
    )
    out = []
    for line in r.stdout.decode().split("\n")[:-1]:
        key, _, value = line.partition(": ")  # git writes "Key: value", the value trimmed
        out.append((key, value))
    return out


def assert_provenance(
    h: Fz, commit: str, agent: str, source: str, confidence: Any, justification: str
) -> None:
    """Exactly the six trailers (merges: plus the merge keys), holding exactly our values."""
    parents = h.git("rev-list", "--parents", "-n", "1", commit).split()[1:]
    trailers = parse_trailers_with_git(h, commit)
    keys = [k for k, _ in trailers]
    assert keys[:6] == TRAILERS, trailers
    extra = [k for k in keys[6:] if k != changes.TRAILER]
    store = Store.open(str(h.path))  # the Changed: index is exactly what the commit changed
    c = store.commit(commit)
    assert [unescape(v) for k, v in trailers if k == changes.TRAILER] == changes.between(
        store, c.parents[0].tree, c.tree
    ), trailers
    if len(parents) == 1:
        assert extra == [], f"forged or extra trailers: {trailers}"
    else:
        assert set(extra) <= MERGE_TRAILERS and extra.count("Merged-Commit") == 1, trailers
        assert_provenance(h, parents[1], agent, source, confidence, justification)
    got = {k: unescape(v) for k, v in trailers[:6]}
    # git trims the ASCII blanks around a value, nothing else
    assert got["Agent-Id"] == agent.strip(" "), (got, agent)
    assert got["Source"] == source.strip(" "), (got, source)
    assert got["Justification"] == justification.strip(" "), (got, justification)
    want = 0.5 if confidence is None else float(confidence)
    assert float(got["Confidence"]) == want, (got, confidence)
    assert got["Lease"].isdigit(), got
    assert HEX40.fullmatch(got["Base"]), got
    author = h.git("log", "-1", "--format=%an <%ae>", commit).rstrip("\n")
    assert "\n" not in author, author


def main_blobs(h: Fz, rev: str = "refs/heads/main") -> dict[str, bytes]:
    repo = pygit2.Repository(str(h.path))
    commit = repo.revparse_single(rev).peel(pygit2.Commit)
    out = {}
    for e in commit.tree:
        if e.type_str == "blob" and e.name is not None and not e.name.startswith("."):
            blob = repo[e.id]
            assert isinstance(blob, pygit2.Blob)
            out[e.name] = blob.data
    return out


def assert_blob_sound(name: str, data: bytes) -> None:
    why, value = verdict(b'{"k": ' + data + b"}")
    assert why is None, f"{name} holds invalid JSON ({why})"
    assert canonical(value["k"]) == data, f"{name} is not canonical"


def assert_vault_sound(h: Fz) -> None:
    """Every commit on main holds canonical valid JSON; leases and notes agree; fsck clean."""
    repo = pygit2.Repository(str(h.path))
    seen: set[pygit2.Oid] = set()
    main = repo.references["refs/heads/main"].target
    assert isinstance(main, pygit2.Oid)
    for c in repo.walk(main):
        for e in c.tree:
            if e.type_str == "tree":
                assert e.name == ".gitvault", f"{c.id}: unexpected tree {e.name!r}"
                continue
            assert e.name is not None and e.name.endswith(".json"), (c.id, e.name)
            assert KEY_RE.fullmatch(e.name[:-5]), f"{c.id}: bad key file {e.name!r}"
            if e.id not in seen:
                seen.add(e.id)
                blob = repo[e.id]
                assert isinstance(blob, pygit2.Blob)
                assert_blob_sound(f"{c.id}:{e.name}", blob.data)
    refs = h.refs()
    assert_refs_allowed(refs)
    leases = {oid for r, oid in refs.items() if r.startswith("refs/leases/")}
    notes = {line.split()[1] for line in h.git("notes", "--ref=leases", "list").splitlines()}
    assert leases == notes, f"lease refs without notes or notes without leases: {leases ^ notes}"
    fsck = subprocess.run(
        ["git", f"--git-dir={h.path}", "fsck", "--strict", "--no-dangling"],
        capture_output=True,
        text=True,
        env=_git_env(),
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def field_problem(c: Checkin) -> str | None:
    """Which of the checkin's arguments other than the proposal the contract refuses."""
    if not agent_ok(c.agent):
        return "agent"
    if not source_ok(c.source):
        return "source"
    if not confidence_ok(c.confidence):
        return "confidence"
    if not _sound(c.justification):
        return "justification"
    return None


def expect_accepted(c: Checkin) -> str | None:
    """Why the contract refuses this checkin (exit 1), or None: it must be accepted."""
    return field_problem(c) or verdict(c.proposal)[0]


def known_bug_hit(c: Checkin, exc: BaseException | None) -> bool:
    """Did this checkin run into one of KNOWN_BUGS (so its exception is not news)?"""
    if _known("surrogate-in-provenance") and not _sound(c.source + c.justification):
        return exc is None or isinstance(exc, UnicodeEncodeError)
    if _known("crud-agent-signature") and agent_ok(c.agent) and set(c.agent) <= GIT_CRUD:
        return exc is None or isinstance(exc, pygit2.GitError | ValueError)
    return False


# -- the codec -------------------------------------------------------------------------------
@fuzz(600)
@given(
    data=st.one_of(good_proposals(), hostile_proposals(), st.binary(max_size=64)),
    as_text=st.booleans(),
)
def test_loads_document_accepts_exactly_the_valid_documents_and_refuses_the_rest_cleanly(
    data: bytes, as_text: bool
) -> None:
    why, value = verdict(data, shape_limits=False)  # depth, strings, keys: checked on encoding
    arg: bytes | str = data
    if as_text:
        try:
            arg = data.decode("utf-8-sig")
        except UnicodeDecodeError:  # a str can only carry such bytes as lone surrogates
            arg = data.decode("utf-8", "surrogateescape")
            why = "lone surrogate"
    note(f"verdict: {why}")
    try:
        doc = loads_document(arg, "p.json")
    except BaseException as e:  # noqa: BLE001 - every exception type is under test
        err = assert_library_error(e)
        assert isinstance(err, CodecError), err
        assert why is not None, f"a valid document was refused: {err}"
        assert str(err).startswith("p.json"), f"the message does not name the input: {err}"
        return
    if why == "lone surrogate" and _known("lone-surrogate-parsed"):
        return
    assert why is None, f"accepted although {why}"
    assert canonical(doc) == canonical(value)


# -- the CLI ---------------------------------------------------------------------------------
@fuzz(70)
@given(
    agent=st.one_of(good_agents, hostile_agents),
    ttl=st.one_of(st.none(), CLI_TTLS),
    exclusive=st.booleans(),
    release=st.booleans(),
)
def test_cli_checkout_and_release_take_any_agent_and_ttl_and_only_touch_that_agents_lease(
    fz: Fz, agent: str, ttl: str | None, exclusive: bool, release: bool
) -> None:
    before = fz.refs()
    args = ["checkout", *(["--exclusive"] if exclusive else []), "--", agent]
    res = fz.cli(*args, *([ttl] if ttl is not None else []))
    code = assert_cli_outcome(res, agent)
    after = fz.refs()
    fz.count(f"checkout exit {code}")
    if code != 0:
        assert_refused_cleanly(before, after, code)
        assert agent_ok(agent) or code in (1, 2), res.stderr
    else:
        assert agent_ok(agent), f"accepted a bad agent id {agent!r}"
        ref = escaped_ref(agent)
        changed = {r for r in set(before) | set(after) if before.get(r) != after.get(r)}
        assert changed == {ref, "refs/notes/leases"}, changed
        lease = json.loads(fz.git("notes", "--ref=leases", "show", ref))
        assert lease["agent"] == agent
        assert lease["mode"] == ("exclusive" if exclusive else "shared")
        assert 1 <= lease["ttl"] <= 86400
        assert isinstance(json.loads(res.stdout), dict)
    if release or exclusive:  # an exclusive lease left behind would block every later example
        res = fz.cli("release", "--", agent)
        assert assert_cli_outcome(res, agent) == (0 if agent_ok(agent) else 1), res.stderr
        assert not agent_ok(agent) or escaped_ref(agent) not in fz.refs()
        before = fz.refs()
        res = fz.cli("checkin", "--", agent, fz.write(b'{"a": 1}'), "src")  # no lease now
        code = assert_cli_outcome(res, agent)
        assert code == (4 if agent_ok(agent) else 1), res.stderr
        assert_refused_cleanly(before, fz.refs(), code)


@fuzz(110)
@given(c=checkins(cli=True), stdin=st.booleans(), as_json=st.booleans())
def test_cli_checkin_accepts_valid_proposals_with_exact_provenance_and_refuses_the_rest(
    fz: Fz, c: Checkin, stdin: bool, as_json: bool
) -> None:
    if c.confidence is None:  # then the justification is not passed either
        c = replace(c, justification="")
    co = assert_cli_outcome(fz.cli("checkout", "--", c.agent, "600"), c.agent)
    assert co == (0 if agent_ok(c.agent) else 1)
    why = expect_accepted(c)
    note(f"expected refusal: {why}")
    tail = [] if c.confidence is None else [c.confidence, c.justification]
    before = fz.refs()
    res = fz.cli(
        "checkin",
        *(["--json"] if as_json else []),
        "--",
        c.agent,
        "-" if stdin else fz.write(c.proposal),
        c.source,
        *tail,
        input=c.proposal if stdin else None,
    )
    if not isinstance(res.exception, SystemExit) and known_bug_hit(c, res.exception):
        fz.count("checkin known bug")
        return
    code = assert_cli_outcome(res, c.agent)
    after = fz.refs()
    fz.count(f"checkin hostile={c.hostile} exit {code}")
    out: dict[str, Any] = {}
    if as_json:
        out = json.loads(res.stdout)
        assert out.get("exit_code", 0) == code, out
    if code != 0:
        assert_refused_cleanly(before, after, code)
        assert code == 1, f"a fast-forward checkin by a lease holder gave exit {code}"
        assert why is not None, f"a valid checkin was refused: {res.stderr}"
        if why.startswith("max"):
            assert why in res.stderr, res.stderr
        return
    assert why is None, f"accepted although {why}"
    assert_refs_allowed(after)
    head = after["refs/heads/main"]
    if (as_json and out["noop"]) or (not as_json and "no change" in res.stderr):
        assert head == before["refs/heads/main"]
        return
    assert (out["commit"] if as_json else res.stdout.strip()) == head, (res.stdout, after)
    assert_provenance(fz, head, c.agent, c.source, c.confidence, c.justification)
    value = verdict(c.proposal)[1]  # stored exactly: one canonical blob per key, nothing else
    assert main_blobs(fz) == {f"{k}.json": canonical(v) for k, v in value.items()}


@fuzz(40)
@given(agent=st.sampled_from(["a", "x.lock", "a/b", "é"]), patch=patches, stdin=st.booleans())
def test_cli_checkin_of_a_json_patch_never_breaks_main(
    fz: Fz, agent: str, patch: Any, stdin: bool
) -> None:
    v = fz.vault
    v.checkout("other", 600)
    v.checkin("other", PATCH_SEED, "seed", 1.0)
    assert assert_cli_outcome(fz.cli("checkout", "--", agent, "600")) == 0
    try:
        data = json.dumps(patch).encode("utf-8", "surrogatepass")
    except ValueError:
        data = b"[{]"
    before = fz.refs()
    res = fz.cli(
        "checkin",
        "--patch",
        "--",
        agent,
        "-" if stdin else fz.write(data),
        "src",
        "0.7",
        "patch",
        input=data if stdin else None,
    )
    code = assert_cli_outcome(res)
    fz.count(f"patch exit {code}")
    if code != 0:
        assert_refused_cleanly(before, fz.refs(), code)
    elif "no change" not in res.stderr:
        assert_provenance(fz, res.stdout.strip(), agent, "src", "0.7", "patch")


@st.composite
def history_commands(draw: st.DrawFn) -> list[str]:
    what = draw(
        st.sampled_from(["log", "show", "diff", "blame", "status", "conflicts", "resolve", "drop"])
    )
    conflict_ids = hostile_texts.filter(lambda x: x != "q..2/1")  # the one real id
    if what == "resolve":
        take = draw(st.sampled_from(["ours", "theirs", "bogus", "", "-", "/dev/null"]))
        return ["resolve", "--take", take, "--", draw(conflict_ids)]
    if what == "drop":
        return ["conflicts", "drop", "--", draw(conflict_ids)]
    args = [what]
    if draw(st.booleans()):
        args.append("--json")
    if what == "log":
        for opt, strat in (
            ("--agent", hostile_texts),
            ("--key", hostile_texts),
            ("--path", pointers),
            ("--source", hostile_texts),
            ("--since", times),
            ("--until", times),
            ("-n", st.one_of(limits.map(str), st.text(max_size=4))),
        ):
            value = draw(st.one_of(st.none(), strat))
            if value is not None and value != "None":
                args += [opt, value]
    elif what == "show":
        for opt, strat in (("--at", times), ("--path", pointers)):
            value = draw(st.one_of(st.none(), strat))
            if value is not None:
                args += [opt, value]
    elif what == "diff":
        args += ["--format", draw(st.sampled_from(["text", "patch", "json", ""]))]
        if path := draw(st.one_of(st.none(), pointers)):
            args += ["--path", path]
    elif what == "blame":
        if rev := draw(st.one_of(st.none(), st.sampled_from(REV_SAMPLES))):
            args += ["--rev", rev]
        return [*args, "--", draw(pointers)]
    revs = draw(
        st.lists(
            st.one_of(st.sampled_from(REV_SAMPLES), st.text(ANY_CHAR, max_size=8)),
            max_size=2 if what == "diff" else 1,
        )
    )
    if what in ("log", "show", "diff") and revs:
        args += ["--", *revs]
    return args


@fuzz(120)
@given(args=history_commands())
def test_cli_history_commands_answer_any_pointer_revision_or_time_and_change_nothing(
    fz_history: Fz, args: list[str]
) -> None:
    before = fz_history.refs()
    res = fz_history.cli(*args)
    code = assert_cli_outcome(res)
    fz_history.count(f"{args[0]} exit {code}")
    assert code in (0, 1, 2), res.stderr
    assert fz_history.refs() == before
    if code == 0 and "--json" in args:
        json.loads(res.stdout)


def test_a_100_mb_proposal_is_refused_quickly_naming_the_size_limit(fz: Fz) -> None:
    big = fz.tmp / "big.json"
    with big.open("wb") as f:
        f.write(b'{"a": "')
        chunk = b"x" * (1 << 20)
        for _ in range(100):
            f.write(chunk)
        f.write(b'"}')
    assert assert_cli_outcome(fz.cli("checkout", "a", "600")) == 0
    before = fz.refs()
    start = time.monotonic()
    res = fz.cli("checkin", "a", str(big), "s")
    elapsed = time.monotonic() - start
    print(f"\n100 MB proposal: exit {res.exit_code} in {elapsed:.2f} s: {res.stderr.strip()}")
    assert assert_cli_outcome(res) == 1
    assert "maxDocumentBytes" in res.stderr, res.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s to refuse"
    assert fz.refs() == before


# -- the library -----------------------------------------------------------------------------
@fuzz(80)
@given(agent=st.one_of(good_agents, hostile_agents), ttl=LIB_TTLS, exclusive=st.booleans())
def test_library_checkout_and_release_accept_exactly_the_valid_agents_and_ttls(
    fz: Fz, agent: str, ttl: Any, exclusive: bool
) -> None:
    v = fz.vault
    before = fz.refs()
    co, err = _call(lambda: v.checkout(agent, ttl, exclusive))
    ttl_ok = ttl is None or (type(ttl) is int and 1 <= ttl <= 86400)
    fz.count(f"checkout {'ok' if err is None else type(err).__name__}")
    if err is not None:
        assert_refused_cleanly(before, fz.refs(), err.exit_code)
        assert not (agent_ok(agent) and ttl_ok), f"a valid checkout was refused: {err}"
    else:
        assert agent_ok(agent) and ttl_ok, (agent, ttl)
        assert co.lease.agent == agent and escaped_ref(agent) in fz.refs()
    _, err = _call(lambda: v.release(agent))
    assert (err is None) == agent_ok(agent), err
    assert not agent_ok(agent) or escaped_ref(agent) not in fz.refs()


def _lenient(data: bytes) -> Any:
    """Python values from bytes, keeping what strict parsing refuses: NaN, Infinity, lone
    surrogates (duplicate keys collapse); None when even this cannot parse them."""
    try:
        return json.loads(data.decode("utf-8-sig", "surrogatepass"))
    except (ValueError, RecursionError):
        return None


@fuzz(110)
@given(
    c=checkins(cli=False),
    python=st.booleans(),
    lease=st.sampled_from(["current", "current", "none", "stale"]),
)
def test_library_checkin_accepts_valid_documents_with_exact_provenance_and_refuses_the_rest(
    fz: Fz, c: Checkin, python: bool, lease: str
) -> None:
    """The document is parsed with loads_document, as the CLI does, or handed over as Python
    values parsed leniently (NaN, lone surrogates, non-objects and all)."""
    if known_bug_hit(c, None):
        fz.count("checkin known bug")
        return
    v = fz.vault
    co, err = _call(lambda: v.checkout(c.agent, 600))
    assert (err is None) == agent_ok(c.agent), err
    token = {
        "current": co.lease.token if co else None,
        "none": None,
        "stale": co.lease.token - 1 if co else 0,
    }[lease]
    doc = _lenient(c.proposal) if python else None
    if doc is not None:
        why = field_problem(c) or verdict(_encode(doc, True, None))[0]
    else:
        why = expect_accepted(c)
        doc, err = _call(lambda: loads_document(c.proposal, "p.json"))
        if doc is None:
            assert err is not None and verdict(c.proposal, shape_limits=False)[0] is not None, (
                f"a valid document was refused: {err}"
            )
            return
    note(f"expected refusal: {why}")
    before = fz.refs()
    result, err = _call(
        lambda: v.checkin(c.agent, doc, c.source, c.confidence, c.justification, lease=token)
    )
    after = fz.refs()
    fz.count(f"checkin hostile={c.hostile} {'ok' if err is None else type(err).__name__}")
    if err is not None:
        assert_refused_cleanly(before, after, err.exit_code)
        assert why is not None or lease == "stale", f"a valid checkin was refused: {err}"
        if lease != "stale" and why is not None and why.startswith("max"):
            assert why in str(err), err
        return
    assert why is None, f"accepted although {why}"
    assert lease != "stale"
    if result.commit is not None:
        assert after["refs/heads/main"] == result.commit
        assert_provenance(fz, result.commit, c.agent, c.source, c.confidence, c.justification)
        assert main_blobs(fz) == {f"{k}.json": canonical(x) for k, x in doc.items()}


@fuzz(50)
@given(agent=st.sampled_from(["a", "x.lock", "a/b", "é"]), patch=patches)
def test_library_checkin_patch_applies_or_refuses_with_a_gitvault_error(
    fz: Fz, agent: str, patch: Any
) -> None:
    v = fz.vault
    v.checkout("other", 600)
    v.checkin("other", PATCH_SEED, "seed", 1.0)
    v.checkout(agent, 600)
    before = fz.refs()
    result, err = _call(lambda: v.checkin_patch(agent, patch, "patch", 0.6, "fuzzed patch"))
    fz.count(f"patch {'ok' if err is None else type(err).__name__}")
    if err is not None:
        assert_refused_cleanly(before, fz.refs(), err.exit_code)
    elif result.commit is not None:
        assert_provenance(fz, result.commit, agent, "patch", 0.6, "fuzzed patch")


MERGE_BASE: dict[str, Any] = {"log": [{"id": "a"}], "n": {"x": 1}, "s": "base"}


@st.composite
def edits(draw: st.DrawFn) -> Any:
    """An agent's change of MERGE_BASE: appends, field edits, deletions, now and then junk."""
    doc = copy.deepcopy(MERGE_BASE)
    for _ in range(draw(st.integers(0, 2))):
        doc["log"].append({"id": draw(st.sampled_from("abcde")), "v": draw(good_leaves)})
    if draw(st.booleans()):
        doc["n"][draw(st.sampled_from("xyz"))] = draw(good_values)
    if draw(st.booleans()):
        doc["s"] = draw(sound_texts)
    if draw(st.integers(0, 5)) == 0:
        del doc[draw(st.sampled_from(sorted(doc)))]
    if draw(st.integers(0, 4)) == 0:
        doc[draw(st.one_of(VALID_KEYS, BAD_KEYS))] = draw(hostile_values)
    return doc if draw(st.integers(0, 15)) else draw(hostile_values)


@fuzz(60)
@given(
    ours=edits(),
    theirs=edits(),
    confidence=st.sampled_from([0.2, 0.5, 0.9]),
    policy=st.sampled_from([None, None, "ours", "theirs", "confidence", "bogus"]),
)
def test_library_checkin_after_main_moved_merges_or_refuses_and_main_stays_valid(
    fz: Fz, ours: Any, theirs: Any, confidence: float, policy: str | None
) -> None:
    """Two agents from the same base; the second one's document goes through a merge."""
    v = fz.vault
    v.checkout("seed", 600)
    v.checkin("seed", MERGE_BASE, "seed", 1.0)
    v.checkout("mover", 600)
    v.checkout("fuzzer", 600)
    moved, _ = _call(lambda: v.checkin("mover", ours, "m", 0.5, "moves main"))
    before = fz.refs()
    result, err = _call(
        lambda: v.checkin("fuzzer", theirs, "f", confidence, "after main moved", on_conflict=policy)
    )
    after = fz.refs()
    merged = " merged" if result is not None and result.merged else ""
    fz.count(f"merge {'ok' if err is None else type(err).__name__}{merged}")
    if err is not None:
        assert_refused_cleanly(before, after, err.exit_code)
        if isinstance(err, ConflictError):
            kept = set(after) - set(before)
            assert len(kept) == 1 and next(iter(kept)).startswith("refs/conflicts/fuzzer/"), kept
            assert policy != "theirs" and policy != "ours", err
        return
    assert policy != "bogus"
    if result.commit is not None:
        assert_provenance(fz, result.commit, "fuzzer", "f", confidence, "after main moved")
        if result.merged:
            parents = fz.git("rev-list", "--parents", "-n", "1", result.commit).split()[1:]
            assert parents[0] == before["refs/heads/main"] and len(parents) == 2
        for name, blob in main_blobs(fz).items():
            assert_blob_sound(name, blob)
        if policy is None and result.merged:  # appends by id from both sides: none lost
            sides = [theirs, *([ours] if moved is not None and moved.commit else [])]
            ids = [
                [i["id"] for i in d["log"]] if isinstance(d, dict) and "log" in d else None
                for d in sides
            ]
            if all(x is not None and len(set(x)) == len(x) for x in ids):
                have = [i["id"] for i in v.read().get("log", [])]
                assert set(have) == {i for x in ids if x for i in x}, (have, ids)


@st.composite
def history_calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    what = draw(st.sampled_from(["log", "show", "diff", "blame"]))
    rev = st.one_of(st.none(), st.sampled_from(REV_SAMPLES), st.text(ANY_CHAR, max_size=8))
    kw: dict[str, Any] = {}
    if what == "log":
        kw = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "rev": rev,
                    "agent": hostile_texts,
                    "key": hostile_texts,
                    "path": pointers,
                    "source": hostile_texts,
                    "since": times,
                    "until": times,
                    "limit": limits,
                },
            )
        )
    elif what == "show":
        kw = draw(st.fixed_dictionaries({}, optional={"rev": rev, "at": times, "path": pointers}))
    elif what == "diff":
        kw = draw(st.fixed_dictionaries({}, optional={"rev1": rev, "rev2": rev, "path": pointers}))
    else:
        kw = draw(st.fixed_dictionaries({"path": pointers}, optional={"rev": rev}))
    return what, kw


@fuzz(150)
@given(
    call=history_calls(),
    oid_kind=st.sampled_from([None, None, None, "tree", "blob", "notes", "lease"]),
)
def test_library_history_answers_any_pointer_revision_or_time_and_changes_nothing(
    fz_history: Fz, call: tuple[str, dict[str, Any]], oid_kind: str | None
) -> None:
    what, kw = call
    h = fz_history
    if oid_kind is not None:  # a real object that is not a commit of main
        refs = h.refs()
        oid = {
            "tree": h.git("rev-parse", "main^{tree}").strip(),
            "blob": h.git("rev-parse", "main:tasks.json").strip(),
            "notes": refs["refs/notes/leases"],
            "lease": next(o for r, o in refs.items() if r.startswith("refs/leases/")),
        }[oid_kind]
        kw["rev1" if what == "diff" else "rev"] = oid
    v = h.vault
    before = h.refs()
    out, err = _call(lambda: getattr(v, what)(**kw))
    h.count(f"{what} {'ok' if err is None else type(err).__name__}")
    assert h.refs() == before
    if err is not None:
        assert err.exit_code == 1, err
    elif what in ("log", "blame"):
        json.dumps([e.to_json() for e in out])
    elif what == "diff":
        json.dumps(out.to_json())


# -- limits: maxDocumentBytes, maxDepth, maxStringBytes, maxKeys -------------------------------
def _nested(depth: int) -> bytes:
    """A document whose deepest container is at ``depth`` (the document itself is depth 1)."""
    return b'{"deep": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


LIMIT_CASES = {
    "maxDepth": _nested(MAX_DEPTH + 1),
    "maxStringBytes": b'{"s": "' + b"x" * (MAX_STRING_BYTES + 1) + b'"}',
    "maxKeys": b'{"wide": {' + b",".join(b'"k%d": 0' % i for i in range(MAX_KEYS + 1)) + b"}}",
}


@pytest.mark.parametrize("limit", sorted(LIMIT_CASES))
def test_a_proposal_past_a_limit_is_refused_through_the_cli_naming_that_limit(
    fz: Fz, limit: str
) -> None:
    assert assert_cli_outcome(fz.cli("checkout", "a", "600")) == 0
    before = fz.refs()
    res = fz.cli("checkin", "a", fz.write(LIMIT_CASES[limit]), "s")
    assert assert_cli_outcome(res) == 1
    assert limit in res.stderr, res.stderr
    assert fz.refs() == before


@pytest.mark.parametrize("limit", sorted(LIMIT_CASES))
def test_library_checkin_of_a_document_past_a_limit_is_refused_naming_that_limit(
    fz: Fz, limit: str
) -> None:
    doc = json.loads(LIMIT_CASES[limit])
    v = fz.vault
    v.checkout("a", 600)
    before = fz.refs()
    with pytest.raises(CodecError, match=limit):
        v.checkin("a", doc, "s")
    assert fz.refs() == before


def test_a_document_exactly_at_max_depth_is_accepted_and_one_level_deeper_is_not(
    fz: Fz,
) -> None:
    assert assert_cli_outcome(fz.cli("checkout", "a", "600")) == 0
    assert assert_cli_outcome(fz.cli("checkin", "a", fz.write(_nested(MAX_DEPTH)), "s")) == 0
    res = fz.cli("checkin", "a", fz.write(_nested(MAX_DEPTH + 1)), "s")
    assert assert_cli_outcome(res) == 1 and "maxDepth" in res.stderr, res.stderr


def test_loads_document_refuses_more_than_max_document_bytes_naming_the_limit() -> None:
    data = b'{"a": "' + b"x" * MAX_DOCUMENT_BYTES + b'"}'
    with pytest.raises(CodecError, match="maxDocumentBytes"):
        loads_document(data, "p.json")


@pytest.mark.parametrize(
    ("setting", "value", "fits", "over"),
    [
        (
            "maxDocumentBytes",
            "1000",
            b'{"a": "' + b"x" * 500 + b'"}',
            b'{"a": "' + b"x" * 1500 + b'"}',
        ),
        ("maxDepth", "6", _nested(6), _nested(7)),
        (
            "maxStringBytes",
            "1000",
            b'{"a": "' + b"\xc3\xa9" * 500 + b'"}',
            b'{"a": "' + b"x" * 1001 + b'"}',
        ),
        (
            "maxKeys",
            "10",
            b'{"a": {' + b",".join(b'"k%d": 0' % i for i in range(10)) + b"}}",
            b'{"a": {' + b",".join(b'"k%d": 0' % i for i in range(11)) + b"}}",
        ),
    ],
)
def test_a_lowered_limit_setting_is_obeyed_by_checkin_up_to_its_exact_bound(
    fz: Fz, setting: str, value: str, fits: bytes, over: bytes
) -> None:
    fz.git("config", f"gitvault.{setting}", value)
    assert assert_cli_outcome(fz.cli("checkout", "a", "600")) == 0
    before = fz.refs()
    res = fz.cli("checkin", "a", fz.write(over), "s")
    assert assert_cli_outcome(res) == 1 and setting in res.stderr, res.stderr
    assert fz.refs() == before
    res = fz.cli("checkin", "a", fz.write(fits), "s")
    assert assert_cli_outcome(res) == 0, res.stderr


# -- regressions for the bugs this file found (see KNOWN_BUGS) -------------------------------
@pytest.mark.xfail(
    _known("surrogate-in-provenance"),
    strict=False,
    reason="gitvault bug: lone surrogates in provenance reach create_commit",
)
@pytest.mark.parametrize("field_name", ["source", "justification"])
def test_a_lone_surrogate_in_source_or_justification_is_refused_with_exit_1(
    fz: Fz, field_name: str
) -> None:
    """A shell hands undecodable argv bytes to Python as lone surrogates (PEP 383):
    ``gitvault checkin a doc.json $'\\xff'``."""
    assert assert_cli_outcome(fz.cli("checkout", "a", "600")) == 0
    values = {"source": "s", "justification": "j", field_name: "x\udcff"}
    before = fz.refs()
    res = fz.cli(
        "checkin", "a", fz.write(b'{"a": 1}'), values["source"], "0.5", values["justification"]
    )
    assert assert_cli_outcome(res) == 1
    assert fz.refs() == before
    v = fz.vault
    _, err = _call(lambda: v.checkin("a", {"a": 2}, values["source"], 0.5, values["justification"]))
    assert err is not None and err.exit_code == 1
    assert fz.refs() == before


@pytest.mark.xfail(
    _known("lone-surrogate-parsed"),
    strict=False,
    reason="gitvault bug: codec.loads lets escaped lone surrogates through",
)
@pytest.mark.parametrize("data", [b'{"a": "\\ud800"}', b'{"a": {"\\udfff": 1}}'])
def test_loads_document_refuses_an_escaped_lone_surrogate(data: bytes) -> None:
    with pytest.raises(CodecError, match="surrogate"):
        loads_document(data, "p.json")


@pytest.mark.xfail(
    _known("agent-newline-in-message"),
    strict=False,
    reason="gitvault bug: lease errors interpolate the raw agent id",
)
@pytest.mark.parametrize("agent", ["a\nb", "a\rb", "a\u2028b"])
def test_a_lease_error_for_an_agent_id_with_a_line_break_is_still_one_line(
    fz: Fz, agent: str
) -> None:
    res = fz.cli("checkin", "--", agent, fz.write(b'{"a": 1}'), "s")
    assert res.exit_code == 4
    assert res.stderr.count("\n") == 1 and not ({"\r", "\u2028"} & set(res.stderr)), res.stderr


@pytest.mark.xfail(
    _known("crud-agent-signature"),
    strict=False,
    reason="gitvault bug: identity() leaves a name libgit2 trims to nothing",
)
@pytest.mark.parametrize("agent", [":", ",", ";", "'", '"', "\\", ": ;", " , "])
def test_an_agent_id_made_of_punctuation_git_trims_can_check_in(fz: Fz, agent: str) -> None:
    assert assert_cli_outcome(fz.cli("checkout", "--", agent, "600")) == 0
    res = fz.cli("checkin", "--", agent, fz.write(b'{"a": 1}'), "s")
    assert assert_cli_outcome(res) == 0
    assert_provenance(fz, res.stdout.strip(), agent, "s", None, "")
