"""A call's request, read with a size cap, and the gRPC status its failure answers with.

Error answers (never UNKNOWN for an expected case):

=====================  ===================  ===========================================
situation              code                 message
=====================  ===================  ===========================================
no client identity     UNAUTHENTICATED      says so
malformed request/id   INVALID_ARGUMENT     what is wrong (limits over a cap name it)
ambiguous id prefix    INVALID_ARGUMENT     "... is ambiguous ..." (among your jobs)
unknown/others' job    NOT_FOUND            "unauthorized" (the same for both)
running-job cap        RESOURCE_EXHAUSTED   the cap
per-client limit       RESOURCE_EXHAUSTED   the limit and its tjobs flag (see limits.py)
stored jobs/disk quota RESOURCE_EXHAUSTED   the quota and its tjobs flag (see quotas.py)
request too large      RESOURCE_EXHAUSTED   the size and the limit (Run 4 MiB, others 64 KiB)
compressed request     UNIMPLEMENTED        says so
shutting down          UNAVAILABLE          "tjobs is shutting down"
engine/cgroup failure  INTERNAL             the engine's message (logged)
bug                    INTERNAL             "internal error" (traceback logged)
=====================  ===================  ===========================================
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message
from grpclib.const import Status as Code
from grpclib.server import Stream

from ..errors import (
    AmbiguousJobId,
    EngineClosed,
    ExecLimit,
    InvalidSpec,
    JobFinished,
    JobNotFound,
    JobRunning,
    NameInUse,
    NoSpace,
    StdinUnavailable,
    TjobError,
)
from .authz import UNAUTHORIZED, Unauthenticated
from .limits import LimitExceeded
from .tjob.v1 import tjob_pb2 as pb

# Largest request message: room for the engine's own argv and environment bounds (256 KiB each).
MAX_REQUEST = 4 << 20
# Every other request is small (a Stats of 1000 full ids is ~35 kB): a bigger one is refused
# before it is read or parsed.
MAX_SMALL_REQUEST = 64 << 10
# An Attach request carries stdin: up to 1 MiB of data a message (issue 16; fewer, bigger
# messages move stdin several times faster through grpclib than 64 KiB ones).
MAX_ATTACH_DATA = 1 << 20
MAX_ATTACH_REQUEST = MAX_ATTACH_DATA + 64
# Largest reply: what a client must accept (tjob's receive limit). Logs chunks (1 MiB), pages of
# List (500 jobs, argv cut to 1 KiB), Stats (1000 jobs, the same), one job's whole status
# (argv up to 256 KiB) all stay under it.
MAX_REPLY = 4 << 20
_PREFIX = struct.Struct(">?I")  # gRPC message prefix: compressed flag, length
SHUTTING_DOWN = "tjobs is shutting down"

_Req = TypeVar("_Req", bound=Message)


class QuotaExceeded(TjobError):
    """The caller already has as many running jobs as the server allows one identity."""


class TooLarge(TjobError):
    """A request message above MAX_REQUEST."""


class Unsupported(TjobError):
    """A request the server does not implement (a compressed message)."""


class ShuttingDown(TjobError):
    """The server is stopping and takes no new calls."""


async def read_request(
    stream: Stream[_Req, Any],
    kind: type[_Req],
    receiving: Callable[[int], contextlib.AbstractContextManager[None]],
) -> _Req:
    """The call's one request message, read with a size cap, within the client's budget of
    request bytes being received (``receiving``).

    grpclib buffers a message of whatever size its 5-byte prefix announces (up to 4 GiB), so
    the prefix is read here from its protocol stream and a large message refused unread; one
    the client has no budget left for is refused unread too (what is not read is not
    acknowledged, so HTTP/2 flow control holds the rest at the client).
    """
    msg = await read_next(stream, kind, receiving)
    if msg is None:
        raise InvalidSpec("the request message is missing")
    return msg


async def read_next(
    stream: Stream[_Req, Any],
    kind: type[_Req],
    receiving: Callable[[int], contextlib.AbstractContextManager[None]],
) -> _Req | None:
    """The next request message of a client-streaming call, as :func:`read_request` reads
    one; None once the client has ended its side of the stream."""
    raw = stream._stream  # grpclib.protocol.Stream (grpclib pinned < 0.5)
    try:
        prefix = await raw.recv_data(5)
    except AssertionError:
        # grpclib asserts when the stream ends before the length asked for.
        raise InvalidSpec("the request message is cut short") from None
    if not prefix:
        return None
    if len(prefix) < 5:
        raise InvalidSpec("the request message is cut short")
    compressed, size = _PREFIX.unpack(prefix)
    if compressed:
        raise Unsupported("compressed requests are not supported")
    cap = {pb.RunRequest: MAX_REQUEST, pb.AttachRequest: MAX_ATTACH_REQUEST}.get(
        kind, MAX_SMALL_REQUEST
    )
    if size > cap:
        raise TooLarge(
            f"the request is {size} bytes, more than the {cap} this server takes "
            f"in a {kind.__name__}"
        )
    try:
        with receiving(size):
            data = await raw.recv_data(size)
    except AssertionError:
        raise InvalidSpec("the request message is cut short") from None
    try:
        return kind.FromString(data)
    except DecodeError:
        raise InvalidSpec(f"the request is not a valid {kind.__name__} message") from None


def answer(exc: Exception) -> tuple[Code, str]:
    """The gRPC status for an exception raised while serving a call."""
    if isinstance(exc, AmbiguousJobId):
        return Code.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, JobNotFound):
        return Code.NOT_FOUND, UNAUTHORIZED  # the same words whether missing or someone else's
    if isinstance(exc, InvalidSpec):
        return Code.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, Unauthenticated):
        return Code.UNAUTHENTICATED, str(exc)
    if isinstance(exc, QuotaExceeded | TooLarge | LimitExceeded | NoSpace | ExecLimit):
        return Code.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, Unsupported):
        return Code.UNIMPLEMENTED, str(exc)
    if isinstance(exc, NameInUse):
        return Code.ALREADY_EXISTS, str(exc)
    if isinstance(exc, JobRunning | JobFinished | StdinUnavailable):
        return Code.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, ShuttingDown | EngineClosed):
        return Code.UNAVAILABLE, SHUTTING_DOWN
    if isinstance(exc, TjobError):
        return Code.INTERNAL, str(exc)
    return Code.INTERNAL, "internal error (see the tjobs log)"


def expected(exc: Exception) -> bool:
    return isinstance(exc, TjobError)


def peer(stream: Stream[Any, Any]) -> str:
    addr = stream.peer.addr()
    return f"{addr[0]}:{addr[1]}" if addr else "unknown peer"
