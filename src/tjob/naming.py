"""Job names, labels, timeouts and signals as people give them: pure validation (no I/O).

One set of rules for the library (:class:`~tjob.spec.JobSpec`), the server (every request) and
the CLI (before any call): each error is :class:`InvalidSpec` with one line naming the bad part.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping

from .errors import InvalidSpec

MAX_NAME = 128
MAX_LABELS = 32  # per job
MAX_LABEL_KEY = 63
MAX_LABEL_VALUE = 256
MAX_TIMEOUT = 365 * 86400.0  # a year: catches a typo, not a real user

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _shown(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_name(name: str) -> str:
    """A job name: 1 to MAX_NAME characters, ``[A-Za-z0-9][A-Za-z0-9_.-]*``."""
    if not isinstance(name, str) or not name:
        raise InvalidSpec("name must not be empty")
    if len(name) > MAX_NAME:
        raise InvalidSpec(f"name {_shown(name)} is longer than {MAX_NAME} characters")
    if not _NAME_RE.fullmatch(name):
        raise InvalidSpec(
            f"name {_shown(name)} is not valid: letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name


def check_labels(labels: Mapping[str, str]) -> Mapping[str, str]:
    """At most MAX_LABELS labels; keys like names (``/`` allowed), values printable."""
    if len(labels) > MAX_LABELS:
        raise InvalidSpec(f"{len(labels)} labels: a job may have at most {MAX_LABELS}")
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidSpec("labels must map strings to strings")
        if not key or len(key) > MAX_LABEL_KEY or not _KEY_RE.fullmatch(key):
            raise InvalidSpec(
                f"label key {_shown(key)} is not valid: 1 to {MAX_LABEL_KEY} letters, digits, "
                "'_', '.', '/', '-', starting with a letter or digit"
            )
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidSpec(f"label {key}: value longer than {MAX_LABEL_VALUE} characters")
        if _CONTROL.search(value):
            raise InvalidSpec(f"label {key}: value has control characters")
    return labels


def parse_label(text: str) -> tuple[str, str]:
    """``k=v`` as given on a command line (``--label team=ml``)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise InvalidSpec(f"label {_shown(text)} is not KEY=VALUE")
    check_labels({key: value})
    return key, value


def check_timeout(timeout: float | None) -> float | None:
    """A wall-clock timeout in seconds: positive, finite, at most a year (None: none)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidSpec(f"timeout must be a number of seconds, not {timeout!r}")
    if not 0 < timeout <= MAX_TIMEOUT:  # also refuses NaN
        raise InvalidSpec(f"timeout must be above 0 and at most {MAX_TIMEOUT:.0f}s, not {timeout}")
    return float(timeout)


def parse_signal(text: str | int) -> signal.Signals:
    """``KILL``, ``SIGKILL``, ``sigterm``, ``9``: a signal this host knows."""
    if isinstance(text, int) or (isinstance(text, str) and text.isdigit()):
        try:
            return signal.Signals(int(text))
        except ValueError:
            raise InvalidSpec(f"signal {text} is not one this host knows") from None
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return signal.Signals[name]
    except KeyError:
        raise InvalidSpec(f"signal {_shown(text)} is not one this host knows") from None
