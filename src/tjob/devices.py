"""Which block device holds a path, for disk bandwidth limits."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InvalidSpec
from .spec import parse_device

SYS_BLOCK = Path("/sys/dev/block")


def check_block_device(text: str, sys_block: Path = SYS_BLOCK) -> tuple[int, int]:
    """Parse ``MAJ:MIN`` and require that it names a block device on this host."""
    major, minor = parse_device(text)
    if not (sys_block / f"{major}:{minor}").exists():
        raise InvalidSpec(f"{text} is not a block device on this host (see lsblk)")
    return major, minor


def device_of(path: str = "/", sys_block: Path = SYS_BLOCK) -> tuple[int, int] | None:
    """The whole disk (or device-mapper device) holding ``path``; None when there is none.

    Throttling applies to whole disks, so a partition is mapped to its parent disk. Filesystems
    on anonymous devices (btrfs, overlay, tmpfs report major 0) are traced through the mount
    source in ``/proc/self/mountinfo``.
    """
    dev = os.stat(path).st_dev
    major, minor = os.major(dev), os.minor(dev)
    if major == 0:
        src = _mount_source(path)
        if src is None:
            return None
        try:
            rdev = os.stat(src).st_rdev
        except OSError:
            return None
        major, minor = os.major(rdev), os.minor(rdev)
        if major == 0:
            return None
    node = sys_block / f"{major}:{minor}"
    if (node / "partition").exists():
        disk = node.resolve().parent / "dev"
        try:
            major, minor = parse_device(disk.read_text().strip())
        except (OSError, InvalidSpec):
            return None
    return major, minor


def _mount_source(path: str) -> str | None:
    """Mount source of the longest mount point containing ``path`` (a /dev node, if any)."""
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mount_point = fields[4]
            sep = fields.index("-")
            source = fields[sep + 2]
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
            if (
                inside
                and source.startswith("/dev/")
                and (best is None or len(mount_point) >= best[0])
            ):
                best = (len(mount_point), source)
    return best[1] if best else None
