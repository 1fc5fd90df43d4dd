"""B11: a queued job's start after a slot frees (issue 15).

An engine that runs one job at a time holds a job blocked on a FIFO; a second job waits in its
queue. The bench opens the FIFO for writing and closes it (the first job's ``read`` returns and
it exits), and measures from just before that to the queued job's ``started_at`` (the wall-clock
time its supervisor saw the command exec'd): the end seen, recorded, the slot freed, the queued
job handed to the launcher and started.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import tjob

from .common import BENCH_DIR, Figure, Result

CGROUP = "tjob-bench-queue"


def _one(eng: tjob.Engine, fifo: Path) -> float:
    holder = eng.enqueue(tjob.JobSpec(["sh", "-c", f"read x < {fifo}"]))
    queued = eng.enqueue(tjob.JobSpec(["true"]))
    assert queued.status().state is tjob.JobState.QUEUED
    fd = os.open(fifo, os.O_WRONLY)  # blocks until the holder's shell opens it to read
    t0 = time.time()
    os.close(fd)
    st = queued.wait(30)
    assert st.exit_code == 0 and st.started_at is not None, st
    holder.wait(30)
    eng.remove(holder.id)
    eng.remove(queued.id)
    return (st.started_at - t0) * 1000


def b11(eng: tjob.Engine, tmp: Path, n: int) -> Result:
    fifo = tmp / "fifo"
    os.mkfifo(fifo, 0o666)
    for _ in range(5):
        _one(eng, fifo)  # warm-up
    fig = Figure("queued start after a slot frees", [_one(eng, fifo) for _ in range(n)], "ms")
    return Result(
        "B11",
        "queued job: the running job's end → the queued job running (max_running 1)",
        [fig],
        f"p50 {fig.p50:.1f} ms, p99 {fig.p99:.1f} ms",
        "p50 <= 20 ms",
        fig.p50 <= 20,
        "make bench BENCH=B11",
    )


def run(selected: set[str], quick: bool) -> list[Result]:
    if "B11" not in selected:
        return []
    with tempfile.TemporaryDirectory(prefix="tjob-bench-q-", dir=BENCH_DIR) as d:
        tmp = Path(d)
        with tjob.Engine(tmp / "state", cgroup_parent=CGROUP, max_running=1) as eng:
            out = [b11(eng, tmp, 30 if quick else 100)]
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            with contextlib.suppress(OSError):
                (hierarchy / CGROUP).rmdir()
    return out
