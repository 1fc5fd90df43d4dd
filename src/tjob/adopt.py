"""Start-up: the jobs an earlier engine left in the state directory, running ones included.

The job directories are the truth and the store an index of them; both are reconciled here.
Each job is found finished (its row or its ``status.json`` says so), running (its supervisor is
alive: the engine takes over its pidfds and watches it), or lost (no supervisor, no recorded
end: recorded lost now, by the engine's end step). A directory with no row gets its row back
from its ``spec.json``; a ``spec.json`` the row still knows is rewritten from it.

A job whose files cannot be read is *quarantined*, never a reason not to start: it is listed
in state ``damaged`` with the reason, its files are kept for inspection, ``rm`` removes it,
and whatever of it still runs is killed (nothing runs unlisted). No row is written for it, so
a repaired file is read again by the next engine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

from .ends import Ends
from .errors import CgroupError, TjobError
from .job import Job
from .jobdir import LOG_FILE, RUN_FILE, SPEC_FILE, claimed, write_json
from .procs import (
    boot_time,
    children,
    end_stale_launchers,
    init_pidfd,
    is_supervisor,
    supervisors,
)
from .protocol import ProtocolError, RunInfo, decode_run
from .recorder import Recorder
from .spec import JobSpec
from .status import JobFacts, JobState, ResolvedLimits
from .store import Record, Store

log = logging.getLogger("tjob")
_JOB_DIR = re.compile(r"[0-9a-f]{32}")
_DAMAGE = (OSError, ValueError, TypeError, KeyError, AttributeError)


class _Supervisors:
    """Supervisors found by their mark, scanned once, only if a job needs it (after any
    launcher an earlier engine left stalled is gone: none can make a supervisor after it)."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self._found: dict[str, int] | None = None

    def of(self, job_id: str, fresh: bool = False) -> int | None:
        """``fresh``: scanned again (a supervisor takes its mark once it has its job)."""
        if self._found is None:
            n = end_stale_launchers(str(self._state_dir))
            if n:
                log.warning("killed %d stalled launcher(s) an earlier engine left", n)
        if self._found is None or fresh:
            self._found = supervisors()
        return self._found.get(job_id)


def load(
    store: Store, ends: Ends, make: Callable[[JobFacts, JobSpec], Job], jobs_dir: Path
) -> Iterator[Job]:
    """Every job of the state directory that is still there, each settled or adopted."""
    recs = {rec.facts.id: rec for rec in store.records()}
    for job_id, rec in list(recs.items()):
        if rec.damage is not None and (jobs_dir / job_id).is_dir():
            store.remove(job_id)  # an unreadable row: indexed again from its directory
            recs[job_id] = _from_dir(jobs_dir / job_id, store)
    found = []
    for name in sorted(os.listdir(jobs_dir)):
        if name not in recs and _JOB_DIR.fullmatch(name):
            recs[name] = _from_dir(jobs_dir / name, store)
            found.append(name)
    if store.damaged or found:
        bad = [n for n in found if recs[n].damage]
        log.warning(
            "%s%d job directories had no record and were indexed again%s",
            f"{store.damaged}; " if store.damaged else "",
            len(found) - len(bad),
            f"; {len(bad)} could not be read and are quarantined: {', '.join(bad)}" if bad else "",
        )
    sups = _Supervisors(jobs_dir.parent)
    for rec in sorted(recs.values(), key=lambda r: r.facts.created_at):
        facts = rec.facts
        job = make(facts, JobSpec(argv=facts.argv, cwd=rec.cwd, user=rec.user, owner=facts.owner))
        if not job.dir.exists() and (rec.status is not None or rec.damage is None):
            # A removal cut short, or a start cut short before it was handed over (its
            # directory is made first): nothing ran, nothing was acknowledged.
            store.remove(facts.id)
            continue
        try:
            _load_one(job, rec, ends, sups)
        except _DAMAGE as e:  # whatever else a damaged file breaks: never the start-up
            _quarantine(job, f"{e!r}", sups)
        yield job


def _load_one(job: Job, rec: Record, ends: Ends, sups: _Supervisors) -> None:
    if rec.status is not None:
        job._settle(rec.status)
        return
    if rec.damage is not None:
        _quarantine(job, rec.damage, sups)
        return
    _check_spec(job)
    final = job._final_status()
    if final is not None and final.state is JobState.DAMAGED:
        log.warning("job %s quarantined: %s (files kept in %s)", job.id, final.error, job.dir)
    if final is not None:
        ends.settle(job)  # recorded while no engine ran: its row now (none if damaged)
    else:
        _adopt(job, ends, sups)


