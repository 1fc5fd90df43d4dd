"""``tjob __complete``: what a shell should offer at the cursor, worked out from the parsers.

The scripts of ``tjob completion`` are thin: each hands the command line to this and shows what
it prints, so a new command or flag completes without touching them. Two spellings:

- ``tjob __complete words WORD...``: the words after ``tjob``, the last the one being typed
  (``""`` after a space); zsh and fish split the line themselves.
- ``tjob __complete line LINE CUR``: bash's raw line up to the cursor, split here (bash's own
  words break at ``:`` and ``=``), and bash's idea of the current word, so the answers can be
  cut to what bash replaces.

It prints one candidate a line, ``WORD`` or ``WORD<TAB>DESCRIPTION``; or one directive line,
``:files``, ``:dirs`` or ``:commands``, for the shell's own completion of those. Job ids come
from the server (a List call with a short deadline), descriptions escaped; any failure prints
nothing: a completion must never print an error into the user's line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..args import COMMANDS, PARSERS
from ..parser import main_parser
from ..render import escape, out

FILES, DIRS, COMMAND_NAMES = ":files", ":dirs", ":commands"
LIST_TIMEOUT = 1.0  # seconds: a TAB may wait this long for job ids, no longer
SENTINEL = "\x01"  # marks the cursor when splitting bash's line
# Which jobs make sense as an argument: running ones to stop, ended ones to remove.
RUNNING_ONLY, ENDED_ONLY = {"stop", "stats", "kill", "attach"}, {"rm"}
TOP_OPTIONS = {
    "--host": "server address",
    "--ca": "CA cert file",
    "--cert": "cli cert file",
    "--key": "cli key file",
    "--context": "a stored context",
    "--help": "show the help",
    "--version": "print the client's and the server's versions",
}


def standalone(args: argparse.Namespace) -> int:
    try:
        lines = answer(args.words)
    except Exception:
        return 0
    if lines:
        out("\n".join(lines))
    return 0


def answer(argv: Sequence[str]) -> list[str]:
    """The lines to print for ``__complete`` called with ``argv``."""
    if not argv:
        return []
    if argv[0] == "words" and len(argv) > 1:
        return complete(list(argv[1:-1]), argv[-1])
    if argv[0] == "line" and len(argv) == 3:
        return for_bash(argv[1], argv[2])
    return []


def for_bash(line: str, cur: str) -> list[str]:
    """Complete bash's line; cut each answer to the part bash replaces (its ``cur``)."""
    words = split_line(line)[1:]  # without the program's name
    if not words:
        return []
    mine = words[-1]
    found = complete(words[:-1], mine)
    if not cur or not mine.endswith(cur) or _directive(found):
        return found
    head = mine[: len(mine) - len(cur)]  # what bash split off before its word (up to a : or =)
    return [c[len(head) :] for c in found if c.startswith(head)]


def split_line(line: str) -> list[str]:
    """Shell words of a line cut at the cursor; the last is the one being typed (maybe "")."""
    import shlex

    for close in ("", "'", '"'):
        try:
            words = shlex.split(line + SENTINEL + close)
        except ValueError:
            continue
        return [w.replace(SENTINEL, "") for w in words]
    return []


@dataclass
class Walk:
    """Where the words before the cursor have led: command, subcommand, options seen."""

    parser: argparse.ArgumentParser
    command: str | None = None
    action: str | None = None  # of `tjob context`
    positionals: list[str] = field(default_factory=list)
    pending: argparse.Action | None = None  # an option still waiting for its value
    given: dict[str, str] = field(default_factory=dict)  # dest -> value of options seen
    job_argv: bool = False  # past `tjob run`'s options: the words are the job's
    dashdash: bool = False


def walk(words: Sequence[str]) -> Walk | None:
    """Follow ``words`` through the parsers; None when they lead nowhere (an unknown command)."""
    w = Walk(main_parser())
    for word in words:
        if w.pending is not None:
            w.given[w.pending.dest], w.pending = word, None
        elif w.job_argv:
            w.positionals.append(word)
        elif word == "--":
            w.dashdash = True
            w.job_argv = w.command == "run"
        elif word.startswith("-") and word != "-" and not w.dashdash:
            flag, eq, value = word.partition("=")
            act = w.parser._option_string_actions.get(flag)
            if act is not None and act.nargs != 0:
                if eq:
                    w.given[act.dest] = value
                else:
                    w.pending = act
        elif w.command is None:
            if word not in PARSERS:
                return None
            w.command, w.parser = word, PARSERS[word]()
        elif (subs := _subcommands(w.parser)) is not None and w.action is None:
            if word not in subs.choices:
                return None
            w.action, w.parser = word, subs.choices[word]
        else:
            w.positionals.append(word)
            w.job_argv = w.command == "run"
    return w


