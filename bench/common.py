"""Measurement helpers shared by the benchmarks: statistics, the machine, the report."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Figure:
    """One measured quantity: its samples and how to print them."""

    name: str
    samples: list[float]
    unit: str  # "ms", "MB/s", "MiB", "%"

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        s = sorted(self.samples)
        return s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]

    @property
    def spread(self) -> str:
        """Interquartile range: robust to the odd outlier a shared machine produces."""
        if len(self.samples) < 4:
            return f"{min(self.samples):.3g}..{max(self.samples):.3g}"
        q = statistics.quantiles(self.samples, n=4)
        return f"{q[0]:.3g}..{q[2]:.3g}"


@dataclass
class Result:
    id: str
    what: str
    figures: list[Figure]
    verdict: str  # the headline: ratio or value against the target
    target: str
    met: bool | None
    command: str
    notes: list[str] = field(default_factory=list)


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call, in milliseconds."""
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def run_quiet(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def machine() -> dict[str, str]:
    cg = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1 (hybrid)"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": str(os.cpu_count()),
        "memory": f"{mem:.0f} GiB",
        "kernel": platform.release(),
        "cgroups": cg,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def table(results: list[Result]) -> str:
    rows = [
        "| id | what | figures (p50 [p99], IQR) | result | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        figs = "<br>".join(
            f"{f.name}: {fmt(f.p50)} [{fmt(f.p99)}] {f.unit}, IQR {f.spread}" for f in r.figures
        )
        met = {True: "yes", False: "**no**", None: "—"}[r.met]
        rows.append(f"| {r.id} | {r.what} | {figs} | {r.verdict} | {r.target} | {met} |")
    return "\n".join(rows)


def write_report(path: Path, results: list[Result], command: str) -> None:
    m = machine()
    lines = [
        "# tjob benchmark results",
        "",
        "Every figure is measured in the same run as its floor or peers (the machines are",
        "shared and noisy): ratios are what to compare, not absolute times.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in m.items()),
        "",
        f"Reproduce: `{command}` (as root).",
        "",
        table(results),
        "",
    ]
    for r in results:
        lines.append(f"- **{r.id}** `{r.command}`")
        lines.extend(f"  - {n}" for n in r.notes)
    path.write_text("\n".join(lines) + "\n")


# Where the benchmarks' state directories and scratch go: beside tjobs's default state
# (/var/lib/tjob), on the same disk, and visible to jobs (a job's /tmp is a tmpfs of its own).
BENCH_DIR = "/var/lib"
