"""Library benchmarks: B1 start latency, B2 output throughput, B6 stop, B7 start under load."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import tjob
from tjob import jail

from .common import BENCH_DIR, Figure, Result, run_quiet, timed

NS = ["--pid", "--net", "--mount", "--uts", "--ipc", "--fork", "--mount-proc"]
GIB = 1 << 30
ON_TMPFS = "tjob, state on tmpfs"
NO_FILTER = "tjob, no seccomp filter"
HEAD_CAT = f"head -c {GIB} /dev/zero | cat"


def _peers(tmp: Path) -> dict[str, list[str]]:
    """Peer commands available on this machine, each starting /bin/true isolated."""
    peers = {"unshare": ["unshare", *NS, "/bin/true"]}
    if shutil.which("bwrap"):
        peers["bwrap"] = [
            "bwrap",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-ipc",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "/bin/true",
        ]
    if shutil.which("runc"):
        bundle = _runc_bundle(tmp / "runc")
        if bundle:
            # Not "tjob-bench": runc makes (and removes) a cgroup named after the container.
            peers["runc"] = ["runc", "run", "--bundle", str(bundle), "tjob-bench-runc"]
    if shutil.which("firejail"):
        peers["firejail"] = ["firejail", "--quiet", "--net=none", "/bin/true"]
    return peers


def _runc_bundle(path: Path) -> Path | None:
    """A runc bundle with CPU/memory/pids limits and a read-only bind of / as its rootfs."""
    path.mkdir()
    rootfs = path / "rootfs"
    rootfs.mkdir()
    try:
        run_quiet(["mount", "--bind", "/", str(rootfs)])
        run_quiet(["mount", "-o", "remount,ro,bind", str(rootfs)])
        run_quiet(["runc", "spec", "--bundle", str(path)])
    except subprocess.CalledProcessError:
        return None
    cfg = json.loads((path / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    cfg["root"] = {"path": str(rootfs), "readonly": True}
    cfg["linux"]["resources"] = {
        "cpu": {"quota": 20000, "period": 100000},
        "memory": {"limit": 20 << 20},
        "pids": {"limit": 512},
    }
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def _unmount_runc(tmp: Path) -> None:
    rootfs = tmp / "runc" / "rootfs"
    if rootfs.exists():
        subprocess.run(["umount", str(rootfs)], check=False)


def _remove_cgroups(parent: str) -> None:
    """An engine's cgroup parent, with the client cgroups it keeps, in every hierarchy."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / parent
        with contextlib.suppress(OSError):
            for client in top.iterdir():
                if client.is_dir():
                    client.rmdir()
            top.rmdir()


def _true_job(eng: tjob.Engine) -> None:
    eng.start(tjob.JobSpec(["/bin/true"])).wait(30)


def start_latency(eng: tjob.Engine, n: int) -> Figure:
    return Figure("tjob", [timed(lambda: _true_job(eng)) for _ in range(n)], "ms")


@contextlib.contextmanager
def _engine_on_tmpfs(tmp: Path) -> Iterator[tjob.Engine]:
    """An engine whose state directory is in memory: its figures leave out the state disk,
    whose file creation (about ten files and directories per job) varies widely here."""
    mem = tmp / "tmpfs"
    mem.mkdir()
    run_quiet(["mount", "-t", "tmpfs", "tjob-bench", str(mem)])
    try:
        with tjob.Engine(mem / "state", cgroup_parent="tjob-bench-tmpfs") as eng:
            yield eng
    finally:
        run_quiet(["umount", str(mem)])
        _remove_cgroups("tjob-bench-tmpfs")


def b1(eng: tjob.Engine, mem_eng: tjob.Engine, tmp: Path, n: int) -> Result:
    """Library start of /bin/true -> exit observed, interleaved with the floor and peers, with
    the same start by an engine whose state is on a tmpfs (``mem_eng``), and by one with no
    seccomp filter (what loading the filter costs; the jail's mounts are made in the spare,
    before the job is known)."""
    peers = _peers(tmp)
    bare = tjob.Engine(tmp / "bare", cgroup_parent="tjob-bench-bare", seccomp=jail.UNCONFINED)
    try:
        runs: dict[str, Callable[[], object]] = {"tjob": functools.partial(_true_job, eng)}
        runs.update({name: functools.partial(run_quiet, argv) for name, argv in peers.items()})
        runs[ON_TMPFS] = functools.partial(_true_job, mem_eng)
        runs[NO_FILTER] = functools.partial(_true_job, bare)
        samples: dict[str, list[float]] = {k: [] for k in runs}
        for warm in (eng, mem_eng, bare):
            start_latency(warm, 10)
        order = random.Random(1)
        always = ("tjob", "unshare", "bwrap", ON_TMPFS, NO_FILTER)
        for i in range(n):
            # The slow peers get fewer runs; their medians are stable at a quarter of n.
            names = [k for k in runs if k in always or i % 4 == 0]
            # A random order each round: the kernel is still tearing down what the last one
            # made (runc's and firejail's cgroups and namespaces), and no one should always
            # come right after the heaviest.
            order.shuffle(names)
            for name in names:
                samples[name].append(timed(runs[name]))
    finally:
        bare.close()
        _unmount_runc(tmp)
        _remove_cgroups("tjob-bench-bare")
    figs = [Figure(k, v, "ms") for k, v in samples.items()]
    floor = figs[1].p50
    ratio = figs[0].p50 / floor
    notes = [f"{f.name}: {f.p50 / floor:.2f}x unshare" for f in figs[1:]]
    return Result(
        "B1",
        "library start(`/bin/true`) → exit observed",
        figs,
        f"{ratio:.2f}x unshare (p50)",
        "p50 <= 2x unshare",
        ratio <= 2.0,
        "make bench BENCH=B1",
        notes,
    )


