"""A job's limits as a Ray resource request, and how tjob's nodes show up in Ray: pure data.

A node agent joins Ray with a slot resource ``tjob`` (its most jobs at once), a resource of its
own name (``tjob-node:NAME``, for ``run --node``) and labels saying its name and API port. A
job's request is its CPU (percent / 100), its memory (bytes) and one slot, held by a placement
group for the job's whole life: Ray never places more on a node than the node declared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SLOT = "tjob"
LABEL_NODE = "tjob.node"
LABEL_PORT = "tjob.port"
MIB = 1 << 20


def node_resource(name: str) -> str:
    return f"tjob-node:{name}"


@dataclass(frozen=True)
class NodeInfo:
    """A tjob node as Ray reports it."""

    name: str
    ray_id: str
    host: str
    port: int
    alive: bool
    resources: Mapping[str, float]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def request(cpu_percent: int, memory_mb: int, node: str = "") -> dict[str, float]:
    """The Ray bundle of a job with these limits (``node``: only that node has the resource)."""
    want: dict[str, float] = {SLOT: 1.0}
    if cpu_percent:
        want["CPU"] = cpu_percent / 100
    if memory_mb:
        want["memory"] = float(memory_mb * MIB)
    if node:
        want[node_resource(node)] = 1.0
    return want


def shown(want: Mapping[str, float]) -> str:
    """A request as a user reads it."""
    cpu = want.get("CPU", 0.0)
    mem = want.get("memory", 0.0) / MIB
    return f"cpu {cpu * 100:.0f}% mem {mem:.0f}MB"


def fits(want: Mapping[str, float], total: Mapping[str, float]) -> bool:
    """Whether a node with these total resources could ever hold the request."""
    return all(total.get(key, 0.0) >= value for key, value in want.items())


def node_from_ray(entry: Mapping[str, object]) -> NodeInfo | None:
    """A tjob node from one ``ray.nodes()`` entry; None for a Ray node without a tjob agent."""
    labels = entry.get("Labels") or {}
    if not isinstance(labels, Mapping):
        return None
    name, port = labels.get(LABEL_NODE), labels.get(LABEL_PORT)
    if not isinstance(name, str) or not isinstance(port, str) or not port.isdigit():
        return None
    resources = entry.get("Resources") or {}
    return NodeInfo(
        name=name,
        ray_id=str(entry.get("NodeID", "")),
        host=str(entry.get("NodeManagerAddress", "")),
        port=int(port),
        alive=bool(entry.get("Alive")),
        resources=dict(resources) if isinstance(resources, Mapping) else {},
    )
