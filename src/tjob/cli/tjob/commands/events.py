"""``tjob events [--filter F] [--since DURATION] [--json]``: lifecycle events as they happen."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..client import Client
from ..render import escape, out, warn


def main(c: Client, args: argparse.Namespace) -> int:
    pb = c.pb
    req = pb.EventsRequest(filters=args.filters)
    if args.since is not None:
        req.since = time.time() - args.since
    call = c.stream("Events", pb.Event)(req)
    with c.streaming(call):
        for e in call:
            if e.kind == "missed":
                warn(f"missed {e.missed} events (this reader fell behind)")
            elif args.json:
                out(_json(e))
            else:
                out(line(e))
    return 0


def line(e: Any) -> str:
    """``2026-12-01T15:04:05 a1b2c3d4 nightly exited (0)``."""
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e.time))
    what = e.kind
    if e.HasField("exit_code"):
        what += f" ({e.exit_code})"
    elif e.HasField("signal"):
        what += f" (signal {e.signal})"
    if e.error:
        what += f": {e.error}"
    who = f" {e.owner}" if e.owner else ""
    return escape(f"{when} {e.id[:8]} {e.name or '-'}{who} {what}")


def _json(e: Any) -> str:
    import json

    d = {
        "seq": e.seq,
        "time": e.time,
        "kind": e.kind,
        "id": e.id,
        "owner": e.owner,
        "name": e.name,
        "labels": dict(e.labels),
        "exit_code": e.exit_code if e.HasField("exit_code") else None,
        "signal": e.signal if e.HasField("signal") else None,
        "error": e.error or None,
    }
    return json.dumps(d)
