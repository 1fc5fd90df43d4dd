"""B12: stdin throughput (issue 16). 1 GiB from a grpcio client through ``Attach`` into a job's
``cat > /dev/null``, against a pipe (``head -c 1G /dev/zero | cat > /dev/null``) and the
library's path without gRPC (``job.stdin()``: the supervisor's pipe lent to this process), in
the same run, interleaved."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tjob

from .api import JOB_USER, Client, Server, library
from .common import BENCH_DIR, Figure, Result, run_quiet
from .engine import GIB

IDS = {"B12"}
BLOCK = 1 << 20  # stdin per Attach message: the most the CLI sends and the server takes
SINK = ["sh", "-c", "cat > /dev/null"]


def _peak_rss_mib(pid: int) -> float:
    m = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(m.group(1)) / 1024 if m else 0.0


def _through_grpc(c: Client) -> float:
    """Seconds for 1 GiB into the job over Attach, until its exit is reported."""
    pb = c.pb
    st = c.run(pb.RunRequest(argv=SINK, stdin=True), timeout=60)
    block = bytes(BLOCK)
    n = GIB // BLOCK

    def requests() -> Iterator[Any]:
        yield pb.AttachRequest(start=pb.AttachStart(id=st.id, stdin=True))
        msg = pb.AttachRequest(data=block)
        for _ in range(n):
            yield msg
        yield pb.AttachRequest(data=bytes(GIB - n * BLOCK))
        yield pb.AttachRequest(eof=True)

    attach = c.channel.stream_stream(
        "/tjob.v1.JobService/Attach",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=pb.AttachReply.FromString,
    )
    t = time.perf_counter()
    end = None
    for reply in attach(requests(), timeout=600):
        if reply.WhichOneof("msg") == "exit":
            end = reply.exit
    took = time.perf_counter() - t
    if end is None or end.exit_code != 0:
        raise RuntimeError(f"B12: the job did not end well: {end}")
    return took


def _through_library(eng: tjob.Engine) -> float:
    job = eng.start(tjob.JobSpec(SINK, user=JOB_USER, stdin=True))
    block = bytes(1 << 20)
    t = time.perf_counter()
    with job.stdin() as lease:
        for _ in range(GIB // len(block)):
            lease.write(block)
        lease.close(eof=True)
    st = job.wait(60)
    took = time.perf_counter() - t
    if st.exit_code != 0:
        raise RuntimeError(f"B12: the library job did not end well: {st}")
    eng.remove(job.id)
    return took


def b12(c: Client, server: Server, tmp: Path, runs: int) -> Result:
    mbps: dict[str, list[float]] = {"gRPC Attach": [], "library lease": [], "pipe": []}
    rss_before = _peak_rss_mib(server.pid)
    with library(tmp) as eng:
        for _ in range(runs):
            t = time.perf_counter()
            run_quiet(["sh", "-c", "head -c 1G /dev/zero | cat > /dev/null"])
            mbps["pipe"].append(GIB / (time.perf_counter() - t) / 1e6)
            mbps["library lease"].append(GIB / _through_library(eng) / 1e6)
            mbps["gRPC Attach"].append(GIB / _through_grpc(c) / 1e6)
            c.clear()
    grpc_fig, lib, pipe = (Figure(k, v, "MB/s") for k, v in mbps.items())
    ratio = grpc_fig.p50 / pipe.p50
    return Result(
        "B12",
        "1 GiB client stdin → `tjob run -i`'s path (Attach over mTLS) → job `cat > /dev/null`",
        [grpc_fig, lib, pipe],
        f"{ratio:.2f}x pipe ({lib.p50 / pipe.p50:.2f}x for the library's lease)",
        ">= 0.1x pipe",
        ratio >= 0.1,
        "make bench BENCH=B12",
        [
            f"tjobs peak RSS {rss_before:.0f} MiB before, {_peak_rss_mib(server.pid):.0f} MiB "
            "after (flow control: the server holds a message or so per writer)",
            f"{BLOCK >> 10} KiB per Attach message (the CLI's size)",
        ],
    )


def run(selected: set[str], quick: bool) -> list[Result]:
    if not selected & IDS:
        return []
    with tempfile.TemporaryDirectory(prefix="tjob-bench-stdin-", dir=BENCH_DIR) as d:
        tmp = Path(d)
        tmp.chmod(0o711)
        server = Server(tmp)
        try:
            client = Client(server.target, server.certs)
            try:
                result = b12(client, server, tmp, 1 if quick else 3)
            finally:
                client.close()
        finally:
            problems = server.close()
        if problems:
            result.notes.append("cleanup after tjobs: " + "; ".join(problems))
        return [result]
