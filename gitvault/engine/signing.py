"""SSH signatures on commits, in git's own format (``gpg.format=ssh``), checked by ssh-keygen.

Why ssh-keygen: it is what git itself runs for ``git commit -S`` and ``git verify-commit``,
so gitvault and plain git cannot disagree about a signature, and no cryptography is written
here. ``ssh-keygen -Y verify`` alone decides whether a signature is good; this module only
*reads* the SSHSIG envelope (to learn which public key signed, for the fingerprint and for a
precise refusal). A process that signs repeatedly signs in-process (:mod:`.sshsig`: the
same bytes ssh-keygen writes, made by the ``cryptography`` library) to spare a fork and exec
per signature, which the vault's merges pay while holding the writers' turn.

The allowed signers live on main at ``.gitvault/allowed_signers`` in git's format
(``man ssh-keygen``, ALLOWED SIGNERS), one line per key, the principal being the agent id::

    planner-1 valid-after="20261203080000Z" ssh-ed25519 AAAAC3... planner laptop
    gitvault ssh-ed25519 AAAAC3... vault key

Rotation never deletes a line: ``keys revoke`` sets ``valid-before`` to the moment of the
revocation, so commits signed before it stay verified (a signature is judged at its commit's
time, as git judges it) and newer ones are refused. The vault signs the commits it writes
itself (merges, resolutions, the first commit) with its own key, principal ``gitvault``,
created by ``init`` in ``<vault>/gitvault-vault-key`` (mode 0600).
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any

import pygit2

from gitvault.engine import sshsig
from gitvault.errors import InputError
from gitvault.model.provenance import parse_trailers

SIGNERS_PATH = ".gitvault/allowed_signers"
VAULT_KEY = "gitvault-vault-key"
VAULT_PRINCIPAL = "gitvault"
NAMESPACE = "git"  # what git signs commits in; a signature for another namespace is refused
_BAD_PRINCIPAL = set(' \t\n\r,"*?!\x00')
_signed = 0  # signatures this process made with ssh-keygen (see Signer.sign)


class SigningError(InputError):
    """ssh-keygen is missing, or a key could not sign (wrong path, no agent, passphrase)."""


def ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise SigningError(
            "ssh-keygen is not installed; install openssh-client to sign or verify commits"
        )
    return found


def _run(args: list[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "SSH_ASKPASS_REQUIRE": "never"}  # a passphrase prompt would hang
    return subprocess.run(
        [ssh_keygen(), *args],
        input=data,
        capture_output=True,
        env=env,
        stdin=None if data is not None else subprocess.DEVNULL,
        check=False,
    )


# -- times in allowed_signers --------------------------------------------------------------
def stamp(seconds: float) -> str:
    """A time as allowed_signers writes it: UTC, to the second, with the ``Z``."""
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(int(seconds)))


def parse_stamp(text: str) -> int:
    """Seconds from ``YYYYMMDD[Z]`` or ``YYYYMMDDHHMM[SS][Z]`` (no Z: local time, as ssh)."""
    utc = text.endswith("Z")
    digits = text[:-1] if utc else text
    formats = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    if not digits.isdigit() or len(digits) not in formats:
        raise InputError(f"time {text!r}: write YYYYMMDD[HHMM[SS]][Z] (Z: UTC)")
    t = time.strptime(digits, formats[len(digits)])
    return calendar.timegm(t) if utc else int(time.mktime(t))


def parse_time(text: str) -> int:
    """A user's time: unix seconds, an allowed_signers stamp, or ISO 8601."""
    from gitvault.history import parse_time as iso

    if text.isdigit() and len(text) not in (8, 12, 14):
        return int(text)
    try:
        return parse_stamp(text)
    except InputError:
        return int(iso(text))


