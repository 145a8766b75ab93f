"""A write PostgreSQL refuses because of a conflicting one (here a real deadlock) stored nothing, so the
dashboard runs it again before answering: the agent gets its ordinary answer, not a 500. A write that
still cannot get through answers 503 with Retry-After, nothing stored."""

import json
import threading
import time

import psycopg
import pytest
from django.db import connection
from django.test import Client

from runs import ingest, rollups
from runs.models import ApiKey, Decision, PatternGroup, Run

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _connect(**options) -> psycopg.Connection:
    settings = connection.settings_dict
    return psycopg.connect(dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"],
                           port=settings["PORT"] or 5432, password=settings["PASSWORD"] or None, **options)


def _folded_run() -> None:
    ingest.start_run({"id": "late", "goal_id": "g"})
    ingest.add_decision("late", {"id": "dec_0", "node_id": "planner", "intent": "plan",
                                 "outcome": {"success": True, "tokens_used": 3}})
    ingest.end_run("late", {"status": "completed"})
    assert not Run.objects.get(run_id="late").pattern_pending  # folded: an outcome now moves the groups


def _waiting_for_the_groups(watch: psycopg.Connection, other: psycopg.Connection) -> bool:
    """Whether a backend other than `other` waits for a lock in a statement on the pattern groups."""
    return watch.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE "
                         "'%%runs_patterngroup%%' AND pid <> %s", [other.info.backend_pid]).fetchone() is not None


def _deadlocks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_a_write_refused_for_a_deadlock_is_run_again_and_answered():
    _folded_run()
    raw = ApiKey.issue("agent", scopes=["ingest"])[1]
    deadlocks = _deadlocks()
    other, watch = _connect(), _connect(autocommit=True)
    other.execute("SET deadlock_timeout = '30s'")  # the outcome's transaction is the one PostgreSQL refuses
    other.execute("SELECT 1 FROM runs_patterngroup WHERE goal_id = 'g' FOR UPDATE")  # the groups the outcome moves
    answer = {}

    def replace_outcome():
        try:
            answer["response"] = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").put(
                "/api/v1/runs/late/decisions/dec_0/outcome", json.dumps({"success": False, "error": "boom"}),
                content_type="application/json")
        except Exception as exc:  # noqa: BLE001 - the test client raises what the view raised
            answer["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=replace_outcome)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not _waiting_for_the_groups(watch, other):
            assert time.monotonic() < deadline and thread.is_alive(), answer
            time.sleep(0.01)
        # The outcome holds the run and waits for the groups; taking the run now closes the cycle.
        other.execute("SELECT 1 FROM runs_run WHERE run_id = 'late' FOR UPDATE")
    finally:
        other.rollback()
        thread.join(30)
        other.close()
        watch.close()

    assert "error" not in answer, answer.get("error")
    response = answer["response"]
    assert response.status_code == 200, response.content  # an outcome replaced, as without the conflict
    assert response.json()["outcome_success"] is False
    assert _deadlocks() > deadlocks  # PostgreSQL did refuse the first try
    run = Run.objects.get(run_id="late")
    assert (run.success_count, run.failure_count) == (0, 1)
    assert Decision.objects.get(run=run).outcome_error == "boom"
    groups = sorted(PatternGroup.objects.filter(goal_id="g").values_list("kind", "key", "total", "failed"))
    rollups.rebuild()
    assert groups == sorted(PatternGroup.objects.filter(goal_id="g").values_list("kind", "key", "total", "failed"))


def test_a_write_that_keeps_being_refused_answers_503_and_stores_nothing(monkeypatch):
    _folded_run()
    raw = ApiKey.issue("agent", scopes=["ingest"])[1]
    monkeypatch.setattr(ingest, "CONFLICT_ATTEMPTS", 2)
    other = _connect()
    other.execute("SET deadlock_timeout = '30s'")
    other.execute("SELECT 1 FROM runs_patterngroup WHERE goal_id = 'g' FOR UPDATE")
    other.execute("SAVEPOINT groups_held")
    stop = threading.Event()

    def close_the_cycle_every_time():  # whenever the outcome waits for the groups, take its run, then let go
        watch = _connect(autocommit=True)
        while not stop.is_set():
            if _waiting_for_the_groups(watch, other):
                other.execute("SELECT 1 FROM runs_run WHERE run_id = 'late' FOR UPDATE")
                other.execute("ROLLBACK TO SAVEPOINT groups_held")  # the run again, the groups still held
            time.sleep(0.01)
        watch.close()

    closer = threading.Thread(target=close_the_cycle_every_time)
    closer.start()
    try:
        response = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").put(
            "/api/v1/runs/late/decisions/dec_0/outcome", json.dumps({"success": False, "error": "boom"}),
            content_type="application/json")
    finally:
        stop.set()
        closer.join(30)
        other.rollback()
        other.close()
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "1" and "nothing of it was stored" in response.json()["detail"]
    run = Run.objects.get(run_id="late")
    assert (run.success_count, run.failure_count) == (1, 0)
    assert Decision.objects.get(run=run).outcome_success is True
