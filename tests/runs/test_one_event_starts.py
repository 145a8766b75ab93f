"""A run started one per request (`POST /runs`, as a plain HTTP client starts each run): a new run, with a
key this process has found valid, is stored with its goal's count for the day by one statement that also
checks the key (`ingest.start_new_run`), before ninja's view; a replayed or conflicting start, a bad body
and a key revoked or narrowed since are answered by the full path exactly as before."""

import json
from datetime import date

import pytest

from runs import auth, ingest, rollups
from runs.models import ApiKey, GoalDay, Run

pytestmark = pytest.mark.django_db(transaction=True)

STARTS = [
    {"id": "plain", "goal_id": "g"},
    {"id": "full", "goal_id": "g", "goal_description": "Ünïcode «goal» <b>", "started_at": "2024-05-01T23:30:00.123456-02:00",
     "input_data": {"q": [1, 2.5, None, {"deep": True}]}, "agent_version": {"kept": [1]}},
    {"id": "team/a b", "goal_id": "other goal", "status": "completed", "started_at": "2024-05-02T00:00:00"},
    {"id": "failed-start", "goal_id": "g", "status": "failed", "started_at": "2024-05-01T10:00:00Z"},
]


def _start(client, body, key: str | None = None):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.post("/api/v1/runs", body if isinstance(body, str) else json.dumps(body),
                       content_type="application/json", **extra)


def _stored(run_id: str) -> dict:
    row = Run.objects.values().get(run_id=run_id)
    return {k: v for k, v in row.items() if k not in ("id", "run_id", "created_at", "updated_at")}


def _days_match_a_recount() -> bool:
    return rollups.stored(GoalDay) == rollups.recount(Run)


def test_a_new_run_is_stored_before_ninja_s_view_by_one_statement(api_client, monkeypatch):
    from ninja.operation import Operation

    assert _start(api_client, {"id": "warm-up", "goal_id": "g"}).status_code == 201  # the key is seen now
    monkeypatch.setattr(Operation, "run", lambda *args, **kwargs: pytest.fail("went through ninja's operation"))
    monkeypatch.setattr(ingest, "start_run", lambda *args: pytest.fail("took the full path"))
    answer = _start(api_client, STARTS[1])
    assert answer.status_code == 201, answer.content
    assert answer["Content-Type"] == "application/json; charset=utf-8"
    assert answer.json() == {"run_id": "full", "goal_id": "g", "goal_description": "Ünïcode «goal» <b>",
                             "status": "running", "started_at": "2024-05-02T01:30:00.123", "completed_at": None,
                             "duration_ms": 0, "decision_count": 0, "success_count": 0, "failure_count": 0,
                             "success_rate": 0.0, "problem_count": 0, "total_tokens": 0, "total_latency_ms": 0}
    assert GoalDay.objects.values_list("goal_id", "runs", "running").get(day=date(2024, 5, 2)) == ("g", 1, 1)
    assert _days_match_a_recount()


def test_new_runs_store_and_answer_what_the_full_path_stores_and_answers(api_client, monkeypatch):
    quick = [_start(api_client, body) for body in STARTS]
    Run.objects.all().delete()
    GoalDay.objects.all().delete()
    monkeypatch.setattr(ingest, "start_new_run", lambda *args, **kwargs: None)
    full_rows = []
    full = []
    for body in STARTS:
        full.append(_start(api_client, body))
        full_rows.append(_stored(body["id"]))
    assert [a.status_code for a in quick] == [a.status_code for a in full] == [201] * len(STARTS)
    untimed = [{k: v for k, v in a.json().items() if k != "started_at"} for a in quick]
    assert untimed == [{k: v for k, v in a.json().items() if k != "started_at"} for a in full]
    assert [a.json()["started_at"] for a in quick[1:]] == [a.json()["started_at"] for a in full[1:]]  # sent
    monkeypatch.undo()
    Run.objects.all().delete()
    GoalDay.objects.all().delete()
    for body in STARTS:
        assert _start(api_client, body).status_code == 201
    quick_rows = [_stored(body["id"]) for body in STARTS]
    assert [{k: v for k, v in row.items() if k != "started_at"} for row in quick_rows] == [
        {k: v for k, v in row.items() if k != "started_at"} for row in full_rows]
    assert [row["started_at"] for row in quick_rows[1:]] == [row["started_at"] for row in full_rows[1:]]
    assert all(row["pattern_pending"] for row in quick_rows)  # grouped live until they end, as the ORM makes them
    assert _days_match_a_recount()


def test_what_the_statement_does_not_store_is_answered_by_the_full_path(api_client):
    first = _start(api_client, STARTS[1])
    assert first.status_code == 201
    replay = _start(api_client, STARTS[1])
    assert replay.status_code == 200 and replay.json() == first.json()
    conflict = _start(api_client, {**STARTS[1], "goal_id": "another"})
    assert conflict.status_code == 409 and "goal_id" in conflict.json()["detail"]
    invalid = _start(api_client, {"id": "x", "goal_id": 5})
    assert invalid.status_code == 422 and "goal_id" in invalid.json()["detail"]
    assert _start(api_client, "{").status_code == 400
    nul = _start(api_client, {"id": "y", "goal_id": "g", "goal_description": "a\u0000b"})
    assert nul.status_code == 422 and "goal_description" in nul.json()["detail"]
    assert list(Run.objects.values_list("run_id", flat=True)) == ["full"]
    assert _days_match_a_recount()


@pytest.mark.parametrize("change, status", [("revoke", 401), ("narrow", 403)])
def test_a_key_revoked_or_narrowed_after_this_process_used_it_starts_no_run(client, change, status):
    key, raw = ApiKey.issue("agent", scopes=["ingest", "read"])
    assert _start(client, {"id": "first", "goal_id": "g"}, key=raw).status_code == 201  # known good here now
    if change == "revoke":
        key.revoke()
    else:
        ApiKey.objects.filter(pk=key.pk).update(scopes=["read"])
    answer = _start(client, {"id": "second", "goal_id": "g"}, key=raw)
    assert answer.status_code == status, answer.content
    assert ("'ingest' scope" if status == 403 else "API key") in answer.json()["detail"]
    assert list(Run.objects.values_list("run_id", flat=True)) == ["first"]
    assert _days_match_a_recount()


def test_a_key_never_found_valid_is_checked_before_anything_is_written(api_client, monkeypatch):
    monkeypatch.setattr(auth, "_SEEN", {})  # as after a restart
    monkeypatch.setattr(ingest, "start_new_run", lambda *args: pytest.fail("reached the storing statement"))
    assert _start(api_client, {"id": "r", "goal_id": "g"}, key="fwk_" + "x" * 43).status_code == 401
    assert not Run.objects.exists()


def test_a_run_started_failed_is_analysed_automatically_as_the_full_path_has_it(api_client, settings):
    """The Builder's automatic analysis hears of every run saved as failed (builder/apps.py), whichever
    path stored it."""
    from builder.models import Analysis

    settings.BUILDER_AUTO_ANALYZE = 1.0
    assert _start(api_client, {"id": "warm-up", "goal_id": "g"}).status_code == 201  # the key is seen now
    assert _start(api_client, STARTS[3]).status_code == 201  # by the statement, started as failed
    assert _start(api_client, STARTS[0] | {"id": "fine"}).status_code == 201
    assert [(job.run.run_id, job.source) for job in Analysis.objects.all()] == [("failed-start", "auto")]