def complete(words: Sequence[str], cur: str) -> list[str]:
    """The candidates for ``cur``, typed after ``words``."""
    w = walk(words)
    if w is None:
        return []
    if w.pending is not None:
        return _matching(_values(w.pending), cur)
    if w.job_argv:
        return [FILES]
    if w.command == "run" and not w.positionals and not cur.startswith("-"):
        return [COMMAND_NAMES]
    if cur.startswith("-") and not w.dashdash:
        flag, eq, value = cur.partition("=")
        act = w.parser._option_string_actions.get(flag)
        if eq and act is not None and act.nargs != 0:  # --context=pr
            found = _matching(_values(act), value)
            return found if _directive(found) else [f"{flag}={v}" for v in found]
        return _matching(_options(w), cur)
    if w.command is None:
        return _matching([f"{n}\t{t}" for n, (_u, t) in COMMANDS.items()], cur)
    subs = _subcommands(w.parser)
    if subs is not None and w.action is None:
        return _matching([f"{a.dest}\t{a.help}" for a in subs._choices_actions], cur)
    return _matching(_positional(w), cur)


def _directive(candidates: list[str]) -> bool:
    return candidates[:1] in ([FILES], [DIRS], [COMMAND_NAMES])


def _matching(candidates: list[str], cur: str) -> list[str]:
    if _directive(candidates):
        return candidates
    return [c for c in candidates if c.startswith(cur)]


def _subcommands(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for act in parser._actions:
        if isinstance(act, argparse._SubParsersAction):
            return act
    return None


def _options(w: Walk) -> list[str]:
    """The options of where the walk is, with their help (hidden spellings left out)."""
    if w.command is None:
        return [f"{flag}\t{text}" for flag, text in TOP_OPTIONS.items()]
    found = []
    for act in w.parser._actions:
        if act.help == argparse.SUPPRESS or not act.option_strings:
            continue
        text = " ".join((act.help or "").split()).split(" (")[0][:70]
        found += [f"{flag}\t{text}" for flag in act.option_strings if flag.startswith("--")]
    return found


def _values(act: argparse.Action) -> list[str]:
    """The values an option takes: its choices, file names, or context names."""
    if act.dest == "context":
        return _contexts()
    if act.choices:
        return [str(c) for c in act.choices]
    if act.metavar == "FILE":
        return [FILES]
    if act.metavar == "DIR":
        return [DIRS]
    return []


def _positional(w: Walk) -> list[str]:
    """The candidates for the next positional argument of the command walked to."""
    acts = [a for a in w.parser._get_positional_actions() if a.nargs != argparse.PARSER]
    if not acts:
        return []
    index = min(len(w.positionals), len(acts) - 1)
    act = acts[index]
    if act.nargs not in ("+", "*") and len(w.positionals) >= len(acts):
        return []
    if act.metavar == "JOB":
        return _jobs(w)
    if act.metavar == "NAME" and w.action in ("use", "rm", "show"):
        return _contexts(with_default=w.action == "use")
    if act.choices:
        return [str(c) for c in act.choices]
    return []


def _contexts(*, with_default: bool = True) -> list[str]:
    from .. import contexts

    names = sorted(contexts.load().contexts)
    return [contexts.DEFAULT, *names] if with_default else names


def _jobs(w: Walk) -> list[str]:
    """The caller's jobs from the server, as ``SHORT_ID<TAB>state command``; [] on any error.

    One List call: where the server answers in pages, the first (the newest jobs) is enough for
    a TAB and keeps it to one round trip.
    """
    import time

    from tjob.status import JobState

    from ..client import Client, status
    from ..render import command_text, short_id, status_text
    from ..settings import resolve

    args = argparse.Namespace(**w.given)
    resolve(args)
    client = Client(args)
    try:
        listing = client.call("List", client.pb.ListResponse, client.pb.ListRequest(), LIST_TIMEOUT)
    finally:
        client.close()
    now = time.time()
    lines = []
    for st in map(status, listing.jobs):
        running = st.state is JobState.RUNNING
        if (w.command in RUNNING_ONLY and not running) or (w.command in ENDED_ONLY and running):
            continue
        lines.append(f"{short_id(st.id)}\t{escape(status_text(st, now))}  {command_text(st.argv)}")
    return lines
