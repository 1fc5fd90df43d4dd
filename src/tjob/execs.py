"""Exec into a running job (issue 16): one more command in the job's namespaces, cgroup and
jail, with its own output and exit code.

An exec is a small job of its own, in ``execs/N`` of the job's directory: ``exec.bin`` (the
job's own, with the exec's argv, environment and working directory), ``output.log`` (the
same format and writer as a job's) and ``end-report``. It goes the way a job does, through the
launcher and the zygote, to an exec supervisor (``shim/execsup.c``) whose one child enters the
namespaces of the job's init through a pidfd (``shim/join.c``), joins the job's cgroup and
drops privileges as the job's command did (``shim/command.c``). The exec supervisor, outside
the job, writes the end itself, so an exec outlives an engine restart with its output and exit
kept. Its process is in the job's PID namespace and cgroup: a job that ends, or is stopped,
takes it along.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ExecLimit, JobFinished, TjobError
from .flows import Flow, Step, blocking, drive, drive_async
from .follower import chunks, chunks_async
from .jobdir import create_file
from .launcher_client import LauncherClient, Reply
from .logstore import READ_SIZE, Chunk
from .procs import readable
from .protocol import (
    END_FILE,
    EXEC_FILE,
    EXECS_DIR,
    TMP_SUFFIX,
    ExecRequest,
    Exited,
    ProtocolError,
    Stdio,
    decode_end_report,
    decode_exec,
    decode_start_reply,
    encode_end_report,
    encode_exec,
    encode_exec_request,
)
from .spec import JobSpec, check_window_size
from .status import Stream
from .supervised import Supervised
from .watch import Hub

if TYPE_CHECKING:
    from .job import Job

LOST = "the exec's supervisor died before the command ended"
# Execs running in one job at once. Each has a supervisor outside the job's cgroup, and moving
# a process into a cgroup is not bounded by its pids.max: without this, a client could put any
# number of processes into its job.
MAX_LIVE = 64


@dataclass(frozen=True)
class ExecResult:
    """How an exec ended: ``exit_code`` or ``signal``; or ``error`` when it never ran (or was
    lost); ``output_truncated`` when its output hit the cap or a full disk."""

    exit_code: int | None = None
    signal: int | None = None
    error: str = ""
    output_truncated: bool = False

    @property
    def shell_exit_code(self) -> int:
        """What a shell would give: the code, 128 + signal, 127 (not found) or 126."""
        if self.exit_code is not None:
            return self.exit_code
        if self.signal is not None:
            return 128 + self.signal
        return 127 if "No such file or directory" in self.error else 126


def read_result(xdir: Path) -> ExecResult | None:
    """The end its supervisor wrote in ``xdir``, or None while it runs."""
    try:
        end = decode_end_report((xdir / END_FILE).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ProtocolError) as e:
        return ExecResult(error=f"{END_FILE}: {e}")
    if not isinstance(end, Exited):
        return ExecResult(error=end.message())
    truncated = end.cut is not None
    if end.wstatus < 0:
        return ExecResult(error=LOST, output_truncated=truncated)
    if os.WIFSIGNALED(end.wstatus):
        return ExecResult(signal=os.WTERMSIG(end.wstatus), output_truncated=truncated)
    return ExecResult(exit_code=os.WEXITSTATUS(end.wstatus), output_truncated=truncated)


class Exec(Supervised):
    """A command exec'd into a running job: its output and how it ended. From
    :meth:`Job.exec`; ``n`` numbers the job's execs from 1."""

    kind = "exec"
    marks_lost_end = False

    def __init__(
        self, job: Job, n: int, hub: Hub, pid: int | None = None, started_at: float | None = None
    ) -> None:
        super().__init__(job.dir / EXECS_DIR / str(n), hub)
        self.job, self.n, self.pid, self.started_at = job, n, pid, started_at

    def __repr__(self) -> str:
        return f"<tjob.Exec {self.job.short_id}/{self.n} pid={self.pid}>"

    @property
    def short_id(self) -> str:
        """``JOB/N``: how messages name it."""
        return f"{self.job.short_id}/{self.n}"

    def result(self) -> ExecResult | None:
        """How it ended, or None while it runs."""
        return read_result(self.dir)

    def wait(self, timeout: float | None = None) -> ExecResult:
        """Until it has ended; TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        late = f"exec {self.n} still running after {timeout}s"
        return self._hub.wait_until(str(self.dir), self.result, deadline, late)

    async def wait_async(self, timeout: float | None = None) -> ExecResult:
        """Like :meth:`wait`, without blocking the event loop."""
        async with asyncio.timeout(timeout):
            return await self._hub.until_async(str(self.dir), self.result)

    def _end_recorded(self) -> bool:
        return self.result() is not None

    def output(self, follow: bool = True, streams: Stream = Stream.BOTH) -> Iterator[Chunk]:
        """Its output from the first byte, until it ends (``follow``) or as it is now."""
        yield from chunks(self.follower(streams), follow, READ_SIZE)

    async def output_async(
        self, follow: bool = True, streams: Stream = Stream.BOTH
    ) -> AsyncIterator[Chunk]:
        """Like :meth:`output`, for asyncio."""
        view = self.follower(streams, 0, asyncio.get_running_loop())
        async for chunk in chunks_async(view, follow, READ_SIZE):
            yield chunk


class Execs:
    """The engine's part: prepares each exec, has the launcher start it, and notes when an
    exec supervisor dies without writing its end (then it writes it: lost)."""

    def __init__(self, launcher: LauncherClient | None, hub: Hub, output_cap: int) -> None:
        self.launcher, self._hub, self._cap = launcher, hub, output_cap
        self._pidfds: dict[int, Exec] = {}  # exec supervisors being watched
        self._live: collections.Counter[str] = collections.Counter()  # starting or running
        self._lock = threading.Lock()

    def start(
        self,
        job: Job,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        io: Stdio | None = None,
    ) -> Exec:
        return drive(self._flow(job, argv, env, cwd, io))

    async def start_async(
        self,
        job: Job,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        io: Stdio | None = None,
    ) -> Exec:
        return await drive_async(self._flow(job, argv, env, cwd, io))

    def of(self, job: Job) -> list[Exec]:
        """The job's execs, oldest first, those an earlier engine started too (their output
        and end are in their directories; pid and start time are not kept)."""
        try:
            names = [n for n in os.listdir(job.dir / EXECS_DIR) if n.isdigit()]
        except FileNotFoundError:
            return []
        return [Exec(job, n, self._hub) for n in sorted(map(int, names))]

    def _flow(
        self,
        job: Job,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        io: Stdio | None,
    ) -> Flow[Exec]:
        if io is not None and io.rows | io.cols:
            check_window_size((io.rows, io.cols))
        JobSpec(argv=list(argv), env=dict(env), cwd=cwd or "/").validate()
        _check_running(job)
        n, sock = yield blocking(lambda: self._prepare_and_send(job, argv, env, cwd, io))
        reply = yield Step(
            lambda: LauncherClient.receive(sock), lambda: LauncherClient.receive_async(sock)
        )
        return self._finish(job, n, reply)

    def _prepare_and_send(
        self,
        job: Job,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        io: Stdio | None,
    ) -> tuple[int, socket.socket]:
        with job._lock:
            if job._init_pidfd < 0:
                raise JobFinished(f"job {job.short_id} is not running")
            init = os.dup(job._init_pidfd)
        try:
            self._take(job)
            try:
                n, xdir = _make_dir(job, argv, env, cwd, io is not None and io.tty)
                request = encode_exec_request(ExecRequest(str(xdir), self._cap, io))
                if self.launcher is None:
                    raise JobFinished(f"job {job.short_id} is not running")
                return n, self.launcher.send(request, [init])
            except BaseException:
                self._give(job.id)
                raise
        finally:
            os.close(init)

    def _take(self, job: Job) -> None:
        """A place among the job's live execs, or ExecLimit."""
        with self._lock:
            live = self._live[job.id]
            if live >= MAX_LIVE:  # those whose end is written run no more (their supervisor
                # may not have exited yet)
                live -= sum(
                    ex.job.id == job.id and (ex.dir / END_FILE).exists()
                    for ex in self._pidfds.values()
                )
            if live >= MAX_LIVE:
                raise ExecLimit(
                    f"{MAX_LIVE} execs are running in job {job.short_id}, the most it may have "
                    "at once; wait for one to end"
                )
            self._live[job.id] += 1

    def _give(self, job_id: str) -> None:
        with self._lock:
            self._live[job_id] -= 1
            if self._live[job_id] <= 0:
                del self._live[job_id]

    def _finish(self, job: Job, n: int, reply: Reply) -> Exec:
        """The exec supervisor's answer: the command runs (watched till its end), it could
        not start (its end-report says why), or no answer came in time (it may yet start)."""
        if reply.pending is not None:
            reply.pending.close()
            self._give(job.id)
            return Exec(job, n, self._hub)
        try:
            answer = decode_start_reply(reply.msg) if reply.msg else None
        except ProtocolError:
            answer = None
        if answer is None or not answer.ok or len(reply.fds) != 1:
            self._give(job.id)
            for fd in reply.fds:
                os.close(fd)
            ex = Exec(job, n, self._hub)
            if ex.result() is None:
                _write_lost(ex)  # nobody will: the launcher or the zygote died
            elif _job_gone(job):
                raise JobFinished(f"job {job.short_id} has ended")
            return ex
        ex = Exec(job, n, self._hub, answer.pid, answer.started_at)
        self._watch(ex, reply.fds[0])
        return ex

    def _watch(self, ex: Exec, pidfd: int) -> None:
        with self._lock:
            self._pidfds[pidfd] = ex

        def exited() -> None:
            with self._lock:
                if self._pidfds.pop(pidfd, None) is None:
                    return  # closed with the engine
                os.close(pidfd)
            self._give(ex.job.id)
            if ex.result() is None:
                _write_lost(ex)

        self._hub.on_exit(pidfd, exited)

    def close(self) -> None:
        """The engine closes: stop watching (the exec supervisors run on)."""
        with self._lock:
            for fd in self._pidfds:
                self._hub.forget(fd)
                os.close(fd)
            self._pidfds.clear()
            self._live.clear()


