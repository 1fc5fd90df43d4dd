"""The cluster benches' client, run inside the cluster's network namespace by bench/cluster.py:
Run latency, one follower's throughput and the placement of 200 jobs, through the gateway and
(as the gateway calls it) directly to a node's tjobs. Prints JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from grpclib.client import Channel

from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.api.tjob.v1.tjob_grpc import JobServiceStub
from tjob.api.tls import client_context

MB = 1 << 20


async def _runs(stub: JobServiceStub, meta: dict[str, str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        st = await stub.Run(pb.RunRequest(argv=["true"]), metadata=meta)
        out.append((time.perf_counter() - t) * 1000)
        await stub.Wait(pb.JobRef(id=st.id), metadata=meta)
    return out


async def _follow(stub: JobServiceStub, meta: dict[str, str], size_mb: int) -> float:
    argv = ["head", "-c", f"{size_mb}M", "/dev/zero"]
    st = await stub.Run(pb.RunRequest(argv=argv, limits=pb.Limits(memory_mb=256)), metadata=meta)
    await stub.Wait(pb.JobRef(id=st.id), metadata=meta)
    got = 0
    t = time.perf_counter()
    async with stub.Logs.open(metadata=meta) as s:
        await s.send_message(pb.LogsRequest(id=st.id), end=True)
        async for chunk in s:
            got += len(chunk.data)
    assert got == size_mb * MB, got
    return size_mb / (time.perf_counter() - t)


async def _place(stub: JobServiceStub, n: int) -> float:
    sem = asyncio.Semaphore(20)

    async def one() -> None:
        async with sem:
            req = pb.RunRequest(argv=["true"], limits=pb.Limits(cpu_percent=10, memory_mb=64))
            await stub.Run(req)

    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - t


async def main(gw_port: int, node_port: int, certs: Path, quick: bool) -> None:
    n = 20 if quick else 100
    alice = client_context(certs / "ca.crt", certs / "cli.crt", certs / "cli.key")
    gwcert = client_context(
        certs / "ca.crt", certs / "tjob-gateway.crt", certs / "tjob-gateway.key"
    )
    gw = Channel("127.0.0.1", gw_port, ssl=alice)
    node = Channel("127.0.0.1", node_port, ssl=gwcert)
    g, d = JobServiceStub(gw), JobServiceStub(node)
    owner = {"tjob-owner": "alice"}
    out = {
        "b14_gateway": await _runs(g, {}, n),
        "b14_direct": await _runs(d, owner, n),
        "b15_gateway": await _follow(g, {}, 200),
        "b15_direct": await _follow(d, owner, 200),
        "b16_seconds": await _place(g, 200),
    }
    gw.close()
    node.close()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), "--quick" in sys.argv))
