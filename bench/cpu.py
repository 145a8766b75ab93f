"""Where a one-event request's CPU goes: the per-event piece's endpoints (the no-op, the floor's one
INSERT, a decision, a first outcome sent alone, a run's end) served by the production server, each measured as CPU per request of the web workers,
of the database's processes and of the client, the machine's busy time per request, and on PostgreSQL the
WAL written per request. The per-event ratio is about the ratio of these totals when the cores are busy.

    .venv/bin/python -m bench.cpu [--db postgres|sqlite] [--requests 6000] [--rounds 3]

A diagnosis, not a target: figures only (median of the rounds). "database" is every PostgreSQL process
on this machine (its WAL writer and checkpointer too, and any other database's work), so run it on a
quiet machine; on SQLite the database works inside the web workers. The client is this process (its
threads send the requests). Read from /proc, in clock ticks: a round of a few thousand requests is
needed for two significant digits. Nothing is left behind: the database is dropped, the server stopped.
"""

import argparse
import os
from contextlib import nullcontext
import resource
import statistics
import sys

from . import common, events

DB_NAME = "bench_cpu"
# outcome: a first outcome sent alone (PUT); end: a run's end (its start and decisions stored before)
ENDPOINTS = ("no-op", "floor", "decision", "outcome", "end")
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each of `pids` still running."""
    seconds = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return seconds


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings by the processes running at the second: a process started
    in between counts whole, one that ended in between is left out (its last interval unread, rather than
    its whole life taken off: PostgreSQL's autovacuum workers come and go during a round)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def _postgres_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() in ("postgres", "postmaster"):
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def _machine() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK, sum(values) / TICK


def _client_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _wal_position(conn) -> int | None:
    """Where PostgreSQL's WAL ends, in bytes (`conn`: one connection for the whole measurement, made before
    the server's, so that no backend starts between two readings); None without one (SQLite)."""
    if conn is None:
        return None
    return int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')").fetchone()[0])


def _jobs(server, key: str, endpoint: str, per_client: int, seed: int) -> list[list]:
    if endpoint == "decision":
        return events._decision_requests(server, key, per_client, seed=seed)
    if endpoint == "outcome":  # its decisions are stored here, in batches, before the timing
        return events._outcome_requests(server, key, per_client, seed=seed)
    if endpoint == "end":  # its runs' starts and decisions are stored here, before the timing
        starts, _problems, store_decisions, ends = events._run_requests(server, key, per_client, seed=seed)
        common.run_clients(starts, server.url)
        store_decisions()
        return ends
    return events._plain_requests(server, "/bench/noop" if endpoint == "no-op" else "/bench/floor", per_client, seed)


def measure(kind: str, requests: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per endpoint, per figure, one value per round."""
    per_client = max(1, requests // events.CLIENTS)
    count = per_client * events.CLIENTS
    common.drop_database(kind, common.TEMPLATE)  # migrated afresh, with today's migrations
    env = common.fresh_database(kind, DB_NAME)
    figures: dict[str, dict[str, list[float]]] = {e: {} for e in ENDPOINTS}
    try:
        key = common.issue_api_key(env)
        events._floor_table(kind, DB_NAME)
        wal = common.raw_connection(kind, DB_NAME) if kind == "postgres" else None
        if wal is not None:
            wal.autocommit = True  # each reading sees the WAL as it is then
        with common.serve(common.PRODUCTION_SERVER, env) as server, wal or nullcontext():
            workers = server.worker_pids()
            for round_ in range(rounds):
                for endpoint in ENDPOINTS:
                    jobs = _jobs(server, key, endpoint, per_client, seed=700 + round_)
                    database = _postgres_pids if kind == "postgres" else list  # listed again after
                    web_before, db_before = _cpu_seconds(workers), _cpu_seconds(database())
                    before = (_client_seconds(), *_machine(), _wal_position(wal))
                    seconds, statuses = common.run_clients(jobs, server.url)
                    after = (_client_seconds(), *_machine(), _wal_position(wal))
                    web = _spent(web_before, _cpu_seconds(workers))
                    db = _spent(db_before, _cpu_seconds(database()))
                    if statuses != {201: count}:
                        raise RuntimeError(f"{endpoint}: expected {count} answers 201, got {statuses}")
                    client, busy, machine, wal_bytes = (
                        (b - a) if a is not None else None for a, b in zip(before, after))
                    row = figures[endpoint]
                    row.setdefault("req/s", []).append(count / seconds)
                    for name, value in (("web ms", web), ("database ms", db if kind == "postgres" else None),
                                        ("client ms", client), ("machine busy ms", busy)):
                        if value is not None:  # SQLite works inside the web workers: no database column
                            row.setdefault(name, []).append(value / count * 1000)
                    row.setdefault("busy %", []).append(100 * busy / machine if machine else 0.0)
                    if wal_bytes is not None:
                        row.setdefault("WAL bytes", []).append(wal_bytes / count)
    finally:
        for name in (DB_NAME, common.TEMPLATE):
            common.drop_database(kind, name)
    return figures


def table(kind: str, figures: dict[str, dict[str, list[float]]]) -> str:
    names = list(figures[ENDPOINTS[0]])
    lines = [f"CPU per request, {common.PRODUCTION_SERVER} + {kind} (median of the rounds)",
             " | ".join(["endpoint".ljust(9), *(name.rjust(15) for name in names)])]
    for endpoint in ENDPOINTS:
        cells = []
        for name in names:
            value = statistics.median(figures[endpoint][name])
            cells.append((f"{value:,.0f}" if name in ("req/s", "busy %", "WAL bytes") else f"{value:.3f}").rjust(15))
        lines.append(" | ".join([endpoint.ljust(9), *cells]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=common.DB_KINDS, default="postgres")
    parser.add_argument("--requests", type=int, default=6000, help="requests per endpoint and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.db == "postgres" and not common.pg_available():
        print(f"PostgreSQL is not reachable at {common.PG_HOST}:{common.PG_PORT}", file=sys.stderr)
        return 2
    print(table(args.db, measure(args.db, args.requests, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
