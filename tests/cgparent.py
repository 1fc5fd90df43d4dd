"""Removing a test's cgroup parent: the client cgroups in it (``c-...``) are kept by the engine
by design and go with the parent; any job cgroup left in it is a leak the test reports."""

from __future__ import annotations

from pathlib import Path

from tjob.cgroups.base import SPARE_PREFIX

CGROUP_ROOT = Path("/sys/fs/cgroup")


def leftovers(parent: Path) -> list[str]:
    """Job cgroups still under ``parent`` (directly, or in a client cgroup)."""
    out = []
    for c in (p for p in parent.iterdir() if p.is_dir()):
        if c.name.startswith("c-"):
            # A launcher's spare (v1) is no job's: one killed leaves it for the next to remove.
            out += [
                f"{c.name}/{j.name}"
                for j in c.iterdir()
                if j.is_dir() and not j.name.startswith(SPARE_PREFIX)
            ]
        else:
            out.append(c.name)
    return out


def remove_parent(name: str, check: bool = True) -> None:
    """Remove the cgroup parent ``name`` in every hierarchy (v1) or the unified tree (v2)."""
    unified = (CGROUP_ROOT / "cgroup.controllers").exists()
    for p in [CGROUP_ROOT / name] if unified else [c / name for c in CGROUP_ROOT.iterdir()]:
        if not p.is_dir():
            continue
        if check:
            left = leftovers(p)
            assert not left, f"cgroups left behind in {p}: {left}"
        for c in p.iterdir():
            if c.is_dir() and c.name.startswith("c-"):
                for spare in c.glob(f"{SPARE_PREFIX}*"):
                    spare.rmdir()
                c.rmdir()
        p.rmdir()


def job_cgroup_name(parent: str, job_id: str, ctrl: str = "pids") -> str:
    """The cgroup name (relative to ``parent``) of the job, found in the host's hierarchy
    (``<client>/<job>``; ``<job>`` for a job made before client cgroups); absent: the id."""
    top = CGROUP_ROOT / ctrl / parent
    if not top.exists():
        top = CGROUP_ROOT / parent  # v2
    for found in top.glob(f"*/{job_id}"):
        return f"{found.parent.name}/{job_id}"
    return job_id
