"""What to run and within which limits: pure data and its validation (no I/O)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .errors import InvalidSpec
from .naming import check_labels, check_name, check_timeout
from .volumes import Volume

MIB = 1024 * 1024

# Upper bounds that catch typos ("absurdly large") without getting in a real user's way.
MAX_CPU_PERCENT = 100 * 1024  # 1024 CPUs
MAX_MEMORY_MB = 16 * 1024 * 1024  # 16 TiB
MAX_PIDS = 4_194_304  # the kernel's PID_MAX_LIMIT
MAX_BPS = 1 << 40  # 1 TiB/s
MAX_ARGV_BYTES = 256 * 1024
MAX_ENV_BYTES = 256 * 1024

_DEVICE_RE = re.compile(r"^(\d{1,4}):(\d{1,7})$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one job. ``None`` means "the engine's default".

    cpu_percent: percent of one CPU (200 = two CPUs).
    memory_mb: memory in MiB, swap included (the limit really holds).
    pids: most processes and threads alive at once.
    rbps / wbps: disk read / write bytes per second on ``device``.
    device: ``"MAJ:MIN"`` of the block device to throttle; default: the one holding ``/``.
    """

    cpu_percent: int | None = None
    memory_mb: int | None = None
    pids: int | None = None
    rbps: int | None = None
    wbps: int | None = None
    device: str | None = None

    def merged(self, defaults: Limits) -> Limits:
        """These limits with each unset field taken from ``defaults``."""
        return Limits(
            **{
                f.name: getattr(defaults, f.name)
                if getattr(self, f.name) is None
                else getattr(self, f.name)
                for f in dataclasses.fields(self)
            }
        )

    def validate(self) -> Limits:
        """Raise :class:`InvalidSpec` naming the first bad field; return self."""
        _check_int("cpu_percent", self.cpu_percent, MAX_CPU_PERCENT)
        _check_int("memory_mb", self.memory_mb, MAX_MEMORY_MB)
        _check_int("pids", self.pids, MAX_PIDS)
        _check_int("rbps", self.rbps, MAX_BPS)
        _check_int("wbps", self.wbps, MAX_BPS)
        if self.device is not None:
            parse_device(self.device)
        return self

    def exceeding(self, caps: Limits, flags: Mapping[str, str] | None = None) -> list[str]:
        """Names and values of the fields above ``caps`` (a server's ceilings); with
        ``flags`` (field -> the flag that sets its cap), each message names the flag."""
        out = []
        for f in ("cpu_percent", "memory_mb", "pids", "rbps", "wbps"):
            mine, cap = getattr(self, f), getattr(caps, f)
            if mine is not None and cap is not None and mine > cap:
                flag = f" ({flags[f]})" if flags and f in flags else ""
                out.append(f"{f} {mine} is above the server's cap of {cap}{flag}")
        return out


# The seed's defaults: 20% of a CPU, 20 MB, 20 MiB/s each way; plus a pids cap against fork bombs.
DEFAULT_LIMITS = Limits(cpu_percent=20, memory_mb=20, pids=512, rbps=20 * MIB, wbps=20 * MIB)
# Seconds between SIGTERM and SIGKILL when a stop names no grace (the API's default too).
DEFAULT_GRACE = 10.0
# Most output kept per job; past it the job runs on and readers see a truncation mark.
DEFAULT_OUTPUT_CAP = 1 << 30


