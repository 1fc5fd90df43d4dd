"""Logs in the formats of earlier releases, made from a current one: a state directory of the
previous release without keeping its binaries (fixtures stay a few bytes, made on the fly)."""

from __future__ import annotations

from tjob.logstore import HEADER, TRAILER, first_frame, old_header
from tjob.protocol import LOG_MAGIC_V1, LOG_MAGIC_V2


def frames(data: bytes) -> list[tuple[int, bytes, int]]:
    """(stream, payload, time) of each whole frame of a TJOBLOG3 log."""
    out, at = [], first_frame(3)
    while at + HEADER.size <= len(data):
        stream, length, t = HEADER.unpack_from(data, at)
        if not stream:
            break
        body = at + HEADER.size
        out.append((stream, data[body : body + length], t))
        at = body + length + TRAILER.size
    return out


def as_version(data: bytes, version: int) -> bytes:
    """A TJOBLOG3 log re-framed as TJOBLOG2 (checksummed, no times) or TJOBLOG1 (neither)."""
    magic = LOG_MAGIC_V2 if version == 2 else LOG_MAGIC_V1
    body = b"".join(old_header(s, p, version == 2) + p for s, p, _t in frames(data))
    return magic + body


def offset_of(data: bytes | bytearray, index: int) -> int:
    """The offset of the ``index``th frame of a TJOBLOG3 log."""
    at = first_frame(3)
    for _ in range(index):
        length = HEADER.unpack_from(data, at)[1]
        at += HEADER.size + length + TRAILER.size
    return at
