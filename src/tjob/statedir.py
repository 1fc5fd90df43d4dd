"""An engine's state directory: private to root, and held by one engine at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import StateDirInUse


class StateDir:
    """``path`` made (mode 0700, with its ``jobs`` directory) and locked, or StateDirInUse."""

    def __init__(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        (path / "jobs").mkdir(mode=0o700, exist_ok=True)
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
