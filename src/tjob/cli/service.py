"""``tjobs`` as a system service: readiness for systemd, and reload on SIGHUP.

``notify()`` is sd_notify(3) in a few lines: one datagram to ``$NOTIFY_SOCKET`` (a path, or an
abstract name written ``@name``); without the variable it does nothing. ``Reloader`` is the
SIGHUP hook: it re-reads the config file, logs which keys changed, runs the hooks registered for
what can change live, and says which changes need a restart. Running streams are untouched.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from tjob.cli import config

log = logging.getLogger("tjobs")

# A reload hook gets the new effective settings (argparse.Namespace, as the flags would give).
Hook = Callable[[argparse.Namespace], None]


def add_flags(p: argparse.ArgumentParser) -> None:
    """The service flags: the config file, the log format, where job cgroups go."""
    from tjob.cli.logfmt import FORMATS

    p.epilog = (
        f"{p.epilog or ''} Config: `tjobs config check|show`. systemd: `tjobs install-service` "
        "writes the unit."
    ).strip()
    p.add_argument(
        "--config",
        metavar="PATH",
        help=f"TOML file with a key per flag; flags override it (default {config.DEFAULT_PATH} "
        "if it exists); `tjobs config check|show`",
    )
    p.add_argument(
        "--log-format",
        dest="log_format",
        choices=FORMATS,
        default="plain",
        help="log lines on stderr: plain text, or one JSON object per line (default plain)",
    )
    p.add_argument(
        "--cgroup-parent",
        dest="cgroup_parent",
        default="auto",
        metavar="auto|delegated|PATH",
        help="cgroup that holds the jobs' cgroups: auto (default) is the subtree systemd "
        "delegated to tjobs (Delegate=yes, cgroup v2) if there is one, else 'tjob' at the root",
    )


_claimed: dict[str, str] = {}


def claim_notify_socket() -> None:
    """Take ``$NOTIFY_SOCKET`` out of the environment: what tjobs starts (systemd-run, the fork
    server) must not speak for it, and systemd only listens to the main process anyway."""
    address = os.environ.pop("NOTIFY_SOCKET", None)
    if address:
        _claimed["address"] = address


def notify(state: str) -> bool:
    """Tell the service manager ``state`` (``READY=1``, ``STOPPING=1``, ``STATUS=...``)."""
    address = os.environ.get("NOTIFY_SOCKET") or _claimed.get("address")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), address)
    except OSError as err:
        log.warning("cannot notify the service manager at %s: %s", address, err)
        return False
    return True


class Reloader:
    """What SIGHUP does. Other parts of the server register hooks with :meth:`add`: every hook
    runs on every reload (a certificate file may change while the config does not), and the
    keys it names are the ones a reload applies without a restart."""

    def __init__(
        self,
        parser: argparse.ArgumentParser,
        argv: list[str],
        path: Path | None,
        args: argparse.Namespace,
    ) -> None:
        self._parser, self._argv, self._path = parser, argv, path
        self.args = args
        self._hooks: list[Hook] = []
        self._live: set[str] = set()

    def add(self, hook: Hook, keys: Iterable[str] = ()) -> None:
        """Run ``hook(new_args)`` on each reload; ``keys`` are applied live by it."""
        self._hooks.append(hook)
        self._live.update(keys)

    def reload(self) -> None:
        """Re-read the config file (flags still override it); log what changed. A bad file
        changes nothing: the running settings stay."""
        log.info("reloading (SIGHUP)", extra={"config": str(self._path or "")})
        try:
            new = self._parser.parse_args(self._argv)
            if self._path is not None:
                config.apply(self._parser, new, self._argv, config.load(self._parser, self._path))
        except (config.ConfigError, SystemExit) as err:
            log.error("reload refused, settings unchanged: %s", err)
            return
        old_view = config.settings(self._parser, self.args)
        new_view = config.settings(self._parser, new)
        changed = config.changes(old_view, new_view)
        later = [k for k in changed if k not in self._live]
        for key in changed:
            log.info(
                "config %s: %s -> %s%s",
                key,
                config.render_value(old_view.get(key)),
                config.render_value(new_view.get(key)),
                "" if key in self._live else " (needs a restart)",
                extra={"key": key, "live": key in self._live},
            )
        for hook in self._hooks:
            try:
                hook(new)
            except Exception:
                log.exception("reload hook %s failed", getattr(hook, "__qualname__", hook))
        # Live keys take effect; the others keep their running values until a restart.
        for key in changed:
            if key not in later:
                dest = config.keyed_actions(self._parser)[key].dest
                setattr(self.args, dest, getattr(new, dest))
        log.info("reloaded: %d changed, %d need a restart", len(changed), len(later))
