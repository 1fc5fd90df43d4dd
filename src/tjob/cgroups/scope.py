"""Jobs in a transient systemd scope beside the service, for systemd before 254.

systemd < 254 starts a service's process in the unit's own cgroup, and the kernel refuses a
process in a cgroup that passes controllers to children (no-internal-process rule): with jobs
under ``tjobs.service`` the service could not start again until they ended. So there the
long-lived part goes into a scope of its own, ``<unit>-jobs.scope`` (``Delegate=yes``, same
slice), as container managers keep their shims in scopes: the fork server and the supervisors
in its ``supervisor`` leaf, the jobs under its ``jobs/``. ``tjobs.service`` itself then holds
only tjobs and enables no controllers, so systemd can restart it while jobs run.

The scope is created once with ``systemd-run --scope`` around a placeholder; this process then
moves into the scope's leaf, starts the engine (whose fork server stays there) and moves back to
its unit. A restarted tjobs finds the scope (the supervisors keep it) and joins its leaf.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from ..errors import CgroupError
from .base import write
from .delegate import JOBS, LEAF, own_cgroup

# How long systemd may take to start the scope and move us into it (a guard, not a delay).
START_TIMEOUT = 30.0


def scope_name(unit_cgroup: Path) -> str:
    """``tjobs.service`` -> ``tjobs-jobs.scope``."""
    return f"{unit_cgroup.name.rpartition('.')[0] or unit_cgroup.name}-jobs.scope"


def enter(root: Path, unit_cgroup: Path, proc_file: str = "/proc/self/cgroup") -> str:
    """Move this process into the scope's leaf (creating the scope if needed); return the jobs'
    parent relative to ``root``. Call :func:`leave` once the engine has started."""
    scope = unit_cgroup.parent / scope_name(unit_cgroup)
    if scope.is_dir():
        _join_leaf(scope)
    else:
        _start_scope(scope.name, str(unit_cgroup.parent.relative_to(root)), root, proc_file)
    return str((scope / JOBS).relative_to(root))


def leave(unit_cgroup: Path) -> None:
    """Back to the service's own cgroup: what this process starts from now on is the unit's."""
    write(unit_cgroup / "cgroup.procs", "0")


def _start_scope(name: str, slice_name: str, root: Path, proc_file: str) -> None:
    """Have systemd make the scope, with a placeholder (``cat`` on a pipe) as its first member,
    and move this process into its leaf; the placeholder then ends. ``systemd-run`` reaches
    systemd without a D-Bus daemon (its private socket), which ``busctl`` cannot."""
    systemd_run = shutil.which("systemd-run")
    if systemd_run is None:
        raise CgroupError("cannot create a systemd scope for the jobs: no systemd-run on PATH")
    holder = subprocess.Popen(
        [
            systemd_run,
            "--scope",
            "--quiet",
            f"--unit={name}",
            f"--slice={Path(slice_name).name}",
            "--property=Delegate=yes",
            "--description=tjob jobs and their supervisors (they outlive tjobs restarts)",
            "--",
            "cat",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert holder.stdin is not None and holder.stderr is not None
    scope = root / slice_name / name
    try:
        _wait_in(root, scope, f"/proc/{holder.pid}/cgroup", holder)
        _join_leaf(scope)
    finally:
        holder.stdin.close()  # cat ends: only we are in the scope now
        why = holder.stderr.read().decode(errors="replace").strip()
        holder.wait()
    if own_cgroup(proc_file) != "/" + str((scope / LEAF).relative_to(root)):
        raise CgroupError(f"cannot create systemd scope {name}: {why or 'systemd-run failed'}")


def _join_leaf(scope: Path) -> None:
    leaf = scope / LEAF
    try:
        leaf.mkdir(exist_ok=True)
    except OSError as e:
        raise CgroupError(f"cannot create cgroup {leaf}: {e.strerror}") from None
    write(leaf / "cgroup.procs", "0")


def _wait_in(root: Path, scope: Path, proc_file: str, holder: subprocess.Popen[bytes]) -> None:
    # systemd-run execs the placeholder once systemd has put it into the new scope.
    want = "/" + str(scope.relative_to(root))
    deadline = time.monotonic() + START_TIMEOUT
    while own_cgroup(proc_file) != want:
        if holder.poll() is not None or time.monotonic() > deadline:
            return  # the caller reports what systemd-run said
        time.sleep(0.02)
