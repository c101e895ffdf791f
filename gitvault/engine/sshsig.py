"""SSH signatures made in-process, byte for byte what ``ssh-keygen -Y sign`` writes.

Why: ``ssh-keygen`` is a fork and an exec per signature (about 3 ms alone, several times that
on a loaded machine), and on a busy vault the vault signs the merges it plans while holding
the writers' turn: with eight agents it cost a third of the throughput (3 Dec: 53 checkins/s,
80 with ``vaultSigning`` off). A process that signs again (an agent's loop, the MCP server,
the daemon) now signs here instead.

No cryptography is written here. The signature is ``cryptography``'s Ed25519 (OpenSSL);
this module only frames it in the SSHSIG envelope of OpenSSH's PROTOCOL.sshsig. Of the
libraries that know the envelope, ``sshsig`` only verifies, and ``sshkey-tools`` pins
``cryptography`` below the version the MCP SDK brings here (through ``pyjwt[crypto]``) and
adds three packages for the 40 lines below. Ed25519 signatures are deterministic, so for
the same key and message the result is the same bytes ssh-keygen prints
(``tests/engine/test_sshsig.py`` compares them), and ``ssh-keygen -Y verify`` (what git
runs) stays the only judge of any signature.

Only unencrypted ed25519 keys in OpenSSH's format are signed here (what ``gitvault init``
and ``ssh-keygen -t ed25519 -N ''`` make); any other key, a passphrase or a ``.pub`` held by
ssh-agent returns None, and the caller runs ssh-keygen as before.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import struct
import sys
from typing import Any

MAGIC = b"SSHSIG"  # the envelope and the signed data both start with it
ARMOR = "-----BEGIN SSH SIGNATURE-----"
_ARMOR_END = "-----END SSH SIGNATURE-----"
_VERSION = 1
_HASH = "sha512"  # what ssh-keygen -Y sign uses by default
_KEYTYPE = b"ssh-ed25519"
_WRAP = 70  # ssh-keygen's armour line width
_PRIVATE = b"-----BEGIN OPENSSH PRIVATE KEY-----"

# path -> (the file's identity when read, the key or None when it cannot be signed here)
_keys: dict[str, tuple[tuple[int, int, int, int], Any]] = {}


def _string(data: bytes) -> bytes:
    """An SSH wire ``string``: a 4-byte big-endian length, then the bytes."""
    return struct.pack(">I", len(data)) + data


def _load(path: str) -> Any:
    """The Ed25519 private key in ``path``, or None when this module cannot sign with it.

    Cached by the file's identity (device, inode, size, mtime), so a rotated key file is read
    again and an unchanged one costs one ``stat`` per signature.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None  # a FIFO or device would block or never end: ssh-keygen decides
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        return None  # ssh-keygen refuses a key others may read: let it say so
    ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _keys.get(path)
    if cached is not None and cached[0] == ident:
        return cached[1]
    key = None
    try:
        with open(path, "rb") as f:
            data = f.read(64 * 1024)
        if data.lstrip().startswith(_PRIVATE):
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
            from cryptography.hazmat.primitives.serialization import load_ssh_private_key

            loaded = load_ssh_private_key(data, password=None)
            key = loaded if isinstance(loaded, Ed25519PrivateKey) else None
    except (OSError, ValueError, TypeError):
        key = None  # unreadable, encrypted, or not a key cryptography reads: ssh-keygen decides
    _keys[path] = (ident, key)
    return key


def sign(path: str, message: bytes, namespace: str) -> str | None:
    """The armoured SSHSIG of ``message`` by the key in ``path``, or None (see the module)."""
    key = _load(path)
    if key is None:
        return None
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = _string(_KEYTYPE) + _string(
        key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    ns, hash_name = namespace.encode(), _HASH.encode()
    digest = hashlib.sha512(message).digest()
    signed = MAGIC + _string(ns) + _string(b"") + _string(hash_name) + _string(digest)
    signature = _string(_KEYTYPE) + _string(key.sign(signed))
    blob = (
        MAGIC
        + struct.pack(">I", _VERSION)
        + _string(public)
        + _string(ns)
        + _string(b"")
        + _string(hash_name)
        + _string(signature)
    )
    text = base64.b64encode(blob).decode("ascii")
    lines = [text[i : i + _WRAP] for i in range(0, len(text), _WRAP)]
    return "\n".join([ARMOR, *lines, _ARMOR_END]) + "\n"


def loaded() -> bool:
    """Whether the library is already in this process (the daemon preloads it)."""
    return "cryptography.hazmat.primitives.serialization" in sys.modules
