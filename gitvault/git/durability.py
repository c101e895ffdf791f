"""Getting writes onto the disk: fsync of single files, and ``syncfs(2)`` where the file system is
known to honour it (one journal commit covering everything written before it; see
:mod:`gitvault.git.storage` for how a transaction uses the two)."""

from __future__ import annotations

import ctypes
import os
import sys

import pygit2
from pygit2.enums import Option


def set_fsync(enabled: bool) -> None:
    """libgit2's per-file fsync, for the objects it writes (a global switch of the process).

    Its loose-ref backend reads the switch only once, when a repository handle first touches
    its refs, so refs are not reliably fsynced by it: :meth:`Store._flush_refs` does that.
    """
    pygit2.option(Option.ENABLE_FSYNC_GITDIR, 1 if enabled else 0)


# File systems (statfs f_type) whose syncfs(2) writes back every dirty inode and commits the
# journal with a cache flush, i.e. is at least as strong as fsync of each file and directory.
# Others (NFS, FUSE, overlayfs over an unknown upper layer, ...) keep per-file fsync.
SYNCFS_FILE_SYSTEMS = {
    0xEF53: "ext2/3/4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0xF2F52010: "f2fs",
    0x2FC12FC1: "zfs",
    0x01021994: "tmpfs",  # nothing survives a power cut anyway; syncfs costs nothing there
}


def load_libc() -> ctypes.CDLL | None:
    """libc, if it has ``syncfs`` (Linux 2.6.39+, glibc 2.14+, musl) and ``fstatfs``."""
    if not sys.platform.startswith("linux"):
        return None  # macOS and the BSDs have no syncfs, and their sync(2) need not wait
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syncfs.argtypes, libc.syncfs.restype = [ctypes.c_int], ctypes.c_int
        libc.fstatfs.argtypes, libc.fstatfs.restype = [ctypes.c_int, ctypes.c_void_p], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


LIBC = load_libc()


def syncfs_honest(fd: int) -> bool:
    """Whether the file system holding ``fd`` is one of :data:`SYNCFS_FILE_SYSTEMS`."""
    if LIBC is None:
        return False
    buf = ctypes.create_string_buffer(512)  # struct statfs is 120 bytes on 64-bit Linux
    if LIBC.fstatfs(fd, buf) != 0:
        return False
    # f_type is the first field: a long (an int on 32-bit); magics are 32-bit values
    return (ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF) in SYNCFS_FILE_SYSTEMS


def boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def fsync_path(path: str) -> None:
    """fsync a file or directory if it exists."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
