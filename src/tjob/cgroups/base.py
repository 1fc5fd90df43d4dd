"""The one interface both cgroup backends implement.

A backend owns a parent cgroup (``tjob`` by default) with one child per client and one
grandchild per job (:mod:`.clients`). Methods take a job's cgroup *name*, relative to the
parent (``<client>/<job>``, or ``<job>`` for a job made before clients had cgroups; see
:meth:`CgroupBackend.name_of`). Paths are arguments so tests can point a backend at a fake
cgroupfs in a temporary directory.
"""

from __future__ import annotations

import abc
import contextlib
import os
import select
import signal
from pathlib import Path

from ..errors import CgroupError
from ..status import ResolvedLimits, Usage
from .clients import ClientLimits, is_client_dir, job_cgroup

# A job cgroup made ahead of need (v1: CgroupV1.make_spare), named for its launcher's pid: no
# job id starts so.
SPARE_PREFIX = ".spare-"


class CgroupBackend(abc.ABC):
    version: int

    def __init__(
        self,
        root: Path = Path("/sys/fs/cgroup"),
        parent: str = "tjob",
        clients: ClientLimits | None = None,
    ) -> None:
        self.root = Path(root)
        self.parent = parent
        self.clients = clients or ClientLimits()
        self._ready: set[str] = set()  # client cgroups made and limited by this process
        self._init_state()

    @abc.abstractmethod
    def _init_state(self) -> None:
        """The backend's own state, set before :meth:`setup`."""

    def name_of(self, owner: str, job_id: str) -> str:
        """The cgroup name of ``owner``'s job: ``<job>`` if a job made before client cgroups
        has it there, else ``<client>/<job>``."""
        top = self._top()
        if (top / job_id).is_dir():
            return job_id
        name = job_cgroup(owner, job_id)
        if owner or (top / name).is_dir():
            return name
        # No owner known (a job quarantined without its spec): whichever client holds it.
        with contextlib.suppress(OSError):
            for c in top.iterdir():
                if is_client_dir(c.name) and (c / job_id).is_dir():
                    return f"{c.name}/{job_id}"
        return name

    def _client_ready(self, name: str) -> None:
        """Make the client cgroup of job cgroup ``name`` with the client ceilings, once per
        process (a restarted engine writes them again: the flags may have changed)."""
        client, sep, _ = name.rpartition("/")
        if sep and client not in self._ready:
            self._make_client(client)
            self._ready.add(client)

    @abc.abstractmethod
    def _top(self) -> Path:
        """The parent cgroup (in one hierarchy, on v1)."""

    @abc.abstractmethod
    def _make_client(self, client: str) -> None:
        """Create the client cgroup ``client`` (exist_ok) and write the client ceilings."""

    @abc.abstractmethod
    def setup(self) -> None:
        """Check the controllers tjob needs and create the parent; raise CgroupError if unusable."""

    @abc.abstractmethod
    def create(self, job_id: str, limits: ResolvedLimits) -> None:
        """Make the job's cgroup with its limits written; no process is in it yet."""

    def make_spare(self, like: str, limits: ResolvedLimits) -> None:  # noqa: B027 (v2: none)
        """Make a job cgroup ahead of the next start beside job cgroup ``like``, if the
        backend can (v1)."""

    def drop_spare(self) -> None:  # noqa: B027 (v2 makes none)
        """Remove the cgroup :meth:`make_spare` made, if unused."""

    @abc.abstractmethod
    def procs_files(self, job_id: str) -> list[str]:
        """Files a single-threaded process writes ``0`` to, to join the job's cgroup."""

    @abc.abstractmethod
    def pids(self, job_id: str) -> list[int]:
        """Host pids of the processes in the job's cgroup."""

    @abc.abstractmethod
    def usage(self, job_id: str) -> Usage:
        """What the cgroup has accounted so far."""

    @abc.abstractmethod
    def oom_kills(self, job_id: str) -> int:
        """How many processes the OOM killer killed in the job's cgroup."""

    @abc.abstractmethod
    def unthrottle(self, job_id: str) -> None:
        """Lift the CPU quota before a SIGKILL: dying processes still need CPU time to exit,
        and a job that spent its quota would wait up to a whole period (100 ms) to die."""

    @abc.abstractmethod
    def kill(self, job_id: str) -> None:
        """SIGKILL every process in the job's cgroup, descendants and setsid ones included."""

    @abc.abstractmethod
    def remove(self, job_id: str) -> None:
        """Remove the job's cgroup (it must be empty); absent is fine."""

    @abc.abstractmethod
    def left(self, job_id: str) -> bool:
        """Whether any of the job's cgroup is still there (one stat)."""

    @abc.abstractmethod
    def job_ids(self) -> list[str]:
        """Job cgroups that exist now (the engine's diagnostics view)."""

    def signal(self, job_id: str, sig: int) -> int:
        """Send ``sig`` to every process in the job's cgroup through pidfds; return how many.

        A pid read from ``cgroup.procs`` may exit and be reused before we signal it, so each is
        pinned with a pidfd first, and signalled only if ``cgroup.procs``, read again after,
        still lists it: a listed pid whose process is alive is that same process (a pid is
        reused only once its process is gone, and the pidfd of a gone one signals nothing).
        Two reads of the cgroup, however many processes (not one /proc file each).
        """
        return self._send(job_id, self.pids(job_id), sig)

    def signal_process(self, job_id: str, pid: int, sig: int) -> int:
        """Send ``sig`` to process ``pid`` if it is in the job's cgroup (1, else 0), pinned and
        checked as :meth:`signal` does: a recycled pid is never signalled."""
        return self._send(job_id, [pid], sig)

    def _send(self, job_id: str, pids: list[int], sig: int) -> int:
        """``sig`` to those of ``pids`` the job's cgroup lists once each is pinned by a pidfd."""
        pinned: dict[int, int] = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                pinned[pid] = os.pidfd_open(pid)
        sent = 0
        try:
            listed = set(self.pids(job_id)) if pinned else set()
            for pid, fd in pinned.items():
                if pid not in listed:
                    continue
                try:
                    signal.pidfd_send_signal(fd, sig)
                    sent += 1
                except ProcessLookupError:
                    pass
        finally:
            for fd in pinned.values():
                os.close(fd)
        return sent

    def _listed(self, top: Path) -> set[str]:
        """Job ids with a cgroup under ``top``, in client cgroups or (older jobs) directly."""
        found: set[str] = set()
        try:
            for p in top.iterdir():
                if not p.is_dir():
                    continue
                if is_client_dir(p.name):
                    found.update(
                        j.name
                        for j in p.iterdir()
                        if j.is_dir() and not j.name.startswith(SPARE_PREFIX)
                    )
                elif not p.name.startswith(SPARE_PREFIX):
                    found.add(p.name)
        except FileNotFoundError:
            pass
        return found


