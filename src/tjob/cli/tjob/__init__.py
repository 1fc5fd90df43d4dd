"""``tjob``: the client CLI — run, stop, ps, logs, wait, stats and rm jobs on a ``tjobs`` server.

Thin by design: parse the command line (:mod:`.args`), make one gRPC call or a stream
(:mod:`.client`), print the answer (:mod:`.render`); each command is one small module in
:mod:`.commands`. Start-up time is most of what a user feels (``tjob ps``), so only the
command given is imported, grpc and the generated messages only once it needs them, and
nothing here touches the engine. Which server and certificates comes from flags, the
environment and contexts (:mod:`.settings`). Every expected failure is one line on stderr and a
non-zero exit; Ctrl+C exits 130, never with a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .args import MAIN_HELP, parse_args
from .errors import EXIT_INTERRUPTED, EXIT_SIGPIPE, EXIT_USAGE, CliError
from .render import warn

if TYPE_CHECKING:
    from .client import Client


def execute(argv: Sequence[str]) -> int:
    """Run one ``tjob`` command line; return its exit code (for callers in this process)."""
    import importlib

    client: Client | None = None
    try:
        args = parse_args(argv)
        if args.command is None:
            (sys.stdout if args.help else sys.stderr).write(MAIN_HELP)
            return 0 if args.help else EXIT_USAGE
        module = args.command.strip("_")  # __complete -> complete
        command = importlib.import_module(f"{__name__}.commands.{module}")
        if hasattr(command, "standalone"):
            # Needs no connection (context, completion) or makes its own (version).
            ran: int = command.standalone(args)
            return ran
        from .client import Client
        from .settings import resolve

        resolve(args)
        client = Client(args)
        code: int = command.main(client, args)
        client.close()
        return code
    except CliError as err:
        warn(str(err))
        if client is not None:
            client.close()
        return err.code
    except KeyboardInterrupt:
        # Not closing the channel: the interrupt may have left grpcio holding a lock that
        # close() would wait for. The process is ending; the server sees the connection go.
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`tjob logs JOB | head`): quietly, as cat does; point stdout
        # at /dev/null so a later flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """The ``tjob`` console script. Run as the program (no ``argv``), it ends the process itself.

    Ending with ``os._exit`` after flushing skips grpcio's and the interpreter's teardown,
    which measured 20-25 ms, a fifth of a whole ``tjob ps``; nothing of ours needs it.
    """
    if argv is not None:
        return execute(argv)
    code = execute(sys.argv[1:])
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = EXIT_SIGPIPE
    os._exit(code)
