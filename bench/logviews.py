"""B13 (issue 16): ``logs --tail 100 --no-follow`` of a job with 1 GiB of output.

A job writes 1 GiB of 40-byte lines through tjob (its log is then a little over 1 GiB); then a
warm grpcio client asks ``Logs(tail=100, follow=false)`` again and again, interleaved with a
``Status`` round trip (the RPC's own floor) and with coreutils ``tail -n 100`` of a plain 1 GiB
file of the same lines (which also seeks from the end). The whole CLI process is measured a few
times as a note (Python and grpcio's import alone are ~90 ms: B8).
"""

from __future__ import annotations

import subprocess
import tempfile
from functools import partial
from pathlib import Path

from .api import BIN, Client, Server
from .common import BENCH_DIR, Figure, Result, run_quiet, timed
from .engine import GIB

LINE = "a line of the output of a job, 40 bytes"  # 39 characters and yes's newline
LINES = GIB // 40  # whole lines: 1 GiB less 24 bytes
IDS = {"B13"}


def _tail_rpc(c: Client, job: str) -> None:
    req = c.pb.LogsRequest(id=job, follow=False, tail=100)
    data = b"".join(chunk.data for chunk in c.logs(req, timeout=60))
    lines = data.count(b"\n")
    if lines != 100:
        raise RuntimeError(f"B13: --tail 100 gave {lines} lines")


def b13(c: Client, server: Server, tmp: Path, n: int) -> Result:
    write = f"yes '{LINE}' | head -n {LINES}"
    st = c.start(["sh", "-c", write])
    end = c.wait(c.pb.JobRef(id=st.id), timeout=600)
    if end.exit_code != 0:
        raise RuntimeError(f"B13: the writer job ended {end}")
    plain = tmp / "b13-plain"
    run_quiet(["sh", "-c", f"{write} > {plain}"])
    ref = c.pb.JobRef(id=st.id)
    for _ in range(5):  # warm-up: connection, code paths, the log's last pages
        _tail_rpc(c, st.id)
    ours, status, coreutils = [], [], []
    for _ in range(n):
        ours.append(timed(partial(_tail_rpc, c, st.id)))
        status.append(timed(partial(c.status, ref, timeout=60)))
        coreutils.append(timed(partial(run_quiet, ["tail", "-n", "100", str(plain)])))
    cli = [timed(partial(_cli_tail, server, st.id)) for _ in range(5)]
    plain.unlink()
    c.clear()
    figs = [
        Figure("Logs(tail=100, follow=false)", ours, "ms"),
        Figure("Status RPC", status, "ms"),
        Figure("coreutils `tail -n 100` of a plain 1 GiB file", coreutils, "ms"),
    ]
    p50 = figs[0].p50
    return Result(
        "B13",
        "`logs --tail 100 --no-follow` of a job's 1 GiB log, warm grpcio client",
        figs,
        f"p50 {p50:.1f} ms ({p50 / figs[1].p50:.1f}x a Status round trip)",
        "p50 <= 50 ms",
        p50 <= 50,
        "make bench BENCH=B13",
        [
            f"whole CLI process `tjob logs --tail 100 --no-follow`: p50 "
            f"{Figure('cli', cli, 'ms').p50:.0f} ms (its start-up is B8's ~90 ms)"
        ],
    )


def _cli_tail(server: Server, job: str) -> None:
    ca, cert, key = server.certs.files
    argv = [str(BIN / "tjob"), "--host", server.target, "--ca", ca, "--cert", cert]
    argv += ["--key", key, "logs", "--tail", "100", "--no-follow", job]
    out = subprocess.run(argv, capture_output=True, check=True, timeout=60).stdout
    lines = out.count(b"\n")
    if lines != 100:
        raise RuntimeError(f"B13: tjob logs --tail 100 printed {lines} lines")


def run(selected: set[str], quick: bool) -> list[Result]:
    if not selected & IDS:
        return []
    with tempfile.TemporaryDirectory(prefix="tjob-bench-b13-", dir=BENCH_DIR) as d:
        tmp = Path(d)
        tmp.chmod(0o711)
        server = Server(tmp)
        try:
            client = Client(server.target, server.certs)
            try:
                return [b13(client, server, tmp, 20 if quick else 100)]
            finally:
                client.close()
        finally:
            server.close()
