"""Every constant of the engine ↔ shim contract (see :mod:`tjob.protocol`): file names, the
framed log's format, process marks, message tags, sizes and the version every message carries.

Imports nothing: ``setup.py`` loads this file by path to generate the shim's ``protocol.h``
from it (:mod:`tjob.protocol_h`; under pip's build isolation the package is not importable),
and every name here is the contract's (the package re-exports them all).
"""

VERSION = 1

# ------------------------------------------------------------------ a job's directory
SPEC_FILE = "spec.json"
EXEC_FILE = "exec.bin"
RUN_FILE = "run.json"
STATUS_FILE = "status.json"
LOG_FILE = "output.log"
STOP_FILE = "stop-requested"
RESERVE_FILE = "reserve"
# A file written whole is written to its name + this, then renamed (both sides).
TMP_SUFFIX = ".tmp"
# The supervisor's EndReport (encode_end_report), written by it when no launcher recorded the
# end (the engine is down): whoever runs next records it. One small file, no process per end.
END_FILE = "end-report"
# In the launcher's environment (and so its supervisors'): "0" when the engine was made with
# durable=False, and files recording a job's state are then not fsynced.
SYNC_ENV = "TJOB_FSYNC"
RESERVE_SIZE = 16 << 10  # room for the final status should the disk fill up
# An interactive job's attach channel (issue 16): a SOCK_SEQPACKET socket the supervisor
# listens on while the job runs (mode 0600, peers of another uid are refused), removed at the end.
ATTACH_SOCKET = "attach.sock"

# ------------------------------------------------------------------ the framed log
# v3: the magic, then the committed end (u64le: the offset just past the last frame whose header
# is written; the writer moves it after each header, so a reader can scan backwards from a
# boundary the job's own bytes can never fake), then frames of
#   header  <stream:u8> <0:3> <length:u32le> <time:u64le>   (time: CLOCK_REALTIME ns of the read)
#   payload <length bytes>
#   trailer <crc:u32le> <length:u32le>   (crc: zlib's CRC-32 of header then payload)
# written payload+trailer first and the header last (an all-zero header is a frame being
# written), so the trailer's length lets a reader step back one frame at a time (--tail).
# v2 (still read): <stream:u8> <crc:3> <length:u32le> <bytes>, crc the low 24 bits of the
# payload's CRC-32; v1 (still read): the same with 3 bytes of padding. Both begin at offset 8.
LOG_MAGIC = b"TJOBLOG3"
LOG_MAGIC_V2 = b"TJOBLOG2"
LOG_MAGIC_V1 = b"TJOBLOG1"
LOG_MAGIC_SIZE = 8
LOG_FILE_HEADER_SIZE = 16  # magic and committed end: the first frame's offset
LOG_HEADER_SIZE = 16
LOG_TRAILER_SIZE = 8
LOG_OLD_HEADER_SIZE = 8  # v1 and v2 frame headers
STREAM_STDOUT = 1
STREAM_STDERR = 2
STREAM_TRUNCATED = 3
STREAM_END = 4

# ------------------------------------------------------------------ process marks and tags
SUPERVISOR_ARGV = (b"tjob-shim", b"supervisor")
ZYGOTE_ARGV = (b"tjob-shim", b"zygote")
INIT_ARGV = (b"tjob-shim", b"init")  # in the job's PID namespace: never taken for a supervisor
SPARE_REQUEST = b"s"  # fork server → zygote, with a spare's channel and busy pipe
INIT_JOB = b"j"  # supervisor → init, with the output pipes and exec.bin
# init → supervisor, first, with its mount namespace: the supervisor holds it until it exits,
# so that init's exit does not wait for the job's mounts to be torn down.
INIT_MOUNTS = b"m"
# Interactive jobs (issue 16): the same, with a fourth fd, the command's stdin: a pipe's read
# end, or (INIT_JOB_TTY) the pty's slave, which is then also fds 1 and 2 and the command's
# controlling terminal in a session of its own.
INIT_JOB_STDIN = b"i"
INIT_JOB_TTY = b"t"
REPORT_STARTED = "S"
REPORT_FAILED = "F"
REPORT_EXITED = "X"
ACK_RECORDED = b"k"
ACK_DECLINED = b"n"
EXEC_MAGIC = f"tjob-exec-v{VERSION}"
KEEP_ID = "-"  # exec.bin's uid/gid: stay root
NO_TARGET = "-"
TARGET_MAX = 200  # bytes of a failure's target kept (newlines become spaces)
MAX_LIST = 1 << 20  # entries in one exec.bin list


# ------------------------------------------------------------------ exec (issue 16)
EXECS_DIR = "execs"  # in a job's directory: one numbered directory per exec
EXEC_REQUEST = b"e"  # fork server → zygote, then a Handoff, with a reply socket and init's pidfd
EXEC_SUPERVISOR_ARGV = (b"tjob-shim", b"exec")  # then the exec's directory; never a job's mark
EXEC_OP = "exec"


# ------------------------------------------------------------------ interactive jobs' stdio
WINSIZE_MAX = 4096  # rows or columns: more is refused (absurd, and ws_row is 16 bits)
DEFAULT_WINSIZE = (24, 80)

# ------------------------------------------------------------------ 8. the attach channel
# engine → supervisor: connect to ATTACH_SOCKET (SOCK_SEQPACKET); the supervisor answers one
# byte: LEASE_GRANTED with the descriptor attached (the stdin pipe's write end, or the pty's
# master: the engine writes, and sets a TTY's window size, on it directly, so the pipe's own
# flow control reaches the writer), LEASE_BUSY (another writer holds it) or LEASE_CLOSED (the
# job's stdin was closed). The connection is the lease: while it is open nobody else gets
# the descriptor. The holder may send LEASE_EOF (close the job's stdin: a pipe's readers see
# EOF) or LEASE_DETACH (leave it open) before closing; a lease of a pipe closed without either
# (its holder vanished) is taken as EOF, one of a TTY leaves the terminal as it is.
LEASE_GRANTED = b"o"
LEASE_BUSY = b"b"
LEASE_CLOSED = b"c"
LEASE_EOF = b"e"
LEASE_DETACH = b"d"
