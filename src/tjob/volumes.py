"""Volumes (issue 13, section 2): host directories the server declares by name, mounted into
the jobs that ask for them.

The server declares (``tjobs --volume NAME=PATH[:MODE]``, ``Engine(volumes=...)``):

- ``NAME=PATH``: writable, one directory per client. The engine makes ``PATH/<client>``
  (owned by the job's uid and gid, mode 0700) and mounts only that one: clients never see
  each other's files, and a job's uid can write there.
- ``NAME=PATH:ro``: read-only, the whole directory, for every client.
- ``NAME=PATH:shared``: writable, the whole directory, shared by every client. Whether a
  job's uid may write in it is the directory's own permissions (the operator sets them).

A job asks (``tjob run -v NAME:/TARGET[:ro|:rw]``, ``JobSpec(volumes=[Volume(...)])``) for a
volume at a target in its own view: an existing directory, or a new one where its root is
writable (under ``/tmp``, ``/var/tmp``, ``/run``); never ``/proc``, ``/sys``, ``/dev`` or a
hidden path, never through a symlink. Unless it says ``ro`` or ``rw``, a volume comes as it
was declared; ``rw`` of a read-only volume is refused. Each volume is one mount: the mounts
below a declared path are not carried along. Nothing else of the host is writable.

This module checks both sides and writes what the shim reads (``jail_volumes.c``): the
zygote's ``volume NAME MODE PATH`` lines, exec.bin's ``MODE NAME SUBDIR TARGET`` lines.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .errors import InvalidSpec, TjobError

RO, RW, SHARED = "ro", "rw", "shared"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CLIENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
# The job's own kernel views: never covered by a volume.
_KERNEL = ("/proc", "/sys", "/dev")
MAX_PER_JOB = 16


class VolumeError(TjobError):
    """A declared volume the server cannot serve: a bad declaration, or a path that is not an
    existing directory."""


@dataclass(frozen=True)
class Volume:
    """A volume a job asks for: the server's ``name``, mounted at ``target`` in the job.

    read_only: True for read-only, False for writable (refused if the volume is read-only),
    None as the server declared it."""

    name: str
    target: str
    read_only: bool | None = None

    def validate(self) -> Volume:
        """Raise :class:`InvalidSpec` naming what is wrong; return self."""
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise InvalidSpec(f"volume name {self.name!r} is not valid")
        t = self.target
        if not isinstance(t, str) or not t.startswith("/") or "\0" in t or "\n" in t:
            raise InvalidSpec(f"volume {self.name}: target must be an absolute path, not {t!r}")
        if ".." in t.split("/"):
            raise InvalidSpec(f"volume {self.name}: target {t!r} must not contain '..'")
        if posixpath.normpath(t) == "/":
            raise InvalidSpec(f"volume {self.name}: target cannot be the root")
        if _under(t, _KERNEL):
            raise InvalidSpec(f"volume {self.name}: target {t!r} is in /proc, /sys or /dev")
        if self.read_only is not None and not isinstance(self.read_only, bool):
            raise InvalidSpec(f"volume {self.name}: read_only must be a bool or None")
        return self


def parse_request(text: str) -> Volume:
    """``NAME:/TARGET[:ro|:rw]`` (``tjob run -v``) -> a :class:`Volume`."""
    name, sep, rest = text.partition(":")
    if not sep or not rest:
        raise InvalidSpec(f"volume {text!r}: expected NAME:/TARGET[:ro|:rw]")
    target, mode = rest, None
    head, sep, tail = rest.rpartition(":")
    if sep and tail in (RO, RW):
        target, mode = head, tail
    return Volume(name, target, None if mode is None else mode == RO).validate()


@dataclass(frozen=True)
class Declared:
    """A volume the server declared: ``path`` (absolute, symlinks resolved) and ``mode``:
    :data:`RW` (a directory per client), :data:`RO` or :data:`SHARED`."""

    path: str
    mode: str = RW


def parse_declaration(text: str) -> tuple[str, Declared]:
    """``NAME=PATH[:ro|:rw|:shared]`` (``tjobs --volume``) -> (name, declaration), unchecked."""
    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise VolumeError(f"--volume {text!r}: expected NAME=PATH[:ro|:shared]")
    head, sep, tail = rest.rpartition(":")
    if sep and tail in (RO, RW, SHARED):
        return name, Declared(head, tail)
    return name, Declared(rest)


def check_declared(volumes: Mapping[str, Declared | str]) -> dict[str, Declared]:
    """Each declaration checked (a plain string is a writable path): the name valid, the path
    an existing directory other than the root. Paths come back with symlinks resolved."""
    out = {}
    for name, decl in volumes.items():
        d = Declared(decl) if isinstance(decl, str) else decl
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise VolumeError(f"volume name {name!r} is not valid (letters, digits, _ . -)")
        if d.mode not in (RO, RW, SHARED):
            raise VolumeError(f"volume {name}: mode {d.mode!r} is not ro, rw or shared")
        if not os.path.isabs(d.path) or "\n" in d.path:
            raise VolumeError(f"volume {name}: path {d.path!r} must be absolute, on one line")
        real = os.path.realpath(d.path)
        if not os.path.exists(real):
            raise VolumeError(f"volume {name}: {d.path} does not exist")
        if not os.path.isdir(real):
            raise VolumeError(f"volume {name}: {d.path} is not a directory")
        if real == "/":
            raise VolumeError(f"volume {name}: cannot serve the host's root")
        out[name] = Declared(real, d.mode)
    return out


def settings(volumes: Mapping[str, Declared]) -> list[str]:
    """The zygote's ``volume NAME MODE PATH`` lines."""
    return [f"volume {n} {RO if d.mode == RO else RW} {d.path}" for n, d in volumes.items()]