def _check_int(name: str, value: object, maximum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(f"{name} must be a whole number, not {value!r}")
    if value <= 0:
        raise InvalidSpec(f"{name} must be positive, not {value}")
    if value > maximum:
        raise InvalidSpec(f"{name} {value} is too large (at most {maximum})")


def parse_device(text: str) -> tuple[int, int]:
    """``"254:0"`` -> ``(254, 0)``; raise :class:`InvalidSpec` on anything else."""
    m = _DEVICE_RE.match(text)
    if not m:
        raise InvalidSpec(f"device must be MAJ:MIN (as lsblk shows it), not {text!r}")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class JobSpec:
    r"""A command to run as a job.

    argv: the command and its arguments; ``argv[0]`` is looked up in the job's ``PATH``.
    env: the job's whole environment besides ``PATH``/``HOME``/``USER`` defaults (nothing of the
        caller's environment leaks in).
    cwd: working directory inside the job (default ``/``).
    user: account to run as (name or uid); ``None`` runs as the engine's own user.
    owner: free-form identity tag of whoever asked (the API server puts the client's CN here).
    limits: resource limits; unset fields come from the engine's defaults.
    volumes: server-declared volumes to mount (:class:`~tjob.volumes.Volume`).
    request_id: an id the caller chose for this start (at most 128 characters): a start with
        the same ``owner`` and ``request_id`` as an earlier one returns that job instead.
    name: an optional name, unique among the owner's jobs not removed (``[A-Za-z0-9][\w.-]*``).
    labels: ``key -> value`` tags to find jobs by (``ps --filter label=k=v``).
    timeout: seconds of wall-clock time from the start; then the job is stopped as
        :meth:`Job.stop` does and its status says ``timed_out`` (None: the engine's default).
    stdin: keep the job's stdin open for a writer (:meth:`Job.stdin`); else it reads /dev/null.
    tty: give the job a pseudo-terminal (stdin, stdout and stderr; its controlling terminal;
        ``TERM=xterm`` unless ``env`` says otherwise) of ``tty_size`` (rows, columns; default
        24x80). Its output is one stream, ``Stream.STDOUT``.
    """

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    user: str | int | None = None
    owner: str = ""
    limits: Limits = field(default_factory=Limits)
    volumes: Sequence[Volume] = ()
    request_id: str = ""
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    stdin: bool = False
    tty: bool = False
    tty_size: tuple[int, int] | None = None

    def validate(self) -> JobSpec:
        """Raise :class:`InvalidSpec` naming what is wrong; return self."""
        if isinstance(self.argv, str | bytes) or not self.argv:
            raise InvalidSpec("argv must be a non-empty list of strings")
        size = 0
        for arg in self.argv:
            if not isinstance(arg, str):
                raise InvalidSpec(f"argv items must be strings, not {arg!r}")
            if "\0" in arg:
                raise InvalidSpec("argv must not contain NUL bytes")
            size += len(arg.encode("utf-8", "surrogateescape")) + 1
        if not self.argv[0]:
            raise InvalidSpec("the command (argv[0]) must not be empty")
        if size > MAX_ARGV_BYTES:
            raise InvalidSpec(f"argv is {size} bytes, more than {MAX_ARGV_BYTES}")
        size = 0
        for key, value in self.env.items():
            if not isinstance(key, str) or not _ENV_NAME_RE.match(key):
                raise InvalidSpec(f"environment variable name {key!r} is not valid")
            if not isinstance(value, str) or "\0" in value:
                raise InvalidSpec(f"environment variable {key} has a bad value")
            size += len(key) + len(value.encode("utf-8", "surrogateescape")) + 2
        if size > MAX_ENV_BYTES:
            raise InvalidSpec(f"environment is {size} bytes, more than {MAX_ENV_BYTES}")
        if not isinstance(self.cwd, str) or not self.cwd.startswith("/") or "\0" in self.cwd:
            raise InvalidSpec(f"working directory must be an absolute path, not {self.cwd!r}")
        if self.user is not None and (
            isinstance(self.user, bool)
            or not isinstance(self.user, str | int)
            or (isinstance(self.user, int) and self.user < 0)
            or (isinstance(self.user, str) and not self.user)
        ):
            raise InvalidSpec(f"user must be a name or a uid, not {self.user!r}")
        if not isinstance(self.request_id, str) or len(self.request_id) > 128:
            raise InvalidSpec("request_id must be a string of at most 128 characters")
        if not isinstance(self.limits, Limits):
            raise InvalidSpec("limits must be a tjob.Limits")
        self.limits.validate()
        for v in self.volumes:
            if not isinstance(v, Volume):
                raise InvalidSpec("volumes must be tjob.Volume items")
            v.validate()
        if self.name:
            check_name(self.name)
        check_labels(self.labels)
        check_timeout(self.timeout)
        if not isinstance(self.stdin, bool) or not isinstance(self.tty, bool):
            raise InvalidSpec("stdin and tty must be booleans")
        if self.tty_size is not None:
            check_window_size(self.tty_size)
        return self


MAX_WINDOW = 4096  # rows or columns (protocol.WINSIZE_MAX)


def check_window_size(size: object) -> tuple[int, int]:
    """``(rows, cols)``, each 1 to 4096; raise :class:`InvalidSpec` on anything else."""
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in size)
        or not all(1 <= n <= MAX_WINDOW for n in size)
    ):
        raise InvalidSpec(f"a window size is (rows, columns), each 1 to {MAX_WINDOW}, not {size!r}")
    return int(size[0]), int(size[1])