def _check_running(job: Job) -> None:
    if job.queued:
        raise JobFinished(
            f"job {job.short_id} is queued: it has not started, exec needs it running"
        )
    if job._final_status() is not None:
        raise JobFinished(f"job {job.short_id} has ended: exec needs it running")


def _job_gone(job: Job) -> bool:
    """Whether the job's init has exited (an exec failing then failed because of that)."""
    with job._lock:
        return job._init_pidfd < 0 or readable(job._init_pidfd)


def _make_dir(
    job: Job, argv: Sequence[str], env: Mapping[str, str], cwd: str | None, tty: bool
) -> tuple[int, Path]:
    """``execs/N`` (the next free N) with its exec.bin: the job's own, as its command got it
    (user, cgroup, rlimits), with this argv, the job's environment updated by ``env``, and
    ``cwd`` (default the job's)."""
    base = decode_exec((job.dir / EXEC_FILE).read_bytes())
    merged = dict(e.partition(b"=")[::2] for e in base.env)
    if tty:
        merged.setdefault(b"TERM", b"xterm")  # as docker exec -t; the CLI passes its own
    merged.update({os.fsencode(k): os.fsencode(v) for k, v in env.items()})
    blob = encode_exec(
        dataclasses.replace(
            base,
            cwd=os.fsencode(cwd) if cwd else base.cwd,
            argv=tuple(os.fsencode(a) for a in argv),
            env=tuple(k + b"=" + v for k, v in merged.items()),
            scratch=0,  # the job's scratch and volumes are mounted already
            volumes=(),
        )
    )
    execs = job.dir / EXECS_DIR
    execs.mkdir(mode=0o700, exist_ok=True)
    for _ in range(100):
        taken = [int(name) for name in os.listdir(execs) if name.isdigit()]
        n = max(taken, default=0) + 1
        try:
            (execs / str(n)).mkdir(mode=0o700)
        except FileExistsError:
            continue  # another exec took it first
        create_file(execs / str(n) / EXEC_FILE, blob)
        return n, execs / str(n)
    raise TjobError(f"cannot number an exec in {execs}")


def _write_lost(ex: Exec) -> None:
    """The end of an exec whose supervisor vanished (or never answered): lost."""
    report = encode_end_report(Exited(-1, ex.pid, ex.started_at or 0.0, None))
    tmp = ex.dir / (END_FILE + TMP_SUFFIX)
    with contextlib.suppress(OSError):
        tmp.write_bytes(report)
        os.rename(tmp, ex.dir / END_FILE)
