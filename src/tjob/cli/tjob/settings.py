"""Where each connection setting comes from: per setting, its flag, else its environment
variable, else the context in use, else the built-in default.

The context in use is ``--context``, else ``$TJOB_CONTEXT``, else the current one of the
contexts file (``tjob context use``); ``default`` names none. So ``--host`` given with a context
replaces only its address and keeps its certificates.
"""

from __future__ import annotations

import argparse
import os

from . import contexts
from .errors import CliError
from .parser import GLOBALS

CONTEXT_ENV = "TJOB_CONTEXT"
FILES = {"ca": "CA", "cert": "client certificate", "key": "client key"}


def chosen(args: argparse.Namespace, config: contexts.Config) -> tuple[str | None, str]:
    """The context in use and why: (name or None, "--context" / "$TJOB_CONTEXT" / ...)."""
    flag = getattr(args, "context", None)
    if flag:
        name, source = flag, "--context"
    elif os.environ.get(CONTEXT_ENV):
        name, source = os.environ[CONTEXT_ENV], f"${CONTEXT_ENV}"
    elif config.current:
        name, source = config.current, f"the current context in {config.path}"
    else:
        return None, "default"
    return (None, source) if name == contexts.DEFAULT else (name, source)


def resolve(args: argparse.Namespace, *, check_files: bool = True) -> None:
    """Set ``args.host/ca/cert/key`` and ``args.sources`` (setting -> where it came from).

    With ``check_files``, a certificate file the context names but which is gone is an error
    naming the context (not only the file), since that is what the user must fix.
    """
    config = contexts.load()
    name, why = chosen(args, config)
    stored = config.get(name, why) if name is not None else {}
    args.context_name, args.context_source = name, why
    args.sources = {}
    for setting, (default, env, _text) in GLOBALS.items():
        flag = getattr(args, setting, None)
        if flag is not None:
            value, source = flag, f"--{setting}"
        elif os.environ.get(env):
            value, source = os.environ[env], f"${env}"
        elif setting in stored:
            value, source = stored[setting], f"context {name}"
        else:
            value, source = default, "default"
        setattr(args, setting, value)
        args.sources[setting] = source
        from_context = source.startswith("context") and setting in FILES
        if check_files and from_context and not os.path.exists(value):
            raise CliError(
                f"context {name!r}: its {FILES[setting]} file {value} is missing "
                f"(add the context again: tjob context add {name} -f ...)"
            )
