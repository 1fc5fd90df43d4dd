"""``tjob exec [-e K=V] [-w DIR] JOB COMMAND...``: run a command inside a running job, stream
its output, pass its exit code on (issue 16)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from ..client import Client
from ..errors import EXIT_USAGE, CliError
from ..render import copy_output
from .run import _env


def main(c: Client, args: argparse.Namespace) -> int:
    if args.interactive or args.tty:
        raise CliError(
            "exec -i/-t is not supported yet (stdin and terminals come with tjob attach); "
            "run it without them",
            EXIT_USAGE,
        )
    pb = c.pb
    req = pb.ExecRequest(id=args.job, argv=args.argv, env=_env(args.env), workdir=args.workdir)
    call = c.stream("Exec", pb.ExecResponse)(req)
    ended: list[Any] = []
    with c.streaming(call):
        copy_output(_output(call, ended))
    if not ended:
        raise CliError("the server ended the exec without its exit")
    end = ended[0]
    if end.HasField("exit_code"):
        return int(end.exit_code)
    if end.HasField("signal"):
        return 128 + int(end.signal)
    code = 127 if "No such file or directory" in end.error else 126
    raise CliError(end.error or "the command did not start", code)


def _output(responses: Any, ended: list[Any]) -> Iterator[Any]:
    """The output chunks of the stream; its last message, the exit, into ``ended``."""
    for msg in responses:
        if msg.HasField("exit"):
            ended.append(msg.exit)
        else:
            yield msg.output
