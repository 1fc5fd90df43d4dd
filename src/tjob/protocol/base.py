"""What every codec of the contract shares: :class:`ProtocolError`, and the envelope of the
JSON messages (an object carrying the version)."""

from __future__ import annotations

import json
from typing import Any

from .constants import VERSION

__all__ = ["ProtocolError"]


class ProtocolError(ValueError):
    """A message that does not follow this contract."""


def json_object(data: bytes) -> dict[str, Any]:
    try:
        d = json.loads(data)
    except ValueError as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(d, dict):
        raise ProtocolError("not a JSON object")
    if d.get("v", VERSION) != VERSION:
        raise ProtocolError(f"protocol version {d.get('v')!r}, expected {VERSION}")
    return d
