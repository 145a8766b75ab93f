"""A problem reported alone (`POST /runs/{run_id}/problems`): a problem new to its run, with a key this
process has found valid, is stored with the run's count by one statement that also checks the key
(`ingest.add_new_problem`), before ninja's view; a replayed or conflicting problem, an unknown run, a bad
body and a key revoked since are answered by the full path exactly as before."""

import json

import pytest

from runs import ingest
from runs.models import ApiKey, Problem, Run

pytestmark = pytest.mark.django_db(transaction=True)

PROBLEMS = [
    {"id": "prob_3", "severity": "high", "description": "Ünïcode «boom» <b>", "decision_id": "dec_1",
     "root_cause": "rate limit", "suggested_fix": "back off", "timestamp": "2024-05-01T10:00:03.5+02:00",
     "retries": [1, {"x": None}]},
    {"id": "custom", "severity": "low", "description": "second"},
    {"id": "another one", "severity": "medium", "description": "third", "timestamp": "2024-05-01T10:00:05"},
]


def _start(client, run_id: str) -> None:
    assert client.post("/api/v1/runs", json.dumps({"id": run_id, "goal_id": "g"}),
                       content_type="application/json").status_code == 201


def _report(client, run_id: str, body, key: str | None = None):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.post(f"/api/v1/runs/{run_id}/problems", body if isinstance(body, str) else json.dumps(body),
                       content_type="application/json", **extra)


def _stored(run_id: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("id", "run_id")}
            for row in Problem.objects.filter(run__run_id=run_id).order_by("seq", "pk").values()]


def test_a_new_problem_is_stored_before_ninja_s_view_by_one_statement(api_client, monkeypatch):
    from ninja.operation import Operation

    _start(api_client, "quick")
    monkeypatch.setattr(Operation, "run", lambda *args, **kwargs: pytest.fail("went through ninja's operation"))
    monkeypatch.setattr(ingest, "add_problem", lambda *args: pytest.fail("took the full path"))
    answer = _report(api_client, "quick", PROBLEMS[0])
    assert answer.status_code == 201, answer.content
    assert answer.json() == {"run_id": "quick", "problem_id": "prob_3", "severity": "high",
                             "description": "Ünïcode «boom» <b>", "decision_id": "dec_1"}
    assert Run.objects.get(run_id="quick").problem_count == 1


def test_new_problems_store_and_answer_what_the_full_path_stores_and_answers(api_client, monkeypatch):
    _start(api_client, "quick")
    _start(api_client, "full")
    quick = [_report(api_client, "quick", body) for body in PROBLEMS]
    monkeypatch.setattr(ingest, "add_new_problem", lambda *args, **kwargs: None)
    full = [_report(api_client, "full", body) for body in PROBLEMS]
    assert [a.status_code for a in quick] == [a.status_code for a in full] == [201] * 3
    assert [{**a.json(), "run_id": "-"} for a in quick] == [{**a.json(), "run_id": "-"} for a in full]
    timeless = [[{k: v for k, v in row.items() if k != "timestamp"} for row in _stored(run)]
                for run in ("quick", "full")]
    assert timeless[0] == timeless[1]
    assert [row["seq"] for row in timeless[0]] == [1, 2, 3]  # prob_3 at 3; the others at the count so far
    sent = [[row["timestamp"] for row in _stored(run) if row["problem_id"] != "custom"] for run in ("quick", "full")]
    assert sent[0] == sent[1]
    assert Run.objects.get(run_id="quick").problem_count == Run.objects.get(run_id="full").problem_count == 3


def test_what_the_statement_does_not_store_is_answered_by_the_full_path(api_client):
    _start(api_client, "r")
    assert _report(api_client, "r", PROBLEMS[1]).status_code == 201
    replay = _report(api_client, "r", PROBLEMS[1])
    assert replay.status_code == 200 and replay.json()["problem_id"] == "custom"
    conflict = _report(api_client, "r", {**PROBLEMS[1], "severity": "high"})
    assert conflict.status_code == 409 and "severity" in conflict.json()["detail"]
    no_run = _report(api_client, "nope", PROBLEMS[1])
    assert no_run.status_code == 404 and "nope" in no_run.json()["detail"]
    invalid = _report(api_client, "r", {"id": "x", "severity": "high"})
    assert invalid.status_code == 422 and "description" in invalid.json()["detail"]
    assert _report(api_client, "r", "{").status_code == 400
    assert Run.objects.get(run_id="r").problem_count == Problem.objects.count() == 1


def test_a_key_revoked_after_this_process_used_it_stores_no_problem(client):
    key, raw = ApiKey.issue("agent", scopes=["ingest"])
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    _start(client, "r")
    assert _report(client, "r", PROBLEMS[1]).status_code == 201  # the key is known good here now
    key.revoke()
    answer = _report(client, "r", PROBLEMS[2])
    assert answer.status_code == 401 and "API key" in answer.json()["detail"]
    assert Run.objects.get(run_id="r").problem_count == Problem.objects.count() == 1
