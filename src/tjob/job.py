"""A job as the library hands it out: it reports, stops, waits and streams its output.

A job reads what it knows from its directory (the status file recorded at the end, the framed
output log), waking on the engine's shared watcher (:mod:`tjob.watch`). Reading never changes
anything: a job's end is recorded by the launcher or, if its supervisor vanished, by the
engine's explicit end step (:mod:`tjob.ends`). A job talks to two collaborators only: its
cgroup backend (usage, signals) and the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .cgroups import CgroupBackend
from .errors import CgroupError, InvalidSpec, JobFinished
from .flows import Flow, Step, blocking, drive, drive_async
from .follower import chunks, chunks_async
from .jobdir import STATUS_FILE, STOP_FILE, TIMEOUT_FILE, read_final
from .logstore import READ_SIZE, Chunk
from .protocol import Stdio
from .spec import JobSpec
from .status import JobFacts, JobState, JobStatus, Stream, Usage
from .supervised import Supervised
from .watch import Hub

if TYPE_CHECKING:
    from .execs import Exec, Execs
    from .queue import Gate
    from .stdio import Lease


async def _nothing() -> None:
    return None


KILL_TIMEOUT = 30.0
_END = frozenset({STATUS_FILE})  # a wait for the end wakes for this file only


class Job(Supervised):
    """One job. Obtain from :meth:`Engine.start` or :meth:`Engine.get`; never build directly."""

    kind = "job"

    def __init__(
        self, facts: JobFacts, spec: JobSpec, jdir: Path, cg: CgroupBackend, hub: Hub
    ) -> None:
        super().__init__(jdir, hub)
        self.facts = facts
        self.id = facts.id
        self.spec = spec
        self.created_at = facts.created_at
        self.limits = facts.limits
        self.pid: int | None = None
        self.started_at: float | None = None
        self._cg = cg
        # Its cgroup, relative to the engine's parent: "<client>/<job>" (or "<job>", made before).
        self.cgroup = cg.name_of(facts.owner, facts.id)
        self._final: JobStatus | None = None  # the recorded end, once seen (a cache)
        self._settled = False  # the engine's end step is done: pidfds closed, row written
        self._sup_pidfd = -1
        self._init_pidfd = -1
        self._lock = threading.RLock()  # guards the pidfds and the end step
        # A queued job (issue 15): the gate opens when it starts or is cancelled; ``_cancel``
        # takes it out of the queue (None: it is starting already).
        self._gate: Gate | None = None
        self._cancel: Callable[[], JobStatus | None] | None = None
        # A start unanswered within the start timeout (it may still start): this gate opens
        # once the answer, or its end, says what happened; until then the job is
        # ``starting`` and its output has not begun.
        self._confirmation: Gate | None = None
        self._execs: Execs | None = None  # the engine's, for exec (issue 16)

    @property
    def unconfirmed(self) -> bool:
        """Its start was sent and is not answered yet (state ``starting``)."""
        c = self._confirmation
        return c is not None and not c.open

    @property
    def queued(self) -> bool:
        """Waiting in the engine's queue: no process, no directory yet."""
        return self._gate is not None and not self._gate.open

    def _started_step(self) -> Step:
        gate = self._gate
        if gate is None:
            return Step(lambda: None, _nothing)
        return Step(gate.wait, gate.wait_async)

    async def started_async(self) -> None:
        """Until a queued or starting job has started (or ended without); at once for any
        other."""
        if self._gate is not None:
            await self._gate.wait_async()
        if self._confirmation is not None:
            await self._confirmation.wait_async()

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def owner(self) -> str:
        return self.spec.owner

    @property
    def name(self) -> str:
        return self.facts.name

    def __repr__(self) -> str:
        return f"<tjob.Job {self.short_id} {list(self.spec.argv)!r}>"

    # ---------------------------------------------------------------- status

    def _attach(self, pid: int | None, started_at: float, sup_pidfd: int, init_pidfd: int) -> None:
        self.pid, self.started_at = pid, started_at
        self._sup_pidfd, self._init_pidfd = sup_pidfd, init_pidfd

    def _settle(self, final: JobStatus) -> None:
        """The engine's end step is done: remember the end, close the pidfds."""
        with self._lock:
            self._final = final
            self._settled = True
            self._release()

    def _release(self) -> None:
        with self._lock:
            if self._sup_pidfd >= 0:
                self._hub.forget(self._sup_pidfd)
            for fd in (self._sup_pidfd, self._init_pidfd):
                if fd >= 0:
                    os.close(fd)
            self._sup_pidfd = self._init_pidfd = -1

    def _final_status(self) -> JobStatus | None:
        """The recorded end of the job, if any (a read: it changes nothing)."""
        final = self._final
        if final is None:
            try:
                data = read_final(self.dir / STATUS_FILE)
                if data is None:
                    return None
                final = JobStatus.from_dict(json.loads(data))
            except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
                # Renamed into place once written: what is there is damage, not a write under way.
                final = self.damaged(f"{STATUS_FILE}: {e!r}")
            self._final = final
        return final

    def damaged(self, reason: str) -> JobStatus:
        """The status of this job quarantined: a file of its record cannot be read (kept, in
        its directory, for inspection; ``rm`` removes it)."""
        return JobStatus.of(self.facts, JobState.DAMAGED, error=f"damaged: {reason}")

    def _end_recorded(self) -> bool:
        return self._final_status() is not None

    def status(self, usage: bool = True) -> JobStatus:
        """Where the job is now; while it runs, with the cgroup's usage so far (reading it is
        a few files per job: listings of many jobs pass ``usage=False``)."""
        final = self._final_status()
        if final is not None:
            return final
        if self.queued:
            return JobStatus.of(self.facts, JobState.QUEUED)
        if self.unconfirmed:
            return JobStatus.of(self.facts, JobState.STARTING)
        return JobStatus.of(
            self.facts,
            JobState.RUNNING,
            pid=self.pid,
            started_at=self.started_at,
            usage=self._cg.usage(self.cgroup) if usage else Usage(),
        )

    # ---------------------------------------------------------------- wait

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Block until the job has ended; raise TimeoutError after ``timeout`` seconds."""
        final = self._final_status()
        if final is not None:
            return final
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._gate is not None and not self._gate.wait(timeout):
            raise TimeoutError(f"job {self.short_id} still queued after {timeout}s")
        late = f"job {self.short_id} still running after {timeout}s"
        return self._hub.wait_until(str(self.dir), self._final_status, deadline, late, _END)

    async def wait_async(self, timeout: float | None = None) -> JobStatus:
        """Like :meth:`wait`, without blocking the event loop."""
        final = self._final_status()
        if final is not None:
            return final
        async with asyncio.timeout(timeout):
            await self.started_async()
            return await self._hub.until_async(str(self.dir), self._final_status, _END)

    # ---------------------------------------------------------------- stop

    def _begin_stop(self, grace: float) -> bool:
        """Mark the stop and, with a grace period, SIGTERM every process; False if over."""
        if self._final_status() is not None:
            return False
        (self.dir / STOP_FILE).touch()
        if grace > 0:
            with contextlib.suppress(CgroupError):
                self._cg.signal(self.cgroup, signal.SIGTERM)
        return True

    def _kill(self) -> None:
        """SIGKILL every process of the job."""
        cg = self._cg
        with contextlib.suppress(CgroupError):
            cg.unthrottle(self.cgroup)
        with self._lock:
            init = self._init_pidfd
            if init >= 0:
                # Killing the namespace's init makes the kernel kill everything in it and
                # refuse new processes there, so one pass over the cgroup leaves no one.
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(init, signal.SIGKILL)
        with contextlib.suppress(CgroupError):
            if init >= 0:
                cg.signal(self.cgroup, signal.SIGKILL)
            else:
                cg.kill(self.cgroup)  # v2 cgroup.kill; v1 freeze, kill each, thaw

    def _ended(self, timeout: float) -> Step:
        return Step(lambda: self.wait(timeout), lambda: self.wait_async(timeout))

    def _stop_flow(self, grace: float) -> Flow[JobStatus]:
        if grace < 0:
            raise InvalidSpec("grace must be >= 0")
        if self.queued and self._cancel is not None:
            cancelled = yield blocking(self._cancel)
            if cancelled is not None:
                return cancelled  # type: ignore[no-any-return]
            yield self._started_step()  # it was starting: stop it once it runs
        if not (yield blocking(lambda: self._begin_stop(grace))):
            return self.status()
        if grace > 0:
            with contextlib.suppress(TimeoutError):
                ended: JobStatus = yield self._ended(grace)
                return ended
        yield blocking(self._kill)
        killed: JobStatus = yield self._ended(KILL_TIMEOUT)
        return killed

    def stop(self, grace: float = 10.0) -> JobStatus:
        """SIGTERM every process, wait ``grace`` seconds, then SIGKILL all that is left.

        Safe to call on a finished job (returns its status) and more than once.
        """
        return drive(self._stop_flow(grace))

    async def stop_async(self, grace: float = 10.0) -> JobStatus:
        """Like :meth:`stop`, without blocking the event loop (signals go from a thread)."""
        return await drive_async(self._stop_flow(grace))

    def _time_out(self, grace: float) -> JobStatus:
        """Stop the job because its timeout passed (its status says ``timed_out``)."""
        if self._final_status() is None:
            (self.dir / TIMEOUT_FILE).touch()  # before the stop mark: the recorder reads both
        return self.stop(grace)

    # ---------------------------------------------------------------- signal

    def signal(self, sig: int, all: bool = False) -> int:
        """Send ``sig`` to the job's command (``all``: to every process in the job); return
        how many processes it went to. The job is not marked stopped: how it ends is its own.

        Raises :class:`JobFinished` if the job (or, without ``all``, its command) has ended.
        """
        if self._final_status() is not None:
            raise JobFinished(f"job {self.short_id} has ended")
        if self.queued:
            raise JobFinished(f"job {self.short_id} is queued: it has not started")
        if self.unconfirmed:
            raise JobFinished(f"job {self.short_id} is starting: its start is not confirmed yet")
        try:
            if all:
                sent = self._cg.signal(self.cgroup, sig)
            else:  # the command alone: any signal goes, SIGKILL and SIGSTOP too, which init
                # could not forward
                pid = self.pid
                sent = 0 if pid is None else self._cg.signal_process(self.cgroup, pid, sig)
        except CgroupError as e:
            raise JobFinished(f"job {self.short_id} has ended ({e})") from None
        if not sent:
            raise JobFinished(f"job {self.short_id}'s command has ended")
        return sent

    async def signal_async(self, sig: int, all: bool = False) -> int:
        """Like :meth:`signal`, from a thread (it reads the cgroup's process list)."""
        return await asyncio.to_thread(self.signal, sig, all)

    # ---------------------------------------------------------------- exec (issue 16)

    def exec(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        *,
        stdin: bool = False,
        tty: bool = False,
        tty_size: tuple[int, int] | None = None,
    ) -> Exec:
        """Run ``argv`` inside this running job (its namespaces, cgroup, user and jail), with
        the job's environment updated by ``env``, in ``cwd`` (default the job's); ``stdin``,
        ``tty``, ``tty_size`` as for a job (``Exec.stdin()``). Returns once it runs or failed
        to (``result().error``); :class:`JobFinished` if the job is not running. See
        :mod:`tjob.execs`."""
        assert self._execs is not None, "a job from an engine"
        return self._execs.start(self, argv, env or {}, cwd, _stdio(stdin, tty, tty_size))

    async def exec_async(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        *,
        stdin: bool = False,
        tty: bool = False,
        tty_size: tuple[int, int] | None = None,
    ) -> Exec:
        """Like :meth:`exec`, awaiting the start."""
        assert self._execs is not None, "a job from an engine"
        io = _stdio(stdin, tty, tty_size)
        return await self._execs.start_async(self, argv, env or {}, cwd, io)

    def execs(self) -> list[Exec]:
        """Every exec into this job, oldest first (a read of its directory)."""
        assert self._execs is not None, "a job from an engine"
        return self._execs.of(self)

    # ---------------------------------------------------------------- stdin (issue 16)

    async def stdin_async(self) -> Lease:
        """:meth:`stdin` (``JobSpec(stdin=True)`` or ``tty``) once a queued job has started."""
        await self.started_async()
        return await super().stdin_async()

    # ---------------------------------------------------------------- output

    def output(
        self,
        follow: bool = True,
        streams: Stream = Stream.BOTH,
        skip: int = 0,
        read_size: int = READ_SIZE,
        *,
        tail: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> Iterator[Chunk]:
        """The job's output from its first byte, as (stream, bytes) chunks in arrival order,
        each with the time the supervisor read it (``Chunk.time_ns``).

        With ``follow``, new output is yielded as it arrives and the iterator ends once the job
        has ended and everything is read; without, it ends at the current end. ``skip`` leaves
        out the first bytes of the selected streams (to resume after a disconnect; counted from
        where the view begins); ``read_size`` bounds what one step reads (and so the memory a
        reader holds). ``tail``, ``since_ns``, ``until_ns``: see :class:`Follower`.
        """
        for gate in (self._gate, self._confirmation):
            if gate is not None:
                gate.wait()  # a queued or starting job: its output starts with its start
        view = self.follower(streams, skip, tail=tail, since_ns=since_ns, until_ns=until_ns)
        yield from chunks(view, follow, read_size)

    async def output_async(
        self,
        follow: bool = True,
        streams: Stream = Stream.BOTH,
        skip: int = 0,
        read_size: int = READ_SIZE,
        *,
        tail: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> AsyncIterator[Chunk]:
        """Like :meth:`output`, for asyncio; reads are from the page cache and never block
        (finding where a view begins runs in a thread)."""
        await self.started_async()
        loop = asyncio.get_running_loop()
        view = self.follower(streams, skip, loop, tail=tail, since_ns=since_ns, until_ns=until_ns)
        async for chunk in chunks_async(view, follow, read_size):
            yield chunk


def stop_together(jobs: list[Job], grace: float) -> None:
    """Stop these jobs within one grace period in all (not one per job)."""
    for job in jobs:
        job._begin_stop(grace)
    deadline = time.monotonic() + grace
    for job in jobs:
        with contextlib.suppress(TimeoutError):
            job.wait(max(0.0, deadline - time.monotonic()))
    left = [j for j in jobs if j.running]
    for job in left:
        job._kill()
    for job in left:
        with contextlib.suppress(TimeoutError):
            job.wait(KILL_TIMEOUT)


def _stdio(stdin: bool, tty: bool, size: tuple[int, int] | None) -> Stdio | None:
    return Stdio(stdin, tty, *(size or (0, 0))) if stdin or tty else None
