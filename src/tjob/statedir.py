"""An engine's state directory: private to root, and held by one engine at a time."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from pathlib import Path

from .errors import StateDirInUse


class StateDir:
    """``path`` made (mode 0700, with its ``jobs`` directory) and locked, or StateDirInUse."""

    def __init__(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        (path / "jobs").mkdir(mode=0o700, exist_ok=True)
        spread(path / "jobs")
        self._lockfd = os.open(path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        # The directory itself is locked (deleting a file cannot undo that); the lock file too,
        # for engines of earlier releases.
        self._dirfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self._dirfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise StateDirInUse(f"another tjob engine is using {path}") from None

    def release(self) -> None:
        """Let another engine have it (closing the descriptors drops both locks)."""
        os.close(self._lockfd)
        os.close(self._dirfd)


# <linux/fs.h>: the inode flags' ioctls (an int, whatever the size in their encoding), and
# "the top of directory hierarchies".
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000


def spread(jobs: Path) -> None:
    """Mark ``jobs`` as the top of independent trees (``chattr +T``), so that ext4 places each
    new job directory in a block group of its own choosing (the Orlov allocator), not beside
    its parent. There, without a journal, a new inode is found only past every inode its group
    freed in the last minutes (blanks.py): a state directory in a group where thousands of
    files were removed made each file of a job cost over a millisecond here, 70 us spread.
    Other file systems ignore the flag or refuse it; either is fine."""
    fd = os.open(jobs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):
            (flags,) = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(4)))
            if not flags & FS_TOPDIR_FL:
                fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags | FS_TOPDIR_FL))
    finally:
        os.close(fd)
