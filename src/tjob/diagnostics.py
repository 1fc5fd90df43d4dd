"""What an engine holds now, as a supported view for leak checks and debugging: its helper
processes, open watches and live job cgroups (read from ``/proc`` and the cgroup tree)."""

from __future__ import annotations

from dataclasses import dataclass

from .cgroups import CgroupBackend
from .procs import children
from .watch import Hub


@dataclass(frozen=True)
class Diagnostics:
    """What an engine holds now, for leak checks and debugging (a supported view).

    launcher_pid / zygote_pid: its helper processes (None if not running).
    supervisors: live job supervisors (children of the zygote, the spare among them).
    watches: directories watched for readers; exit_watches: supervisors watched for their end.
    cgroups: job cgroups that exist under the engine's parent cgroup.
    """

    launcher_pid: int | None
    zygote_pid: int | None
    supervisors: frozenset[int]
    watches: int
    exit_watches: int
    cgroups: frozenset[str]


def diagnose(launcher: int | None, hub: Hub, cg: CgroupBackend) -> Diagnostics:
    """The view of an engine whose launcher is ``launcher`` (None: not running)."""
    zygotes = children(launcher) if launcher is not None else []
    zygote = zygotes[0] if zygotes else None
    watches, exit_watches = hub.counts()
    return Diagnostics(
        launcher_pid=launcher,
        zygote_pid=zygote,
        supervisors=frozenset(children(zygote)) if zygote is not None else frozenset(),
        watches=watches,
        exit_watches=exit_watches,
        cgroups=frozenset(cg.job_ids()),
    )
