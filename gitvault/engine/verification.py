"""Checking commit signatures against the allowed signers as they were at each commit
(``ssh-keygen -Y verify``, as git does), with verdicts kept per allowed-signers version."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import pygit2

from gitvault.engine.signing import (
    NAMESPACE,
    SIGNERS_PATH,
    VAULT_PRINCIPAL,
    SignerLine,
    SigningError,
    _run,
    fingerprint,
    parse_signers,
    signature_key,
    stamp,
)
from gitvault.errors import InputError
from gitvault.model.provenance import parse_trailers


@dataclass(frozen=True)
class Verdict:
    """What the signature of one commit proves. ``verified``: True, False or "unsigned"."""

    commit: str
    verified: bool | str
    agent: str  # the Agent-Id the commit claims
    fingerprint: str | None = None
    signer: str | None = None  # the principal whose key signed (the agent, or gitvault)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.verified is True

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "verified": self.verified,
            "agent": self.agent,
            "fingerprint": self.fingerprint,
            "signer": self.signer,
            "reason": self.reason,
        }


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(int(t)))


class Verifier:
    """Checks commits against one version of allowed_signers (main's, usually).

    The file is written once to a private temporary folder for ssh-keygen; :meth:`close`
    removes it. Results are kept by commit id, so asking twice costs nothing.
    """

    def __init__(self, signers: bytes | None, cache: str | None = None) -> None:
        self.data = signers or b""
        self.lines = parse_signers(self.data) if signers else []
        self._dir: str | None = None
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int | None], Verdict] = {}
        # verdicts at commit time depend only on the commit and this file's bytes, so they
        # can be kept across runs: ``cache`` is a folder, one file per allowed_signers version
        self._cache = os.path.join(cache, str(pygit2.hash(self.data)) + ".jsonl") if cache else None
        self._new: list[Verdict] = []
        if self._cache is not None:
            self._load()

    def _load(self) -> None:
        assert self._cache is not None
        try:
            with open(self._cache, encoding="utf-8") as f:
                for line in f:
                    try:
                        d = json.loads(line)
                        v = Verdict(
                            d["commit"],
                            d["verified"],
                            d["agent"],
                            d["fingerprint"],
                            d["signer"],
                            d["reason"],
                        )
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line: that commit is checked again
                    self._seen[v.commit, None] = v
        except OSError:
            pass

    def _save(self) -> None:
        if self._cache is None or not self._new:
            return
        text = "".join(json.dumps(v.to_json(), sort_keys=True) + "\n" for v in self._new)
        try:
            os.makedirs(os.path.dirname(self._cache), exist_ok=True)
            with open(self._cache, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError:
            pass  # a reader without write access to the vault: checked again next time
        self._new = []

    def _file(self) -> str:
        with self._lock:  # verify runs checks in threads: one folder, written once
            return self._write_file()

    def _write_file(self) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="gitvault-signers-")
            weakref.finalize(self, shutil.rmtree, self._dir, True)
            with open(os.path.join(self._dir, "allowed_signers"), "wb") as f:
                f.write(self.data)
        return os.path.join(self._dir, "allowed_signers")

    def close(self) -> None:
        self._save()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self, commit: pygit2.Commit, also_at: float | None = None) -> Verdict:
        """The verdict on ``commit``: its signature, by a key allowed for its Agent-Id (or the
        vault's key) at its commit time, and also at ``also_at`` (a write's arrival) if given,
        so a revoked key cannot slip in by backdating its commit."""
        cache_key = (str(commit.id), None if also_at is None else int(also_at))
        if cache_key not in self._seen:
            verdict = self._check(commit, also_at)
            self._seen[cache_key] = verdict
            if also_at is None:
                self._new.append(verdict)
        return self._seen[cache_key]

    def _check(self, commit: pygit2.Commit, also_at: float | None) -> Verdict:
        cid = str(commit.id)
        agent = parse_trailers(commit.message).get("Agent-Id") or commit.author.name
        sig, payload = commit.gpg_signature
        if not sig:
            return Verdict(cid, "unsigned", agent, reason="the commit is not signed")
        try:
            keytype, blob = signature_key(sig.decode("ascii", "replace"))
        except InputError as e:
            return Verdict(cid, False, agent, reason=str(e))
        fp = fingerprint(blob)
        key = base64.b64encode(blob).decode()
        mine = [ln for ln in self.lines if ln.keytype == keytype and ln.key == key]
        if not mine:
            return Verdict(
                cid, False, agent, fp, reason=f"signed by key {fp}, which is not in {SIGNERS_PATH}"
            )
        for principal in (agent, VAULT_PRINCIPAL):
            lines = [ln for ln in mine if ln.names(principal)]
            if lines:
                break
        else:
            owners = ", ".join(sorted({p for ln in mine for p in ln.principals}))
            return Verdict(
                cid,
                False,
                agent,
                fp,
                owners,
                f"signed with the key of {owners} "
                f"({fp}), which is not allowed for Agent-Id {agent}",
            )
        times = [(commit.commit_time, False)]
        if also_at is not None:
            times.append((int(also_at), True))
        for t, arriving in times:
            if not any(ln.valid_at(t, arriving) for ln in lines):
                return Verdict(cid, False, agent, fp, principal, _invalid_why(lines, t, fp))
        args = ["-Y", "verify", "-f", self._file(), "-I", principal, "-n", NAMESPACE, "-s",
                self._sig_file(sig), f"-Overify-time={stamp(commit.commit_time)}"]  # fmt: skip
        try:
            r = _run(args, payload)
        except SigningError as e:  # no ssh-keygen here: nothing can be verified
            return Verdict(cid, False, agent, fp, principal, str(e))
        if r.returncode != 0:
            why = (r.stderr or r.stdout).decode("utf-8", "replace").strip().splitlines()
            return Verdict(
                cid,
                False,
                agent,
                fp,
                principal,
                f"bad signature ({why[-1] if why else 'ssh-keygen refused it'})",
            )
        return Verdict(cid, True, agent, fp, principal, f"good signature of {principal}")

    def _sig_file(self, sig: bytes) -> str:
        fd, path = tempfile.mkstemp(suffix=".sig", dir=os.path.dirname(self._file()))
        with os.fdopen(fd, "wb") as f:
            f.write(sig)
        return path


def _invalid_why(lines: list[SignerLine], t: float, fp: str) -> str:
    who = lines[0].principals[0]
    before = [ln.valid_before for ln in lines if ln.valid_before is not None]
    after = [ln.valid_after for ln in lines if ln.valid_after is not None]
    if before and t >= max(before):
        return f"key {fp} of {who} was revoked at {_when(max(before))} (time {_when(t)})"
    if after and t < min(after):
        return f"key {fp} of {who} is valid only from {_when(min(after))} (time {_when(t)})"
    return f"key {fp} of {who} is not valid at {_when(t)}"