def client_dir(owner: str) -> str:
    """The name of a client's own directory in a writable volume: the client's name if it is
    a plain one, else ``~`` and a digest of it (no plain name starts with ``~``)."""
    if _CLIENT_RE.match(owner):
        return owner
    return "~" + hashlib.sha256(owner.encode("utf-8", "surrogateescape")).hexdigest()[:32]


class Mount(NamedTuple):
    """An asked volume resolved: the host ``path``, the job's ``target``, and the client's
    directory in it (None: the whole volume)."""

    name: str
    path: str
    target: str
    read_only: bool
    client_dir: str | None


def resolve(
    asked: Sequence[Volume], declared: Mapping[str, Declared], owner: str, hidden: Iterable[str]
) -> list[Mount]:
    """The mounts of the asked volumes; :class:`InvalidSpec` naming the first bad one."""
    if len(asked) > MAX_PER_JOB:
        raise InvalidSpec(f"at most {MAX_PER_JOB} volumes per job")
    hidden = tuple(hidden)
    out: list[Mount] = []
    targets = set()
    for v in asked:
        v.validate()
        d = declared.get(v.name)
        if d is None:
            raise InvalidSpec(f"no such volume: {v.name}")
        target = posixpath.normpath(v.target)
        if target in targets:
            raise InvalidSpec(f"volume target {target} is asked for twice")
        if _under(target, hidden):
            raise InvalidSpec(f"volume {v.name}: target {target} is in a hidden path")
        if v.read_only is False and d.mode == RO:
            raise InvalidSpec(f"volume {v.name} is read-only: it cannot be mounted rw")
        targets.add(target)
        read_only = d.mode == RO if v.read_only is None else v.read_only
        sub = client_dir(owner) if d.mode == RW else None
        out.append(Mount(v.name, d.path, target, read_only, sub))
    return out


def make_client_dir(path: str, sub: str, ids: tuple[int, int] | None) -> None:
    """``path/sub``, made if missing, owned by ``ids`` (uid, gid), mode 0700. Opened without
    following a symlink: a client directory replaced by a link to elsewhere is refused."""
    try:
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise TjobError(f"volume {path}: {e.strerror}") from None
    try:
        try:
            os.mkdir(sub, 0o700, dir_fd=top)
        except FileExistsError:
            pass
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(sub, flags, dir_fd=top)
    except OSError as e:
        if e.errno in (errno.ENOTDIR, errno.ELOOP):
            msg = f"volume {path}: {sub} is not a directory (a symlink is never followed)"
            raise TjobError(msg) from None
        raise TjobError(f"volume {path}: client directory {sub}: {e.strerror}") from None
    finally:
        os.close(top)
    try:
        if ids is not None:
            os.fchown(fd, ids[0], ids[1])
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def exec_lines(mounts: Sequence[Mount], ids: tuple[int, int] | None) -> list[str]:
    """exec.bin's ``MODE NAME SUBDIR TARGET`` lines; client directories made on the way."""
    lines = []
    for m in mounts:
        if m.client_dir is not None:
            make_client_dir(m.path, m.client_dir, ids)
        mode = RO if m.read_only else RW
        lines.append(f"{mode} {m.name} {m.client_dir or '-'} {m.target}")
    return lines


def _under(path: str, tops: Iterable[str]) -> bool:
    path = posixpath.normpath(path)
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in tops)
