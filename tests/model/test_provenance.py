"""Trailers: what a checkin records, and that no value can forge one."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitvault import Vault
from gitvault.errors import InputError
from gitvault.model.provenance import escape, parse_confidence, parse_trailers, unescape

from ..conftest import Git

HOSTILE = [
    "line one\nSource: forged",
    "x\n\nAgent-Id: mallory",
    "---\nLease: 999",
    "tab\tand\rcarriage",
    "unicode\u2028Source: sep\u2029Base: x",
    "back\\slash\\nnot-a-newline",
    "Signed-off-by: someone <a@b>",
]


@given(st.text())
def test_escape_is_one_line_and_reversible(value: str) -> None:
    e = escape(value)
    assert "\n" not in e and "\r" not in e and "\u2028" not in e
    assert unescape(e) == value


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_justification_adds_no_trailer(
    vault: Vault, git: Git, write_json: Callable[[object], str], value: str
) -> None:
    co = vault.checkout("planner")
    co.document["patterns"]["new"] = {"uses": 1}
    vault.checkin("planner", co.document, value, 0.8, value)
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=git("log", "-1", "--format=%B"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert [line.split(":")[0] for line in parsed] == [
        "Agent-Id",
        "Source",
        "Confidence",
        "Justification",
        "Lease",
        "Base",
        "Changed",
    ]
    assert parsed[-1] == "Changed: /patterns/new"
    assert git("log", "-1", "--format=%(trailers:key=Agent-Id,valueonly)").strip() == "planner"
    assert git("log", "-1", "--format=%(trailers:key=Lease,valueonly)").strip() == "1"
    msg = git("log", "-1", "--format=%B")
    assert parse_trailers(msg)["Justification"] == value
    assert parse_trailers(msg)["Source"] == value


def test_a_hostile_agent_id_cannot_forge_author_or_trailers(vault: Vault, git: Git) -> None:
    agent = "evil>\nAgent-Id: admin <x@y>"
    co = vault.checkout(agent)
    co.document["patterns"]["x"] = 1
    vault.checkin(agent, co.document, "s")
    assert git("log", "-1", "--format=%(trailers:key=Agent-Id,valueonly)").strip() == (
        escape(agent)
    )
    author = git("log", "-1", "--format=%an <%ae>").strip()
    assert "\n" not in author and author.count("<") == 1
    git("fsck", "--full")


@pytest.mark.parametrize("bad", ["-0.1", "1.01", "nan", "inf", "high", ""])
def test_confidence_outside_0_1_is_refused(bad: str) -> None:
    with pytest.raises(InputError):
        parse_confidence(bad)


def test_confidence_defaults_to_one_half() -> None:
    assert parse_confidence(None) == 0.5
