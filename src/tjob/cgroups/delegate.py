"""Where jobs' cgroups go when a service manager delegated a cgroup subtree to us.

systemd's rule for a service that manages cgroups (``Delegate=yes``, see its
CGROUP_DELEGATION.md): it owns its unit's cgroup and nothing outside it, and since a cgroup that
passes controllers to children may hold no processes (the kernel's no-internal-process rule),
the service moves itself out of the unit's top cgroup into a leaf and makes siblings for its
work. Here: ``<unit>/supervisor`` holds tjobs, its fork server and the jobs' supervisors (they
inherit it), and ``<unit>/jobs/<id>`` holds each job. systemd 254+ starts the service in the
leaf itself with ``DelegateSubgroup=supervisor``. Older systemd starts it in the unit's cgroup,
and could not start it there again while jobs run under it: there the jobs go to a scope beside
the unit instead (``scope.py``).

Delegation is recognised by the ``trusted.delegate`` extended attribute systemd (251+) sets on
the cgroups it delegates; ``place()`` returns the parent to pass to ``Engine(cgroup_parent=)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CgroupError
from .base import write

LEAF = "supervisor"
JOBS = "jobs"
DEFAULT_PARENT = "tjob"


def own_cgroup(proc_file: str = "/proc/self/cgroup") -> str | None:
    """This process's cgroup v2 path (``/system.slice/tjobs.service``); None on v1/hybrid."""
    try:
        with open(proc_file) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    unified = [line[3:] for line in lines if line.startswith("0::")]
    # A v1 or hybrid host lists its v1 hierarchies too: jobs are not placed by the v2 tree there.
    if len(unified) != 1 or len(lines) != 1:
        return None
    return unified[0]


def is_delegated(cgroup: Path) -> bool:
    for name in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(cgroup, name) == b"1":
                return True
        except OSError:
            continue
    return False


def delegated_base(root: Path, own: str | None) -> Path | None:
    """The delegated cgroup we may manage (the unit's, even when we are in its leaf)."""
    if own is None or own == "/":
        return None
    here = root / own.lstrip("/")
    if here.name == LEAF and is_delegated(here.parent):
        return here.parent
    return here if is_delegated(here) else None


class Placement:
    """Where jobs go (``parent``, for ``Engine(cgroup_parent=)``), and what to do once the
    engine has started (:meth:`settle`). ``note``: something the operator should know."""

    def __init__(self, parent: str, home: Path | None = None, note: str | None = None) -> None:
        self.parent, self.home, self.note = parent, home, note

    def settle(self) -> None:
        """In scope mode, return this process to its unit (the fork server stays behind)."""
        if self.home is not None:
            from .scope import leave

            leave(self.home)


def place(root: Path, setting: str, proc_file: str = "/proc/self/cgroup") -> Placement:
    """The jobs' place for ``--cgroup-parent setting``.

    ``auto``: if this process is in a cgroup v2 subtree delegated to it, under it when systemd
    started us in its ``supervisor`` leaf (systemd 254+, ``DelegateSubgroup=supervisor``), in a
    scope beside the unit when it started us in the unit's cgroup itself (older systemd, see
    ``scope.py``); not delegated: ``tjob`` at the root. ``delegated``: under the delegated
    subtree in any case (an error if there is none). ``scope``: in the scope in any case.
    Anything else: that path, relative to the root, as given.
    Under the subtree, this process moves into its ``supervisor`` leaf first, so that what it
    starts (the fork server, supervisors) is there too.
    """
    if setting not in ("auto", "delegated", "scope"):
        return Placement(setting.strip("/") or DEFAULT_PARENT)
    own = own_cgroup(proc_file)
    base = delegated_base(root, own)
    if base is None or own is None:
        if setting != "auto":
            raise CgroupError(
                f"--cgroup-parent {setting}: this process is not in a cgroup v2 subtree "
                "delegated to it (systemd: Delegate=yes on a pure cgroup v2 host)"
            )
        return Placement(DEFAULT_PARENT)
    here = root / own.lstrip("/")
    in_unit_root = base == here
    if setting == "scope" or (setting == "auto" and in_unit_root):
        from .scope import enter

        return Placement(enter(root, base, proc_file), home=here)
    leaf = base / LEAF
    try:
        leaf.mkdir(exist_ok=True)
    except OSError as e:
        raise CgroupError(f"cannot create cgroup {leaf}: {e.strerror}") from None
    write(leaf / "cgroup.procs", "0")  # 0: the writing process, with all its threads
    note = None
    if in_unit_root:
        note = (
            "started in the delegated cgroup itself (systemd < 254, no DelegateSubgroup=): "
            "while jobs run under it, systemd cannot start tjobs again (219/CGROUP)"
        )
    return Placement(str((base / JOBS).relative_to(root)), note=note)
