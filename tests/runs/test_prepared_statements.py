"""PostgreSQL: the ingest hot path's statements are prepared once per connection (runs/rawsql.py), so the
server stops parsing and planning them on every request; DB_PREPARED_STATEMENTS=0 (for a pooler in
transaction mode) turns that off without changing what is stored."""

import json

import pytest
from django.db import connection

from runs import rawsql
from runs.models import Run

pytestmark = pytest.mark.postgres


def _report(api_client, run_id: str, count: int) -> None:
    assert api_client.post("/api/v1/runs", json.dumps({"id": run_id, "goal_id": "g"}),
                           content_type="application/json").status_code == 201
    for seq in range(count):
        answer = api_client.post(f"/api/v1/runs/{run_id}/decisions", json.dumps(
            {"id": f"dec_{seq}", "node_id": f"n{seq % 2}", "intent": "x", "outcome": {"success": True}}),
            content_type="application/json")
        assert answer.status_code == 201, answer.content


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        return [row[0] for row in cursor.fetchall()]


def test_the_key_lookup_and_the_append_are_prepared_once_and_reused(api_client):
    _report(api_client, "prepared", 6)
    statements = _prepared()
    assert any("runs_apikey" in sql for sql in statements), statements  # the key lookup (starting the run)
    appends = [sql for sql in statements if "locked AS" in sql]
    assert len(appends) == 1, statements
    assert "runs_apikey" in appends[0], appends  # one-event requests check the key in the append itself
    assert Run.objects.get(run_id="prepared").decision_count == 6


def test_outcomes_problems_new_runs_and_ends_reported_alone_are_stored_by_prepared_statements(api_client):
    for run_id in ("other", "outcomes"):
        assert api_client.post("/api/v1/runs", json.dumps({"id": run_id, "goal_id": "g"}),
                               content_type="application/json").status_code == 201
    for seq in range(6):
        assert api_client.post("/api/v1/runs/outcomes/decisions", json.dumps(
            {"id": f"dec_{seq}", "node_id": "n", "intent": "x"}), content_type="application/json").status_code == 201
        answer = api_client.put(f"/api/v1/runs/outcomes/decisions/dec_{seq}/outcome", json.dumps(
            {"success": seq % 3 > 0, "tokens_used": seq}), content_type="application/json")
        assert answer.status_code == 201, answer.content
    starts = [sql for sql in _prepared() if "new AS" in sql]
    assert len(starts) == 1 and "runs_apikey" in starts[0], _prepared()  # a second run started: the statement
    for seq in range(2):
        assert api_client.post("/api/v1/runs/outcomes/problems", json.dumps(
            {"id": f"prob_{seq}", "severity": "high", "description": "x"}),
            content_type="application/json").status_code == 201
    problems = [sql for sql in _prepared() if '"runs_problem"' in sql]
    assert len(problems) == 1 and "runs_apikey" in problems[0], _prepared()
    outcomes = [sql for sql in _prepared() if "outcome AS" in sql]
    assert len(outcomes) == 1, _prepared()
    assert "runs_apikey" in outcomes[0]  # the key is checked in the statement that stores the outcome
    run = Run.objects.get(run_id="outcomes")
    assert (run.success_count, run.failure_count, run.total_tokens, run.problem_count) == (4, 2, 15, 2)
    for run_id in ("other", "outcomes"):
        assert api_client.post(f"/api/v1/runs/{run_id}/end", json.dumps({"status": "completed"}),
                               content_type="application/json").status_code == 201
    ends = [sql for sql in _prepared() if "calm AS" in sql]
    assert len(ends) == 1 and "runs_apikey" in ends[0], _prepared()  # two runs ended: one statement
    assert list(Run.objects.order_by("end_seq").values_list("run_id", "end_seq", "pattern_pending")) == [
        ("other", 1, False), ("outcomes", 2, False)]


def test_with_prepared_statements_off_nothing_is_prepared_and_everything_is_stored(api_client):
    connection.ensure_connection()
    driver = connection.connection
    before = driver.prepare_threshold
    driver.prepare_threshold = None  # what DB_PREPARED_STATEMENTS=0 configures
    already = _prepared()  # by earlier tests on this connection
    try:
        _report(api_client, "unprepared", 4)
        assert _prepared() == already
    finally:
        driver.prepare_threshold = before
    run = Run.objects.get(run_id="unprepared")
    assert (run.decision_count, run.success_count, run.nodes_executed) == (4, 4, ["n0", "n1"])


def _generic_plan_on_a_fresh_store(sql: str) -> str:
    """The generic plan PostgreSQL keeps for the prepared `sql` (Django's placeholders), made against empty
    copies of the tables, never analyzed, in a schema of this test's transaction: what a new store's first
    one-event writes plan against, whatever earlier tests stored (or autovacuum analyzed)."""
    numbered = rawsql.numbered(sql)
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA fresh_store")
        for table in ("runs_run", "runs_decision", "runs_apikey", "runs_goalday", "runs_patterngroup"):
            cursor.execute(f"CREATE TABLE fresh_store.{table} (LIKE public.{table} INCLUDING ALL)")
        cursor.execute("SET LOCAL search_path = fresh_store")
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE fresh_plan AS {numbered}")
        try:
            cursor.execute(f"EXPLAIN EXECUTE fresh_plan ({', '.join(['NULL'] * sql.count('%s'))})")
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE fresh_plan")


@pytest.mark.parametrize("checked", [True, False])
def test_the_appends_generic_plan_probes_the_index_even_when_made_on_an_empty_table(db, checked):
    """A prepared statement keeps its generic plan. Made while the decisions table was empty and not yet
    analyzed (a new install, the first minute of a new store), an anti-join plan read every decision on
    each append, so appends got slower with every decision stored, until autovacuum analyzed the table."""
    from runs import ingest

    plan = _generic_plan_on_a_fresh_store(ingest._append_plan(connection, checked=checked)[0])
    assert "Seq Scan on runs_decision" not in plan, plan
    assert "Index Only Scan using runs_decision_run_id_seq" in plan, plan


@pytest.mark.parametrize("checked", [True, False])
def test_the_ends_generic_plan_reads_only_the_run_s_own_rows_even_when_made_on_an_empty_table(db, checked):
    """The end's one statement, planned for a new store, finds the run, the last place in index order,
    the run's decisions, its day and its groups through their indexes: no table is read whole, however
    large it grows while the plan is kept."""
    from runs import ingest

    plan = _generic_plan_on_a_fresh_store(ingest._end_plan(connection, checked=checked)[0][0])
    assert "Seq Scan" not in plan, plan
    assert "Index Scan using runs_decision_run_id_seq" in plan, plan  # the run's decisions, for the fold
    assert "Index Only Scan Backward using runs_run_end_seq_id" in plan, plan  # MAX(end_seq)
