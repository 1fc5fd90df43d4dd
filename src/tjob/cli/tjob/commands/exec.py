"""``tjob exec [-i] [-t] [-e K=V] [-w DIR] JOB COMMAND...``: run a command inside a running
job, stream its output, pass its exit code on (issue 16). With -i/-t, a session over Attach
(our stdin, our terminal), as ``tjob run -it``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from typing import Any

from .. import terminal
from ..client import Client
from ..errors import CliError
from ..render import copy_output, short_id, warn
from ..session import Options, attach, exec_exit_code
from .run import _env


def main(c: Client, args: argparse.Namespace) -> int:
    pb = c.pb
    if args.tty:
        terminal.require_tty()
    req = pb.ExecRequest(id=args.job, argv=args.argv, env=_env(args.env), workdir=args.workdir)
    if args.interactive or args.tty:
        return _session(c, args, req)
    call = c.stream("Exec", pb.ExecResponse)(req)
    ended: list[Any] = []
    with c.streaming(call):
        copy_output(_output(call, ended))
    if not ended:
        raise CliError("the server ended the exec without its exit")
    return exec_exit_code(ended[0])


def _session(c: Client, args: argparse.Namespace, req: Any) -> int:
    """-i/-t: the exec's output from its first byte, our stdin (and terminal) to it."""
    req.stdin, req.tty = args.interactive, args.tty
    if args.tty and "TERM" in os.environ and "TERM" not in req.env:
        req.env["TERM"] = os.environ["TERM"]
    keys = terminal.parse_detach_keys(
        terminal.DEFAULT_DETACH_KEYS if args.detach_keys is None else args.detach_keys
    )
    opts = Options(
        args.job, send=args.interactive, tty=args.tty, logs=True, detach_keys=keys, exec=req
    )
    code = attach(c, opts)
    if code is None:
        warn(f"detached from an exec into job {short_id(args.job)} (it runs on)")
        return 0
    return code


def _output(responses: Any, ended: list[Any]) -> Iterator[Any]:
    """The output chunks of the stream; its last message, the exit, into ``ended``."""
    for msg in responses:
        if msg.HasField("exit"):
            ended.append(msg.exit)
        else:
            yield msg.output
