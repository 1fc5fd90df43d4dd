"""cgroup v2: one unified tree; a job is one directory holding every controller's files.

The kernel makes a cgroup's interface files itself, on ``mkdir``, for each controller its parent
enables in ``cgroup.subtree_control``. This backend therefore never creates a file: a missing one
means its controller is not enabled, and is reported as that.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import time
from pathlib import Path

from ..errors import CgroupError
from ..spec import MIB
from ..status import ResolvedLimits, Usage
from .base import CgroupBackend, read_int, read_keyed, read_text, wait_exited, write

REQUIRED = ("cpu", "memory", "pids")
CPU_PERIOD_US = 100_000


class CgroupV2(CgroupBackend):
    version = 2
    # How long kill() waits for a freeze to complete on kernels without cgroup.kill (< 5.14).
    freeze_timeout = 1.0

    def _init_state(self) -> None:
        # Set by setup(): without the io controller, disk limits cannot apply.
        self.io_available = False

    def _dir(self, job_id: str) -> Path:
        return self.root / self.parent / job_id

    def setup(self) -> None:
        listing = self.root / "cgroup.controllers"
        try:
            available = set(listing.read_text().split())
        except OSError as e:
            raise CgroupError(
                f"no cgroup v2 filesystem at {self.root} (cannot read {listing}: {e.strerror})"
            ) from None
        missing = [c for c in REQUIRED if c not in available]
        if missing:
            raise CgroupError(
                f"cgroup v2 controller(s) {' '.join(missing)} not available at {self.root} "
                f"(it offers: {' '.join(sorted(available)) or 'none'}); they may be bound to "
                "cgroup v1, or not delegated to this service (systemd: Delegate=yes)"
            )
        self.io_available = "io" in available
        wanted = [*REQUIRED, "io"] if self.io_available else list(REQUIRED)
        # Each level down to the parent must pass the controllers on, the parent itself included:
        # its children, the jobs, are where the limit files appear.
        level = self.root
        _enable(level, wanted)
        for part in Path(self.parent).parts:
            level = level / part
            try:
                level.mkdir(exist_ok=True)
            except OSError as e:
                raise CgroupError(f"cannot create cgroup {level}: {e.strerror}") from None
            _enable(level, wanted)

    def _top(self) -> Path:
        return self.root / self.parent

    def _make_client(self, client: str) -> None:
        d = self._dir(client)
        try:
            d.mkdir(exist_ok=True)
        except OSError as e:
            raise CgroupError(f"cannot create cgroup {d}: {e.strerror}") from None
        _enable(d, [*REQUIRED, "io"] if self.io_available else list(REQUIRED))
        lim = self.clients
        # Every value is written, unset ones as "max": the flags may have changed since. The
        # default weight, equal for every client: the CPU is shared between clients first.
        _set(d / "cpu.weight", "100")
        quota = "max" if lim.cpu_percent is None else str(lim.cpu_percent * CPU_PERIOD_US // 100)
        _set(d / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        _set(d / "memory.max", "max" if lim.memory_mb is None else str(lim.memory_mb * MIB))
        if (d / "memory.swap.max").exists():
            _set(d / "memory.swap.max", "max" if lim.memory_mb is None else "0")
        _set(d / "pids.max", str(lim.pids or "max"))

    def create(self, job_id: str, limits: ResolvedLimits) -> None:
        self._client_ready(job_id)
        d = self._dir(job_id)
        try:
            d.mkdir()
        except OSError as e:
            raise CgroupError(f"cannot create cgroup {d}: {e.strerror}") from None
        try:
            quota = limits.cpu_percent * CPU_PERIOD_US // 100
            _set(d / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            _set(d / "memory.max", str(limits.memory_mb * MIB))
            # Absent when the kernel does no swap accounting; where present, 0 stops the job
            # from swapping its way past memory.max.
            if (d / "memory.swap.max").exists():
                _set(d / "memory.swap.max", "0")
            _set(d / "pids.max", str(limits.pids))
            if limits.device is not None and self.io_available:
                _set(d / "io.max", f"{limits.device} rbps={limits.rbps} wbps={limits.wbps}")
        except CgroupError:
            # The original error is the one worth reporting; a fresh empty cgroup always goes.
            with contextlib.suppress(OSError):
                os.rmdir(d)
            raise

    def procs_files(self, job_id: str) -> list[str]:
        return [str(self._dir(job_id) / "cgroup.procs")]

    def pids(self, job_id: str) -> list[int]:
        try:
            text = read_text(self._dir(job_id) / "cgroup.procs")
        except OSError:
            return []
        # The kernel may list a pid twice (moved out and back while it was being read).
        return list(dict.fromkeys(int(p) for p in text.split()))

    def usage(self, job_id: str) -> Usage:
        d = self._dir(job_id)
        usec = read_keyed(d / "cpu.stat").get("usage_usec")
        io_read, io_write = _io_bytes(d / "io.stat")
        return Usage(
            cpu_seconds=None if usec is None else usec / 1e6,
            memory_peak_bytes=read_int(d / "memory.peak"),  # absent before kernel 5.19
            memory_current_bytes=read_int(d / "memory.current"),
            pids_current=read_int(d / "pids.current"),
            io_read_bytes=io_read,
            io_write_bytes=io_write,
        )

    def oom_kills(self, job_id: str) -> int:
        return read_keyed(self._dir(job_id) / "memory.events").get("oom_kill", 0)

    def unthrottle(self, job_id: str) -> None:
        write(self._dir(job_id) / "cpu.max", f"max {CPU_PERIOD_US}")

    def kill(self, job_id: str) -> None:
        d = self._dir(job_id)
        if (d / "cgroup.kill").exists():
            # Kernel 5.14+: one write kills the whole subtree, forks racing with it included.
            write(d / "cgroup.kill", "1")
        elif (d / "cgroup.freeze").exists():
            self._freeze_and_kill(job_id)
        else:
            # Before 5.2 v2 has no freezer: kill what is listed, racing with any fork.
            self.signal(job_id, signal.SIGKILL)

    def _freeze_and_kill(self, job_id: str) -> None:
        # Once frozen nothing forks while we read the member list; a frozen process still dies
        # of SIGKILL at once (unlike the v1 freezer, where the kill lands on thaw).
        d = self._dir(job_id)
        write(d / "cgroup.freeze", "1")
        try:
            _wait_frozen(d / "cgroup.events", self.freeze_timeout)
            self.signal(job_id, signal.SIGKILL)
        finally:
            write(d / "cgroup.freeze", "0")

    def remove(self, job_id: str) -> None:
        d = self._dir(job_id)
        for attempt in (1, 2):
            wait_exited(self.pids(job_id))
            try:
                os.rmdir(d)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY or attempt == 2:
                    members = self.pids(job_id)
                    held = f" (processes {members} are still in it)" if members else ""
                    raise CgroupError(f"cannot remove cgroup {d}: {e.strerror}{held}") from None

    def left(self, job_id: str) -> bool:
        return self._dir(job_id).is_dir()

    def job_ids(self) -> list[str]:
        return sorted(self._listed(self.root / self.parent))


def _enable(cgroup: Path, controllers: list[str]) -> None:
    """Have ``cgroup`` pass ``controllers`` to its children, unless it already does.

    Nothing is written when nothing is missing: a delegated subtree's top may not be ours to
    write. Otherwise the whole set is written; the kernel skips those already enabled.
    """
    control = cgroup / "cgroup.subtree_control"
    try:
        enabled = set(control.read_text().split())
    except OSError:
        enabled = set()
    if enabled.issuperset(controllers):
        return
    try:
        write(control, " ".join(f"+{c}" for c in controllers))
    except CgroupError as e:
        raise CgroupError(
            f"{e}; a cgroup that holds processes cannot enable controllers for its children: "
            "run tjob from a leaf cgroup, or give it a delegated subtree of its own"
        ) from None


def _set(path: Path, value: str) -> None:
    """Write an interface file the kernel must have made (``open(..., "w")`` would create one)."""
    if not path.exists():
        controller = path.name.partition(".")[0]
        raise CgroupError(
            f"{path} is missing: the {controller} controller is not enabled in "
            f"{path.parent.parent / 'cgroup.subtree_control'}"
        )
    write(path, value)


def _io_bytes(path: Path) -> tuple[int | None, int | None]:
    """Bytes read and written over all devices in ``io.stat``; None without the io controller."""
    try:
        text = read_text(path)
    except OSError:
        return None, None
    totals = {"rbytes": 0, "wbytes": 0}
    # Lines look like "254:0 rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N".
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key in totals and value.isdigit():
                totals[key] += int(value)
    return totals["rbytes"], totals["wbytes"]


def _wait_frozen(events: Path, timeout: float) -> None:
    """Wait until ``cgroup.events`` says ``frozen 1``, or ``timeout`` seconds.

    The kernel flags each change of the file as POLLPRI on an open descriptor; reading it again
    through that descriptor re-arms the flag.
    """
    deadline = time.monotonic() + timeout
    try:
        with open(events, "rb", buffering=0) as f:
            poller = select.poll()
            poller.register(f, select.POLLPRI)
            while True:
                f.seek(0)
                if b"frozen 1" in f.read().splitlines():
                    return
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(left * 1000):
                    return
    except OSError:
        return
