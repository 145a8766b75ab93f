"""The benchmarks keep working: the table's verdicts, the batch fast path they pushed into the API, the
spooling agent, bulk-loaded stores that keep the migrations' indexes, and (slow) the Celery worker's
memory piece, every piece end to end at a tiny scale and the per-request CPU diagnosis (bench/cpu.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import common, data
from bench.common import Check, Result, table

ROOT = Path(__file__).resolve().parents[2]


def test_table_shows_ratio_and_verdict_against_the_target():
    fast = Result("ingest", "sqlite", "batch", "decisions/s", [50, 40, 60], baseline="raw", baseline_values=[100],
                  checks=[Check("ratio", ">=", 0.4)])
    slow = Result("ingest", "sqlite", "batch", "decisions/s", [10], baseline="raw", baseline_values=[100],
                  checks=[Check("ratio", ">=", 0.4)])
    assert (fast.median, fast.ratio, fast.passed, slow.passed) == (50, 0.5, True, False)
    text = table([fast, slow])
    assert "PASS" in text and "FAIL" in text and "0.50" in text


def _events_for_one_run():
    return data.sdk_runs(1, 30, seed=11)[0]


def _stored(run_id):
    from runs.models import Decision, Run

    run = Run.objects.get(run_id=run_id)
    columns = ["decision_id", "seq", "node_id", "intent", "chosen_description", "outcome_success",
               "outcome_error", "outcome_tokens", "outcome_latency_ms", "outcome_result"]
    rows = list(Decision.objects.filter(run=run).order_by("seq").values_list(*columns))
    counters = (run.decision_count, run.success_count, run.failure_count, run.total_tokens,
                run.total_latency_ms, run.nodes_executed, run.status)
    return rows, counters


@pytest.mark.django_db
def test_sdk_batch_stores_the_same_rows_as_events_sent_one_by_one(api_client):
    from runs import ingest

    events = _events_for_one_run()
    reply = api_client.post("/api/v1/batch", {"events": events}, content_type="application/json")
    assert reply.status_code == 207
    assert reply.json()["errors"] == [] and len(reply.json()["successes"]) == len(events)
    batch_rows, batch_counters = _stored(events[0]["run_id"])

    renamed = json.loads(json.dumps(events).replace(events[0]["run_id"], "one-by-one"))
    assert all(ingest.apply_event(event)[0] == 201 for event in renamed)
    assert _stored("one-by-one") == (batch_rows, batch_counters)
    assert batch_counters[0] == 30


@pytest.mark.django_db
def test_replayed_sdk_batch_answers_200_and_changes_nothing(api_client):
    events = _events_for_one_run()
    api_client.post("/api/v1/batch", {"events": events}, content_type="application/json")
    before = _stored(events[0]["run_id"])
    reply = api_client.post("/api/v1/batch", {"events": events}, content_type="application/json")
    assert {s["status"] for s in reply.json()["successes"]} == {200}
    assert _stored(events[0]["run_id"]) == before


@pytest.mark.django_db
def test_outcome_for_an_unknown_decision_in_a_batch_is_a_404_and_the_rest_is_stored(api_client):
    events = _events_for_one_run()
    bad = {"type": "outcome", "run_id": events[0]["run_id"], "decision_id": "dec_999", "body": {"success": True}}
    events = events[:5] + [bad] + events[5:]
    reply = api_client.post("/api/v1/batch", {"events": events}, content_type="application/json").json()
    assert [(e["index"], e["status"]) for e in reply["errors"]] == [(5, 404)]
    assert _stored(events[0]["run_id"])[1][0] == 30


def test_agent_with_its_dashboard_down_spools_every_event_without_growing():
    from bench.memory import agent_growth

    result = agent_growth(0.0)
    assert "NOT all spooled" not in result.note
    assert result.passed


@pytest.mark.slow
@pytest.mark.parametrize("piece", ["ingest", "events", "sdk", "pages", "analysis", "memory"])
def test_each_benchmark_piece_runs_at_a_tiny_scale(piece, tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "bench", piece, "--db", "sqlite", "--scale", "0.001",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, env={**os.environ},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert results and all(r["median"] is not None or r["note"] for r in results)
    if piece in ("ingest", "events"):  # the targets are the production server's; the other is compared
        for measured in ("batch API",) if piece == "ingest" else ("POST decision", "PUT outcome (alone)"):
            rows = {r["name"]: r for r in results if r["name"].startswith(measured + ",")}
            assert {name.rsplit(", ", 1)[1]: bool(r["target"]) for name, r in rows.items()} == {
                common.PRODUCTION_SERVER: True, **{s: False for s in common.SERVERS if s != common.PRODUCTION_SERVER}}
            assert all(r["ratio"] is not None and r["median"] > 0 for r in rows.values())
    if piece == "events":  # every event a plain HTTP client sends one per request, on the production server
        runs = {r["name"]: r for r in results if r["name"].startswith(("POST run start", "POST problem", "POST run end"))}
        assert sorted(runs) == sorted(f"{name}, {common.PRODUCTION_SERVER}"
                                      for name in ("POST run start", "POST problem", "POST run end"))
        assert all(r["target"] and r["ratio"] > 0 for r in runs.values())
        floors = [r for r in results if r["name"].startswith("one INSERT per request")]
        assert len(floors) == len(common.SERVERS) and all(r["median"] > 0 and not r["target"] for r in floors)
        against = {r["name"]: r for r in results}[f"per-event against the floor, {common.PRODUCTION_SERVER}"]
        assert against["ratio"] > 0 and not against["target"]  # what a target relative to the floor would read
        whole = {r["name"]: r for r in results}[f"whole runs, every event a request, {common.PRODUCTION_SERVER}"]
        assert whole["ratio"] > 0 and not whole["target"]  # a plain client's mix: starts, decisions and ends


@pytest.mark.slow
@pytest.mark.skipif(not common.pg_available(), reason="needs PostgreSQL at 127.0.0.1:5432 (CI has it)")
def test_the_events_piece_on_postgresql_also_shows_what_waiting_for_the_disk_costs(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DB_PREFIX", "test_" + os.environ.get("BENCH_DB_PREFIX", ""))
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "events", "--db", "postgres", "--scale", "0.001",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, env={**os.environ},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    decision = rows["POST decision, gunicorn, commits waiting for the disk"]
    floor = rows["floor, gunicorn, commits waiting for the disk"]
    assert decision["ratio"] > 0 and floor["ratio"] > 0
    assert not decision["target"] and not floor["target"]  # informative only: not the default
    assert "API_ONE_EVENT_ASYNC_COMMIT=0" in decision["note"]
    assert rows["POST decision, gunicorn"]["target"]  # the target stays on the default configuration


@pytest.fixture
def own_bench_databases(monkeypatch):
    """Bench databases (and their template) of this test's own, dropped afterwards."""
    monkeypatch.setenv("BENCH_DB_PREFIX", "test_" + os.environ.get("BENCH_DB_PREFIX", ""))
    kinds = ["sqlite"] + (["postgres"] if common.pg_available() else [])
    yield kinds
    for kind in kinds:
        for name in ("bench_framework_bulk", common.TEMPLATE):
            common.drop_database(kind, name)


