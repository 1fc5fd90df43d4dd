"""cgroup v1: one hierarchy per controller, the same relative directory in each."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
from pathlib import Path

from ..errors import CgroupError
from ..spec import MIB
from ..status import ResolvedLimits, Usage
from .base import (
    SPARE_PREFIX,
    CgroupBackend,
    read_int,
    read_keyed,
    read_text,
    wait_exited,
    write,
)

CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids", "freezer")
CFS_PERIOD_US = 100_000
# The jail's minimal /dev (shim/jail_mounts.c), as a devices-cgroup allowlist: null, zero,
# full, random, urandom, tty, ptmx and the job's own ptys. Used where the devices controller
# is mounted: the jail alone already keeps other nodes out of a job's reach (no CAP_MKNOD, no
# mount), this also stops a node reached some other way. Set once on the parent, whose new
# children copy it; on each job where the parent cannot take it (it holds older jobs).
DEVICES = ("c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
           "c 5:2 rwm", "c 136:* rwm")  # fmt: skip


class CgroupV1(CgroupBackend):
    version = 1

    def _init_state(self) -> None:
        self._hier: dict[str, Path] = {}
        self._hiers: list[Path] = []  # distinct hierarchies, found once (starts are hot)
        self._base: dict[str, str] = {}  # the parent's directory, by controller
        self._bases: list[str] = []  # and in each of _hiers
        self._memsw = False
        self._devices_per_job = False  # the parent could not take the allowlist
        self._spare: tuple[str, ResolvedLimits] | None = None  # name, the limits in it

    def _dir(self, controller: str, job_id: str | None = None) -> Path:
        base = self._hier[controller] / self.parent
        return base / job_id if job_id else base

    def _file(self, controller: str, name: str, file: str) -> str:
        # A string, not a Path: a start and an end make about fifty of these.
        return f"{self._base[controller]}/{name}/{file}"

    def setup(self) -> None:
        for c in CONTROLLERS:
            path = self.root / c
            if not (path / "cgroup.procs").exists():
                raise CgroupError(f"cgroup v1 controller {c!r} is not mounted at {path}")
            self._hier[c] = path
        # cpu and cpuacct are often one hierarchy (cpu,cpuacct) reached by two symlinks.
        seen: dict[Path, Path] = {}
        for c in CONTROLLERS:
            seen.setdefault(self._hier[c].resolve(), self._hier[c])
        if (self.root / "devices" / "devices.deny").exists():  # optional: the jail's allowlist
            self._hier["devices"] = self.root / "devices"
            seen.setdefault(self._hier["devices"].resolve(), self._hier["devices"])
        self._hiers = list(seen.values())
        self._base = {c: f"{h}/{self.parent}" for c, h in self._hier.items()}
        self._bases = [f"{h}/{self.parent}" for h in self._hiers]
        self._memsw = (self._hier["memory"] / "memory.memsw.limit_in_bytes").exists()
        for hier in self._hiers:
            try:
                (hier / self.parent).mkdir(exist_ok=True)
            except OSError as e:
                raise CgroupError(f"cannot create {hier / self.parent}: {e.strerror}") from None
        if "devices" in self._hier:
            self._devices_per_job = not self._allow_devices(self._dir("devices"))

    @staticmethod
    def _allow_devices(d: Path) -> bool:
        """The allowlist on ``d``, which its new children copy; False if it cannot take it
        (it has children already: jobs of an engine from before the allowlist)."""
        try:
            if (d / "devices.list").read_text().splitlines() == list(DEVICES):
                return True
            write(d / "devices.deny", "a")
            for rule in DEVICES:
                write(d / "devices.allow", rule)
        except (OSError, CgroupError):
            return False
        return True

    def _top(self) -> Path:
        return self.root / "pids" / self.parent

    def _sweep_spares(self, client: str) -> None:
        """Remove the spares of launchers that are gone (killed: a clean exit removes its)."""
        with contextlib.suppress(OSError):
            for d in (self._top() / client).iterdir():
                pid = d.name.removeprefix(SPARE_PREFIX)
                if d.name.startswith(SPARE_PREFIX) and pid.isdigit() and not _alive(int(pid)):
                    self._rmdirs(f"{client}/{d.name}")

    def _make_client(self, client: str) -> None:
        try:
            for hier in self._hiers:
                (hier / self.parent / client).mkdir(exist_ok=True)
        except OSError as e:
            raise CgroupError(f"cannot create client cgroup {client}: {e.strerror}") from None
        self._sweep_spares(client)
        lim = self.clients
        # Every value is written, unset ones as "no ceiling": the flags may have changed since.
        # cpu.shares is the kernel's default, equal for every client: the CPU is shared
        # between clients first.
        cpu = self._dir("cpu", client)
        write(cpu / "cpu.shares", "1024")
        quota = -1 if lim.cpu_percent is None else lim.cpu_percent * CFS_PERIOD_US // 100
        write(cpu / "cpu.cfs_quota_us", str(quota))
        mem = self._dir("memory", client)
        nbytes = -1 if lim.memory_mb is None else lim.memory_mb * MIB
        order = [mem / "memory.limit_in_bytes"]
        if self._memsw:
            # memory+swap must stay >= memory: raised before it, lowered after it.
            raising = nbytes < 0 or nbytes > (read_int(order[0]) or 0)
            order.insert(0 if raising else 1, mem / "memory.memsw.limit_in_bytes")
        for path in order:
            write(path, str(nbytes))
        write(self._dir("pids", client) / "pids.max", str(lim.pids or "max"))

    def create(self, job_id: str, limits: ResolvedLimits) -> None:
        self._client_ready(job_id)
        had = self._take_spare(job_id)
        try:
            if had is None:
                self._mkdirs(job_id)
            self._limit(job_id, limits, had)
        except OSError as e:
            self._rmdirs(job_id)
            raise CgroupError(f"cannot create cgroup for job {job_id}: {e.strerror}") from None
        except CgroupError:
            self._rmdirs(job_id)
            raise

    def make_spare(self, like: str, limits: ResolvedLimits) -> None:
        """A job cgroup made ahead, beside job cgroup ``like`` (in its client's), with
        ``limits`` written but a device's: the next :meth:`create` there renames it, instead
        of a mkdir in each of the seven hierarchies and the limits' writes (0.7 to 1.2 ms of
        each start here). v1 only: cgroup v2 cannot rename."""
        client, sep, _ = like.rpartition("/")
        name = f"{client}{sep}{SPARE_PREFIX}{os.getpid()}"
        limits = dataclasses.replace(limits, device=None)
        if self._spare == (name, limits):
            return
        self.drop_spare()
        try:
            self._mkdirs(name)
            self._limit(name, limits, None)
        except (OSError, CgroupError):
            self._rmdirs(name)
            return
        self._spare = (name, limits)

    def drop_spare(self) -> None:
        if self._spare is not None:
            self._rmdirs(self._spare[0])
            self._spare = None

    def _take_spare(self, job_id: str) -> ResolvedLimits | None:
        """The spare, renamed to ``job_id`` if it is in the same client cgroup: the limits
        written in it (None: there is no cgroup of that name yet)."""
        spare = self._spare
        if spare is None or spare[0].rpartition("/")[0] != job_id.rpartition("/")[0]:
            return None  # another client's is kept: replaced by the next make_spare
        self._spare = None
        name, limits = spare
        try:
            for base in self._bases:
                os.rename(f"{base}/{name}", f"{base}/{job_id}")
        except OSError:  # removed meanwhile (an engine sharing the parent swept it?)
            self._rmdirs(name)
            self._rmdirs(job_id)
            return None
        return limits

    def _mkdirs(self, name: str) -> None:
        for base in self._bases:
            os.mkdir(f"{base}/{name}")

    def _rmdirs(self, name: str) -> None:
        for base in reversed(self._bases):
            with contextlib.suppress(OSError):
                os.rmdir(f"{base}/{name}")

    def _limit(self, name: str, limits: ResolvedLimits, had: ResolvedLimits | None) -> None:
        """Write ``limits`` into cgroup ``name``: all of them into a new one (``had`` None),
        else those that differ from ``had``."""
        # A new cgroup's period is the kernel's default, CFS_PERIOD_US: only the quota.
        # v1 refuses a child quota above its parent's: a job gets at most its client's.
        quota = self._quota(limits)
        if had is None or quota != self._quota(had):
            write(self._file("cpu", name, "cpu.cfs_quota_us"), str(quota))
        nbytes = limits.memory_mb * MIB
        if had is None or nbytes != had.memory_mb * MIB:
            order = [self._file("memory", name, "memory.limit_in_bytes")]
            if self._memsw:
                # memory+swap must stay >= memory: raised before it, lowered after it (a new
                # cgroup is unlimited: memory first).
                raising = had is not None and nbytes > had.memory_mb * MIB
                order.insert(
                    0 if raising else 1, self._file("memory", name, "memory.memsw.limit_in_bytes")
                )
            for path in order:
                write(path, str(nbytes))
        if had is None or limits.pids != had.pids:
            write(self._file("pids", name, "pids.max"), str(limits.pids))
        if (
            had is None
            and self._devices_per_job
            and not self._allow_devices(self._dir("devices", name))
        ):
            raise CgroupError(f"cannot restrict the devices of cgroup {name}")
        if limits.device is not None:
            dev = limits.device
            write(
                self._file("blkio", name, "blkio.throttle.read_bps_device"), f"{dev} {limits.rbps}"
            )
            write(
                self._file("blkio", name, "blkio.throttle.write_bps_device"), f"{dev} {limits.wbps}"
            )

    def _quota(self, limits: ResolvedLimits) -> int:
        percent = min(limits.cpu_percent, self.clients.cpu_percent or limits.cpu_percent)
        return percent * CFS_PERIOD_US // 100

    def procs_files(self, job_id: str) -> list[str]:
        # "tasks", not "cgroup.procs": moving one thread skips the global threadgroup rwsem,
        # whose RCU grace period costs ~10 ms per job. The caller is single-threaded.
        return [f"{base}/{job_id}/tasks" for base in self._bases]

    def pids(self, job_id: str) -> list[int]:
        try:
            text = read_text(self._file("pids", job_id, "cgroup.procs"))
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def usage(self, job_id: str) -> Usage:
        cpu_ns = read_int(self._file("cpuacct", job_id, "cpuacct.usage"))
        read = written = 0
        seen_io = False
        try:
            lines = read_text(self._file("blkio", job_id, "blkio.throttle.io_service_bytes"))
        except OSError:
            lines = ""
        for line in lines.splitlines():
            parts = line.split()
            if len(parts) == 3:
                seen_io = True
                if parts[1] == "Read":
                    read += int(parts[2])
                elif parts[1] == "Write":
                    written += int(parts[2])
        return Usage(
            cpu_seconds=None if cpu_ns is None else cpu_ns / 1e9,
            memory_peak_bytes=read_int(self._file("memory", job_id, "memory.max_usage_in_bytes")),
            memory_current_bytes=read_int(self._file("memory", job_id, "memory.usage_in_bytes")),
            pids_current=read_int(self._file("pids", job_id, "pids.current")),
            io_read_bytes=read if seen_io or lines else 0,
            io_write_bytes=written if seen_io or lines else 0,
        )

    def oom_kills(self, job_id: str) -> int:
        return read_keyed(self._file("memory", job_id, "memory.oom_control")).get("oom_kill", 0)

    def unthrottle(self, job_id: str) -> None:
        write(self._dir("cpu", job_id) / "cpu.cfs_quota_us", "-1")

    def kill(self, job_id: str) -> None:
        # v1 has no cgroup.kill: freeze so nothing can fork or exit while we read the member
        # list, SIGKILL each (the kill lands on thaw), then thaw.
        state = self._dir("freezer", job_id) / "freezer.state"
        if not state.exists():
            return
        write(state, "FROZEN")
        try:
            # The v1 freezer has no completion event; FREEZING turns FROZEN within microseconds
            # unless a task sits in an uninterruptible sleep, so a bounded re-read suffices.
            for _ in range(1000):
                if read_text(state).strip() == "FROZEN":
                    break
                os.sched_yield()
            self.signal(job_id, signal.SIGKILL)
        finally:
            write(state, "THAWED")

    def remove(self, job_id: str) -> None:
        if not self._hier:
            return
        wait_exited(self.pids(job_id))
        for base in self._bases:
            d = f"{base}/{job_id}"
            for attempt in range(2):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or attempt:
                        raise CgroupError(f"cannot remove cgroup {d}: {e.strerror}") from None
                    wait_exited(self.pids(job_id))

    def left(self, job_id: str) -> bool:
        # remove() takes the hierarchies in order: the last one goes last.
        return bool(self._bases) and os.path.isdir(f"{self._bases[-1]}/{job_id}")

    def job_ids(self) -> list[str]:
        if not self._hier:
            return []
        found: set[str] = set()
        for hier in self._hiers:
            found |= self._listed(hier / self.parent)
        return sorted(found)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
