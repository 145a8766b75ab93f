"""Concurrent writers to one run keep its counters exact (PostgreSQL: real row locks, real parallelism)."""


import time

import pytest

from runs import ingest, queries, rollups
from runs.models import GoalDay, PatternGroup, Run
from runs.schemas import OutcomeIn, RunEndIn, RunStartIn

from tests.concurrency import in_threads, race_on_one_run, raced_counters

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_parallel_decisions_and_outcomes_keep_counters_equal_to_a_recount():
    errors, live, recounted = race_on_one_run("busy", threads=4, per_thread=10)
    assert errors == []
    assert live == raced_counters(40)
    assert live == recounted


def test_the_same_run_started_by_racing_writers_is_created_once():
    results = []
    assert in_threads(4, lambda index: results.append(ingest.start_run({"id": "race", "goal_id": "g"})[1])) == []
    assert sorted(results) == [False, False, False, True]
    assert Run.objects.filter(run_id="race").count() == 1


def test_runs_started_by_racing_one_event_requests_are_each_created_once():
    """As the API starts a run: the one statement first (`start_new_run`), the full path when it stores
    nothing. 4 writers start the same 20 runs at once: each is created once, and the goal's day counts
    equal a recount."""
    created = []

    def work(index):
        for n in range(20):
            body = {"id": f"race-{n}", "goal_id": "g", "started_at": f"2024-05-0{1 + n % 3}T10:00:00"}
            if ingest.start_new_run(RunStartIn.model_validate(body)) is not None:
                created.append(n)
            elif ingest.start_run(body)[1]:
                created.append(n)

    assert in_threads(4, work) == []
    assert sorted(created) == list(range(20))
    assert Run.objects.count() == 20
    assert rollups.stored(GoalDay) == rollups.recount(Run)


def test_interleaved_writers_keep_the_runs_nodes_in_decision_order():
    """Each decision arrives alone (one statement on PostgreSQL) while others land before and after it:
    metrics.nodes_executed still lists nodes in the order of the decisions' positions, as a recount does."""
    ingest.start_run({"id": "interleaved", "goal_id": "g"})

    def work(index):
        for n in range(15):
            seq = n * 4 + index
            ingest.add_decision("interleaved", {"id": f"dec_{seq}", "node_id": f"node_{seq}", "intent": "x",
                                                "outcome": {"success": True, "tokens_used": 1, "latency_ms": 1}})

    assert in_threads(4, work) == []
    run = Run.objects.get(run_id="interleaved")
    assert (run.decision_count, run.success_count, run.total_tokens) == (60, 60, 60)
    assert run.nodes_executed == [f"node_{seq}" for seq in range(60)]


def test_racing_first_outcomes_for_the_same_decisions_are_each_stored_once():
    """Writers send the first outcome of the same decisions at the same time, as the API stores one: the
    one statement first (`record_first_outcome`), the full path when it stores nothing. Each decision is
    created once; the others replace or replay it, and the counters equal a recount."""
    ingest.start_run({"id": "outcomes", "goal_id": "g"})
    for seq in range(20):
        ingest.add_decision("outcomes", {"id": f"dec_{seq}", "node_id": "n", "intent": "x"})
    created = []

    def work(index):
        for seq in range(20):
            body = {"success": index % 2 == 0, "tokens_used": index + 1}
            if ingest.record_first_outcome("outcomes", f"dec_{seq}", OutcomeIn.model_validate(body)) is not None:
                created.append(seq)
            else:
                created.extend([seq] if ingest.record_outcome("outcomes", f"dec_{seq}", body)[1] else [])

    assert in_threads(4, work) == []
    assert sorted(created) == list(range(20))
    run = Run.objects.get(run_id="outcomes")
    live = (run.success_count, run.failure_count, run.total_tokens)
    run.recount()
    assert live == (run.success_count, run.failure_count, run.total_tokens)
    assert run.success_count + run.failure_count == 20


def test_a_decision_committed_while_an_end_waits_for_the_run_is_folded_with_it():
    """The end's one statement reads the run's decisions as of when it started; one stored by a writer that
    held the run meanwhile would be missing from the fold. The statement sees that the run row it locked
    is not the one it read, stores nothing, and the full path ends the run with every decision."""
    from django.db import connection, transaction

    from tests.runs.test_pattern_groups import ordered, reference

    ingest.start_run({"id": "r", "goal_id": "g"})
    ingest.add_decision("r", {"id": "dec_0", "node_id": "a", "intent": "x", "outcome": {"success": True}})
    answers = {}

    def work(index):
        if index == 0:  # holds the run while the end waits for it, then commits a decision
            with transaction.atomic():
                ingest.add_decision("r", {"id": "dec_1", "node_id": "late", "intent": "y",
                                          "outcome": {"success": False, "error": "boom"}})
                answers["held"] = True
                with connection.cursor() as cursor:
                    for _ in range(600):  # until the end's statement waits for the run's lock
                        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                        if cursor.fetchone()[0]:
                            break
                        time.sleep(0.01)
                    else:
                        raise AssertionError("the end never waited for the run")
        else:
            while not answers.get("held"):
                time.sleep(0.01)
            answers["statement"] = ingest.end_pending_run("r", RunEndIn.model_validate({"status": "completed"}))
            if answers["statement"] is None:
                answers["full path"] = ingest.end_run("r", {"status": "completed"})[1]

    assert in_threads(2, work) == []
    assert answers["statement"] is None and answers["full path"] is True
    assert ordered(queries.goal_aggregates("g")) == reference("g")  # dec_1 ("late", "boom") counted
    assert {"late", "boom"} <= set(PatternGroup.objects.values_list("key", flat=True))