def _from_dir(jdir: Path, store: Store) -> Record:
    """The record of a job directory the store does not know, from its spec.json."""
    try:
        facts = JobFacts.from_dict(json.loads((jdir / SPEC_FILE).read_bytes()))
        if facts.id != jdir.name:
            raise ValueError(f"its id is {facts.id!r}")
    except _DAMAGE as e:
        created = jdir.stat().st_mtime
        facts = JobFacts(jdir.name, (), "", created, ResolvedLimits())
        return Record(facts, "/", None, None, damage=f"{SPEC_FILE}: {e!r} (and no record)")
    try:
        store.add(facts, "/", None, facts.request_id)  # a retried Run still finds it
    except TjobError as e:
        log.warning("job %s: %s", jdir.name, e)
        if facts.request_id:  # its request id taken by another job: indexed without it
            with contextlib.suppress(TjobError):
                store.add(facts, "/", None)
    return Record(facts, "/", None, None)


def _check_spec(job: Job) -> None:
    """A spec.json the recorder cannot read is rewritten from the store's record of it."""
    if not job.dir.exists():
        return
    try:
        JobFacts.from_dict(json.loads((job.dir / SPEC_FILE).read_bytes()))
    except _DAMAGE as e:
        write_json(job.dir / SPEC_FILE, job.facts.to_dict())
        log.warning("job %s: %s was unreadable (%r); rewritten from jobs.db", job.id, SPEC_FILE, e)


def _quarantine(job: Job, reason: str, sups: _Supervisors) -> None:
    """List the job as damaged; kill whatever of it still runs (it cannot be adopted)."""
    sup = sups.of(job.id)
    if sup is not None:
        job._kill()
        try:
            os.kill(sup, signal.SIGKILL)
        except ProcessLookupError:
            pass
        reason += "; its processes were killed"
    else:
        job._kill()  # a cgroup with processes but no supervisor: none may run unlisted
    with contextlib.suppress(CgroupError):
        job._cg.remove(job.cgroup)  # no cgroup of it leaks
    log.warning("job %s quarantined: %s (files kept in %s)", job.id, reason, job.dir)
    job._settle(job.damaged(reason))


def _adopt(job: Job, ends: Ends, sups: _Supervisors) -> None:
    try:
        run = decode_run((job.dir / RUN_FILE).read_bytes())
    except (OSError, ProtocolError) as e:
        # A supervisor handed the job just before its launcher died may not have its mark
        # yet: under this lock it either has it, or sees the end recorded here and gives up.
        with claimed(job.dir):
            found = _by_mark(job, sups)
            if found is None:
                if not _log_begun(job) and job.created_at >= boot_time():
                    _never_started(job)  # no supervisor ever took it (its start was cut short)
                # Else lost: files of an earlier boot may not have reached the disk.
                ends.settle(job)
                return
        run = found
        log.warning("job %s: %s unreadable (%s); adopted by its supervisor", job.id, RUN_FILE, e)
    try:
        sup = os.pidfd_open(run.supervisor_pid)
    except OSError:
        ends.settle(job)
        return
    if not is_supervisor(run.supervisor_pid, job.id, str(job.dir)):
        os.close(sup)
        ends.settle(job)
        return
    job._attach(run.pid, run.started_at, sup, init_pidfd(run))
    ends.watch(job)


NEVER_STARTED = (
    "its start was not confirmed when the engine stopped, and no supervisor took it: it never ran"
)


def _log_begun(job: Job) -> bool:
    """Whether a supervisor took the job: it writes output.log's header before anything of the
    job runs (a blank's log is there before, empty: blanks.py)."""
    try:
        return (job.dir / LOG_FILE).stat().st_size > 0
    except FileNotFoundError:
        return False


def _never_started(job: Job) -> None:
    """Record as failed a job that no supervisor took (:func:`_log_begun`), and none is alive
    for it. (A start in flight when the last engine died: its launcher, the only process that
    could still hand it over, is gone, see :func:`tjob.procs.stale_launchers`.) Only for a job
    made since the machine booted: after a power cut, an output.log missing or empty (never
    fsynced) proves nothing, and the job is lost."""
    with contextlib.suppress(OSError, CgroupError):
        Recorder(job._cg).failed(job.dir, NEVER_STARTED)


def _by_mark(job: Job, sups: _Supervisors) -> RunInfo | None:
    """What run.json would say, from the live supervisor of the job (its init: its child)."""
    pid = sups.of(job.id, fresh=True)
    if pid is None:
        return None
    kids = children(pid)
    return RunInfo(pid, kids[0] if kids else -1, None, job.created_at)
