"""The preparation of a start: a spec checked against the engine's caps and defaults, its user
and volumes resolved, its store row and directory (exec.bin, spec.json, the reserve) written,
and the launcher's request built; then, while the launcher starts the job, the directory made
durable. Everything here blocks; the engine runs it off the loop.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import pwd
import secrets
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import jail
from . import volumes as tjob_volumes
from .cgroups.clients import job_cgroup
from .devices import check_block_device
from .errors import EngineClosed, InvalidSpec, NoSpace, TjobError
from .jobdir import (
    EXEC_FILE,
    SPEC_FILE,
    create_file,
    exec_blob,
    reserve,
    reserve_size,
    sync_dir,
    sync_file,
)
from .launcher_client import DEFAULT_PATH
from .protocol import Limits as ProtocolLimits
from .protocol import StartRequest, Stdio, encode_start_request
from .spec import MIB, JobSpec, Limits
from .status import JobFacts, ResolvedLimits
from .tenants import synthetic_name

if TYPE_CHECKING:
    from .blanks import Blanks
    from .cgroups import CgroupBackend
    from .job import Job
    from .names import Names
    from .store import Store
    from .tenants import Tenants
    from .volumes import Declared


class EngineState(Protocol):
    """What a start's preparation reads of the engine (:class:`tjob.engine.Engine` is one)."""

    _closed: bool
    caps: Limits | None
    defaults: Limits
    device: str | None
    volumes: dict[str, Declared]
    _hidden: list[str]
    _tenants: Tenants | None
    default_timeout: float | None
    output_cap: int
    durable: bool
    jobs_dir: Path
    _names: Names
    _blanks: Blanks
    _store: Store
    _cg: CgroupBackend


class Prepared:
    """A start made ready: the job's facts, its directory and the launcher's request."""

    __slots__ = ("dir", "facts", "request", "spec")

    def __init__(self, facts: JobFacts, spec: JobSpec, jdir: Path, request: StartRequest) -> None:
        self.facts, self.spec, self.dir = facts, spec, jdir
        self.request = encode_start_request(request)  # for the launcher


def check(engine: EngineState, spec: JobSpec) -> Limits:
    """The spec's limits merged with the defaults; InvalidSpec if anything is wrong."""
    if engine._closed:
        raise EngineClosed("the engine is closed")
    spec.validate()
    over = spec.limits.exceeding(engine.caps) if engine.caps is not None else []
    if over:
        raise InvalidSpec("; ".join(over))
    return spec.limits.merged(engine.defaults).validate()


def prepare(engine: EngineState, spec: JobSpec, queued: Job | None = None) -> Prepared:
    limits = check(engine, spec)
    dev = check_block_device(limits.device) if limits.device else None
    device = f"{dev[0]}:{dev[1]}" if dev else engine.device
    uid, gid, home, name = _user_of(engine, spec)
    asked = tjob_volumes.resolve(spec.volumes, engine.volumes, spec.owner, engine._hidden)
    ids = (uid, gid) if uid is not None and gid is not None else None
    mounts = tjob_volumes.exec_lines(asked, ids)  # the client's directories made here
    job_id = secrets.token_hex(16) if queued is None else queued.id
    created_at = time.time() if queued is None else queued.created_at
    env = {"PATH": DEFAULT_PATH, "HOME": home, "HOSTNAME": job_id[:8]}
    if name:
        env["USER"] = env["LOGNAME"] = name
    if spec.tty:
        env["TERM"] = "xterm"  # as docker run -t; the CLI passes the client's own
    env.update(spec.env)
    resolved = resolve_limits(limits, device)
    # What the final status repeats of the request; the rest is in exec.bin for the init.
    timeout = spec.timeout if spec.timeout is not None else engine.default_timeout
    facts = JobFacts(
        job_id, tuple(spec.argv), spec.owner, created_at, resolved,
        spec.name, dict(spec.labels), timeout, spec.request_id,
    )  # fmt: skip
    engine._names.take(spec.owner, spec.name, job_id)
    try:
        # A queued job's request id was recorded with its queue row.
        engine._store.add(
            facts, spec.cwd, spec.user, "" if queued else spec.request_id, synced=False
        )  # on the disk with make_durable, while the launcher starts it
    except BaseException:
        if queued is None:
            engine._names.release(spec.owner, spec.name, job_id)
        raise
    jdir = engine.jobs_dir / job_id
    cgroup = job_cgroup(spec.owner, job_id)
    procs = [os.path.relpath(p, engine._cg.root) for p in engine._cg.procs_files(cgroup)]
    # RLIMIT_NPROC counts a uid's processes host-wide: only a uid of one client's may
    # have it, set to the client's pids ceiling (a shared account would share it).
    nproc = engine._cg.clients.pids if engine._tenants and spec.user is None else None
    scratch = (limits.memory_mb or 0) * MIB  # each scratch tmpfs: up to the memory limit
    rlimits = jail.rlimits(engine.output_cap, nproc)
    blob = exec_blob(job_id[:8], spec.cwd, ids, procs, spec.argv, env, scratch, rlimits, mounts)
    try:
        _make_dir(engine._blanks, jdir, blob, facts)
    except OSError as e:
        # Not acknowledged: nothing of it may stay (no phantom job after a restart).
        shutil.rmtree(jdir, ignore_errors=True)
        engine._store.remove(job_id)
        where = f"{engine.jobs_dir}: {e.strerror}"
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(f"no room for the job's files in {where}") from None
        raise TjobError(f"cannot write the job's files in {where}") from None
    major, _, minor = (device or "").partition(":")
    # The launcher makes the job's cgroup, the supervisor its log: the request stays
    # small (argv may be 256 KiB: it is in the files).
    request = StartRequest(
        dir=str(jdir),
        cap=engine.output_cap,
        id=job_id,
        limits=ProtocolLimits.resolved(
            limits.cpu_percent,
            limits.memory_mb,
            limits.pids,
            limits.rbps,
            limits.wbps,
            device=(int(major), int(minor)) if device else None,
        ),
        cgroup=cgroup,
        stdio=Stdio(spec.stdin, spec.tty, *(spec.tty_size or (0, 0)))
        if spec.stdin or spec.tty
        else None,
    )
    return Prepared(facts, spec, jdir, request)


