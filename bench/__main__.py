"""`python -m bench [PIECE ...] [--scale X] [--db sqlite|postgres|both]`: run benchmarks, print the table,
write var/bench/results.json (and results.md, the summary table). Pieces: ingest, events, sdk, pages,
analysis, memory (default: all).

Each piece runs on each database in a child process; `--scale 0.01` is a quick smoke run. The wall time
of every piece, and of the phases inside it (store builds, migrations), is printed and kept in the JSON.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from . import common
from .child import PIECES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("pieces", nargs="*", choices=[[], *PIECES], default=[])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = the issue's sizes; 0.01 for a smoke run")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--out", default=str(common.VAR / "results.json"))
    args = parser.parse_args(argv)
    pieces = args.pieces or list(PIECES)
    kinds = list(common.DB_KINDS) if args.db == "both" else [args.db]
    if "postgres" in kinds and not common.pg_available():
        print(f"PostgreSQL is not reachable at {common.PG_HOST}:{common.PG_PORT}; skipping it", file=sys.stderr)
        kinds.remove("postgres")
    common.VAR.mkdir(parents=True, exist_ok=True)
    for kind in kinds:  # migrated afresh by the first piece that needs a database, with today's migrations
        common.drop_database(kind, common.TEMPLATE)
    results, failures, phases, started = [], [], [], time.perf_counter()
    for piece in pieces:
        for kind in kinds:
            t0 = time.perf_counter()
            print(f"== {piece} on {kind} (scale {args.scale:g}) ...", flush=True)
            with tempfile.NamedTemporaryFile(suffix=".json", dir=common.VAR, delete=False) as handle:
                out = handle.name
            env = {**os.environ, **common.db_env(kind, "bench_framework")}
            proc = subprocess.run([sys.executable, "-m", "bench.child", piece, "--db", kind, "--scale",
                                   str(args.scale), "--out", out], cwd=common.ROOT, env=env)
            inner = []
            if proc.returncode == 0:
                with open(out) as handle:
                    report = json.load(handle)
                rows = [common.result_from_dict(row) for row in report["results"]]
                inner = report["phases"]
                results.extend(rows)
                print(common.table(rows), flush=True)
            else:
                failures.append(f"{piece}/{kind} exited with {proc.returncode}")
            os.unlink(out)
            seconds = time.perf_counter() - t0
            phases.append({"phase": f"{piece} ({kind})", "seconds": round(seconds, 1),
                           "within": [{"phase": what, "seconds": round(s, 1)} for what, s in inner]})
            print(f"   ({_phase_text(phases[-1])})", flush=True)
    for kind in kinds:
        for name in ("bench_framework", "bench_framework_large", "bench_framework_small", "bench_framework_analysis",
                     common.TEMPLATE):
            common.drop_database(kind, name)
    elapsed = time.perf_counter() - started
    print("\n" + common.table(results))
    print("\n" + common.summary(results))
    print("\nwall time by phase:\n" + "\n".join(f"  {_phase_text(p)}" for p in phases))
    print(f"\n{len(results)} measurements in {elapsed:.0f} s; "
          f"{sum(r.passed is True for r in results)} targets hold, {sum(r.passed is False for r in results)} missed")
    for failure in failures:
        print(f"ERROR: {failure}", file=sys.stderr)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "scale": args.scale, "seconds": round(elapsed, 1),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "errors": failures, "phases": phases, "results": [r.as_dict() for r in results],
    }
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2, default=str)
    markdown = Path(args.out).with_suffix(".md")
    markdown.write_text(f"{report['date']}, scale {args.scale:g}, {elapsed / 60:.1f} min\n\n"
                        f"{common.summary(results)}\n")
    print(f"wrote {args.out} and {markdown} (the table as README.md and bench/RESULTS.md show it)")
    return 1 if failures else 0


def _phase_text(phase: dict) -> str:
    within = ", ".join(f"{p['phase']} {p['seconds']:.0f} s" for p in phase["within"])
    return f"{phase['phase']}: {phase['seconds']:.0f} s" + (f" (of which {within})" if within else "")


if __name__ == "__main__":
    sys.exit(main())
