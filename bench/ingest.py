"""1. Batch ingestion through the real HTTP API (gunicorn sync workers, granian WSGI), SDK-shaped batches,
against a raw-driver baseline: the same rows into the same tables, `executemany`, one transaction.

Decisions stored per second; the target is >= 40 % of the raw baseline, for the production server.
"""

import json
from datetime import UTC, datetime

from . import common, data
from .common import Check, Result

DB_NAME = "bench_framework"


def _plan(scale: float) -> tuple[int, int, int]:
    runs = max(2, round(20 * scale))
    decisions = max(10, round(500 * min(1.0, scale * 4)))
    reps = 3 if scale >= 0.5 else 2
    return runs, decisions, reps


def _stored_decisions(kind: str) -> int:
    conn = common.raw_connection(kind, DB_NAME)
    try:
        return conn.execute("SELECT COUNT(*) FROM runs_decision WHERE outcome_success IS NOT NULL").fetchone()[0]
    finally:
        conn.close()


def _through_api(server: common.Server, key: str, runs: list[list[dict]]) -> float:
    """Seconds to deliver every run's batches (two agents in parallel, each sending its runs in order)."""
    headers = {"Authorization": f"Bearer {key}"}

    def post(batch):
        def call(conn):
            status, body = common.request("POST", server.url + "/api/v1/batch", {"events": batch}, headers, conn)
            if status != 207 or json.loads(body)["errors"]:
                raise RuntimeError(f"batch refused: {status} {body[:300]!r}")
            return status
        return call

    jobs: list[list] = [[], []]
    for index, events in enumerate(runs):
        jobs[index % 2].extend(post(batch) for batch in data.batches(events))
    elapsed, _statuses = common.run_clients(jobs, server.url)
    return elapsed


def _raw_rows(runs: list[list[dict]], offset: int) -> tuple[list[list], list[list]]:
    """The run and decision rows the API stores for these events (outcomes merged into decisions)."""
    now = datetime.now(UTC)
    run_rows = []
    for events in runs:
        start = events[0]["body"]
        run_id = f"raw-{offset}-{start['id']}"
        decisions = {}
        for event in events[1:-1]:
            body = event["body"]
            if event["type"] == "decision":
                decisions[event["decision_id"]] = body
            else:
                decisions[event["decision_id"]]["outcome"] = body
        run_rows.append((run_id, decisions))
    return run_rows, now


def _raw_insert(kind: str, runs: list[list[dict]], offset: int) -> float:
    """Insert the same rows with the raw driver: executemany, one transaction."""
    prepared, now = _raw_rows(runs, offset)
    conn = common.raw_connection(kind, DB_NAME)
    ph = "%s" if kind == "postgres" else "?"
    ts = now if kind == "postgres" else now.replace(tzinfo=None).isoformat(sep=" ")
    run_sql = (f"INSERT INTO runs_run (run_id, goal_id, goal_description, status, started_at, completed_at, end_seq, "
               f"narrative, input_data, output_data, extra, nodes_executed, edges_traversed, decision_count, "
               f"success_count, failure_count, total_tokens, total_latency_ms, problem_count, created_at, updated_at) "
               f"VALUES ({', '.join([ph] * 21)})")
    dec_sql = (f"INSERT INTO runs_decision ({', '.join(data.DECISION_COLUMNS[1:])}) "
               f"VALUES ({', '.join([ph] * (len(data.DECISION_COLUMNS) - 1))})")
    elapsed, _ = common.timed(lambda: _raw_transaction(conn, kind, prepared, ts, run_sql, dec_sql))
    conn.close()
    return elapsed


def _raw_transaction(conn, kind, prepared, ts, run_sql, dec_sql) -> None:
    cursor = conn.cursor()
    if kind == "sqlite":
        cursor.execute("BEGIN IMMEDIATE")
    for run_id, decisions in prepared:
        outcomes = [d["outcome"] for d in decisions.values()]
        cursor.execute(run_sql, (run_id, "bench-ingest", "Benchmark ingestion", "completed", ts, ts, 1, "", "{}",
                                 "{}", "{}", json.dumps(list(data.NODES)), "[]", len(decisions),
                                 sum(o["success"] for o in outcomes), sum(not o["success"] for o in outcomes),
                                 sum(o["tokens_used"] for o in outcomes), sum(o["latency_ms"] for o in outcomes),
                                 0, ts, ts))
        if kind == "postgres":
            run_pk = cursor.execute("SELECT lastval()").fetchone()[0]
        else:
            run_pk = cursor.lastrowid
        rows = []
        for decision_id, d in decisions.items():
            o = d["outcome"]
            chosen = next((opt for opt in d["options"] if opt["id"] == d["chosen_option_id"]), None)
            values = {
                "run_id": run_pk, "decision_id": decision_id, "seq": d["index"], "timestamp": ts,
                "node_id": d["node_id"], "intent": d["intent"], "decision_type": d["decision_type"],
                "options": d["options"], "chosen_option_id": d["chosen_option_id"],
                "chosen_description": chosen["description"] if chosen else None, "reasoning": d["reasoning"],
                "active_constraints": d["active_constraints"], "input_context": d["input_context"],
                "evaluation": None, "extra": {}, "outcome_success": o["success"], "outcome_result": o["result"],
                "outcome_error": o["error"], "outcome_state_changes": o["state_changes"],
                "outcome_tokens": o["tokens_used"], "outcome_latency_ms": o["latency_ms"],
                "outcome_summary": o["summary"], "outcome_timestamp": ts, "outcome_extra": {},
            }
            rows.append([data._encode(c, values[c], kind) if c != "timestamp" and c != "outcome_timestamp" else ts
                         for c in data.DECISION_COLUMNS[1:]])
        cursor.executemany(dec_sql, rows)
    conn.commit() if kind == "postgres" else cursor.execute("COMMIT")


def run(kind: str, scale: float) -> list[Result]:
    n_runs, n_decisions, reps = _plan(scale)
    total = n_runs * n_decisions
    raw: list[float] = []
    served: dict[str, list[float]] = {name: [] for name in common.SERVERS}
    env = common.fresh_database(kind, DB_NAME)
    key = common.issue_api_key(env)
    for server_kind in common.SERVERS:  # one server per kind for all repetitions: its start is not measured
        with common.serve(server_kind, env) as server:
            for rep in range(reps):
                # A fresh set of run ids per repetition: every event creates rows, as an agent's would.
                runs = data.sdk_runs(n_runs, n_decisions, seed=1000 * rep + len(server_kind))
                before = _stored_decisions(kind)
                seconds = _through_api(server, key, runs)
                stored = _stored_decisions(kind) - before
                if stored != total:
                    raise RuntimeError(f"{server_kind}: stored {stored} decisions with outcomes, expected {total}")
                served[server_kind].append(total / seconds)
    for rep in range(reps):
        raw.append(total / _raw_insert(kind, data.sdk_runs(n_runs, n_decisions, seed=rep), rep))
    note = f"{n_runs} runs x {n_decisions} decisions (+outcomes) per repetition, batches of 1000 events (as the SDK sends), 2 agents"
    return [
        Result("ingest", kind, f"batch API, {server_kind}", "decisions/s", values, baseline="raw executemany",
               baseline_values=raw, checks=common.server_checks(server_kind, [Check("ratio", ">=", 0.40)]),
               note=common.server_note(server_kind, note))
        for server_kind, values in served.items()
    ] + [Result("ingest", kind, "raw executemany (baseline)", "decisions/s", raw)]