def _mbps(fn: Callable[[], object]) -> float:
    """MB/s of one call that moves a GiB."""
    return GIB / timed(fn) * 1000 / 1e6


def _follow_gib(eng: tjob.Engine) -> None:
    # A whole CPU: the default 20% cap would measure the cap, not the output path.
    job = eng.start(
        tjob.JobSpec(["head", "-c", str(GIB), "/dev/zero"], limits=tjob.Limits(cpu_percent=100))
    )
    got = sum(len(c.data) for c in job.output())
    assert got == GIB and job.wait(30).exit_code == 0, (got, job.status())
    eng.remove(job.id)


def b2(eng: tjob.Engine, tmp: Path, rounds: int) -> Result:
    """1 GiB of job stdout to one library follower, against a raw pipe; and against storing a
    GiB on the state directory's disk at all, which every byte of a job's output is."""
    sink = tmp / "store-floor"
    pipe, store, ours = [], [], []
    for _ in range(rounds):
        pipe.append(_mbps(functools.partial(run_quiet, ["sh", "-c", f"{HEAD_CAT} > /dev/null"])))
        store.append(_mbps(functools.partial(run_quiet, ["sh", "-c", f"{HEAD_CAT} > {sink}"])))
        sink.unlink()
        ours.append(_mbps(functools.partial(_follow_gib, eng)))
    figs = [Figure("tjob", ours, "MB/s"), Figure("pipe", pipe, "MB/s")]
    figs.append(Figure("storing it: `| cat > file` on the state disk", store, "MB/s"))
    ratio = figs[0].p50 / figs[1].p50
    return Result(
        "B2",
        "1 GiB job stdout → one library follower (byte count checked)",
        figs,
        f"{ratio:.2f}x pipe",
        ">= 0.5x pipe",
        ratio >= 0.5,
        "make bench BENCH=B2",
        [
            f"tjob: {figs[0].p50 / figs[2].p50:.2f}x storing a GiB on the state disk with cat; "
            f"storing alone is {figs[2].p50 / figs[1].p50:.2f}x the pipe"
        ],
    )


def b6(eng: tjob.Engine, n: int) -> Result:
    """stop(grace=0) of a job with 100 processes until its cgroup is empty and gone."""
    samples = []
    script = "for i in $(seq 100); do sleep 1000 & done; echo ready; wait"
    for _ in range(n):
        job = eng.start(tjob.JobSpec(["sh", "-c", script], limits=tjob.Limits(memory_mb=256)))
        next(iter(job.output()))
        assert job.status().usage.pids_current == 101
        samples.append(timed(functools.partial(_stop_now, job)))
        assert job.id not in eng.diagnostics().cgroups
    fig = Figure("stop", samples, "ms")
    return Result(
        "B6",
        "stop(grace=0) of 100 processes → cgroup empty and removed",
        [fig],
        f"p50 {fig.p50:.1f} ms",
        "p50 <= 50 ms",
        fig.p50 <= 50,
        "make bench BENCH=B6",
    )


def _stop_now(job: tjob.Job) -> None:
    job.stop(grace=0)


def b7(eng: tjob.Engine, n: int) -> Result:
    """B1's p50 with 0, 100 and 500 jobs already running."""
    figs = [start_latency(eng, n)]
    figs[0].name = "0 running"
    running: list[tjob.Job] = []
    try:
        for count in (100, 500):
            while len(running) < count:
                running.append(eng.start(tjob.JobSpec(["sleep", "100000"])))
            fig = start_latency(eng, n)
            fig.name = f"{count} running"
            figs.append(fig)
    finally:
        for job in running:
            job._begin_stop(0)
        for job in running:
            job.stop(grace=0)
    ratio = figs[-1].p50 / figs[0].p50
    return Result(
        "B7",
        "start latency with 0 / 100 / 500 jobs running (state on a tmpfs)",
        figs,
        f"{ratio:.2f}x from 0 to 500",
        "<= 1.5x",
        ratio <= 1.5,
        "make bench BENCH=B7",
    )


def run(selected: set[str], quick: bool) -> list[Result]:
    n = 50 if quick else 200
    out: list[Result] = []
    if not selected & {"B1", "B2", "B6", "B7"}:
        return out
    with tempfile.TemporaryDirectory(prefix="tjob-bench-", dir=BENCH_DIR) as d:
        tmp = Path(d)
        with (
            tjob.Engine(
                tmp / "state",
                cgroup_parent="tjob-bench",
                output_cap=4 * GIB,
                # TJOB_BENCH_DURABLE=0: without fsync, to measure what durability costs.
                durable=os.environ.get("TJOB_BENCH_DURABLE") != "0",
            ) as eng,
            _engine_on_tmpfs(tmp) as mem_eng,
        ):
            if "B1" in selected:
                out.append(b1(eng, mem_eng, tmp, n))
            if "B2" in selected:
                out.append(b2(eng, tmp, 3))
            if "B6" in selected:
                out.append(b6(eng, 10 if quick else 20))
            if "B7" in selected:
                # A trend over minutes: on the disk, its slow spells would hide or fake one.
                out.append(b7(mem_eng, 30 if quick else 100))
        _remove_cgroups("tjob-bench")
    return out