def read_text(path: str | Path) -> str:
    """A kernel file (cgroupfs), read with three system calls where ``Path.read_text``
    makes nine: these reads are on every job's end and every usage shown."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def read_int(path: str | Path, default: int | None = None) -> int | None:
    try:
        text = read_text(path).strip()
    except OSError:
        return default
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return default


def read_keyed(path: str | Path) -> dict[str, int]:
    """Parse ``key value`` lines (``memory.events``, ``cpu.stat``, ``oom_control``)."""
    out: dict[str, int] = {}
    try:
        text = read_text(path)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def write(path: str | Path, value: str) -> None:
    try:
        # O_TRUNC as a shell's ">" does: cgroupfs ignores it, a test's fake one needs it.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())  # one write: cgroup files take a value per write
        finally:
            os.close(fd)
    except OSError as e:
        raise CgroupError(f"cannot write {value!r} to {path}: {e.strerror}") from None


def rmdir_quiet(path: Path) -> None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise CgroupError(f"cannot remove cgroup {path}: {e.strerror}") from None


def wait_exited(pids: list[int], timeout: float = 5.0) -> None:
    """Wait on pidfds (not by polling) until these processes have exited, or ``timeout``."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except OSError:
            pass
    try:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        pending = len(fds)
        while pending:
            ready = poller.poll(timeout * 1000)
            if not ready:
                return
            for fd, _ in ready:
                poller.unregister(fd)
                pending -= 1
    finally:
        for fd in fds:
            os.close(fd)