# -- the allowed signers file --------------------------------------------------------------
@dataclass(frozen=True)
class SignerLine:
    """One line of allowed_signers: who (principal patterns), when, and which key."""

    principals: tuple[str, ...]
    options: tuple[tuple[str, str | None], ...]
    keytype: str
    key: str  # base64 of the public key blob
    comment: str = ""

    def option(self, name: str) -> str | None:
        for k, v in self.options:
            if k.lower() == name:
                return v
        return None

    @property
    def valid_after(self) -> int | None:
        v = self.option("valid-after")
        return parse_stamp(v) if v else None

    @property
    def valid_before(self) -> int | None:
        v = self.option("valid-before")
        return parse_stamp(v) if v else None

    @property
    def fingerprint(self) -> str:
        return fingerprint(base64.b64decode(self.key))

    def valid_at(self, t: float, arriving: bool = False) -> bool:
        """As ssh-keygen judges (valid-before inclusive); a write ``arriving`` now must come
        strictly before it, so nothing signed in the second of a revocation lands after it."""
        after, before = self.valid_after, self.valid_before
        return (after is None or t >= after) and (
            before is None or t < before or (t == before and not arriving)
        )

    def names(self, agent: str) -> bool:
        """Whether ``agent`` is one of the principals (patterns, as ssh-keygen matches them)."""
        return any(fnmatchcase(agent, p) for p in self.principals)

    def with_option(self, name: str, value: str) -> SignerLine:
        kept = tuple((k, v) for k, v in self.options if k.lower() != name)
        return replace(self, options=(*kept, (name, value)))

    def text(self) -> str:
        opts = ",".join(k if v is None else f'{k}="{v}"' for k, v in self.options)
        parts = [",".join(self.principals), opts, self.keytype, self.key, self.comment]
        return " ".join(p for p in parts if p)

    def to_json(self) -> dict[str, Any]:
        return {
            "principals": list(self.principals),
            "keytype": self.keytype,
            "fingerprint": self.fingerprint,
            "valid_after": self.option("valid-after"),
            "valid_before": self.option("valid-before"),
            "comment": self.comment,
            "revoked": self.option("valid-before") is not None,
        }


def fingerprint(blob: bytes) -> str:
    """The key's SHA256 fingerprint as ``ssh-keygen -l`` and git print it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _split_options(text: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    buf, quoted = "", False
    for ch in text + ",":
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            name, eq, value = buf.partition("=")
            out.append((name, value.strip('"') if eq else None))
            buf = ""
        else:
            buf += ch
    return out


def _is_keytype(word: str) -> bool:
    return word.startswith(("ssh-", "ecdsa-", "sk-", "rsa-"))


def _tokens(line: str) -> list[str]:
    """Whitespace-separated words, a double-quoted run kept whole (option values)."""
    words, buf, quoted = [], "", False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        if ch in " \t" and not quoted:
            if buf:
                words.append(buf)
            buf = ""
        else:
            buf += ch
    if buf:
        words.append(buf)
    return words


def parse_signers(data: bytes, where: str = SIGNERS_PATH) -> list[SignerLine]:
    """The lines of an allowed_signers file; a malformed line refuses the whole file."""
    out = []
    for n, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = _tokens(line)
        if len(words) < 3:
            raise InputError(f"{where}:{n}: want 'principals [options] keytype key'")
        options: list[tuple[str, str | None]] = []
        rest = words[1:]
        if not _is_keytype(rest[0]):
            options, rest = _split_options(rest[0]), rest[1:]
        if len(rest) < 2 or not _is_keytype(rest[0]):
            raise InputError(f"{where}:{n}: no key type (ssh-ed25519, ...) where one belongs")
        try:
            base64.b64decode(rest[1], validate=True)
        except ValueError:
            raise InputError(f"{where}:{n}: the key is not base64") from None
        line_ = SignerLine(
            tuple(words[0].split(",")), tuple(options), rest[0], rest[1], " ".join(rest[2:])
        )
        try:
            line_.valid_after, line_.valid_before  # noqa: B018  (a bad time refuses the file)
        except InputError as e:
            raise InputError(f"{where}:{n}: {e}") from None
        out.append(line_)
    return out


def format_signers(lines: Iterable[SignerLine]) -> bytes:
    body = "".join(line.text() + "\n" for line in lines)
    head = "# gitvault allowed signers (git's format): change with `gitvault keys ...`\n"
    return (head + body).encode()


def check_principal(agent: str) -> str:
    """Agent ids usable as principals: no spaces, commas, quotes or pattern characters."""
    if not agent or set(agent) & _BAD_PRINCIPAL:
        raise InputError(
            f"agent id {agent!r} cannot name a key in allowed_signers (no spaces, commas, "
            "quotes or * ? !); give such agents ids without them"
        )
    return agent


def read_public_key(path: str) -> tuple[str, str, str]:
    """(keytype, base64, comment) of a ``.pub`` file (or a literal ``ssh-ed25519 AAAA...``)."""
    text = path[len("key::") :] if path.startswith("key::") else None
    if text is None:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise InputError(f"cannot read public key {path}: {e.strerror}") from None
    words = text.split()
    if len(words) < 2 or not _is_keytype(words[0]):
        raise InputError(f"{path}: not an SSH public key (want 'ssh-ed25519 AAAA... comment')")
    try:
        base64.b64decode(words[1], validate=True)
    except ValueError:
        raise InputError(f"{path}: the key is not base64") from None
    return words[0], words[1], " ".join(words[2:])


# -- signatures ----------------------------------------------------------------------------
def signature_key(armored: str) -> tuple[str, bytes]:
    """(keytype, public key blob) of an SSHSIG signature: who claims to have signed."""
    body = "".join(
        line.strip() for line in armored.strip().splitlines() if not line.startswith("-----")
    )
    try:
        raw = base64.b64decode(body, validate=True)
        if not armored.lstrip().startswith(sshsig.ARMOR) or raw[:6] != sshsig.MAGIC:
            raise ValueError("no SSHSIG magic")
        (n,) = struct.unpack(">I", raw[10:14])  # after magic and the version word
        blob = raw[14 : 14 + n]
        (m,) = struct.unpack(">I", blob[:4])
        return blob[4 : 4 + m].decode("ascii"), blob
    except (ValueError, struct.error, UnicodeDecodeError):
        raise InputError("not an SSH signature (git's gpg.format=ssh)") from None


@dataclass(frozen=True)
class Signer:
    """A key that signs: a private key file, or a ``.pub`` whose private half is in ssh-agent."""

    key: str

    def sign(self, data: bytes | str) -> str:
        """The armoured signature of ``data``: in-process once this process has signed before
        (or has the library loaded, as the daemon has), else by ssh-keygen, so a one-shot
        command or hook pays no library import for its one signature (:mod:`.sshsig`)."""
        global _signed
        payload = data.encode() if isinstance(data, str) else data
        if _signed or sshsig.loaded():
            made = sshsig.sign(self.key, payload, NAMESPACE)
            if made is not None:
                return made
        _signed += 1
        r = _run(["-Y", "sign", "-n", NAMESPACE, "-f", self.key], payload)
        out = r.stdout.decode("utf-8", "replace")
        if r.returncode != 0 or sshsig.ARMOR not in out:
            why = r.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SigningError(
                f"cannot sign with {self.key}: {why[-1] if why else 'ssh-keygen failed'}; give "
                "a private key without passphrase, or a .pub whose key ssh-agent holds"
            )
        return out


def vault_key_path(vault_path: str) -> str:
    return os.path.join(vault_path, VAULT_KEY)


def create_vault_key(vault_path: str) -> tuple[str, str, str] | None:
    """A new ed25519 key for the vault's own commits; None when ssh-keygen is missing."""
    if shutil.which("ssh-keygen") is None:
        return None
    path = vault_key_path(vault_path)
    r = _run(["-q", "-t", "ed25519", "-N", "", "-C", "gitvault vault key", "-f", path])
    if r.returncode != 0:
        return None
    os.chmod(path, 0o600)
    return read_public_key(path + ".pub")


