"""The CLI's exit codes and its one expected failure, :class:`CliError`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tjob.status import JobStatus

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl+C
EXIT_CANNOT_EXEC = 126  # as a shell: found but could not be started
EXIT_NOT_FOUND = 127  # as a shell: no such command
EXIT_SIGPIPE = 141  # 128 + SIGPIPE, as `cat` killed by a closed pipe


class CliError(Exception):
    """An expected failure: printed as ``tjob: MESSAGE`` and exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def exit_code(st: JobStatus) -> int:
    """The code a shell would give for the job: its exit code, 128+signal, 126/127 if unstarted."""
    code = st.shell_exit_code
    if code is not None:
        return code
    error = st.error or ""
    if st.state.value == "cancelled":
        return EXIT_ERROR  # it never ran: no code of its own
    if "No such file or directory" in error and error.startswith("exec "):
        return EXIT_NOT_FOUND
    return EXIT_CANNOT_EXEC if st.error else EXIT_ERROR
