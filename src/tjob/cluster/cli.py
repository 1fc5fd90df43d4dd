"""``tjobs node`` and ``tjobs gateway`` (issue 18): the flags of ``tjobs`` plus the cluster's.

``tjobs node --ray ADDRESS --name NAME ...`` is a ``tjobs`` whose only client is the gateway,
joined to Ray by a ``ray start --block`` it runs and owns (so the node's Ray membership and its
engine come and go together). ``tjobs gateway --ray ADDRESS ...`` is the front door: it serves
the usual API over mutual TLS and places each job with Ray.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..cli import serving, startup
from ..cli.tjobsargs import PROG, build_parser
from ..errors import TjobError
from .placement import LABEL_NODE, LABEL_PORT, SLOT, node_resource
from .services import GATEWAY

if TYPE_CHECKING:
    import ssl

    from ..api.policy import Policy
    from ..api.tls import ServerFiles

PR_SET_PDEATHSIG = 1


def main(kind: str, argv: list[str]) -> int:
    from ..cli import service

    parser = build_parser()
    parser.prog = f"{PROG} {kind}"
    service.add_flags(parser)
    parser.add_argument("--ray", required=True, metavar="ADDRESS", help="the Ray cluster (GCS)")
    (_node_flags if kind == "node" else _gateway_flags)(parser)
    args = parser.parse_args(argv)
    try:
        if importlib.util.find_spec("ray") is None:
            startup.fail("the cluster needs Ray: pip install 'tjob[cluster]'")
        return _node(args) if kind == "node" else _gateway(args)
    except (startup.Refusal, TjobError) as err:
        print(f"{PROG} {kind}: {err}", file=sys.stderr)
        return startup.EXIT_REFUSED


# --- tjobs node ---------------------------------------------------------------------------------


def _node_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=socket.gethostname(), help="the node's name (default: host)")
    p.add_argument("--gateway", default=GATEWAY, help="the gateway's certificate name")
    p.add_argument("--slots", type=int, default=1000, help="most jobs at once on this node")
    p.add_argument("--num-cpus", type=float, help="CPUs this node offers Ray (default: all)")
    p.add_argument("--memory", type=int, help="memory bytes it offers (default: Ray's guess)")
    p.add_argument("--ray-arg", action="append", default=[], help="more `ray start` arguments")
    # The gateway is one client making every call: the per-client limits are its.
    p.set_defaults(client_calls=8192, client_follows=2000, client_rate=100000.0)


def _node(args: argparse.Namespace) -> int:
    from .services import NodeService

    _, port = startup.parse_host(args.host)
    node_service = type("NodeService", (NodeService,), {"gateway": args.gateway})
    args.service = {"service": node_service}
    ray = _join_ray(args, port)
    try:
        return serving.serve(args)
    finally:
        if ray.poll() is None:
            ray.terminate()  # leaves the Ray cluster: the gateway sees the node go
            ray.wait()


def _join_ray(args: argparse.Namespace, port: int) -> subprocess.Popen[bytes]:
    """``ray start --block`` as a child that dies with us; we stop if it ends."""
    resources = {SLOT: args.slots, node_resource(args.name): args.slots}
    cmd = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--address",
        args.ray,
        "--block",
        "--disable-usage-stats",
        f"--resources={json.dumps(resources)}",
        f"--labels={LABEL_NODE}={args.name},{LABEL_PORT}={port}",
    ]
    if args.num_cpus is not None:
        cmd.append(f"--num-cpus={args.num_cpus:g}")
    if args.memory is not None:
        cmd.append(f"--memory={args.memory}")
    cmd += args.ray_arg
    libc = ctypes.CDLL(None, use_errno=True)
    child = subprocess.Popen(
        cmd,
        preexec_fn=lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM),  # noqa: PLW1509
        stdin=subprocess.DEVNULL,
    )

    def watch() -> None:
        child.wait()
        os.kill(os.getpid(), signal.SIGTERM)  # out of the cluster: stop serving

    threading.Thread(target=watch, name="tjob-ray", daemon=True).start()
    return child


# --- tjobs gateway ------------------------------------------------------------------------------


def _gateway_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node-cert", help="the gateway's client certificate to the nodes")
    p.add_argument("--node-key", help="its key (default: --node-cert with .key)")
    p.add_argument(
        "--place-wait",
        type=float,
        default=30.0,
        help="seconds a Run waits for a node with room before it is refused (default 30)",
    )
    # A cluster's caps are its nodes' (Ray refuses what fits no node), not the gateway host's.
    p.set_defaults(state_dir="/var/lib/tjob-gateway", max_cpu=100 * 1024, max_mem=1 << 24)


def _gateway(args: argparse.Namespace) -> int:
    from ..api.quotas import StoreQuota
    from ..cli import logfmt
    from .raycluster import RayCluster

    startup.parse_host(args.host)
    policy = startup.policy(args)
    policy = type(policy)(**{**policy.__dict__, "store": StoreQuota(), "job_user": None})
    tls, files = startup.tls(args)
    if not args.node_cert:
        startup.fail("--node-cert: the gateway's client certificate to the nodes is needed")
    from ..api.tls import client_context

    node_key = args.node_key or str(Path(args.node_cert).with_suffix(".key"))
    node_tls = client_context(args.ca, args.node_cert, node_key)
    logfmt.install(args.log_format)
    ray = RayCluster(args.ray)
    try:
        return asyncio.run(_serve_gateway(args, policy, (tls, files), node_tls, ray))
    finally:
        ray.close()


async def _serve_gateway(
    args: argparse.Namespace,
    policy: Policy,
    tls: tuple[ssl.SSLContext, ServerFiles],
    node_tls: ssl.SSLContext,
    ray: object,
) -> int:
    import logging
    from typing import Any, cast

    from ..api.server import ApiServer
    from .backend import ClusterEngine
    from .records import Records
    from .services import GatewayService

    log = logging.getLogger("tjobs")
    records = Records(Path(args.state_dir))
    defaults = policy.defaults or policy.caps
    backend = ClusterEngine(
        cast(Any, ray),
        records,
        node_tls,
        defaults=defaults,
        place_wait=args.place_wait,
        max_running=policy.max_running,
        owner_max_running=policy.max_jobs,
    )
    await backend.start()
    api = ApiServer(cast(Any, backend), policy, tls[0], files=tls[1], service=GatewayService)
    host, port = startup.parse_host(args.host)
    await api.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("gateway listening on %s (Ray at %s)", args.host, args.ray)
    await stop.wait()
    await api.shutdown()
    await backend.close()
    records.close()
    return 0
