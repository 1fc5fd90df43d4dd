"""The one recorder of a job's end: failed, exited, stopped or lost.

Every final status is built here by :meth:`JobStatus.of` from the job's facts (``spec.json``,
or the same :class:`JobFacts` the engine holds) and the end's own fields, and written in one
order: the job's cgroup removed, the log's end frame (followers stop there), ``status.json``
(its presence means the job is over), then the store row.

Ends a supervisor reports are recorded in the launcher, which has no store: there an exited
job's cgroup is removed once ``status.json`` is in place (its waiter is woken first), then the
supervisor is answered and finishes ``status.json`` (gives back the reserve's blocks past it,
fsyncs it) before it exits, and the row is written by the engine when the supervisor's pidfd
fires (:mod:`tjob.ends`). A supervisor whose
launcher is gone leaves its report in the job's directory (``END_FILE``) and exits; the engine
(or the next one, at start-up) records it with :meth:`Recorder.reported`, all four steps at
once, as it records a lost end.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from .cgroups import CgroupBackend
from .errors import CgroupError
from .jobdir import (
    END_FILE,
    LOG_FILE,
    SPEC_FILE,
    STATUS_FILE,
    STOP_FILE,
    TIMEOUT_FILE,
    write_final,
)
from .logstore import LogWriter
from .protocol import Exited, ProtocolError, decode_end_report
from .status import JobFacts, JobState, JobStatus, Usage

LOST_ERROR = "its supervisor ended without recording an end"


class Recorder:
    """Records ends with one cgroup backend; ``index`` (the engine's store) gets the row."""

    def __init__(self, cg: CgroupBackend, index: Callable[[JobStatus], None] | None = None) -> None:
        self.cg = cg
        self.index = index
        # Set by a caller that runs the steps after status.json is in place itself (the
        # launcher, for the ends supervisors report): the removal of an exited job's cgroup.
        self.after: list[Callable[[], None]] | None = None

    def failed(self, jdir: Path, error: str) -> JobStatus:
        """A job that never ran."""
        facts = read_facts(jdir)
        reported = self._remove(self.cg.name_of(facts.owner, facts.id), error, keep_first=True)
        status = JobStatus.of(facts, JobState.FAILED, error=reported, ended_at=now())
        return self._write(jdir, status)

    def exited(
        self, jdir: Path, wstatus: int, cut: str | None, pid: int, started_at: float
    ) -> JobStatus:
        """A job whose command ran: its wait status (-1 if init was killed), cgroup usage,
        OOM kills; ``cut`` says why output capture stopped early, if it did."""
        facts = read_facts(jdir)
        if wstatus < 0:
            # No report: init was SIGKILLed (a stop), and the kernel SIGKILLed all in its namespace.
            wstatus = signal.SIGKILL
        name = self.cg.name_of(facts.owner, facts.id)
        usage = self.cg.usage(name)
        oom = self.cg.oom_kills(name) > 0
        if self.after is None:
            error = self._remove(name, cut)
        else:
            # The launcher's: its command and every process of it have exited (it checked),
            # so the removal cannot fail for the job's sake; it is done once status.json is
            # in place, before the supervisor is answered.
            error = cut
            self.after.append(partial(self._remove_quietly, name))
        stopped = (jdir / STOP_FILE).exists()
        status = JobStatus.of(
            facts,
            JobState.STOPPED if stopped else JobState.EXITED,
            pid=pid or None,
            exit_code=os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None,
            signal=os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None,
            oom_killed=oom,
            stopped=stopped,
            timed_out=stopped and (jdir / TIMEOUT_FILE).exists(),
            error=error,
            output_truncated=cut is not None,
            started_at=started_at,
            ended_at=now(),
            usage=Usage(
                cpu_seconds=usage.cpu_seconds,
                memory_peak_bytes=usage.memory_peak_bytes,
                io_read_bytes=usage.io_read_bytes,
                io_write_bytes=usage.io_write_bytes,
            ),
        )
        return self._write(jdir, status)

    def lost(
        self, jdir: Path, facts: JobFacts, pid: int | None, started_at: float | None, error: str
    ) -> JobStatus:
        """A job nobody will report on (its processes already killed by the caller)."""
        self._remove(self.cg.name_of(facts.owner, facts.id), None)
        status = JobStatus.of(
            facts, JobState.LOST, pid=pid, error=error, started_at=started_at, ended_at=now()
        )
        try:
            jdir.mkdir(mode=0o700, exist_ok=True)  # absent if we died right after recording
            return self._write(jdir, status)
        except OSError:
            return status  # a full disk: the next engine will find it lost again

    def report(self, jdir: Path, report: bytes) -> JobStatus:
        """Record a job's end from its supervisor's ``EndReport``."""
        end = decode_end_report(report)
        if isinstance(end, Exited):
            return self.exited(jdir, end.wstatus, end.cut, end.pid or 0, end.started_at)
        return self.failed(jdir, end.message())

    def reported(self, jdir: Path) -> JobStatus | None:
        """Record the end its supervisor left in the job's directory, if it left one."""
        try:
            report = (jdir / END_FILE).read_bytes()
        except FileNotFoundError:
            return None
        try:
            status = self.report(jdir, report)
        except ProtocolError:
            return None  # not a report: the job is recorded lost (the file is kept)
        (jdir / END_FILE).unlink(missing_ok=True)
        return status

    def _remove(self, name: str, error: str | None, keep_first: bool = False) -> str | None:
        """Remove the job's cgroup; a failure is added to ``error`` (or, with ``keep_first``,
        only reported if there is no error yet: the first error is the one worth reading)."""
        try:
            self.cg.remove(name)
        except CgroupError as e:
            if not (keep_first and error):
                return f"{error}; {e}" if error else str(e)
        return error

    def _remove_quietly(self, name: str) -> None:
        error = self._remove(name, None)
        if error is not None:
            print(f"tjob: {error}", file=sys.stderr)  # the launcher's log; the job's end stands

    def _write(self, jdir: Path, status: JobStatus) -> JobStatus:
        # The launcher's ends are a supervisor's, which finishes status.json once answered.
        record_end(jdir, status, finish=self.after is None)
        if self.index is not None:
            self.index(status)
        return status


def read_facts(jdir: Path) -> JobFacts:
    return JobFacts.from_dict(json.loads((jdir / SPEC_FILE).read_bytes()))


def now() -> float:
    return time.time()


def record_end(jdir: Path, status: JobStatus, finish: bool = True) -> None:
    """End the log with the final status (followers stop there), then write status.json
    (``finish``: as :func:`~tjob.jobdir.write_final`'s)."""
    data = status.to_dict()
    try:
        log = LogWriter(str(jdir / LOG_FILE))
        try:
            log.end(json.dumps(data).encode())
        finally:
            log.close()
    except OSError:
        pass  # disk full: followers end on the status file instead (its write has a reserve)
    write_final(jdir / STATUS_FILE, data, finish)
