"""The job's jail (issue 13): hidden paths, the seccomp profile, per-job rlimits.

The C shim builds the jail (``src/tjob/shim/jail_*.c``); this module turns the engine's
settings into what it reads. Server-wide settings become one text argument of the zygote
(:func:`settings`): ``hide PATH`` lines, and the seccomp profile, parsed here once from
Docker's JSON format into ``default``/``arch``/``rule`` lines that the zygote compiles with
libseccomp, once. Per-job settings (the scratch size, rlimits) go in exec.bin
(:func:`rlimits`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import TjobError

DEFAULT_PROFILE = Path(__file__).with_name("seccomp.json")
SHIM = Path(__file__).with_name("tjob-shim")
UNCONFINED = "unconfined"

# Hidden from every job by default (an empty read-only directory, or /dev/null for a file):
# people's homes, the boot files (kernel images, initramfs), served data, removable and
# admin mounts, and tjob's own configuration. The engine adds its state directory and tjobs
# its certificate directory. Paths that do not exist are skipped.
DEFAULT_HIDE = ("/home", "/root", "/boot", "/srv", "/mnt", "/media", "/etc/tjob", "/var/lib/tjob")

# Per job: fds (with the memory limit, this bounds the kernel objects a job can pin), no core
# dumps (they would land in the job's cwd or a host-wide pattern), files no larger than the
# output cap.
NOFILE = (1024, 65536)

# Docker names ABIs as libseccomp does ("SCMP_ARCH_X86_64") and, in includes/excludes, as Go
# does ("amd64"); libseccomp's seccomp_arch_resolve_name wants "x86_64".
_ARCH = {
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_ARM": "arm",
}
_NATIVE = {"x86_64": ("SCMP_ARCH_X86_64", "amd64"), "aarch64": ("SCMP_ARCH_AARCH64", "arm64")}
_ACTIONS = {
    "SCMP_ACT_ALLOW": "allow",
    "SCMP_ACT_ERRNO": "errno",
    "SCMP_ACT_KILL": "kill_thread",
    "SCMP_ACT_KILL_THREAD": "kill_thread",
    "SCMP_ACT_KILL_PROCESS": "kill_process",
    "SCMP_ACT_TRAP": "trap",
    "SCMP_ACT_TRACE": "trace",
    "SCMP_ACT_LOG": "log",
}
_OPS = {
    "SCMP_CMP_NE": "ne",
    "SCMP_CMP_LT": "lt",
    "SCMP_CMP_LE": "le",
    "SCMP_CMP_EQ": "eq",
    "SCMP_CMP_GE": "ge",
    "SCMP_CMP_GT": "gt",
    "SCMP_CMP_MASKED_EQ": "masked_eq",
}
_EPERM = 1


class JailError(TjobError):
    """The jail's settings were refused: a bad seccomp profile or hidden path, or a kernel
    without what the jail needs."""


def profile_rules(path: str | Path, machine: str | None = None) -> list[str]:
    """The ``default``/``arch``/``rule`` lines for the profile at ``path`` (Docker's format),
    as they apply to jobs on this machine: rules for other ABIs, newer kernels, or needing a
    capability (jobs have none) are left out."""
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as e:
        raise JailError(f"seccomp profile {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise JailError(f"seccomp profile {path}: not JSON: {e}") from None
    try:
        return _rules(data, machine or platform.machine())
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise JailError(f"seccomp profile {path}: malformed: {e!r}") from None


def _rules(data: dict[str, Any], machine: str) -> list[str]:
    if machine not in _NATIVE:
        raise JailError(f"seccomp: no profile support for this machine ({machine})")
    native, goarch = _NATIVE[machine]
    default_errno = int(data.get("defaultErrnoRet", _EPERM))
    lines = [f"default {_action(data['defaultAction'], default_errno)}"]
    for entry in data.get("archMap") or []:
        if entry["architecture"] == native:
            arches = [native, *entry.get("subArchitectures", [])]
            lines += [f"arch {_ARCH[a]}" for a in arches if a in _ARCH]
    lines += [f"arch {_ARCH[a]}" for a in data.get("architectures") or [] if a in _ARCH]
    release = _kernel_version(os.uname().release)
    for rule in data.get("syscalls") or []:
        if not _applies(rule.get("includes") or {}, rule.get("excludes") or {}, goarch, release):
            continue
        action = _action(rule["action"], int(rule.get("errnoRet", default_errno)))
        args = " ".join(_arg(a) for a in rule.get("args") or [])
        names = rule.get("names") or [rule["name"]]
        lines += [f"rule {action} {name} {args}".rstrip() for name in names]
    return lines


def _action(name: str, errno: int) -> str:
    if name not in _ACTIONS:
        raise ValueError(f"unsupported action {name}")
    return f"{_ACTIONS[name]} {errno}"


def _arg(arg: dict[str, Any]) -> str:
    op = _OPS[arg["op"]]
    return f"{int(arg['index'])}:{op}:{int(arg['value'])}:{int(arg.get('valueTwo', 0))}"


def _applies(
    inc: dict[str, Any], exc: dict[str, Any], goarch: str, release: tuple[int, ...]
) -> bool:
    if inc.get("caps"):
        return False  # a job holds no capability
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if goarch in (exc.get("arches") or []):
        return False
    minimum = inc.get("minKernel")
    return not (minimum and release < _kernel_version(minimum))


def _kernel_version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("-", maxsplit=1)[0].split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def settings(hide: Iterable[str], seccomp: str | Path | None) -> str:
    """The zygote's jail argument: ``hide`` lines (absolute paths, resolved through symlinks),
    then the profile's lines (none if ``seccomp`` is :data:`UNCONFINED` or None)."""
    lines = []
    for path in dict.fromkeys(hide):
        if not os.path.isabs(path) or "\n" in path:
            raise JailError(f"hidden path {path!r}: must be absolute, on one line")
        real = os.path.realpath(path)
        if real == "/":
            raise JailError(f"hidden path {path!r}: cannot hide the root")
        lines.append(f"hide {real}")
    if seccomp is not None and str(seccomp) != UNCONFINED:
        lines += profile_rules(seccomp)
    return "\n".join(lines)


def check(text: str) -> None:
    """Build the jail once in a child, as for a job: a kernel or profile it fails on is an
    error now, not a failed job later."""
    try:
        run = subprocess.run(
            [str(SHIM), "jail-check", text], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise JailError(f"cannot check the job jail: {e}") from None
    if run.returncode:
        msg = run.stderr.decode(errors="replace").strip() or f"exit status {run.returncode}"
        raise JailError(msg)


def rlimits(output_cap: int, nproc: int | None = None) -> Sequence[str]:
    """exec.bin's rlimits: ``NAME=SOFT:HARD``; ``nproc`` only where a uid is one client's
    (the kernel counts RLIMIT_NPROC per uid, host-wide)."""
    out = [f"nofile={NOFILE[0]}:{NOFILE[1]}", "core=0:0", f"fsize={output_cap}:{output_cap}"]
    if nproc is not None:
        out.append(f"nproc={nproc}:{nproc}")
    return tuple(out)
