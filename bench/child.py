"""Runs one benchmark piece on one database in this process and writes its rows as JSON.

    python -m bench.child PIECE --db sqlite|postgres --scale X --out FILE
"""

import argparse
import importlib
import json
import sys

from . import common

PIECES = ("ingest", "events", "sdk", "pages", "analysis", "memory")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    parser.add_argument("piece", choices=PIECES)
    parser.add_argument("--db", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    module = importlib.import_module(f"bench.{args.piece}")
    results = module.run(args.db, args.scale)
    with open(args.out, "w") as handle:
        json.dump({"results": [r.as_dict() for r in results], "phases": common.PHASES}, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
