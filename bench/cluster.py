"""B14-B16: tjob on a Ray cluster (issue 18), on this machine: a Ray head, two tjobs nodes and a
gateway in a private network namespace (the cluster tests' own harness, tests/cluster), the
client (bench/cluster_probe.py) inside it. Needs tjob[cluster] (make test-cluster installs it).

B14: Run of ``true`` through the gateway vs directly to a node's tjobs (as the gateway calls
it), p50/p99, same run (target <= 3x). B15: one follower reading 200 MiB of a finished job's
output through the gateway vs directly (target >= 0.5x). B16: 200 jobs (10% CPU, 64 MB each)
placed over the two nodes by Ray and started, 20 Runs in flight: wall time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import BENCH_DIR, Figure, Result

IDS = {"B14", "B15", "B16"}


def run(selected: set[str], quick: bool) -> list[Result]:
    if not selected & IDS:
        return []
    sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
    from cluster.cluster import Cluster  # type: ignore[import-not-found]  # the tests' harness

    with tempfile.TemporaryDirectory(prefix="tjob-bench-c-", dir=BENCH_DIR) as d:
        c = Cluster(Path(d))
        try:
            c.head()
            c.node("a", 7101, cpus=2, memory_mb=8192)
            c.node("b", 7102, cpus=2, memory_mb=8192)
            c.gateway("--max-jobs", "1000")
            c.wait_nodes("a", "b")
            probe = [*c.ns, sys.executable, "-m", "bench.cluster_probe", "7000", "7101"]
            done = subprocess.run(
                [*probe, str(c.certs), *(["--quick"] if quick else [])],
                check=False,
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent.parent,
            )
            if done.returncode != 0:
                raise RuntimeError(f"the cluster probe failed: {done.stderr[-2000:]}")
            out = done.stdout
        finally:
            c.close()
    m = json.loads(out.strip().splitlines()[-1])
    return _results(m)


def _results(m: dict[str, list[float] | float]) -> list[Result]:
    gw = Figure("Run via gateway", list(m["b14_gateway"]), "ms")  # type: ignore[arg-type]
    direct = Figure("Run direct to a node", list(m["b14_direct"]), "ms")  # type: ignore[arg-type]
    r50, r99 = gw.p50 / direct.p50, gw.p99 / direct.p99
    gwf, df = float(m["b15_gateway"]), float(m["b15_direct"])  # type: ignore[arg-type]
    b16 = float(m["b16_seconds"])  # type: ignore[arg-type]
    return [
        Result(
            "B14",
            "Run through the gateway vs direct to a node's tjobs",
            [gw, direct],
            f"p50 {r50:.1f}x, p99 {r99:.1f}x",
            "<= 3x",
            r50 <= 3 and r99 <= 3,
            "make bench BENCH=B14",
        ),
        Result(
            "B15",
            "one follower, 200 MiB: through the gateway vs direct",
            [Figure("gateway", [gwf], "MB/s"), Figure("direct", [df], "MB/s")],
            f"{gwf / df:.2f}x",
            ">= 0.5x",
            gwf / df >= 0.5,
            "make bench BENCH=B15",
        ),
        Result(
            "B16",
            "200 jobs placed by Ray over 2 nodes and started",
            [Figure("wall time", [b16], "s")],
            f"{b16:.1f} s",
            "measured",
            None,
            "make bench BENCH=B16",
        ),
    ]
