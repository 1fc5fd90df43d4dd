"""What ``tjob`` prints: tables, human durations and sizes, status words, and job output bytes.

Every field that came from the server or a job (argv, owner, names, error messages) is shown
through :func:`escape`, so a job's argv or a client's certificate name cannot send escape
sequences to the terminal of whoever lists it. Job output (``logs``) is the exception: those
bytes are the data and are copied as they are.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from .errors import EXIT_ERROR

if TYPE_CHECKING:
    from tjob.api.tjob.v1 import tjob_pb2 as pb
    from tjob.status import JobStatus

PROG = "tjob"
SHORT_ID = 8
COMMAND_WIDTH = 30

# C0 controls (ESC, CR, LF, BS...), DEL and C1 controls (CSI as U+009B), the Unicode line and
# paragraph separators, the bidirectional overrides and isolates that reorder what follows, and
# lone surrogates (which the terminal's encoder would refuse).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` with every character that could move the cursor or restyle a terminal shown as
    ``\\n``, ``\\x1b``, ``\\u202e``: what is printed stays on its line and shows what was there."""
    return _UNSAFE.sub(_escaped, text)


def human_duration(seconds: float) -> str:
    """``20s``, ``3m``, ``5h``, ``2d``: the largest whole unit, as ``docker ps`` abbreviated."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def human_bytes(n: float) -> str:
    """``0B``, ``512B``, ``1.5KiB``, ``20MiB``: binary units, at most one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            text = f"{n:.1f}".removesuffix(".0") if unit != "B" else f"{int(n)}"
            return f"{text}{unit}"
        n /= 1024
    raise AssertionError("unreachable")


def short_id(job_id: str) -> str:
    """The id a user types and sees (``docker ps``'s short form)."""
    return escape(job_id[:SHORT_ID])


def status_text(st: JobStatus, now: float) -> str:
    """The STATUS column: ``Running 20s``, ``Exit (3)``, ``Killed (SIGKILL) stopped`` ..."""
    from tjob.status import JobState

    if st.state is JobState.RUNNING:
        return f"Running {human_duration(now - (st.started_at or st.created_at))}"
    if st.state is JobState.FAILED:
        return f"Failed: {st.error or 'did not start'}"
    if st.state is JobState.QUEUED:
        return f"Queued {human_duration(now - st.created_at)}"
    if st.state is JobState.STARTING:
        return f"Starting {human_duration(now - st.created_at)} (not confirmed yet)"
    if st.state is JobState.CANCELLED:
        return "Cancelled (never ran)"
    if st.state is JobState.LOST:
        return f"Lost: {st.error}" if st.error else "Lost"
    if st.state is JobState.DAMAGED:
        return f"Damaged: {st.error}" if st.error else "Damaged"
    if st.oom_killed:
        text = "OOM killed"
    elif st.signal is not None:
        text = f"Killed ({st.signal_name})"
    else:
        text = f"Exit ({st.exit_code})"
    if st.timed_out:
        ago = f" {human_duration(now - st.ended_at)} ago" if st.ended_at else ""
        return f"Timed out ({st.shell_exit_code}){ago}"
    return f"{text} stopped" if st.stopped else text


def command_text(argv: Sequence[str], width: int = COMMAND_WIDTH) -> str:
    """The COMMAND column: the argv as a shell would read it, quoted, escaped, cut to ``width``."""
    import shlex

    text = escape(shlex.join(argv))
    if len(text) > width:
        text = text[: width - 3] + "..."
    return f'"{text}"'


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart (the last one unpadded), as ``docker ps``.

    Every cell is escaped: one row is one line whatever a job or a server put in it.
    """
    cells = [list(header), *([escape(c) for c in r] for r in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        padded = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)] + [r[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def ps_table(statuses: Sequence[JobStatus], now: float) -> str:
    """``tjob ps``: id, command, created, status; the owner when the jobs have several, and the
    node when a gateway placed them (a cluster, issue 18)."""
    header = ["JOB ID", "COMMAND", "CREATED", "STATUS"]
    with_owner = len({st.owner for st in statuses}) > 1  # an admin's listing: say whose
    with_node = any(st.node for st in statuses)
    if with_owner:
        header.insert(2, "OWNER")
    if with_node:
        header.append("NODE")
    rows = []
    for st in statuses:
        row = [
            st.id[:SHORT_ID],
            command_text(st.argv),
            f"{human_duration(now - st.created_at)} ago",
            status_text(st, now),
        ]
        if with_owner:
            row.insert(2, st.owner)
        if with_node:
            row.append(st.node)
        rows.append(row)
    return table(header, rows)


def stats_table(jobs: Iterable[pb.JobStats]) -> str:
    """``tjob stats``: one sample as docker's columns (CPU only for running jobs)."""
    from tjob.api.tjob.v1 import tjob_pb2

    # UNSPECIFIED: an older server that sends no state, and only running jobs.
    live = (tjob_pb2.JOB_STATE_UNSPECIFIED, tjob_pb2.JOB_STATE_RUNNING)
    rows = []
    for j in jobs:
        limit = j.memory_limit_bytes
        mem = human_bytes(j.memory_bytes) + (f" / {human_bytes(limit)}" if limit else "")
        rows.append(
            [
                j.id[:SHORT_ID],
                command_text(j.argv),
                f"{j.cpu_percent:.2f}%" if j.state in live else "--",
                mem,
                f"{100 * j.memory_bytes / limit:.2f}%" if limit else "--",
                str(j.pids),
                f"{human_bytes(j.io_read_bytes)} / {human_bytes(j.io_write_bytes)}",
            ]
        )
    header = ["JOB ID", "COMMAND", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS", "BLOCK I/O"]
    return table(header, rows)


# --- output -------------------------------------------------------------------------------------


def out(text: str) -> None:
    """Print a line (or lines) of ours on stdout now; callers escape what came from elsewhere."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """``tjob: MESSAGE`` on stderr, escaped: it often quotes the server or a job."""
    sys.stderr.write(f"{PROG}: {escape(message)}\n")
    sys.stderr.flush()


def print_ids(results: Iterable[tuple[str, JobStatus | None]]) -> int:
    """Print each job's short id as its call succeeds; the exit code (1 if any was refused)."""
    failed = False
    for _ref, st in results:
        if st is None:
            failed = True
        else:
            out(short_id(st.id))
    return EXIT_ERROR if failed else 0


def write_bytes(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` unchanged (no text layer, no buffering to flush later)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def copy_output(chunks: Iterable[pb.LogChunk]) -> None:
    """A job's output as it is: stdout chunks to our stdout, stderr chunks to our stderr."""
    from tjob.api.tjob.v1 import tjob_pb2

    for chunk in chunks:
        if chunk.truncated:
            warn("the rest of this job's output was not kept (output cap or full disk)")
            continue
        write_bytes(2 if chunk.stream == tjob_pb2.STREAM_STDERR else 1, chunk.data)