def _schema(kind, conn):
    if kind == "postgres":
        indexes = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename LIKE 'runs_%%'").fetchall()
        constraints = conn.execute("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                                   "FROM pg_constraint WHERE conrelid::regclass::text LIKE 'runs_%%'").fetchall()
        return sorted(indexes), sorted(constraints)
    return sorted(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall()), []


def test_a_bulk_loaded_store_has_every_index_and_constraint_the_migrations_made(own_bench_databases):
    for kind in own_bench_databases:
        common.fresh_database(kind, "bench_framework_bulk")
        conn = common.raw_connection(kind, "bench_framework_bulk")
        migrated = _schema(kind, conn)
        if kind == "postgres":
            conn.rollback()
        builder = data.StoreBuilder(conn, kind)
        with data.bulk_load(conn, kind):
            builder.runs(30, 5, goals=3)
            builder.one_run("big-run", "goal-01", 50, status="failed")
        assert _schema(kind, conn) == migrated, kind
        runs, decisions = conn.execute("SELECT COUNT(*), SUM(decision_count) FROM runs_run").fetchone()
        assert (runs, decisions) == (31, 200)
        assert conn.execute("SELECT COUNT(*) FROM runs_decision").fetchone()[0] == 200
        conn.close()


@pytest.mark.slow
def test_celery_worker_memory_piece_finishes_every_analysis_and_reports_a_figure(monkeypatch):
    from bench import memory, stores

    monkeypatch.setenv("BENCH_DB_PREFIX", "test_" + os.environ.get("BENCH_DB_PREFIX", ""))
    try:
        result = memory.celery_worker_peak("sqlite", 0.001)
    finally:
        stores.marker("sqlite", "large").unlink(missing_ok=True)
        for name in ("bench_framework_large", common.TEMPLATE):
            common.drop_database("sqlite", name)
    assert f"statuses {{'succeeded': {memory.ANALYSES}}}" in result.note
    assert result.median > 50 and result.checks  # a real process's memory, held against the target


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_cpu_diagnosis_prints_each_endpoints_cost_per_request(kind, monkeypatch):
    if kind == "postgres" and not common.pg_available():
        pytest.skip("needs PostgreSQL at 127.0.0.1:5432 (CI has it)")
    monkeypatch.setenv("BENCH_DB_PREFIX", "test_" + os.environ.get("BENCH_DB_PREFIX", ""))
    proc = subprocess.run([sys.executable, "-m", "bench.cpu", "--db", kind, "--requests", "40", "--rounds", "1"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    header, *rows = [line.split("|") for line in proc.stdout.splitlines()[1:]]
    columns = [cell.strip() for cell in header]
    figures = {row[0].strip(): dict(zip(columns[1:], (float(c.replace(",", "")) for c in row[1:]))) for row in rows}
    assert list(figures) == ["no-op", "floor", "decision", "outcome", "end"]
    assert all(row["req/s"] > 0 for row in figures.values())
    assert ("database ms" in columns) == ("WAL bytes" in columns) == (kind == "postgres")
    assert all(value >= 0 for row in figures.values() for value in row.values())
    if kind == "postgres":  # exact, not in clock ticks: each stored request writes WAL, a decision more
        assert figures["decision"]["WAL bytes"] > figures["floor"]["WAL bytes"] > 0
        assert figures["outcome"]["WAL bytes"] > 0  # only the outcomes were timed: they write too
        assert figures["end"]["WAL bytes"] > figures["floor"]["WAL bytes"]  # only the ends: a run row, a fold
    assert not common._exists(kind, "bench_cpu") and not common._exists(kind, common.TEMPLATE)  # nothing left
    assert not [path.name for path in common.VAR.glob(f"{common.db_name('bench_')}*")]  # SQLite's files, locks too


def test_the_cpu_diagnosis_counts_database_processes_that_come_and_go_during_a_round():
    """PostgreSQL's autovacuum workers start and end while a round runs: one that ended is left out (its
    CPU before the round was once subtracted whole: the ends' database column read -1.9 ms), one that
    started counts whole, the others by what they spent in between."""
    from bench import cpu

    before = {10: 5.0, 11: 2.0, 12: 40.0}  # 12: an autovacuum worker that ends during the round
    after = {10: 5.5, 11: 2.25, 13: 0.125}  # 13: one that starts during it
    assert cpu._spent(before, after) == 0.5 + 0.25 + 0.125
    live = cpu._cpu_seconds([os.getpid(), 2**22 + 1])  # a pid that does not exist is not read
    assert list(live) == [os.getpid()] and live[os.getpid()] > 0
