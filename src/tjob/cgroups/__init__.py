"""cgroup backends: v1 (one hierarchy per controller) and v2 (the unified tree)."""

from __future__ import annotations

from pathlib import Path

from ..errors import CgroupError
from .base import CgroupBackend, ResolvedLimits
from .v1 import CgroupV1
from .v2 import CgroupV2

__all__ = ["CgroupBackend", "CgroupV1", "CgroupV2", "ResolvedLimits", "detect"]


def detect(root: Path = Path("/sys/fs/cgroup"), parent: str = "tjob") -> CgroupBackend:
    """The backend for this host: v2 when ``root`` is a unified hierarchy, else v1.

    A hybrid host (v1 controllers plus an empty ``unified`` mount) is v1: the v2 tree there has
    no controllers to limit anything with.
    """
    root = Path(root)
    if (root / "cgroup.controllers").exists():
        return CgroupV2(root, parent)
    if (root / "memory" / "cgroup.procs").exists() or (root / "cpu" / "cgroup.procs").exists():
        return CgroupV1(root, parent)
    raise CgroupError(f"no cgroup filesystem found at {root} (neither v2 nor v1 controllers)")
