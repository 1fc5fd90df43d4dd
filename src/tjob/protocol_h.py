"""The shim's ``protocol.h``, generated from :mod:`tjob.protocol.constants`: every constant the
shim uses as a macro, and an X-macro table of them for ``tjob-shim selftest``.

Free of imports from the package, like protocol/constants.py: ``setup.py`` loads both files by
path (under pip's build isolation the package is not importable) and hands this one the other.
To print the header: ``python3 -m tjob.protocol_h``.
"""

from __future__ import annotations

import sys
from types import ModuleType


def c_constants(p: ModuleType) -> dict[str, int | bytes]:
    """Every constant the shim uses, by its C name (without the ``TJOB_`` prefix), from the
    protocol's constants ``p`` (:mod:`tjob.protocol.constants`, or the package)."""
    out: dict[str, int | bytes] = {"PROTOCOL_VERSION": p.VERSION}
    for name in ("EXEC", "RUN", "STATUS", "LOG", "STOP", "RESERVE", "SPEC", "END"):
        out[f"{name}_FILE"] = getattr(p, f"{name}_FILE").encode()
    out.update(SYNC_ENV=p.SYNC_ENV.encode(), TMP_SUFFIX=p.TMP_SUFFIX.encode())
    out.update(RESERVE_SIZE=p.RESERVE_SIZE, LOG_MAGIC=p.LOG_MAGIC)
    for name in ("MAGIC_SIZE", "FILE_HEADER_SIZE", "HEADER_SIZE", "TRAILER_SIZE"):
        out[f"LOG_{name}"] = getattr(p, f"LOG_{name}")
    for s in ("STDOUT", "STDERR", "TRUNCATED", "END"):
        out[f"STREAM_{s}"] = getattr(p, f"STREAM_{s}")
    out.update(SUPERVISOR_ARGV0=p.SUPERVISOR_ARGV[0], SUPERVISOR_ARGV1=p.SUPERVISOR_ARGV[1])
    out.update(ZYGOTE_ARGV1=p.ZYGOTE_ARGV[1], INIT_ARGV1=p.INIT_ARGV[1])
    out.update(SPARE_REQUEST=p.SPARE_REQUEST, INIT_JOB=p.INIT_JOB, INIT_MOUNTS=p.INIT_MOUNTS)
    out.update(EXEC_REQUEST=p.EXEC_REQUEST, EXEC_SUPERVISOR_ARGV1=p.EXEC_SUPERVISOR_ARGV[1])
    out.update(INIT_JOB_STDIN=p.INIT_JOB_STDIN, INIT_JOB_TTY=p.INIT_JOB_TTY)
    out.update(ATTACH_SOCKET=p.ATTACH_SOCKET.encode(), WINSIZE_MAX=p.WINSIZE_MAX)
    for name in ("GRANTED", "BUSY", "CLOSED", "EOF", "DETACH"):
        out[f"LEASE_{name}"] = getattr(p, f"LEASE_{name}")
    for r in ("STARTED", "FAILED", "EXITED"):
        out[f"REPORT_{r}"] = getattr(p, f"REPORT_{r}").encode()
    out.update(ACK_RECORDED=p.ACK_RECORDED, ACK_DECLINED=p.ACK_DECLINED)
    out.update(EXEC_MAGIC=p.EXEC_MAGIC.encode(), KEEP_ID=p.KEEP_ID.encode())
    out.update(NO_TARGET=p.NO_TARGET.encode(), TARGET_MAX=p.TARGET_MAX, MAX_LIST=p.MAX_LIST)
    return out


def _c_literal(v: int | bytes) -> str:
    if isinstance(v, int):
        return str(v)
    plain = range(32, 127)
    return (
        '"' + "".join(chr(b) if b in plain and b not in b'"\\' else f"\\{b:03o}" for b in v) + '"'
    )


def c_header(p: ModuleType) -> str:
    """``protocol.h`` of the protocol's constants ``p``."""
    consts = c_constants(p)
    lines = [
        "/* Generated from src/tjob/protocol/constants.py by `python3 -m tjob.protocol_h`:",
        " * do not edit; change constants.py. */",
        "#ifndef TJOB_PROTOCOL_H",
        "#define TJOB_PROTOCOL_H",
    ]
    lines += [f"#define TJOB_{k} {_c_literal(v)}" for k, v in consts.items()]
    lines.append("/* X-macro over every constant: I(name) for numbers, S(name) for strings. */")
    lines.append("#define TJOB_PROTOCOL_TABLE(I, S) \\")
    lines += [f"    {'I' if isinstance(v, int) else 'S'}({k}) \\" for k, v in consts.items()]
    lines += ["", "#endif", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    from tjob.protocol import constants

    sys.stdout.write(c_header(constants))
