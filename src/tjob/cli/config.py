"""``tjobs``' TOML config file: one key per flag, derived from the argparse parser.

A key is the flag's long name without the dashes (``--max-jobs`` -> ``max-jobs``; ``max_jobs``
is accepted too). Values are what the flag takes: strings, numbers, booleans for on/off flags,
arrays for repeatable flags (``admin = ["alice", "ops"]``); a typed flag's value goes through the
flag's own parser, so ``retention = "12h"`` and ``output-cap = "512M"`` read as they would on the
command line. Flags given on the command line override the file (a repeatable flag replaces the
file's array). Keys come from the parser itself, so a flag added to ``build_parser()`` has its
key at once; only ``--help`` and ``--config`` have none.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tjob.errors import TjobError

DEFAULT_PATH = Path("/etc/tjob/tjobs.toml")
# Flags that are not settings: asking for help, and naming the file itself.
_NOT_KEYS = frozenset({"help", "config"})


class ConfigError(TjobError):
    """A config file the server cannot start with; the message names the file and the key."""


def keyed_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every settable flag of ``parser`` by its key (its long name without ``--``)."""
    out: dict[str, argparse.Action] = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or action.dest == argparse.SUPPRESS:
            continue
        key = longs[0][2:]
        if key not in _NOT_KEYS:
            out[key] = action
    return out


def default_path(given: str | None) -> Path | None:
    """The file to read: the one named, else the default one if it exists, else none."""
    if given is not None:
        return Path(given)
    return DEFAULT_PATH if DEFAULT_PATH.is_file() else None


def load(parser: argparse.ArgumentParser, path: Path) -> dict[str, Any]:
    """Read and check ``path``: ``{dest: value}`` converted as the flags would be."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as err:
        raise ConfigError(f"config {path}: cannot read: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config {path}: not valid TOML: {err}") from None
    actions = keyed_actions(parser)
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for raw_key, raw in table.items():
        key = raw_key.replace("_", "-")
        action = actions.get(key)
        if action is None:
            raise ConfigError(f"config {path}: unknown key {raw_key!r}")
        if key in seen:
            raise ConfigError(f"config {path}: {raw_key!r} repeats {seen[key]!r}")
        seen[key] = raw_key
        try:
            values[action.dest] = convert(action, raw)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as err:
            raise ConfigError(f"config {path}: bad value for {raw_key!r}: {err}") from None
    return values


def convert(action: argparse.Action, raw: object) -> object:
    """A TOML value as the flag would have parsed it; ValueError/TypeError if it cannot be."""
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if not isinstance(raw, bool):
            raise TypeError(f"expected true or false, not {_show(raw)}")
        return raw
    if isinstance(action, argparse._AppendAction):
        if not isinstance(raw, list):
            raise TypeError(f"expected an array like [{_show('x')}], not {_show(raw)}")
        return [_scalar(action, item) for item in raw]
    if type(action) is not argparse._StoreAction:
        raise TypeError(f"the flag {action.option_strings[0]} has no config form")
    return _scalar(action, raw)


def _scalar(action: argparse.Action, raw: object) -> object:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise TypeError(f"expected a string or a number, not {_show(raw)}")
    text = raw if isinstance(raw, str) else repr(raw)
    value: object = text
    if action.type in (int, float):
        try:
            value = action.type(text)
        except ValueError:
            raise ValueError(f"expected a number, not {_show(raw)}") from None
    elif action.type is not None:
        value = action.type(text)  # type: ignore[operator]
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{_show(raw)} is not one of {', '.join(map(str, action.choices))}")
    return value


def _show(value: object) -> str:
    return render_value(value) if value is not None else "nothing"


def given_on_command_line(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """Dests of the flags that appear in ``argv`` (``--x V``, ``--x=V``, ``-x V``)."""
    by_option = {s: a.dest for a in parser._actions for s in a.option_strings}
    given = set()
    for token in argv:
        if token == "--":
            break
        dest = by_option.get(token.partition("=")[0]) if token.startswith("-") else None
        if dest is not None:
            given.add(dest)
    return given


def apply(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    argv: Sequence[str],
    values: dict[str, Any],
) -> argparse.Namespace:
    """Fill ``args`` from the file's ``values`` wherever the command line said nothing."""
    given = given_on_command_line(parser, argv)
    for dest, value in values.items():
        if dest not in given:
            setattr(args, dest, value)
    return args


# --- showing ------------------------------------------------------------------------------------


def settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The effective value of every key, in the parser's order."""
    return {key: getattr(args, a.dest, None) for key, a in keyed_actions(parser).items()}


def render(values: dict[str, Any]) -> str:
    """TOML for ``settings()``: a key left unset (no TOML null) is shown as a comment."""
    lines = []
    for key, value in values.items():
        if value is None:
            lines.append(f"# {key} = (unset)")
        else:
            lines.append(f"{key} = {render_value(value)}")
    return "\n".join(lines) + "\n"


def render_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    # JSON's string escapes (\", \\, \n, \uXXXX) are TOML basic-string escapes too.
    return json.dumps(str(value), ensure_ascii=False)


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys whose values differ, in ``new``'s order."""
    keys: Iterable[str] = list(new) + [k for k in old if k not in new]
    return [k for k in keys if old.get(k) != new.get(k)]


# --- the command line ---------------------------------------------------------------------------


def parse(
    parser: argparse.ArgumentParser, argv: Sequence[str]
) -> tuple[argparse.Namespace, Path | None]:
    """Flags over the config file (``--config``, else the default one if present)."""
    args = parser.parse_args(argv)
    path = default_path(getattr(args, "config", None))
    if path is not None:
        apply(parser, args, argv, load(parser, path))
    return args, path


def command(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """``tjobs config check [--config PATH]`` / ``tjobs config show [FLAGS...]``."""
    prog = f"{parser.prog} config"
    if argv[:1] not in (["check"], ["show"]):
        print(
            f"usage: {prog} check [--config PATH]   validate a config file\n"
            f"       {prog} show [--config PATH] [FLAGS...]   print the effective settings",
            file=sys.stderr,
        )
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    verb, rest = argv[0], argv[1:]
    try:
        args, path = parse(parser, rest)
    except ConfigError as err:
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return 1
    if verb == "check":
        if path is None:
            print(f"{parser.prog}: no config file (none named, no {DEFAULT_PATH})", file=sys.stderr)
            return 1
        print(f"config {path}: ok")
        return 0
    origin = f"# effective settings: {path} with flags over it" if path else "# no config file"
    print(origin)
    print(render(settings(parser, args)), end="")
    return 0