def vault_signers_file(pub: tuple[str, str, str]) -> bytes:
    """The first allowed_signers: the vault's own key, principal ``gitvault``."""
    return format_signers([SignerLine((VAULT_PRINCIPAL,), (), pub[0], pub[1], pub[2])])


def vault_signer(vault_path: str) -> Signer | None:
    path = vault_key_path(vault_path)
    return Signer(path) if os.access(path, os.R_OK) else None


@dataclass
class CommitSigner:
    """The signing hook of a :class:`~gitvault.git.storage.Store` (``Store.sign``).

    The agent's key signs the agent's own commits (one parent, Agent-Id not the vault's); the
    vault's key signs what the vault writes: merges and resolutions (two parents), its first
    commit and commits as ``gitvault``. A commit neither key may sign stays unsigned: the
    vault key never vouches for a single-parent commit of an agent.
    """

    vault: Signer | None
    agent: Signer | None

    def __call__(self, content: str, message: str, parents: int) -> str | None:
        claimed = parse_trailers(message).get("Agent-Id")
        if parents <= 1 and claimed != VAULT_PRINCIPAL:
            return self.agent.sign(content) if self.agent is not None else None
        return self.vault.sign(content) if self.vault is not None else None


def signers_blob(store: Any, tree: pygit2.Tree) -> bytes | None:
    try:
        return bytes(store.blob(tree[SIGNERS_PATH].id))
    except KeyError:
        return None


def main_signers(store: Any) -> bytes | None:
    from gitvault.git.storage import MAIN

    main = store.ref(MAIN)
    return None if main is None else signers_blob(store, store.commit(main).tree)


def make_signer(key: str | None, check: bool = True) -> Signer | None:
    """The agent's signer from ``--sign-key`` or ``$GITVAULT_SIGNING_KEY`` (None: unsigned).

    ``check=False`` (the environment's key, read by every handle, hooks included) defers a
    missing file to the first signature: a command that writes no agent commit still runs."""
    if not key:
        return None
    if check and not os.path.exists(key):
        raise SigningError(
            f"signing key {key} does not exist; give --sign-key PATH "
            "(a private key, or a .pub held by ssh-agent)"
        )
    return Signer(key)


SignFn = Callable[[str, str, int], str | None]
