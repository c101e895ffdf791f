"""In-process SSH signatures are the bytes ssh-keygen writes, and every key they cannot sign
is left to ssh-keygen (which then signs or refuses exactly as before)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitvault import Vault
from gitvault.engine import signing, sshsig

from ..conftest import Git
from .test_signing import keygen, signers_file

if shutil.which("ssh-keygen") is None and os.environ.get("CI") != "true":
    pytest.skip("ssh-keygen (openssh-client) is not installed", allow_module_level=True)


def by_ssh_keygen(key: Path, message: bytes, namespace: str = "git") -> str:
    r = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-n", namespace, "-f", str(key)],
        input=message,
        capture_output=True,
        check=True,
    )
    return r.stdout.decode()


def verified(key: Path, message: bytes, armored: str, tmp: Path) -> bool:
    """What git runs for verify-commit: ssh-keygen -Y verify against allowed signers."""
    signers = tmp / "allowed"
    signers.write_text("alice " + key.with_suffix(".pub").read_text())
    sig = tmp / "msg.sig"
    sig.write_text(armored)
    r = subprocess.run(
        [
            *("ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", "alice", "-n", "git"),
            *("-s", str(sig)),
        ],
        input=message,
        capture_output=True,
    )
    return r.returncode == 0


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keygen(tmp_path_factory.mktemp("keys") / "alice")


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=4096))
def test_a_signature_is_byte_for_byte_what_ssh_keygen_writes(key: Path, message: bytes) -> None:
    assert sshsig.sign(str(key), message, "git") == by_ssh_keygen(key, message)


def test_ssh_keygen_verifies_it_and_refuses_it_for_other_bytes(key: Path, tmp_path: Path) -> None:
    armored = sshsig.sign(str(key), b"tree 1234\n\nhello\n", "git")
    assert armored is not None
    assert verified(key, b"tree 1234\n\nhello\n", armored, tmp_path)
    assert not verified(key, b"tree 1234\n\nhellO\n", armored, tmp_path)
    other = sshsig.sign(str(key), b"tree 1234\n\nhello\n", "file")  # another namespace
    assert other is not None and not verified(key, b"tree 1234\n\nhello\n", other, tmp_path)


def test_keys_it_cannot_sign_with_are_left_to_ssh_keygen(tmp_path: Path) -> None:
    plain = keygen(tmp_path / "plain")
    locked = tmp_path / "locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(locked)], check=True
    )
    rsa = tmp_path / "rsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)], check=True
    )
    open_key = tmp_path / "open"
    shutil.copy(plain, open_key)
    open_key.chmod(0o644)  # ssh-keygen refuses a private key others may read
    garbage = tmp_path / "garbage"
    garbage.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot base64 at all\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)  # reading it would block: never opened
    paths = (plain.with_suffix(".pub"), locked, rsa, open_key, garbage, fifo, tmp_path / "none")
    for path in paths:
        assert sshsig.sign(str(path), b"x", "git") is None, path
    # and through the Signer, ssh-keygen's own refusal still reaches the user
    with pytest.raises(signing.SigningError, match="cannot sign with"):
        signing.Signer(str(open_key)).sign(b"x")


def test_a_replaced_key_file_is_read_again(tmp_path: Path) -> None:
    k = keygen(tmp_path / "k")
    first = sshsig.sign(str(k), b"m", "git")
    k.unlink()
    k.with_suffix(".pub").unlink()
    keygen(k)
    second = sshsig.sign(str(k), b"m", "git")
    assert first != second and second == by_ssh_keygen(k, b"m")


def test_vault_merges_signed_in_process_are_good_for_git_verify_commit(
    vault: Vault, git: Git, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two agents from one base: the vault's merge is signed in-process (this process has
    signed before) and git's own verify-commit accepts it."""
    monkeypatch.setattr(signing, "_signed", 1)
    calls: list[list[str]] = []
    real = signing._run

    def run(args: list[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        calls.append(args)
        return real(args, data)

    monkeypatch.setattr(signing, "_run", run)
    a = vault.checkout("a")
    b = vault.checkout("b")
    a.document["tasks"][0]["status"] = "a"
    b.document["tasks"][1]["status"] = "b"
    vault.checkin("a", a.document, "test", lease=a.lease.token)
    r = vault.checkin("b", b.document, "test", lease=b.lease.token)
    assert r.merged and r.commit is not None
    assert not [c for c in calls if "sign" in c]  # no ssh-keygen -Y sign ran
    signers = signers_file(vault, tmp_path, git)
    out = subprocess.run(
        [
            *("git", "-C", vault.path, "-c", f"gpg.ssh.allowedSignersFile={signers}"),
            *("verify-commit", r.commit),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert 'Good "git" signature for gitvault' in out.stderr
