"""The cluster's pure parts (issue 18): a job's limits as a Ray request, a Ray node entry as a
tjob node, the ``node=`` filter, and the ``node`` field on the wire. No Ray needed."""

from __future__ import annotations

import pytest

from tjob.api import convert
from tjob.cluster.placement import SLOT, fits, node_from_ray, request, shown
from tjob.errors import InvalidSpec
from tjob.filters import matcher, parse
from tjob.status import JobState, JobStatus


def test_request_translates_cpu_memory_and_node() -> None:
    assert request(150, 2048) == {SLOT: 1.0, "CPU": 1.5, "memory": 2048.0 * (1 << 20)}
    assert request(0, 0) == {SLOT: 1.0}
    assert request(50, 0, "b")["tjob-node:b"] == 1.0
    assert shown(request(150, 2048)) == "cpu 150% mem 2048MB"


def test_fits_only_a_node_with_every_resource() -> None:
    node = {SLOT: 1000.0, "CPU": 1.0, "memory": 1024.0 * (1 << 20), "tjob-node:a": 1000.0}
    assert fits(request(100, 1024, "a"), node)
    assert not fits(request(150, 0), node)
    assert not fits(request(50, 2048), node)
    assert not fits(request(50, 0, "b"), node)


def test_node_from_ray_entry() -> None:
    entry = {
        "NodeID": "ff",
        "Alive": True,
        "NodeManagerAddress": "10.0.0.7",
        "Resources": {"CPU": 2.0},
        "Labels": {"tjob.node": "a", "tjob.port": "8443"},
    }
    node = node_from_ray(entry)
    assert node is not None and node.address == "10.0.0.7:8443" and node.name == "a"
    assert node_from_ray({**entry, "Labels": {"ray.io/node-id": "ff"}}) is None  # the head
    assert node_from_ray({**entry, "Labels": {"tjob.node": "a", "tjob.port": "x"}}) is None


def test_node_filter_and_wire_field() -> None:
    st = JobStatus(id="0" * 32, state=JobState.RUNNING, argv=("true",), node="b")
    assert matcher([parse("node=b")])(st)
    assert not matcher([parse("node=a")])(st)
    with pytest.raises(InvalidSpec):
        parse("node=")
    assert convert.status_from_pb(convert.status_to_pb(st)).node == "b"
