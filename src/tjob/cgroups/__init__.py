"""cgroup backends: v1 (one hierarchy per controller) and v2 (the unified tree)."""

from __future__ import annotations

from pathlib import Path

from ..errors import CgroupError
from ..status import ResolvedLimits
from .base import CgroupBackend
from .clients import ClientLimits

__all__ = ["CgroupBackend", "ClientLimits", "ResolvedLimits", "backend", "detect"]


def backend(
    version: int, root: Path, parent: str = "tjob", clients: ClientLimits | None = None
) -> CgroupBackend:
    """The backend of a known cgroup ``version`` (only that one is imported)."""
    if version == 2:
        from .v2 import CgroupV2

        return CgroupV2(root, parent, clients)
    from .v1 import CgroupV1

    return CgroupV1(root, parent, clients)


def detect(
    root: Path = Path("/sys/fs/cgroup"), parent: str = "tjob", clients: ClientLimits | None = None
) -> CgroupBackend:
    """The backend for this host: v2 when ``root`` is a unified hierarchy, else v1.

    A hybrid host (v1 controllers plus an empty ``unified`` mount) is v1: the v2 tree there has
    no controllers to limit anything with.
    """
    root = Path(root)
    if (root / "cgroup.controllers").exists():
        return backend(2, root, parent, clients)
    if (root / "memory" / "cgroup.procs").exists() or (root / "cpu" / "cgroup.procs").exists():
        return backend(1, root, parent, clients)
    raise CgroupError(f"no cgroup filesystem found at {root} (neither v2 nor v1 controllers)")
