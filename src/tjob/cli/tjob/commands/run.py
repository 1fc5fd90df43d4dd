"""``tjob run [-a|-i|-t] COMMAND...``: start a job; print its id, or stream it (with -i/-t a
session: our stdin and terminal) and pass its code on."""

from __future__ import annotations

import argparse
import os
import secrets
import time
from typing import Any

from .. import terminal
from ..client import CALL_TIMEOUT, Client, cancel, status
from ..errors import EXIT_USAGE, CliError, exit_code
from ..render import copy_output, out, short_id, warn
from ..session import Options, attach

RUN_ATTEMPTS = 3


def main(c: Client, args: argparse.Namespace) -> int:
    from tjob.status import JobState

    pb = c.pb
    if args.tty:
        terminal.require_tty()
    keys = terminal.parse_detach_keys(
        terminal.DEFAULT_DETACH_KEYS if args.detach_keys is None else args.detach_keys
    )
    limits = pb.Limits(
        cpu_percent=args.cpu or 0,
        memory_mb=args.mem or 0,
        pids=args.pids or 0,
        rbps=args.rbps or 0,
        wbps=args.wbps or 0,
    )
    req = pb.RunRequest(
        argv=args.argv,
        limits=limits,
        env=_env(args.env),
        workdir=args.workdir,
        request_id=secrets.token_hex(16),  # one per invocation: its retries start one job
        name=args.name or "",
        labels=dict(args.labels),
    )
    req.volumes.extend(_volumes(c, args.volume))
    if args.interactive or args.tty:
        req.stdin, req.tty = True, args.tty
    if args.tty:
        rows, cols = terminal.window_size()
        req.tty_size.rows, req.tty_size.cols = (rows, cols) if rows and cols else (0, 0)
        if "TERM" in os.environ and "TERM" not in req.env:
            req.env["TERM"] = os.environ["TERM"]
    req.queue = args.queue
    if args.timeout is not None:
        req.timeout_seconds = args.timeout
    st = status(_run(c, req))
    attached = args.attach or args.interactive or args.tty
    if st.state in (JobState.FAILED, JobState.LOST):
        # It never started (no such command, bad workdir; or its launcher or supervisor died):
        # a shell's 127/126 (or 1), the id for ps.
        if not attached:
            out(short_id(st.id))
        raise CliError(st.error or "the job did not start", exit_code(st))
    if not attached:
        out(short_id(st.id))
        return 0
    if args.interactive or args.tty:
        return _session(c, st.id, args, keys)
    return _attach(c, st.id)


def _session(c: Client, job_id: str, args: argparse.Namespace, keys: bytes) -> int:
    """``-i``/``-t``: the job's output from its first byte, our stdin to it, its exit code."""
    opts = Options(job_id, send=args.interactive, tty=args.tty, logs=True, detach_keys=keys)
    code = attach(c, opts)
    if code is None:
        short = short_id(job_id)
        warn(f"detached from job {short} (it runs on; tjob attach {short} to come back)")
        return 0
    return code


def _run(c: Client, req: Any) -> Any:
    """Run; retried with the same request id after a lost connection: the server answers with
    the job the first attempt started, if it got that far, instead of starting a second one."""
    call = c.unary("Run", c.pb.JobStatus)
    for attempt in range(1, RUN_ATTEMPTS + 1):
        try:
            return call(req, timeout=CALL_TIMEOUT)
        except c.grpc.RpcError as err:
            if err.code() is not c.grpc.StatusCode.UNAVAILABLE or attempt == RUN_ATTEMPTS:
                raise c.error(err) from None
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _env(items: list[str]) -> dict[str, str]:
    """``-e K=V`` as given; ``-e K`` copies K from our own environment."""
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            if key not in os.environ:
                raise CliError(f"-e {key}: no such variable here (give {key}=VALUE)", EXIT_USAGE)
            value = os.environ[key]
        env[key] = value
    return env


def _volumes(c: Client, items: list[str]) -> list[Any]:
    """``-v NAME:/DIR[:ro|:rw]`` as messages; a malformed one is a usage error here."""
    from tjob.api.convert import volume_to_pb
    from tjob.errors import InvalidSpec
    from tjob.volumes import parse_request

    try:
        return [volume_to_pb(parse_request(item)) for item in items]
    except InvalidSpec as e:
        raise CliError(f"-v: {e}", EXIT_USAGE) from None


def _attach(c: Client, job_id: str) -> int:
    """Stream the job's output until it ends and return its exit code, as ``docker run``.

    Ctrl+C asks the server to stop the job (the default grace) and keeps streaming, so the
    output of its shutdown and its real exit code still arrive; a second Ctrl+C leaves it
    running. The stream is read on a thread: the main thread stays free to take Ctrl+C without
    interrupting grpcio in the middle of a read.
    """
    import threading

    pb = c.pb
    call = c.stream("Logs", pb.LogChunk)(pb.LogsRequest(id=job_id, follow=True))
    done = threading.Event()
    failure: list[BaseException] = []

    def pump() -> None:
        try:
            copy_output(call)
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=pump, name="logs", daemon=True).start()
    stopping: Any = None
    while True:
        try:
            done.wait()
            break
        except KeyboardInterrupt:
            if stopping is not None:
                cancel(call)
                raise
            warn(f"stopping job {short_id(job_id)} (Ctrl+C again to leave it running)")
            stopping = _stop_soon(c, job_id)
    for exc in failure:
        if isinstance(exc, c.grpc.RpcError):
            raise c.error(exc) from None
        raise exc
    return exit_code(status(c.call("Wait", pb.JobStatus, pb.JobRef(id=job_id), None)))


def _stop_soon(c: Client, job_id: str) -> Any:
    """Start a Stop call with the default grace; return its future."""
    import signal

    from tjob.spec import DEFAULT_GRACE

    req = c.pb.StopRequest(id=job_id, grace_seconds=DEFAULT_GRACE)
    # A second Ctrl+C must not land inside grpcio while it starts the call (it could leave the
    # channel locked): hold SIGINT until the call is on its way.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return c.unary("Stop", c.pb.JobStatus).future(req)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
