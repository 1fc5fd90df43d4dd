"""Client contexts (``docker context``, ``kubectl config``): named server addresses with their
certificate files, kept in ``$XDG_CONFIG_HOME/tjob/config.json`` (``~/.config/tjob/``).

The file::

    {"current": "prod",
     "contexts": {"prod": {"host": "tjob.example:8080", "ca": "/abs/ca.crt",
                           "cert": "/abs/cli.crt", "key": "/abs/cli.key"}}}

Paths are stored absolute, so a context works from any directory. The directory is kept 0700
and every file written into it 0600 (``--copy`` puts the key there), each write atomic (a
temporary file renamed over the old one): a crash leaves the old file or the new, never half.

Stdlib only, and only ``json`` beyond what the CLI already imports when reading: every command
that talks to a server reads this file first (start-up time).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import EXIT_USAGE, CliError

FILE = "config.json"
SETTINGS = ("host", "ca", "cert", "key")
DEFAULT = "default"  # not a stored context: the built-in defaults (``context use default``)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# Where --copy puts a context's files, by setting.
COPY_NAMES = {"ca": "ca.crt", "cert": "cli.crt", "key": "cli.key"}


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/tjob``, or ``~/.config/tjob`` (the XDG base directory default)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    # XDG: a relative path in the variable is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "tjob"


def check_name(name: str) -> str:
    """``name`` if it can name a context, else a usage error saying what a name may be."""
    if not _NAME.fullmatch(name) or name == DEFAULT:
        what = "is reserved (it means no context)" if name == DEFAULT else "is not a valid name"
        raise CliError(
            f"context name {name!r} {what}: use up to 63 letters, digits, '.', '_' and '-', "
            "starting with a letter or digit",
            EXIT_USAGE,
        )
    return name


class Config:
    """The contexts file in memory: the current context's name and every context's settings.

    A plain class: ``dataclasses`` imports ``inspect``, which every ``tjob ps`` would pay for.
    """

    def __init__(
        self,
        path: Path,
        current: str | None = None,
        contexts: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.path = path
        self.current = current
        self.contexts = contexts if contexts is not None else {}

    def get(self, name: str, source: str = "") -> dict[str, str]:
        """The settings of context ``name``; an unknown name is a one-line error."""
        try:
            return self.contexts[name]
        except KeyError:
            where = f" (from {source})" if source else ""
            raise CliError(
                f"no context named {name!r}{where} (see 'tjob context ls')", EXIT_USAGE
            ) from None


def load(directory: Path | None = None) -> Config:
    """The contexts file (an empty config when there is none); a damaged file is an error."""
    path = (directory or config_dir()) / FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Config(path)  # the usual case without contexts: json is not even imported
    except OSError as err:
        raise CliError(f"cannot read the contexts file {path}: {err.strerror}") from None
    import json

    try:
        raw = json.loads(data)
    except ValueError as err:
        raise CliError(f"cannot read the contexts file {path}: {err}") from None
    bad = CliError(f"the contexts file {path} is not in tjob's format (remove or fix it)")
    if not isinstance(raw, dict):
        raise bad
    current, contexts = raw.get("current"), raw.get("contexts", {})
    if not (current is None or isinstance(current, str)) or not isinstance(contexts, dict):
        raise bad
    for name, value in contexts.items():
        # A name is also a directory name (--copy): one edited by hand must not reach outside.
        if (
            not _NAME.fullmatch(name)
            or not isinstance(value, dict)
            or not all(k in SETTINGS and isinstance(v, str) for k, v in value.items())
        ):
            raise bad
    return Config(path, current, contexts)


def save(config: Config) -> None:
    """Write the file atomically, 0600, in a 0700 directory."""
    import json

    data = {"current": config.current, "contexts": config.contexts}
    write_private(config.path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def private_dir(path: Path) -> Path:
    """Make ``path`` (and parents) if missing; keep it 0700 (it may hold private keys)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """``data`` into ``path`` atomically: a 0600 temporary file, synced, renamed over it."""
    import tempfile

    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def copy_files(config: Config, name: str, settings: dict[str, str]) -> dict[str, str]:
    """Copy a context's certificate files under the config dir (0600 each); the new paths."""
    where = private_dir(private_dir(config.path.parent / "contexts") / name)
    copied = dict(settings)
    for key, filename in COPY_NAMES.items():
        if key in settings:
            target = where / filename
            write_private(target, Path(settings[key]).read_bytes())
            copied[key] = str(target)
    return copied


def remove_copies(config: Config, name: str) -> None:
    """Remove the files ``--copy`` made for context ``name``, if any."""
    import shutil

    shutil.rmtree(config.path.parent / "contexts" / name, ignore_errors=True)
