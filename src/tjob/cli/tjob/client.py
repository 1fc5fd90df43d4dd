"""The connection to tjobs: one grpcio channel over mutual TLS, its calls, and their errors in
words a user can act on.

grpc and the generated messages are imported when a :class:`Client` is made, after the command
line is parsed (``tjob -h`` and usage errors never pay for them, ~70 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import CliError
from .render import warn

if TYPE_CHECKING:
    import grpc

    from tjob.api.tjob.v1 import tjob_pb2 as pb
    from tjob.status import JobStatus

CALL_TIMEOUT = 60.0  # seconds: a guard against a hung server on calls that answer at once
MAX_REPLY = 4 << 20  # the largest reply tjobs sends (tjob.api.answers.MAX_REPLY)
SERVICE = "/tjob.v1.JobService/"
# Refusals that concern one job of several (the others may still succeed).
PER_JOB_CODES = frozenset(
    {"NOT_FOUND", "PERMISSION_DENIED", "INVALID_ARGUMENT", "FAILED_PRECONDITION"}
)


class Client:
    """One grpcio channel to tjobs, the generated messages (``pb``) and call wrappers."""

    def __init__(self, args: argparse.Namespace) -> None:
        # Before grpc's first import: its C core logs handshake failures on stderr itself,
        # which would add lines to our one-line errors.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
        from tjob.api.tls import client_credentials
        from tjob.errors import TjobError

        self.host: str = args.host
        self.ca: str = args.ca
        self.cert: str = args.cert
        try:
            creds = client_credentials(args.ca, args.cert, args.key)
        except TjobError as err:
            raise CliError(str(err)) from None

        import grpc

        from tjob.api.tjob.v1 import tjob_pb2

        self.pb = tjob_pb2
        self.grpc = grpc
        # No retries: a refused connection should fail now, not after a backoff.
        # The receive limit is what the server may send: no reply of tjobs is over 4 MiB.
        # Keepalive: a server gone without a word (its host died) fails a follow in ~80 s
        # instead of never.
        options = [
            ("grpc.enable_retries", 0),
            ("grpc.max_receive_message_length", MAX_REPLY),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        self.channel = grpc.secure_channel(args.host, creds, options=options)

    def close(self) -> None:
        self.channel.close()

    def unary(self, method: str, response: Any) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        return self.channel.unary_unary(
            SERVICE + method,
            request_serializer=_serialize,
            response_deserializer=response.FromString,
        )

    def stream(self, method: str, response: Any) -> grpc.UnaryStreamMultiCallable[Any, Any]:
        return self.channel.unary_stream(
            SERVICE + method,
            request_serializer=_serialize,
            response_deserializer=response.FromString,
        )

    def call(
        self, method: str, response: Any, request: Any, timeout: float | None = CALL_TIMEOUT
    ) -> Any:
        """One unary call; a failure becomes the :class:`CliError` a user should see."""
        try:
            return self.unary(method, response)(request, timeout=timeout)
        except self.grpc.RpcError as err:
            raise self.error(err) from None

    def error(self, err: grpc.RpcError) -> CliError:
        """The one line a user should see for a failed call."""
        return CliError(describe_rpc_error(err, self.host, self.ca, self.cert))

    @contextlib.contextmanager
    def streaming(self, call: Any) -> Iterator[None]:
        """Around reading a server stream: a failed call becomes the :class:`CliError` a user
        should see; anything else (Ctrl+C, a closed pipe) cancels the call, telling the server
        to stop sending."""
        try:
            yield
        except self.grpc.RpcError as err:
            raise self.error(err) from None
        except BaseException:
            cancel(call)
            raise

    def each(
        self, method: str, requests: Sequence[tuple[str, Any]], timeout: float | None = CALL_TIMEOUT
    ) -> Iterator[tuple[str, JobStatus | None]]:
        """Issue the calls at once (stop or wait on several jobs in parallel); yield in order.

        A call refused for its job (unauthorized, malformed id) prints the reason, prefixed with
        the job when there are several, and yields None for it; any other failure (the server
        cannot be reached) ends the command with one line, not one per job.
        """
        call = self.unary(method, self.pb.JobStatus)
        futures = [(ref, call.future(req, timeout=timeout)) for ref, req in requests]
        try:
            for ref, fut in futures:
                try:
                    yield ref, status(fut.result())
                except self.grpc.RpcError as err:
                    if err.code().name not in PER_JOB_CODES:
                        raise self.error(err) from None
                    message = str(self.error(err))
                    warn(f"{ref}: {message}" if len(requests) > 1 else message)
                    yield ref, None
        finally:
            for _ref, fut in futures:
                cancel(fut)


def _serialize(msg: Any) -> bytes:
    data: bytes = msg.SerializeToString()
    return data


def cancel(call: Any) -> None:
    """Cancel a grpcio call or future (untyped in grpc-stubs)."""
    call.cancel()


def status(msg: pb.JobStatus) -> JobStatus:
    """A status from the wire as the library's :class:`~tjob.status.JobStatus`."""
    from tjob.api.convert import status_from_pb

    return status_from_pb(msg)


def describe_rpc_error(err: Any, host: str, ca: str, cert: str) -> str:
    """Turn grpcio's status (code and details) into words a user can act on."""
    code = err.code().name if hasattr(err, "code") else "UNKNOWN"
    details: str = (err.details() if hasattr(err, "details") else None) or ""
    if code == "UNAVAILABLE":
        return _unavailable(details, host, ca, cert)
    if code == "DEADLINE_EXCEEDED":
        return f"tjobs at {host} did not answer in time"
    if code in ("INTERNAL", "UNKNOWN"):
        return f"server error: {details}" if details else "server error"
    # NOT_FOUND "unauthorized", INVALID_ARGUMENT (limits over caps, bad ids), UNAUTHENTICATED,
    # RESOURCE_EXHAUSTED...: the server's message is written for users.
    return details or code.lower().replace("_", " ")


def _unavailable(details: str, host: str, ca: str, cert: str) -> str:
    """Why the server could not be reached, from grpcio's (C core's) wording."""
    if details == "tjobs is shutting down":
        return details
    where = f"cannot reach tjobs at {host}"
    low = details.lower()
    if "connection refused" in low:
        return f"{where}: connection refused"
    if "certificate_verify_failed" in low:
        why = details.split("CERTIFICATE_VERIFY_FAILED:", 1)[-1].strip().removesuffix(": OK")
        return f"{where}: its certificate is not trusted by CA {ca} ({why})"
    if "hostname verification" in low or "peer name" in low:
        name = host.rsplit(":", 1)[0]
        return f"{where}: its certificate is not valid for the name {name}"
    if "handshake" in low or "ssl" in low:
        return f"{where}: TLS handshake failed ({details})"
    if "connection reset" in low or "socket closed" in low or "end of tcp stream" in low:
        if "failed to connect" in low:  # closed during the handshake: likely our certificate
            why = f"does it trust the client certificate {cert}?"
            return f"{where}: it closed the connection ({why})"
        # Closed once connected: the server went away (stopped, restarted, killed), not us.
        return f"tjobs at {host} closed the connection during the call (stopped or restarted?)"
    if "resolv" in low or "dns" in low:
        return f"{where}: cannot resolve {host.rsplit(':', 1)[0]}"
    if "timeout" in low or "timed out" in low:
        return f"{where}: connection timed out"
    return f"{where}: {details or 'unavailable'}"
