"""``tjobs``: the API server (``sudo tjobs``), and ``tjobs certs`` to create its certificates.

Flags keep the Go prototype's single-dash spellings (``-mnt 254:0``) beside the GNU ones
(``--mnt 254:0``). The limit flags are the defaults of jobs that ask for none; the ``--max-*``
flags are the caps a job may ask up to (default: what the host has). Start-up refusals are
one line on stderr and a non-zero exit, never a traceback.

This module picks the subcommand: serving is :mod:`tjob.cli.serving` (its start-up checks
:mod:`tjob.cli.startup`), the cluster's ``node`` and ``gateway`` :mod:`tjob.cluster.cli`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tjob.cli.startup import EXIT_REFUSED, Refusal
from tjob.cli.tjobsargs import PROG, build_parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["certs"]:
        return _certs(args_list[1:])
    if args_list[:1] in (["node"], ["gateway"]):  # the cluster (issue 18): tjob[cluster]
        from tjob.cluster import cli

        return cli.main(args_list[0], args_list[1:])
    from tjob.cli import config, service

    parser = build_parser()
    service.add_flags(parser)
    if args_list[:1] == ["config"]:
        return config.command(parser, args_list[1:])
    if args_list[:1] == ["install-service"]:
        return _install_service(args_list[1:])
    service.claim_notify_socket()
    try:
        args, path = config.parse(parser, args_list)
        args.reloader = service.Reloader(parser, args_list, path, args)
        from tjob.cli import serving

        return serving.serve(args)
    except config.ConfigError as err:
        _say(str(err))
        return EXIT_REFUSED
    except Refusal as err:
        _say(str(err))
        return EXIT_REFUSED
    except KeyboardInterrupt:  # Ctrl+C during start-up, before the signal handlers exist
        return 130


def _certs(argv: list[str]) -> int:
    from tjob.cli import certs

    if argv[:1] in (["list"], ["revoke"]):
        return certs.manage(argv)
    parser = argparse.ArgumentParser(prog=f"{PROG} certs", allow_abbrev=False)
    certs.add_arguments(parser)
    return certs.run(parser.parse_args(argv))


def _install_service(argv: list[str]) -> int:
    from tjob.cli import install

    parser = argparse.ArgumentParser(prog=f"{PROG} install-service", allow_abbrev=False)
    install.add_arguments(parser)
    return install.run(parser.parse_args(argv))


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
