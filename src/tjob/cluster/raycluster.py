"""Ray, as the gateway uses it: the nodes and their liveness, and placement groups that hold a
job's resources. The only module that imports ray. Every call blocks: callers run them in a
thread (asyncio.to_thread)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..errors import TjobError
from .placement import NodeInfo, node_from_ray

log = logging.getLogger("tjobs")
PG_PREFIX = "tjob-"


class RayUnavailable(TjobError):
    """Ray could not be reached or answered with an error."""


class RayCluster:
    """A connection to one Ray cluster (``ray.init(address=...)``, as a driver)."""

    def __init__(self, address: str) -> None:
        try:
            import ray
        except ImportError:
            raise TjobError("the cluster needs Ray: pip install 'tjob[cluster]'") from None
        self._ray: Any = ray
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except Exception as err:  # ray raises ConnectionError, RuntimeError, ...
            raise RayUnavailable(f"cannot join the Ray cluster at {address}: {err}") from None

    def nodes(self) -> list[NodeInfo]:
        """Every tjob node Ray knows, alive or dead (a name's newest entry last)."""
        out = []
        for entry in self._ray.nodes():
            node = node_from_ray(entry)
            if node is not None:
                out.append(node)
        return out

    def reserve(self, name: str, want: Mapping[str, float]) -> None:
        """Ask Ray to hold ``want`` on one node: a detached placement group called ``name`` (so
        it outlives a gateway restart). Returns at once; :meth:`placed` says where."""
        from ray.util.placement_group import placement_group

        placement_group([dict(want)], strategy="STRICT_PACK", name=name, lifetime="detached")

    def placed(self, name: str) -> str | None:
        """The Ray id of the node holding group ``name``; None while it waits for room."""
        from ray.util import get_placement_group
        from ray.util.placement_group import placement_group_table

        table = placement_group_table(get_placement_group(name))
        if table["state"] != "CREATED":
            return None
        node: str = table["bundles_to_node_id"][0]
        return node

    def release(self, name: str) -> None:
        """Remove the placement group ``name``, if it is still there."""
        from ray.util import get_placement_group

        try:
            pg = get_placement_group(name)
        except ValueError:  # no such group: already released
            return
        self._remove(pg)

    def held(self) -> set[str]:
        """The names of tjob's placement groups Ray still holds (created or pending)."""
        from ray.util.placement_group import placement_group_table

        return {
            t["name"]
            for t in placement_group_table().values()
            if t["name"].startswith(PG_PREFIX) and t["state"] != "REMOVED"
        }

    def _remove(self, pg: Any) -> None:
        from ray.util.placement_group import remove_placement_group

        try:
            remove_placement_group(pg)
        except Exception as err:
            log.warning("could not release a placement group: %s", err)

    def close(self) -> None:
        self._ray.shutdown()
