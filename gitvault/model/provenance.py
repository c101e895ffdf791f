"""Commit messages and trailers: who wrote a change, from what source, how sure, and why.

Values are escaped so that no input can end a trailer line: backslash becomes ``\\\\``, and
newlines, other control characters and the Unicode line separators become ``\\n``/``\\uXXXX``.
A value therefore always stays on its own ``Key: value`` line, and ``Key: value`` text inside it
cannot become a trailer of its own. :func:`unescape` reverses it exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from gitvault.errors import InputError
from gitvault.git.storage import Identity

TRAILERS = ("Agent-Id", "Source", "Confidence", "Justification", "Lease", "Base")
DEFAULT_CONFIDENCE = 0.5

_SAFE = re.compile(rb"[A-Za-z0-9_-]")
_ESCAPE_RE = re.compile(r"[\\\x00-\x1f\x7f\x85\u2028\u2029]")
_UNESCAPE_RE = re.compile(r"\\(\\|n|r|t|u[0-9a-fA-F]{4})")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def escape(value: str) -> str:
    """A one-line form of ``value`` that :func:`unescape` turns back into it."""
    return _ESCAPE_RE.sub(lambda m: _SHORT.get(m.group(), f"\\u{ord(m.group()):04x}"), value)


def unescape(value: str) -> str:
    if "\\" not in value:  # most values: nothing to undo (history walks ask for every commit)
        return value

    def one(m: re.Match[str]) -> str:
        s = m.group(1)
        return {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}.get(s) or chr(int(s[1:], 16))

    return _UNESCAPE_RE.sub(one, value)


def parse_confidence(value: str | float | None) -> float:
    """A confidence in [0, 1]; the default when None."""
    if value is None:
        return DEFAULT_CONFIDENCE
    try:
        c = float(value)
    except (TypeError, ValueError):
        raise InputError(f"confidence {value!r} is not a number; give a value in [0, 1]") from None
    if not math.isfinite(c) or not 0.0 <= c <= 1.0:
        raise InputError(f"confidence {value!r} is outside [0, 1]; give e.g. 0.8")
    return c


def check_agent(agent: str) -> str:
    """Agent ids: any non-empty string without NUL, at most 80 UTF-8 bytes."""
    if not isinstance(agent, str) or agent == "":
        raise InputError("agent id is empty; give a name such as planner-1")
    if "\x00" in agent:
        raise InputError("agent id contains a NUL character, which git cannot store")
    try:
        size = len(agent.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError("agent id is not valid Unicode (lone surrogate)") from None
    if size > 80:
        raise InputError(f"agent id is {size} bytes long; the limit is 80 UTF-8 bytes")
    return agent


def escape_agent(agent: str) -> str:
    """Injective, ref-safe form of an agent id: every byte outside ``[A-Za-z0-9_-]`` → %XX.

    ``.``, ``/``, ``%`` and all non-ASCII are escaped, so ``a..b``, ``x.lock``, ``a/b`` and
    ``a%2Fb`` map to distinct single components that git accepts.
    """
    raw = check_agent(agent).encode("utf-8")
    return "".join(chr(b) if _SAFE.fullmatch(bytes([b])) else f"%{b:02X}" for b in raw)


def unescape_agent(escaped: str) -> str:
    return (
        re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), escaped)
        .encode("latin-1")
        .decode("utf-8")
    )


_NAME_BAD = re.compile(r"[<>\x00-\x1f\x7f]")


def identity(agent: str) -> Identity:
    """Commit author for an agent: name = the id (made safe for git), email = escaped id."""
    email_local = escape_agent(agent)
    # git (and libgit2) trim these from a name's ends; a name of nothing else would be empty
    name = _NAME_BAD.sub("?", agent).strip()
    if not name.strip(" \t,:;<>\"'\\."):
        name = email_local
    return Identity(name=name, email=f"{email_local}@gitvault")


@dataclass(frozen=True)
class Provenance:
    agent: str
    source: str
    confidence: float
    justification: str = ""

    def check(self) -> Provenance:
        check_agent(self.agent)
        if not self.source.strip():
            raise InputError("source is empty; say where the change came from, e.g. web-research")
        for label, text in (("source", self.source), ("justification", self.justification)):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(
                    f"{label} is not valid Unicode (undecodable bytes?); pass UTF-8 text"
                ) from None
        parse_confidence(self.confidence)
        return self


def message(subject: str, trailers: Iterable[tuple[str, str]], body: str = "") -> str:
    """A commit message: subject, optional body, then the trailer block, all escaped."""
    lines = [escape(subject)[:200], ""]
    if body:
        lines += [escape(line) for line in body.splitlines()] + [""]
    lines += [f"{k}: {escape(v)}" for k, v in trailers]
    return "\n".join(lines) + "\n"


def checkin_trailers(p: Provenance, lease: int | str, base: str) -> list[tuple[str, str]]:
    return [
        ("Agent-Id", p.agent),
        ("Source", p.source),
        ("Confidence", repr(float(p.confidence))),
        ("Justification", p.justification),
        ("Lease", str(lease)),
        ("Base", base),
    ]


def subject_for(agent: str, verb: str, keys: Iterable[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
    return f"{verb} {agent}: {shown or 'no keys'}"


def trailer_values(msg: str, key: str) -> tuple[str, ...]:
    """Every value of a repeated trailer, unescaped (``parse_trailers`` keeps the first)."""
    block = msg.rstrip("\n").rsplit("\n\n", 1)[-1]
    prefix = key + ": "
    return tuple(
        unescape(line[len(prefix) :].strip())
        for line in block.splitlines()
        if line.startswith(prefix)
    )


_TRAILER_KEY = re.compile(r"[A-Za-z0-9-]+")


def parse_trailers(msg: str) -> dict[str, str]:
    """The trailers of the last paragraph of a message, unescaped (first value per key)."""
    block = msg.rstrip("\n").rsplit("\n\n", 1)[-1]
    out: dict[str, str] = {}
    for line in block.splitlines():
        key, sep, value = line.partition(": ")
        if not sep:
            key, sep, value = line.partition(":")
        if sep and _TRAILER_KEY.fullmatch(key) and key not in out:
            out[key] = unescape(value.strip())
    return out
