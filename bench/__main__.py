"""Run the benchmarks, print the table, write bench/RESULTS.md.

.venv/bin/python -m bench [--only B1,B2] [--quick]     (as root; `make bench`)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import api, engine, interactive, lifecycle
from .common import Result, table, write_report

ALL = ["B1", "B2", "B6", "B7", "B1p", "B2p", "B3", "B4", "B5", "B8", "B9", "B10", "B11", "B12"]


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--only", default=os.environ.get("BENCH", ""), help="comma-separated ids")
    p.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (cgroups and namespaces)", file=sys.stderr)
        return 2
    selected = {s.strip() for s in args.only.split(",") if s.strip()} or set(ALL)
    results: list[Result] = engine.run(selected, args.quick) + api.run(selected, args.quick)
    results += lifecycle.run(selected, args.quick)
    results += interactive.run(selected, args.quick)
    print(table(results))
    if not args.quick and selected == set(ALL):
        write_report(Path(__file__).parent / "RESULTS.md", results, "make bench")
        print("\nwritten: bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
