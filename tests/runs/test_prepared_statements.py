"""PostgreSQL: the ingest hot path's statements are prepared once per connection (runs/rawsql.py), so the
server stops parsing and planning them on every request; DB_PREPARED_STATEMENTS=0 (for a pooler in
transaction mode) turns that off without changing what is stored."""

import json

import pytest
from django.db import connection

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
    assert any("runs_apikey" in sql for sql in statements), statements
    assert sum("WITH locked AS" in sql for sql in statements) == 1, statements
    assert Run.objects.get(run_id="prepared").decision_count == 6


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
