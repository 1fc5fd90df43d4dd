"""Job directories made ahead of need: a start renames one instead of creating its files.

On ext4 without a journal (this machine's root file system) the kernel allocates a new inode
only past every inode its group freed in the last seconds to five minutes (``recently_deleted``
in fs/ext4/ialloc.c): after a few thousand files were removed there, by anyone, each creation
cost 0.6 to 1.4 ms here instead of 15 us, and a start creates six. A *blank* is an empty job
directory made in the background, holding empty files under the names the start writes
(``exec.bin``, ``spec.json``, ``output.log``, ``run.json``'s temporary) and the reserve. A start
renames one to the job's id and writes into its files: nothing on its way allocates an inode
(the end writes ``status.json`` into the reserve: :func:`tjob.jobdir.write_final`). Blanks are
still made, by this thread; the jobs directory spreads them over the file system's groups
(:func:`tjob.statedir.spread`), away from the ones where files were removed.

Blanks are named ``.blank-*``, which no job id matches (:mod:`tjob.adopt` skips them). One left
by an engine that died is taken again if it is whole, else removed.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import threading
from pathlib import Path

from .jobdir import (
    EXEC_FILE,
    LOG_FILE,
    RESERVE_FILE,
    RUN_FILE,
    SPEC_FILE,
    TMP_SUFFIX,
    create_file,
    reserve,
    reserve_size,
)

PREFIX = ".blank-"
COUNT = 2  # two starts in a row find one each; more at once make their own files
EMPTY = (EXEC_FILE, SPEC_FILE, LOG_FILE, RUN_FILE + TMP_SUFFIX)
TYPICAL_SPEC = 1024  # the reserve's size covers a spec.json this long; a longer one grows it
# A disk about to fill keeps its last room for what must be written (records, ends, output):
# no blank is made with less than this free.
MIN_FREE = 64 << 20
MIN_INODES = 1024


class Blanks:
    """The blanks of one jobs directory: made at once, then kept at :data:`COUNT` by a thread
    of their own."""

    def __init__(self, jobs_dir: Path) -> None:
        self._dir = jobs_dir
        self._ready = _found(jobs_dir)
        self._changed = threading.Condition()
        self._wanted = threading.Event()
        self._closed = False
        self._fill()  # the first starts find theirs
        self._thread = threading.Thread(target=self._refill, name="tjob-blanks", daemon=True)
        self._thread.start()

    def take(self, job_id: str) -> Path | None:
        """The job's directory, a blank renamed; None if none is ready (the caller makes it)."""
        with self._changed:
            blank = self._ready.pop() if self._ready else None
        self._wanted.set()
        if blank is None:
            return None
        jdir = self._dir / job_id
        os.rename(blank, jdir)  # ids are random 128-bit: no directory of that name exists
        return jdir

    def wait_full(self, timeout: float) -> bool:
        """Whether there are :data:`COUNT` blanks within ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._ready) >= COUNT, timeout)

    def _refill(self) -> None:
        while self._wanted.wait() and not self._closed:
            self._wanted.clear()
            self._fill()

    def _fill(self) -> None:
        while not self._closed and len(self._ready) < COUNT:
            try:
                blank = _make(self._dir)
            except OSError:
                return  # a full disk: starts make their own files (and say so if they fail)
            with self._changed:
                self._ready.append(blank)
                self._changed.notify_all()

    def close(self) -> None:
        """Stop making blanks; those made stay for the next engine."""
        self._closed = True
        self._wanted.set()
        self._thread.join(10)


def _make(jobs_dir: Path) -> Path:
    room = os.statvfs(jobs_dir)
    if room.f_bavail * room.f_frsize < MIN_FREE or room.f_favail < MIN_INODES:
        raise OSError(errno.ENOSPC, "the disk's last room is the records'")
    blank = jobs_dir / f"{PREFIX}{secrets.token_hex(8)}"
    blank.mkdir(mode=0o700)
    try:
        for name in EMPTY:
            create_file(blank / name, b"")
        reserve(blank, reserve_size(TYPICAL_SPEC))
    except OSError:
        shutil.rmtree(blank, ignore_errors=True)
        raise
    return blank


def _found(jobs_dir: Path) -> list[Path]:
    """Blanks an earlier engine left: the whole ones, to be taken; the rest removed."""
    whole = set(EMPTY) | {RESERVE_FILE}
    found = []
    for name in os.listdir(jobs_dir):
        if not name.startswith(PREFIX):
            continue
        path = jobs_dir / name
        try:
            ok = set(os.listdir(path)) == whole and all(
                os.stat(path / f).st_size == 0 for f in EMPTY
            )
        except OSError:
            ok = False
        if ok:
            found.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return found
