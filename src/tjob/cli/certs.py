"""``tjobs certs``: create the CA and certificates under ``.tjob/``, or add one client.

Standalone too: ``python -m tjob.cli.certs``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tjob.api import pki
from tjob.errors import TjobError

# --ca-days defaults to None rather than this, so combining it with --client can be refused.
_CA_DAYS = 365


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the certs flags to ``parser``."""
    parser.epilog = (
        "Also: `list [--dir DIR]` shows the issued certificates with expiry and revocation; "
        "`revoke [--dir DIR] NAME|SERIAL` revokes a client's certificates (the CRL next to "
        "the CA, which tjobs reloads)."
    )
    parser.add_argument(
        "--dir", default=pki.DEFAULT_DIR, help="directory for the files (default %(default)s)"
    )
    parser.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help="extra DNS name or IP for the server certificate (repeatable; localhost, "
        "127.0.0.1 and ::1 are always included)",
    )
    parser.add_argument(
        "--client",
        metavar="NAME",
        help="issue NAME.crt/NAME.key (identity NAME) from the existing CA instead of initialising",
    )
    parser.add_argument(
        "--ca-days",
        type=_days,
        help=f"CA validity in days (default {_CA_DAYS})",
    )
    parser.add_argument(
        "--days", type=_days, default=30, help="leaf certificate validity (default %(default)s)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing CA (invalidating what it issued) or client certificate",
    )


def run(args: argparse.Namespace) -> int:
    """Write the files and print one line per file; on an error print it and return 1."""
    try:
        if args.client is not None:
            if args.san or args.ca_days is not None:
                raise TjobError("--san and --ca-days apply when initialising, not with --client")
            written = pki.add_client(args.dir, args.client, days=args.days, force=args.force)
        else:
            ca_days = _CA_DAYS if args.ca_days is None else args.ca_days
            written = pki.init_dir(
                args.dir, sans=args.san, ca_days=ca_days, leaf_days=args.days, force=args.force
            )
    except TjobError as err:
        print(f"tjobs certs: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


def manage(argv: list[str], prog: str = "tjobs certs") -> int:
    """``list`` or ``revoke NAME|SERIAL``: the issued certificates, or revoke a client's."""
    from tjob.api import certstore

    parser = argparse.ArgumentParser(prog=f"{prog} {argv[0]}", allow_abbrev=False)
    parser.add_argument(
        "--dir", default=pki.DEFAULT_DIR, help="certificates directory (default %(default)s)"
    )
    if argv[0] == "revoke":
        parser.description = (
            "Revoke a client's certificates (by name: all of them; or one by serial) in the "
            "CRL next to the CA; then reload tjobs (SIGHUP), which also watches the CRL file."
        )
        parser.add_argument("what", metavar="NAME|SERIAL")
    args = parser.parse_args(argv[1:])
    try:
        if argv[0] == "revoke":
            done = certstore.revoke(args.dir, args.what)
            for e in done:
                print(f"revoked {e.name} (serial {e.serial})")
            if not done:
                print(f"{args.what}: already revoked")
            print(f"CRL: {certstore.crl_path(Path(args.dir) / 'ca.crt')}")
            return 0
        rows = certstore.issued(args.dir)
    except TjobError as err:
        print(f"{prog} {argv[0]}: {err}", file=sys.stderr)
        return 1
    print(f"{'KIND':<7} {'NAME':<20} {'EXPIRES (UTC)':<17} {'STATE':<8} SERIAL")
    for e in rows:
        expires = e.not_after[:16].replace("T", " ")
        state = "revoked" if e.revoked else "valid"
        print(f"{e.kind:<7} {e.name:<20} {expires:<17} {state:<8} {e.serial}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tjob.cli.certs``."""
    parser = argparse.ArgumentParser(
        prog="python -m tjob.cli.certs",
        description="Create the tjob CA and certificates, or add one client certificate.",
    )
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["list"], ["revoke"]):
        return manage(args, parser.prog)
    add_arguments(parser)
    return run(parser.parse_args(args))


def _days(text: str) -> int:
    """A positive number of days (expired certificates are for tests, through the library)."""
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if days <= 0:
        raise argparse.ArgumentTypeError(f"{days} is not a positive number of days")
    return days


if __name__ == "__main__":
    sys.exit(main())
