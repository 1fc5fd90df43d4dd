"""The contract between the engine, its fork server and ``tjob-shim``: every message, file name,
magic and size that crosses a process boundary, with encode/decode for each message.

Pure (no I/O) and free of imports from the rest of the package. One package, a module per
family: :mod:`.constants` (every constant: ``setup.py`` generates the shim's ``protocol.h``
from it with :mod:`tjob.protocol_h`, so the C side takes its constants from there),
:mod:`.requests` (1, 2, 8, 9), :mod:`.jobfiles` (3, 5), :mod:`.reports` (4, 6, 7, 10); this
module hands all of it on. ``tjob-shim selftest`` lets the tests check the built shim against
it, message by message.

The messages, in the order a job meets them (``→`` is who sends to whom):

1. ``StartRequest``: engine → fork server, JSON, with the reply socket attached.
2. ``Handoff``: fork server → the spare supervisor, ``DIR\\0CAP`` with the same socket.
3. ``exec.bin`` (``ExecJob``): written by the engine, read by init (NUL-terminated fields).
4. init's reports to its supervisor, one line each: ``S PID`` (the command runs; ``-`` if its
   host pid is unknown), ``F STAGE SYSCALL ERRNO TARGET`` (a step failed), ``X WSTATUS``.
5. ``run.json`` (``RunInfo``): the supervisor, once the command runs (read on re-adoption).
6. ``StartReply``: supervisor (or, on failure, fork server) → engine, JSON, with pidfds of the
   supervisor and init on success.
7. ``EndReport``: supervisor → fork server (or the fallback recorder's argv):
   ``X WSTATUS PID STARTED_AT CUT`` or ``F STAGE SYSCALL ERRNO TARGET`` (``F`` alone: init died
   before it reported). Answered by ``ACK_RECORDED`` or ``ACK_DECLINED``.

Exec into a running job (issue 16), a small job of its own in ``EXECS_DIR/N`` of the job's
directory (its ``exec.bin``, ``output.log`` and ``end-report``):

8. ``ExecRequest``: engine → fork server, JSON (``op`` ``exec``), with the reply socket and a
   pidfd of the job's init attached.
9. ``EXEC_REQUEST`` + ``Handoff`` (the exec's directory; -i/-t's ``stdio``): fork server →
   zygote, with the same two fds; the zygote forks an exec supervisor
   (``EXEC_SUPERVISOR_ARGV``), which lends -i/-t's stdin as a job's supervisor does.
10. ``StartReply`` on the reply socket once the command runs, with a pidfd of the exec
   supervisor; on failure the socket is closed unanswered and the ``EndReport`` (``F ...``) is
   in ``end-report``. At the end, the exec supervisor writes its ``EndReport`` (``X ...``) there
   itself: nobody records an exec's end for it.
An interactive job (issue 16; ``Handoff.stdio``) has a stdin pipe or a pseudo-terminal whose
write end / master the supervisor holds, and a unix socket ``ATTACH_SOCKET`` in its directory
where it lends that descriptor to one writer at a time (see "the attach channel" in
:mod:`.constants`).

A supervisor is recognisable by its command line: ``SUPERVISOR_ARGV`` followed by its job id
(``tjob-shim\\0supervisor\\0ID``; a spare without a job yet has no id). The engine believes it
only for the pid that ``run.json`` names and only in its own PID namespace, which a job's
processes (in the job's PID namespace) can never be in.
"""

from .base import *  # noqa: F403
from .constants import *  # noqa: F403
from .jobfiles import *  # noqa: F403
from .reports import *  # noqa: F403
from .requests import *  # noqa: F403