def _user_of(engine: EngineState, spec: JobSpec) -> tuple[int | None, int | None, str, str]:
    """(uid, gid, home, name) the job runs as: its owner's own uid, or ``spec.user``."""
    if spec.user is None and engine._tenants is not None:
        uid = engine._tenants.uid(spec.owner)
        return uid, uid, "/", synthetic_name(uid)
    return resolve_user(spec.user)


def _make_dir(blanks: Blanks, jdir: Path, exec_bin: bytes, facts: JobFacts) -> None:
    """The job's directory (a blank renamed, if one is ready): exec.bin, spec.json and the
    reserve for its end. Written, not yet durable: :func:`make_durable` does that while the
    launcher starts the job."""
    if blanks.take(jdir.name) is None:
        jdir.mkdir(mode=0o700)
    spec = json.dumps(facts.to_dict()).encode()
    create_file(jdir / EXEC_FILE, exec_bin)
    create_file(jdir / SPEC_FILE, spec)
    reserve(jdir, reserve_size(len(spec)))


def make_durable(prepared: Prepared, store: Store, jobs_dir: Path) -> str | None:
    """Put the job's store record, its spec.json and its name (the job's directory, in the
    jobs directory) on the disk; what failed, if anything (the job is then killed, the start
    refused). Done once the request is on its way, so that these waits on the disk overlap
    the launcher's and the supervisor's work instead of adding to it; the start is answered
    only after it (a power cut before then may lose the job, which was never acknowledged;
    a directory that outlives its record is indexed again at start-up)."""
    try:
        store.sync()
        sync_file(prepared.dir / SPEC_FILE)
        sync_dir(prepared.dir)
        sync_dir(jobs_dir)
    except OSError as e:
        where = f"{prepared.dir}: {e.strerror}"
        return f"cannot put the job's files on the disk in {where}; it was killed"
    return None


def resolve_limits(limits: Limits, device: str | None) -> ResolvedLimits:
    """``limits`` merged with the engine's defaults (which set every field but the device)."""
    values = dataclasses.asdict(limits)
    del values["device"]
    unset = [k for k, v in values.items() if v is None]
    if unset:
        raise InvalidSpec(f"no default for {', '.join(unset)}")
    return ResolvedLimits(**values, device=device)


@functools.cache
def _own_account() -> tuple[str, str]:
    """(home, name) of the engine's own account: looked up once, not at every start (NSS
    reads /etc/passwd each time)."""
    try:
        pw = pwd.getpwuid(os.getuid())
        return pw.pw_dir or "/", pw.pw_name
    except KeyError:
        return "/", ""


def resolve_user(user: str | int | None) -> tuple[int | None, int | None, str, str]:
    """(uid, gid, home, name) of the account to run as; (None, None, ...) keeps ours."""
    if user is None:
        return None, None, *_own_account()
    try:
        pw = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    except KeyError:
        raise InvalidSpec(f"no such user: {user}") from None
    return pw.pw_uid, pw.pw_gid, pw.pw_dir if os.path.isdir(pw.pw_dir) else "/", pw.pw_name
