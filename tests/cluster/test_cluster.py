"""tjob on a real Ray cluster on this machine (issue 18): a head, two nodes with their own tjob
engines, a gateway and the CLI, in a private network namespace (see :mod:`cluster.cluster`).

Node a offers 1 CPU and 1 GiB, node b 2 CPUs and 1 GiB: a job of 150% CPU fits b only, and jobs
of 50% CPU and 500 MB fit two at a time on each.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the cluster tests need tjob[cluster] (make test-cluster)")

from support.timeouts import PROCESS_HANG

from cluster.cluster import Cluster

pytestmark = [pytest.mark.root, pytest.mark.cluster, pytest.mark.timeout(600)]
PORTS = {"a": 7101, "b": 7102}
LOST_WITHIN = 30.0  # the bound on reporting a dead node's running jobs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.head()
        c.node("a", PORTS["a"], cpus=1, memory_mb=1024)
        c.node("b", PORTS["b"], cpus=2, memory_mb=1024)
        c.gateway("--place-wait", "45")
        c.wait_nodes("a", "b")
        yield c
    finally:
        c.close()


def _status(c: Cluster, job: str, cert: str = "cli") -> dict[str, object]:
    found = [j for j in c.ps(cert) if str(j["id"]).startswith(job)]
    if not found:
        found = [j for j in _all(c, cert) if str(j["id"]).startswith(job)]
    assert len(found) == 1, found
    return found[0]


def _all(c: Cluster, cert: str = "cli") -> list[dict[str, object]]:
    import json

    out: list[dict[str, object]] = json.loads(c.ok("ps", "-a", "--json", cert=cert))
    return out


def test_placement_follows_resources(cluster: Cluster) -> None:
    big = cluster.ok("run", "--cpu", "150", "sleep", "600").strip()
    assert _status(cluster, big)["node"] == "b"  # a has one CPU
    pinned = cluster.ok("run", "--node", "a", "--cpu", "50", "sleep", "600").strip()
    assert _status(cluster, pinned)["node"] == "a"
    table = cluster.ok("ps")
    assert "NODE" in table.splitlines()[0]
    only_a = cluster.ok("ps", "-q", "--filter", "node=a").split()
    assert pinned in only_a and big not in only_a
    stats = cluster.ok("stats", "--no-stream", big, pinned)  # each from its own node
    assert big in stats and pinned in stats and "MEM USAGE" in stats, stats
    cluster.ok("stop", "-t", "0", big, pinned)
    refused = cluster.tjob("run", "--cpu", "300", "true")
    assert refused.returncode != 0
    assert "no node of the cluster can hold cpu 300%" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


def test_ten_jobs_never_overcommit(cluster: Cluster) -> None:
    """Ten jobs that fit two at a time per node: Ray holds each one's share for its life, so at
    no moment does a node run more than two (the Runs beyond wait for room)."""
    runs = [
        subprocess.Popen(
            [
                *cluster.ns,
                *_tjob_argv(cluster),
                "run",
                "--cpu",
                "50",
                "--mem",
                "500M",
                "--label",
                "batch=ten",
                "sleep",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(10)
    ]
    ids = []
    for proc in runs:
        out, err = proc.communicate(timeout=PROCESS_HANG * 3)
        assert proc.returncode == 0, err
        ids.append(out.strip())
    for job in ids:
        cluster.ok("wait", job)
    jobs = [j for j in _all(cluster) if j.get("labels", {}).get("batch") == "ten"]  # type: ignore[union-attr]
    assert len(jobs) == 10
    for node in ("a", "b"):
        spans = [(float(j["started_at"]), float(j["ended_at"])) for j in jobs if j["node"] == node]  # type: ignore[arg-type]
        for start, _ in spans:
            at_once = sum(1 for s, e in spans if s <= start < e)
            assert at_once <= 2, (node, spans)
    assert {j["node"] for j in jobs} == {"a", "b"}


def _tjob_argv(c: Cluster) -> list[str]:
    from cluster.cluster import BIN

    k = c.certs
    return [
        str(BIN / "tjob"),
        "--host",
        f"127.0.0.1:{c.gateway_port}",
        "--ca",
        str(k / "ca.crt"),
        "--cert",
        str(k / "cli.crt"),
        "--key",
        str(k / "cli.key"),
    ]


def test_logs_stop_wait_through_the_gateway(cluster: Cluster) -> None:
    job = cluster.ok(
        "run", "sh", "-c", "for i in $(seq 1 2000); do echo line $i; done; sleep 600"
    ).strip()
    follow = subprocess.Popen(
        [*cluster.ns, *_tjob_argv(cluster), "logs", "-f", job],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert follow.stdout is not None
    for i in range(1, 2001):  # every line, in order, from byte 0
        assert follow.stdout.readline() == f"line {i}\n"
    so_far = cluster.ok("logs", "--no-follow", job)  # of a running job: what there is, then ends
    assert so_far.count("\n") == 2000
    stopped = cluster.ok("stop", "-t", "0", job)
    assert job in stopped
    out, _ = follow.communicate(timeout=PROCESS_HANG)
    assert follow.returncode is not None and out == ""
    waited = cluster.tjob("wait", job)
    assert waited.returncode != 0  # killed: the shell's 128 + 9
    assert _status(cluster, job)["state"] == "stopped"
    whole = cluster.ok("logs", job)
    assert whole.count("\n") == 2000


def test_authorization_across_nodes(cluster: Cluster) -> None:
    jobs = [cluster.ok("run", "--node", n, "echo", "secret").strip() for n in ("a", "b")]
    for job in jobs:
        cluster.ok("wait", job)
        for cmd in (["logs", job], ["stop", job], ["wait", job], ["ps", job]):
            proc = cluster.tjob(*cmd, cert="other")
            assert proc.returncode != 0 and "unauthorized" in proc.stderr, (cmd, proc.stderr)
    seen = {str(j["id"])[:8] for j in _all(cluster, cert="other")}
    assert not seen & set(jobs)
    admin = {str(j["id"])[:8] for j in _all(cluster, cert="admin")}
    assert set(jobs) <= admin
    # A node takes calls from its gateway only, even with a certificate of the same CA.
    direct = cluster.tjob("ps", port=PORTS["a"])
    assert direct.returncode != 0 and "gateway only" in direct.stderr, direct.stderr


def test_gateway_restart_keeps_history(cluster: Cluster) -> None:
    job = cluster.ok("run", "--node", "a", "echo", "kept").strip()
    cluster.ok("wait", job)
    running = cluster.ok("run", "--node", "b", "sleep", "600").strip()
    cluster.procs["gateway"].stop()
    cluster.gateway("--place-wait", "45")
    cluster.wait_nodes("a", "b")
    st = _status(cluster, job)
    assert st["state"] == "exited" and st["node"] == "a"
    assert cluster.ok("logs", job) == "kept\n"
    assert _status(cluster, running)["state"] == "running"
    cluster.ok("stop", "-t", "0", running)


def test_node_killed_then_back(cluster: Cluster) -> None:
    done = cluster.ok("run", "--node", "a", "echo", "on a").strip()
    cluster.ok("wait", done)
    job = cluster.ok("run", "--node", "a", "sleep", "600").strip()
    waiter = subprocess.Popen(
        [*cluster.ns, *_tjob_argv(cluster), "wait", job], stdout=subprocess.PIPE, text=True
    )
    events = subprocess.Popen(
        [*cluster.ns, *_tjob_argv(cluster), "events", "--since", "10m", "--filter", "kind=lost"],
        stdout=subprocess.PIPE,
        text=True,
    )
    killed = time.monotonic()
    cluster.procs["node-a"].kill()
    cluster.until(
        lambda: _status(cluster, job)["state"] == "lost",
        LOST_WITHIN + 5,
        "a running job of a killed node is not reported lost",
    )
    assert time.monotonic() - killed <= LOST_WITHIN
    waiter.communicate(timeout=PROCESS_HANG)
    assert waiter.returncode != 0  # Wait ends too: lost
    assert events.stdout is not None
    lost = events.stdout.readline()  # the gateway's own event: the node's stream ended with it
    events.kill()
    events.wait()
    assert job in lost and "lost" in lost and "node a" in lost, lost
    gone = cluster.tjob("logs", done)
    assert gone.returncode != 0 and "node a" in gone.stderr, gone.stderr
    # Back with its state dir: its finished job's output is served again.
    mark = len(cluster.procs["gateway"].seen)
    cluster.node("a", PORTS["a"], cpus=1, memory_mb=1024)
    cluster.procs["gateway"].wait_line("node a joined", after=mark)
    assert cluster.ok("logs", done) == "on a\n"
    assert _status(cluster, done)["node"] == "a"
    cluster.until(
        lambda: _status(cluster, job)["state"] != "running" or _cleanup(cluster, job),
        PROCESS_HANG,
        "the node's job is neither ended nor stoppable",
    )


def _cleanup(c: Cluster, job: str) -> bool:
    return c.tjob("stop", "-t", "0", job).returncode == 0


__all__ = ["Path"]


RETRY = """
import asyncio, sys
from pathlib import Path
from grpclib.client import Channel
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.api.tjob.v1.tjob_grpc import JobServiceStub
from tjob.api.tls import client_context

async def main():
    k = Path(sys.argv[2])
    tls = client_context(k / "ca.crt", k / "cli.crt", k / "cli.key")
    ch = Channel("127.0.0.1", int(sys.argv[1]), ssl=tls)
    stub = JobServiceStub(ch)
    limits = pb.Limits(cpu_percent=50)
    req = pb.RunRequest(argv=["sleep", "600"], request_id="retried-run", limits=limits)
    a, b = await asyncio.gather(stub.Run(req), stub.Run(req))
    again = await stub.Run(req)
    print(a.id, b.id, again.id)
    ch.close()

asyncio.run(main())
"""


def test_a_retried_run_starts_one_job(cluster: Cluster) -> None:
    """The same request id twice at once, and again later: one job, wherever Ray placed it."""
    import sys

    argv = [*cluster.ns, sys.executable, "-c", RETRY, str(cluster.gateway_port), str(cluster.certs)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=PROCESS_HANG, check=False)
    assert done.returncode == 0, done.stderr
    ids = set(done.stdout.split())
    assert len(ids) == 1, done.stdout
    cluster.ok("stop", "-t", "0", ids.pop())
