"""Where jobs' cgroups go when a service manager delegated a cgroup subtree to us.

systemd's rule for a service that manages cgroups (``Delegate=yes``, see its
CGROUP_DELEGATION.md): it owns its unit's cgroup and nothing outside it, and since a cgroup that
passes controllers to children may hold no processes (the kernel's no-internal-process rule),
the service moves itself out of the unit's top cgroup into a leaf and makes siblings for its
work. Here: ``<unit>/supervisor`` holds tjobs, its fork server and the jobs' supervisors (they
inherit it), and ``<unit>/jobs/<id>`` holds each job. systemd 254+ starts the service in the
leaf itself with ``DelegateSubgroup=supervisor``.

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


def place(root: Path, setting: str, proc_file: str = "/proc/self/cgroup") -> str:
    """The jobs' parent cgroup (relative to ``root``) for ``--cgroup-parent setting``.

    ``auto``: under our delegated subtree if we have one, else ``tjob`` at the root.
    ``delegated``: the same, but an error if there is no delegated subtree.
    Anything else: that path, relative to the root, as given.
    When delegated, this process is moved into the subtree's ``supervisor`` leaf first, so
    that everything it starts (the fork server, supervisors) is there too.
    """
    if setting not in ("auto", "delegated"):
        return setting.strip("/") or DEFAULT_PARENT
    base = delegated_base(root, own_cgroup(proc_file))
    if base is None:
        if setting == "delegated":
            raise CgroupError(
                "--cgroup-parent delegated: this process is not in a cgroup v2 subtree "
                "delegated to it (systemd: Delegate=yes on a pure cgroup v2 host)"
            )
        return DEFAULT_PARENT
    leaf = base / LEAF
    try:
        leaf.mkdir(exist_ok=True)
    except OSError as e:
        raise CgroupError(f"cannot create cgroup {leaf}: {e.strerror}") from None
    write(leaf / "cgroup.procs", "0")  # 0: the writing process, with all its threads
    return str((base / JOBS).relative_to(root))


def started_in_unit_root(root: Path, proc_file: str = "/proc/self/cgroup") -> bool:
    """Whether the service manager started us in our delegated cgroup itself, not in its leaf:
    systemd before 254 (no DelegateSubgroup=) does, and then cannot start the service again
    while jobs run under it (the kernel refuses a process in a cgroup that passes controllers
    on). Call before :func:`place`, which moves us."""
    own = own_cgroup(proc_file)
    base = delegated_base(root, own)
    return base is not None and own is not None and base == root / own.lstrip("/")
