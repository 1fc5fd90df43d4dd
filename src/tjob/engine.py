"""The library face: an Engine starts jobs, a Job reports, stops, waits and streams output.

The engine itself never forks: a fork server (tjob.spawner) started once per engine starts
the jobs, each under a supervisor process (tjob-shim) that outlives the engine. What the engine
knows of a job it reads back from the job's directory (``state_dir/jobs/<id>``) — the status
file recorded at the end and the framed output log — waking on inotify and pidfds through one
shared watcher thread, so any number of sync or async readers cost no thread each.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pwd
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import cgroups, jail
from .devices import check_block_device, device_of
from .errors import (
    AmbiguousJobId,
    CgroupError,
    EngineClosed,
    InvalidSpec,
    JobNotFound,
    JobRunning,
    SpawnError,
    TjobError,
)
from .jobdir import (
    EXEC_FILE,
    LOG_FILE,
    RUN_FILE,
    SPEC_FILE,
    STATUS_FILE,
    STOP_FILE,
    create_file,
    exec_blob,
    write_json,
)
from .logstore import READ_SIZE, Chunk, LogReader
from .spec import DEFAULT_LIMITS, MIB, JobSpec, Limits
from .status import JobState, JobStatus, Stream, Usage
from .store import Store
from .watch import Hub

__all__ = ["Chunk", "Engine", "Follower", "Job"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT = 30.0  # guards against a hung fork server, never reached in normal operation
KILL_TIMEOUT = 30.0


def _readable(fd: int) -> bool:
    """True once the process behind a pidfd has exited (no waiting). poll, not select:
    a server with many connections has descriptors above select's 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class Job:
    """One job. Obtain from :meth:`Engine.start` or :meth:`Engine.get`; never build directly."""

    def __init__(
        self, engine: Engine, job_id: str, spec: JobSpec, created_at: float, limits: dict[str, Any]
    ) -> None:
        self._engine = engine
        self.id = job_id
        self.spec = spec
        self.created_at = created_at
        self.limits = limits
        self.dir = engine.jobs_dir / job_id
        self.pid: int | None = None
        self.started_at: float | None = None
        self._final: JobStatus | None = None
        self._sup_pidfd = -1
        self._init_pidfd = -1
        self._lock = threading.RLock()  # _final_status may mark lost, which kills

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def owner(self) -> str:
        return self.spec.owner

    def __repr__(self) -> str:
        return f"<tjob.Job {self.short_id} {list(self.spec.argv)!r}>"

    # ---------------------------------------------------------------- status

    def _attach(self, pid: int | None, started_at: float, sup_pidfd: int, init_pidfd: int) -> None:
        self.pid, self.started_at = pid, started_at
        self._sup_pidfd, self._init_pidfd = sup_pidfd, init_pidfd

    def _release(self) -> None:
        for fd in (self._sup_pidfd, self._init_pidfd):
            if fd >= 0:
                os.close(fd)
        self._sup_pidfd = self._init_pidfd = -1

    def _final_status(self) -> JobStatus | None:
        """The recorded end of the job, if any; marks it lost if its supervisor vanished."""
        with self._lock:
            if self._final is not None:
                return self._final
            st = self._read_status()
            if st is None and self._sup_pidfd >= 0 and _readable(self._sup_pidfd):
                st = self._read_status() or self._engine._mark_lost(self)
            if st is not None:
                self._final = st
                self._release()
                self._engine._store.finish(self.id, st.to_dict())
            return st

    def _read_status(self) -> JobStatus | None:
        try:
            data = json.loads((self.dir / STATUS_FILE).read_bytes())
        except FileNotFoundError:
            return None
        return JobStatus.from_dict(data)

    @property
    def running(self) -> bool:
        """Cheaper than ``status()`` when that is all one needs to know."""
        return self._final_status() is None

    def status(self, usage: bool = True) -> JobStatus:
        """Where the job is now; while it runs, with the cgroup's usage so far (reading it is
        a few files per job: listings of many jobs pass ``usage=False``)."""
        final = self._final_status()
        if final is not None:
            return final
        return JobStatus(
            id=self.id,
            state=JobState.RUNNING,
            argv=tuple(self.spec.argv),
            owner=self.owner,
            pid=self.pid,
            created_at=self.created_at,
            started_at=self.started_at,
            usage=self._engine._cg.usage(self.id) if usage else Usage(),
            limits=self.limits,
        )

    # ---------------------------------------------------------------- wait

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Block until the job has ended; raise TimeoutError after ``timeout`` seconds."""
        final = self._final_status()
        if final is not None:
            return final
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._engine._hub.subscribe(str(self.dir), self._sup_pidfd) as w:
            while True:
                w.clear()
                final = self._final_status()
                if final is not None:
                    return final
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"job {self.short_id} still running after {timeout}s")
                w.wait(left)

    async def wait_async(self, timeout: float | None = None) -> JobStatus:
        """Like :meth:`wait`, without blocking the event loop."""
        final = self._final_status()
        if final is not None:
            return final
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            with self._engine._hub.subscribe(str(self.dir), self._sup_pidfd, loop) as w:
                while True:
                    w.clear()
                    final = self._final_status()
                    if final is not None:
                        return final
                    await w.wait_async()

    # ---------------------------------------------------------------- stop

    def _begin_stop(self, grace: float) -> bool:
        """Mark the stop and, with a grace period, SIGTERM every process; False if over."""
        if grace < 0:
            raise InvalidSpec("grace must be >= 0")
        if self._final_status() is not None:
            return False
        (self.dir / STOP_FILE).touch()
        if grace > 0:
            with contextlib.suppress(CgroupError):
                self._engine._cg.signal(self.id, signal.SIGTERM)
        return True

    def _kill(self) -> None:
        """SIGKILL every process of the job."""
        cg = self._engine._cg
        with contextlib.suppress(CgroupError):
            cg.unthrottle(self.id)
        with self._lock:
            init = self._init_pidfd
            if init >= 0:
                # Killing the namespace's init makes the kernel kill everything in it and
                # refuse new processes there, so one pass over the cgroup leaves no one.
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(init, signal.SIGKILL)
        with contextlib.suppress(CgroupError):
            if init >= 0:
                cg.signal(self.id, signal.SIGKILL)
            else:
                cg.kill(self.id)  # v2 cgroup.kill; v1 freeze, kill each, thaw

    def stop(self, grace: float = 10.0) -> JobStatus:
        """SIGTERM every process, wait ``grace`` seconds, then SIGKILL all that is left.

        Safe to call on a finished job (returns its status) and more than once.
        """
        if not self._begin_stop(grace):
            return self.status()
        if grace > 0:
            with contextlib.suppress(TimeoutError):
                return self.wait(grace)
        self._kill()
        return self.wait(KILL_TIMEOUT)

    async def stop_async(self, grace: float = 10.0) -> JobStatus:
        """Like :meth:`stop`, without blocking the event loop."""
        if not self._begin_stop(grace):
            return self.status()
        if grace > 0:
            with contextlib.suppress(TimeoutError):
                return await self.wait_async(grace)
        self._kill()
        return await self.wait_async(KILL_TIMEOUT)

    # ---------------------------------------------------------------- output

    def output(
        self,
        follow: bool = True,
        streams: Stream = Stream.BOTH,
        skip: int = 0,
        read_size: int = READ_SIZE,
    ) -> Iterator[Chunk]:
        """The job's output from its first byte, as (stream, bytes) chunks in arrival order.

        With ``follow``, new output is yielded as it arrives and the iterator ends once the job
        has ended and everything is read; without, it ends at the current end. ``skip`` leaves
        out the first bytes of the selected streams (to resume after a disconnect);
        ``read_size`` bounds what one step reads (and so the memory a reader holds).
        """
        with self.follower(streams, skip) as f:
            while True:
                chunks = f.take(read_size)
                if chunks is None or (not chunks and not follow):
                    return
                yield from chunks
                if not chunks:
                    f.wait()

    async def output_async(
        self,
        follow: bool = True,
        streams: Stream = Stream.BOTH,
        skip: int = 0,
        read_size: int = READ_SIZE,
    ) -> AsyncIterator[Chunk]:
        """Like :meth:`output`, for asyncio; reads are from the page cache and never block."""
        with self.follower(streams, skip, asyncio.get_running_loop()) as f:
            while True:
                chunks = f.take(read_size)
                if chunks is None or (not chunks and not follow):
                    return
                for chunk in chunks:
                    yield chunk
                if not chunks:
                    await f.wait_async()

    def follower(
        self,
        streams: Stream = Stream.BOTH,
        skip: int = 0,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Follower:
        """A reader of this job's output paced by its caller: a server serving many readers
        decides how much each one takes and when (see :class:`Follower`)."""
        return Follower(self, streams, skip, loop)


class Follower:
    """One reader of a job's output, from byte 0 to the job's end.

    ``take(n)`` returns what is there now (never waits); ``wait()`` / ``wait_async()`` sleep
    until there may be more, on the engine's shared watcher (no polling). Use as a context
    manager; ``loop`` is needed for ``wait_async``.
    """

    def __init__(
        self, job: Job, streams: Stream, skip: int, loop: asyncio.AbstractEventLoop | None
    ) -> None:
        self._job = job
        self._stack = contextlib.ExitStack()
        self._reader = self._stack.enter_context(LogReader(str(job.dir / LOG_FILE), streams, skip))
        self._waiter = self._stack.enter_context(
            job._engine._hub.subscribe(str(job.dir), job._sup_pidfd, loop)
        )

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def take(self, size: int) -> list[Chunk] | None:
        """Up to ``size`` bytes of output now: [] if none yet, None once all is read."""
        r = self._reader
        r.read_size = size
        self._waiter.clear()  # before reading: a write after this read wakes the next wait
        finished = False
        while True:
            before = r.offset
            chunks = r.read()
            if chunks:
                return chunks
            if r.ended or (finished and r.offset == before):
                return None
            if r.offset == before:
                # Nothing new. Once its supervisor is done, all it wrote is in the file (a lost
                # job or a full disk leave no end frame): read once more, then it is over.
                finished = self._job._final_status() is not None
                if not finished:
                    return []

    def wait(self, timeout: float | None = None) -> None:
        """Until the job writes more, ends, or ``timeout`` passes."""
        self._waiter.wait(timeout)

    async def wait_async(self) -> None:
        await self._waiter.wait_async()


class _Prepared:
    __slots__ = ("created_at", "dir", "job_id", "limits", "request", "spec")

    def __init__(
        self,
        job_id: str,
        spec: JobSpec,
        jdir: Path,
        created_at: float,
        limits: dict[str, Any],
        request: dict[str, Any],
    ) -> None:
        self.job_id, self.spec, self.dir = job_id, spec, jdir
        self.created_at, self.limits = created_at, limits
        self.request = json.dumps(request).encode()  # for the fork server


class Engine:
    """Starts and tracks jobs. Needs root: it writes cgroups and creates namespaces.

    state_dir: where job records and output live (made mode 0700).
    cgroup_root: the cgroup filesystem; v2 when it is a unified hierarchy, else v1.
    cgroup_parent: the cgroup (in each hierarchy) that holds one child per job.
    defaults: limits for fields a job leaves unset.
    device: ``MAJ:MIN`` to throttle disk I/O on; default: the disk holding ``/``.

    One engine per state directory at a time (a lock file enforces it). Jobs keep running
    after :meth:`close`; a later engine on the same state directory finds them again.
    """

    def __init__(
        self,
        state_dir: str | Path = "/var/lib/tjob",
        *,
        cgroup_root: str | Path = "/sys/fs/cgroup",
        cgroup_parent: str = "tjob",
        defaults: Limits = DEFAULT_LIMITS,
        device: str | None = None,
        output_cap: int = 1 << 30,
        hide: Sequence[str] = (),
        seccomp: str | Path | None = jail.DEFAULT_PROFILE,
    ) -> None:
        self._closed = False
        if output_cap <= 0:
            raise InvalidSpec("output_cap must be positive")
        self.output_cap = output_cap
        self._fs: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._fs_lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._jobs_lock = threading.Lock()
        self.state_dir = Path(state_dir).absolute()
        self.jobs_dir = self.state_dir / "jobs"
        self.defaults = defaults.merged(DEFAULT_LIMITS).validate()
        if device is None:
            device = defaults.device
        dev = check_block_device(device) if device else device_of("/")
        self.device = f"{dev[0]}:{dev[1]}" if dev else None
        self._cg = cgroups.detect(Path(cgroup_root), cgroup_parent)
        # The jail (jail.py): checked once here, so that a bad profile or kernel fails now.
        self._jail = jail.settings([*jail.DEFAULT_HIDE, str(self.state_dir), *hide], seccomp)
        jail.check(self._jail)
        self._cg.setup()
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self.jobs_dir.mkdir(mode=0o700, exist_ok=True)
        self._lockfd = os.open(
            self.state_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lockfd)
            raise SpawnError(f"another tjob engine is using {self.state_dir}") from None
        self._store = Store(self.state_dir / "jobs.db")
        self._hub = Hub()
        self._load()
        self._start_forkserver()

    @property
    def cgroup_version(self) -> int:
        return self._cg.version

    # ---------------------------------------------------------------- fork server

    def _start_forkserver(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pkg_parent = str(Path(__file__).resolve().parent.parent)
        code = (
            f"import sys; sys.path.insert(0, {pkg_parent!r}); from tjob.spawner import main; main()"
        )
        conf = json.dumps(
            {
                "version": self._cg.version,
                "root": str(self._cg.root),
                "parent": self._cg.parent,
                "jail": self._jail,
            }
        )
        with open(self.state_dir / "spawner.log", "ab") as log:
            self._fs = subprocess.Popen(
                [sys.executable, "-I", "-c", code, str(theirs.fileno()), conf],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                cwd="/",
                # Jobs get explicit environments; keep the caller's out of every job's init.
                env={"PATH": DEFAULT_PATH},
            )
        theirs.close()
        self._ctl = ours

    def _send(self, prepared: _Prepared) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._fs_lock:
                if self._closed or self._ctl is None:
                    raise EngineClosed("the engine is closed")
                try:
                    socket.send_fds(self._ctl, [prepared.request], [theirs.fileno()])
                except OSError:
                    # The fork server died (killed by hand?): start another, once.
                    self._stop_forkserver()
                    self._start_forkserver()
                    assert self._ctl is not None
                    socket.send_fds(self._ctl, [prepared.request], [theirs.fileno()])
        except OSError as e:
            ours.close()
            raise SpawnError(f"cannot reach the fork server: {e.strerror}") from None
        finally:
            theirs.close()
        return ours

    def _stop_forkserver(self) -> None:
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        if self._fs is not None:
            try:
                self._fs.wait(5)
            except subprocess.TimeoutExpired:
                self._fs.kill()
                self._fs.wait()
            self._fs = None

    # ---------------------------------------------------------------- start

    def _prepare(self, spec: JobSpec) -> _Prepared:
        if self._closed:
            raise EngineClosed("the engine is closed")
        spec.validate()
        limits = spec.limits.merged(self.defaults).validate()
        dev = check_block_device(limits.device) if limits.device else None
        device = f"{dev[0]}:{dev[1]}" if dev else self.device
        uid, gid, home, name = _resolve_user(spec.user)
        job_id = secrets.token_hex(16)
        created_at = time.time()
        env = {"PATH": DEFAULT_PATH, "HOME": home, "HOSTNAME": job_id[:8]}
        if name:
            env["USER"] = env["LOGNAME"] = name
        env.update(spec.env)
        public = {
            "cpu_percent": limits.cpu_percent,
            "memory_mb": limits.memory_mb,
            "pids": limits.pids,
            "rbps": limits.rbps,
            "wbps": limits.wbps,
            "device": device,
        }
        # What the final status repeats of the request; the rest is in exec.bin for the init.
        req = {
            "id": job_id,
            "argv": list(spec.argv),
            "owner": spec.owner,
            "created_at": created_at,
            "limits_public": public,
        }
        self._store.add(
            job_id,
            spec.owner,
            created_at,
            {"argv": list(spec.argv), "cwd": spec.cwd, "user": spec.user, "limits": public},
        )
        jdir = self.jobs_dir / job_id
        jdir.mkdir(mode=0o700)
        procs = [os.path.relpath(p, self._cg.root) for p in self._cg.procs_files(job_id)]
        ids = (uid, gid) if uid is not None and gid is not None else None
        blob = exec_blob(
            job_id[:8],
            spec.cwd,
            ids,
            procs,
            spec.argv,
            env,
            (limits.memory_mb or 0) * MIB,
            jail.rlimits(self.output_cap),
        )
        create_file(jdir / EXEC_FILE, blob)
        create_file(jdir / SPEC_FILE, json.dumps(req).encode())
        major, _, minor = (device or "").partition(":")
        # The fork server makes the job's cgroup, the supervisor its log: the request stays
        # small (argv may be 256 KiB: it is in the files).
        request = {
            "dir": str(jdir),
            "cap": self.output_cap,
            "limits": [
                limits.cpu_percent,
                limits.memory_mb,
                limits.pids,
                limits.rbps,
                limits.wbps,
                [int(major), int(minor)] if device else None,
            ],
            "id": job_id,
        }
        return _Prepared(job_id, spec, jdir, created_at, public, request)

    def _finish(self, prepared: _Prepared, msg: bytes, fds: list[int]) -> Job:
        job = Job(self, prepared.job_id, prepared.spec, prepared.created_at, prepared.limits)
        reply: dict[str, Any]
        try:
            reply = json.loads(msg) if msg else {"ok": False, "error": "the supervisor died"}
        except ValueError:
            reply = {"ok": False, "error": "the supervisor sent a malformed reply"}
        if reply.get("ok") and len(fds) == 2:
            job._attach(reply.get("pid"), reply["started_at"], fds[0], fds[1])
        else:
            for fd in fds:
                os.close(fd)
            job._final_status()
            if job._final is None:
                job._final = self._mark_lost(job, reply.get("error", "start failed"))
        with self._jobs_lock:
            self._jobs[job.id] = job
        return job

    def start(self, spec: JobSpec) -> Job:
        """Start ``spec`` and return once the command has been exec'd (or failed to be).

        A command that cannot start gives a job in state ``failed`` with the reason in
        ``status().error``; invalid specs raise :class:`InvalidSpec` and create nothing.
        """
        prepared = self._prepare(spec)
        sock = self._send(prepared)
        with sock:
            sock.settimeout(START_TIMEOUT)
            try:
                msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, 2)
            except TimeoutError:
                msg, fds = b"", []
        return self._finish(prepared, msg, fds)

    async def start_async(self, spec: JobSpec) -> Job:
        """Like :meth:`start`, awaiting the supervisor's answer instead of blocking."""
        prepared = self._prepare(spec)
        sock = self._send(prepared)
        loop = asyncio.get_running_loop()
        with sock:
            sock.setblocking(False)
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(sock.fileno(), _resolve, ready)
            try:
                async with asyncio.timeout(START_TIMEOUT):
                    await ready
                msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, 2)
            except TimeoutError:
                msg, fds = b"", []
            finally:
                loop.remove_reader(sock.fileno())
        return self._finish(prepared, msg, fds)

    # ---------------------------------------------------------------- lookup

    def get(self, job_id: str) -> Job:
        """The job with this id, or the only one whose id starts with it."""
        with self._jobs_lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return job
            found = [j for i, j in self._jobs.items() if job_id and i.startswith(job_id)]
        if not found:
            raise JobNotFound(f"no job {job_id!r}")
        if len(found) > 1:
            raise AmbiguousJobId(f"job id prefix {job_id!r} matches {len(found)} jobs")
        return found[0]

    def jobs(self) -> list[Job]:
        """Every job this engine knows, newest first."""
        with self._jobs_lock:
            jobs = list(self._jobs.values())
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)

    # ---------------------------------------------------------------- records

    def _load(self) -> None:
        """Find the jobs of an earlier engine on this state dir (running ones included)."""
        for rec in self._store.records():
            spec = JobSpec(
                argv=tuple(rec.spec["argv"]),
                cwd=rec.spec["cwd"],
                user=rec.spec["user"],
                owner=rec.owner,
            )
            job = Job(self, rec.id, spec, rec.created_at, rec.spec["limits"])
            if rec.status is not None and not job.dir.exists():
                self._store.remove(rec.id)  # a removal cut short
                continue
            if rec.status is not None:
                job._final = JobStatus.from_dict(rec.status)
            elif job._final_status() is None:
                self._adopt(job)
            self._jobs[job.id] = job

    def _adopt(self, job: Job) -> None:
        try:
            run = json.loads((job.dir / RUN_FILE).read_bytes())
            sup = os.pidfd_open(run["supervisor_pid"])
        except (OSError, ValueError, KeyError):
            job._final = self._mark_lost(job)
            return
        if not _is_supervisor(run["supervisor_pid"]):
            os.close(sup)
            job._final = self._mark_lost(job)
            return
        job._attach(run.get("pid"), run["started_at"], sup, _child_pidfd(run, "init_pid"))

    def _mark_lost(
        self, job: Job, error: str = "its supervisor ended without recording an end"
    ) -> JobStatus:
        """Record a job nobody will report on; kill and remove whatever is left of it."""
        job._kill()
        with contextlib.suppress(CgroupError):
            self._cg.remove(job.id)
        st = JobStatus(
            id=job.id,
            state=JobState.LOST,
            argv=tuple(job.spec.argv),
            owner=job.owner,
            pid=job.pid,
            error=error,
            created_at=job.created_at,
            started_at=job.started_at,
            ended_at=time.time(),
            limits=job.limits,
        )
        try:
            job.dir.mkdir(mode=0o700, exist_ok=True)  # absent if we died right after recording
            write_json(job.dir / STATUS_FILE, st.to_dict())
        except OSError:
            pass  # a full disk: the next engine will find it lost again
        return st

    # ---------------------------------------------------------------- removal

    def remove(self, job_id: str) -> None:
        """Forget a finished job: its record, its output and its directory."""
        job = self.get(job_id)
        if not job.status().state.finished:
            raise JobRunning(f"job {job.short_id} is still running; stop it first")
        with self._jobs_lock:
            self._jobs.pop(job.id, None)
        # Files first: they are what fills a disk, and the record needs room to be deleted.
        shutil.rmtree(job.dir, ignore_errors=True)
        self._store.remove(job.id)

    def prune(self, older_than: float) -> list[str]:
        """Remove finished jobs that ended more than ``older_than`` seconds ago."""
        removed = []
        for job_id in self._store.ended_before(time.time() - older_than):
            with contextlib.suppress(JobNotFound, TjobError):
                self.remove(job_id)
                removed.append(job_id)
        return removed

    # ---------------------------------------------------------------- close

    def close(self, stop_jobs: bool = False, grace: float = 10.0) -> None:
        """Stop the fork server and release resources.

        Running jobs keep running (a later engine re-adopts them) unless ``stop_jobs``.
        """
        if self._closed:
            return
        if stop_jobs:
            running = [j for j in self.jobs() if not j.status().state.finished]
            for job in running:
                job._begin_stop(grace)
            for job in running:
                job.stop(grace)
        with self._fs_lock:
            self._closed = True
            self._stop_forkserver()
        self._hub.close()
        with self._jobs_lock:
            for job in self._jobs.values():
                job._release()
        self._store.close()
        os.close(self._lockfd)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolve_user(user: str | int | None) -> tuple[int | None, int | None, str, str]:
    """(uid, gid, home, name) of the account to run as; (None, None, ...) keeps ours."""
    if user is None:
        try:
            pw = pwd.getpwuid(os.getuid())
            return None, None, pw.pw_dir or "/", pw.pw_name
        except KeyError:
            return None, None, "/", ""
    try:
        pw = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    except KeyError:
        raise InvalidSpec(f"no such user: {user}") from None
    return pw.pw_uid, pw.pw_gid, pw.pw_dir if os.path.isdir(pw.pw_dir) else "/", pw.pw_name


def _child_pidfd(run: dict[str, Any], key: str) -> int:
    """A pidfd of the supervisor's child recorded under ``key``, or -1. A pid whose parent is
    the (live) supervisor cannot have been recycled: the supervisor has not reaped it."""
    try:
        fd = os.pidfd_open(run[key])
    except (OSError, KeyError):
        return -1
    try:
        with open(f"/proc/{run[key]}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        ppid = -1
    if ppid != run["supervisor_pid"]:
        os.close(fd)
        return -1
    return fd


def _is_supervisor(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"tjob.spawner" in f.read()
    except OSError:
        return False
