"""What this host has, as job limits: the default caps of ``tjobs`` (``--max-cpu`` ...).

A server started with no flags lets a job ask for up to the whole machine; its defaults (the
seed's 20% / 20 MB / ...) are what a job that asks for nothing gets.
"""

from __future__ import annotations

import os

from .spec import MAX_BPS, MAX_CPU_PERCENT, MAX_MEMORY_MB, MAX_PIDS, Limits


def host_caps() -> Limits:
    """All CPUs, all memory, the kernel's pid limit, and no disk rate below the sanity bound."""
    cpus = len(os.sched_getaffinity(0)) or os.cpu_count() or 1
    return Limits(
        cpu_percent=min(100 * cpus, MAX_CPU_PERCENT),
        memory_mb=min(_mem_total_mb(), MAX_MEMORY_MB),
        pids=min(_read_int("/proc/sys/kernel/pid_max", MAX_PIDS), MAX_PIDS),
        rbps=MAX_BPS,
        wbps=MAX_BPS,
    )


def _mem_total_mb() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return max(1, int(line.split()[1]) // 1024)
    except (OSError, ValueError, IndexError):
        pass
    return MAX_MEMORY_MB


def _read_int(path: str, default: int) -> int:
    try:
        with open(path) as f:
            return max(1, int(f.read().strip()))
    except (OSError, ValueError):
        return default
