"""Many agents reporting at once, with overlapping runs and replayed batches: nothing is lost, nothing is
stored twice, no deadlock surfaces, and every run's counters equal a recount of its rows.

PostgreSQL: 20 threads, each with its own connection, through the real API stack (row locks, real
parallelism). SQLite: gunicorn processes writing one database file, where "database is locked" must
never reach an agent."""

import json
import sqlite3

import pytest
from django.test import Client

from runs.models import ApiKey, Decision, Problem, Run

from tests.concurrency import in_threads

from .helpers import Dashboard, client_batches, expected_counters, run_events

CLIENTS, RUNS = 20, 10
COUNTERS = ["decision_count", "success_count", "failure_count", "total_tokens", "total_latency_ms", "problem_count"]


def assert_every_run_complete_and_consistent(run_count: int):
    assert Run.objects.count() == run_count
    expected = expected_counters()
    for run in Run.objects.all():
        assert run.status == "completed" and run.completed_at is not None, run.run_id
        assert {name: getattr(run, name) for name in COUNTERS} == expected, run.run_id
        live = [getattr(run, name) for name in COUNTERS] + [run.nodes_executed]
        run.recount(save=False)
        assert live == [getattr(run, name) for name in COUNTERS] + [run.nodes_executed], run.run_id
        assert list(run.decisions.values_list("decision_id", flat=True)) == [f"dec_{n}" for n in range(12)]
    assert Decision.objects.count() == run_count * 12 and Problem.objects.count() == run_count


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_clients_with_overlapping_batches_and_replays_lose_and_duplicate_nothing():
    raw = ApiKey.issue("crowd", scopes=["ingest"])[1]
    answers: list[list[tuple[int, int, int]]] = [[] for _ in range(CLIENTS)]

    def work(index):
        client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
        for batch in client_batches(index, RUNS, size=7, seed=11):
            response = client.post("/api/v1/batch", json.dumps({"events": batch}), content_type="application/json")
            assert response.status_code == 207, response.content
            body = response.json()
            assert body["errors"] == [], body["errors"]
            answers[index].extend((index, ok["index"], ok["status"]) for ok in body["successes"])

    assert in_threads(CLIENTS, work) == []
    assert_every_run_complete_and_consistent(RUNS)
    sent = sum(len(batch) for index in range(CLIENTS) for batch in client_batches(index, RUNS, size=7, seed=11))
    created = sum(1 for per_client in answers for _c, _i, status in per_client if status == 201)
    assert sum(len(per_client) for per_client in answers) == sent
    # Each run, decision, first outcome, problem and run end was created by exactly one of the clients.
    assert created == RUNS * len(run_events(0))


@pytest.mark.slow
def test_concurrent_writers_on_sqlite_never_see_database_is_locked(tmp_path):
    dashboard = Dashboard({"SQLITE_PATH": str(tmp_path / "db.sqlite3"), "FRAMEWORK_VAR_DIR": str(tmp_path),
                           "DATABASE_URL": "", "SQLITE_TIMEOUT": "30", "API_RATE_LIMIT_PER_MINUTE": "0"},
                          workers=4)
    try:
        dashboard.start()
        clients, runs = 8, 4
        failures: list = []

        def work(index):
            for batch in client_batches(index, runs, size=5, seed=3):
                status, _headers, body = dashboard.post("/api/v1/batch", {"events": batch})
                if status != 207 or body.get("errors"):
                    failures.append((index, status, body))

        errors = in_threads(clients, work)
    finally:
        log = dashboard.stop()
    assert errors == [] and failures == []
    assert "locked" not in log
    recount = """SELECT r.run_id, r.status, r.decision_count, r.success_count, r.failure_count, r.total_tokens,
                        r.problem_count,
                        (SELECT COUNT(*) FROM runs_decision d WHERE d.run_id = r.id),
                        (SELECT COUNT(*) FROM runs_decision d WHERE d.run_id = r.id AND d.outcome_success),
                        (SELECT COUNT(*) FROM runs_decision d WHERE d.run_id = r.id AND NOT d.outcome_success),
                        (SELECT SUM(d.outcome_tokens) FROM runs_decision d WHERE d.run_id = r.id),
                        (SELECT COUNT(*) FROM runs_problem p WHERE p.run_id = r.id)
                 FROM runs_run r"""
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        rows = db.execute(recount).fetchall()
    assert len(rows) == runs
    expected = expected_counters()
    wanted = [expected[name] for name in ("decision_count", "success_count", "failure_count", "total_tokens",
                                          "problem_count")]
    for run_id, status, *counters in rows:
        live, recounted = counters[:5], counters[5:]
        assert status == "completed" and live == recounted == wanted, run_id


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_event_requests_racing_on_the_same_runs_keep_every_counter_exact():
    # The one-event path: one statement that checks the key, locks the run, stores and counts.
    raw = ApiKey.issue("racers", scopes=["ingest"])[1]
    setup = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    for run_id in ("race-0", "race-1"):
        assert setup.post("/api/v1/runs", json.dumps({"id": run_id, "goal_id": "g"}),
                          content_type="application/json").status_code == 201
    statuses: list[tuple[int, int]] = []

    def work(index):
        client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
        for n in range(15):
            body = json.dumps({"id": f"dec_{index * 15 + n}", "node_id": f"node_{(index + n) % 4}", "intent": "x",
                               "outcome": {"success": n % 3 != 0, "tokens_used": 5, "latency_ms": 2}})
            url = f"/api/v1/runs/race-{n % 2}/decisions"
            first = client.post(url, body, content_type="application/json").status_code
            again = client.post(url, body, content_type="application/json").status_code  # a retried request
            statuses.append((first, again))

    assert in_threads(8, work) == []
    assert set(statuses) == {(201, 200)} and len(statuses) == 8 * 15
    for run in Run.objects.filter(run_id__startswith="race-"):
        live = [getattr(run, name) for name in COUNTERS] + [run.nodes_executed]
        run.recount(save=False)
        assert live == [getattr(run, name) for name in COUNTERS] + [run.nodes_executed], run.run_id
        expected = 8 * (8 if run.run_id == "race-0" else 7)  # each thread: n = 0..14, alternating runs
        assert run.decision_count == expected and run.total_tokens == 5 * expected
