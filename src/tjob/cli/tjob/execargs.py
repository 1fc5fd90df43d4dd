"""The parser of ``tjob exec`` (issue 16), built only when the command is given."""

from __future__ import annotations

from .jobargs import JOB_HELP
from .parser import Parser, command_parser


def exec_parser() -> Parser:
    p, o = command_parser(
        "exec",
        "[OPTIONS] JOB COMMAND [ARG...]",
        "Run COMMAND inside a running job (its namespaces, cgroup, user and jail), stream its "
        "output and exit with its exit code (128+signal when killed). Everything after COMMAND "
        "belongs to it. Without -i/-t, Ctrl+C leaves it running; it ends with the job at the "
        "latest.",
    )
    o.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="set an environment variable over the job's (K alone: copy it from here); repeatable",
    )
    o.add_argument("-w", "--workdir", metavar="DIR", default="", help="working directory")
    o.add_argument("-i", "--interactive", action="store_true", help="send our stdin to the command")
    o.add_argument(
        "-t", "--tty", action="store_true", help="give the command a terminal (usually with -i)"
    )
    o.add_argument(
        "--detach-keys",
        metavar="KEYS",
        default=None,
        help="with -t: the keys that leave the command running (default ctrl-p,ctrl-q)",
    )
    p.add_argument("job", metavar="JOB", help=JOB_HELP)
    return p
