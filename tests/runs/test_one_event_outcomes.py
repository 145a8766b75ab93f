"""An outcome reported alone (`PUT .../decisions/{id}/outcome`, one event per request, as a plain HTTP
client reports it once it knows how the decision turned out): a decision's first outcome, with a key this
process has found valid, is stored by one statement that also checks the key (`ingest.record_first_outcome`),
before ninja's view; everything else (a replay, a replacement, an unknown run or decision, a run folded into
the pattern groups, a key revoked or narrowed since) is answered by the full path exactly as before."""

import json
from datetime import timedelta

import pytest
from django.db import connection

from runs import auth, ingest, queries, rollups
from runs.models import ApiKey, Decision, Run

from tests.runs.test_pattern_groups import ordered, reference

pytestmark = pytest.mark.django_db(transaction=True)

OUTCOME = {"success": False, "result": {"rows": [1, 2.5, None]}, "error": "timed out «after» 3 tries <b>",
           "state_changes": {"cache": "warm"}, "tokens_used": 7, "latency_ms": 11, "summary": "slow",
           "timestamp": "2024-05-01T10:00:03.25", "retried": [1, {"x": True}]}


def _start(client, run_id: str, decisions: int = 3) -> None:
    assert client.post("/api/v1/runs", json.dumps({"id": run_id, "goal_id": "g"}),
                       content_type="application/json").status_code == 201
    for seq in range(decisions):
        answer = client.post(f"/api/v1/runs/{run_id}/decisions", json.dumps(
            {"id": f"dec_{seq}", "node_id": f"n{seq}", "intent": "x", "decision_type": "tool_selection",
             "options": [{"id": "a", "description": "search"}], "chosen_option_id": "a" if seq else "zzz"}),
            content_type="application/json")
        assert answer.status_code == 201, answer.content


def _put(client, run_id: str, decision_id: str, body, key: str | None = None):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.put(f"/api/v1/runs/{run_id}/decisions/{decision_id}/outcome",
                      body if isinstance(body, str) else json.dumps(body), content_type="application/json", **extra)


def _counters(run_id: str) -> tuple:
    return Run.objects.values_list("success_count", "failure_count", "total_tokens", "total_latency_ms").get(
        run_id=run_id)


def _stored(run_id: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("id", "run_id")}
            for row in Decision.objects.filter(run__run_id=run_id).order_by("seq").values()]


def _full_path_only(monkeypatch):
    monkeypatch.setattr(ingest, "record_first_outcome", lambda *args, **kwargs: None)


def test_a_first_outcome_is_stored_before_ninja_s_view_by_one_statement(api_client, monkeypatch):
    from ninja.operation import Operation

    _start(api_client, "quick")
    monkeypatch.setattr(Operation, "run", lambda *args, **kwargs: pytest.fail("went through ninja's operation"))
    monkeypatch.setattr(ingest, "record_outcome", lambda *args: pytest.fail("took the full path"))
    answer = _put(api_client, "quick", "dec_1", OUTCOME)
    assert answer.status_code == 201, answer.content
    assert answer["Content-Type"] == "application/json; charset=utf-8"
    assert answer.json() == {"run_id": "quick", "decision_id": "dec_1", "seq": 1, "node_id": "n1",
                             "decision_type": "tool_selection", "chosen_option_id": "a",
                             "chosen_description": "search", "has_outcome": True, "outcome_success": False}
    assert _counters("quick") == (0, 1, 7, 11)


def test_first_outcomes_store_and_answer_what_the_full_path_stores_and_answers(api_client, monkeypatch):
    _start(api_client, "quick")
    _start(api_client, "full")
    outcomes = [OUTCOME, {"success": True}, {"success": True, "result": None, "error": None, "tokens_used": 2**40}]
    quick = [_put(api_client, "quick", f"dec_{n}", body) for n, body in enumerate(outcomes)]
    _full_path_only(monkeypatch)
    full = [_put(api_client, "full", f"dec_{n}", body) for n, body in enumerate(outcomes)]
    assert [a.status_code for a in quick] == [a.status_code for a in full] == [201, 201, 201]
    assert [{**a.json(), "run_id": "-"} for a in quick] == [{**a.json(), "run_id": "-"} for a in full]
    without_times = [[{k: v for k, v in row.items() if k not in ("timestamp", "outcome_timestamp")} for row in _stored(run)]
                     for run in ("quick", "full")]
    assert without_times[0] == without_times[1]
    assert _stored("quick")[0]["outcome_timestamp"] == _stored("full")[0]["outcome_timestamp"]  # the one sent
    assert all(row["outcome_timestamp"] is not None for row in _stored("quick"))  # the others: when received
    assert _counters("quick") == _counters("full") == (2, 1, 7 + 2**40, 11)
    run = Run.objects.get(run_id="quick")
    live = _counters("quick")
    run.recount()
    assert _counters("quick") == live


def test_what_the_statement_does_not_store_is_answered_by_the_full_path(api_client):
    _start(api_client, "r")
    assert _put(api_client, "r", "dec_0", OUTCOME).status_code == 201
    replay = _put(api_client, "r", "dec_0", OUTCOME)
    assert replay.status_code == 200 and replay.json()["outcome_success"] is False
    assert _counters("r") == (0, 1, 7, 11)
    replaced = _put(api_client, "r", "dec_0", {"success": True, "tokens_used": 1})
    assert replaced.status_code == 200 and replaced.json()["outcome_success"] is True
    assert _counters("r") == (1, 0, 1, 0)  # moved by the difference, not counted twice
    unknown = _put(api_client, "r", "dec_9", OUTCOME)
    assert unknown.status_code == 404 and "dec_9" in unknown.json()["detail"]
    no_run = _put(api_client, "nope", "dec_0", OUTCOME)
    assert no_run.status_code == 404 and "nope" in no_run.json()["detail"]
    invalid = _put(api_client, "r", "dec_1", {"success": "maybe"})
    assert invalid.status_code == 422 and "success" in invalid.json()["detail"]
    broken = _put(api_client, "r", "dec_1", "{")
    assert broken.status_code == 400
    nul = _put(api_client, "r", "dec_1", {"success": True, "summary": "a\u0000b"})
    assert nul.status_code == 422 and "summary" in nul.json()["detail"]
    assert _counters("r") == (1, 0, 1, 0)
    assert Decision.objects.filter(run__run_id="r").exclude(outcome_success=None).count() == 1


def test_an_outcome_on_a_run_folded_into_the_pattern_groups_reaches_the_groups(api_client):
    _start(api_client, "folded")
    _start(api_client, "live")
    assert rollups.fold_idle_runs(timedelta(0)) == 2  # idle: their decisions now count in the goal's groups
    assert _put(api_client, "live", "dec_0", {"success": True}).status_code == 201
    assert rollups.fold_idle_runs(timedelta(0)) == 0  # the outcome woke nothing: both stay folded
    for n in range(3):
        assert _put(api_client, "folded", f"dec_{n}", {"success": n == 1, "error": "boom"}).status_code == 201
    assert _counters("folded") == (1, 2, 0, 0)
    assert ordered(queries.goal_aggregates("g")) == reference("g")  # what the patterns answer counts


@pytest.mark.parametrize("change, status", [("revoke", 401), ("narrow", 403)])
def test_a_key_revoked_or_narrowed_after_this_process_used_it_stores_no_outcome(client, change, status):
    key, raw = ApiKey.issue("agent", scopes=["ingest", "read"])
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    _start(client, "r")
    assert _put(client, "r", "dec_0", {"success": True}).status_code == 201  # the key is known good here
    if change == "revoke":
        key.revoke()
    else:
        ApiKey.objects.filter(pk=key.pk).update(scopes=["read"])
    answer = _put(client, "r", "dec_1", {"success": True})
    assert answer.status_code == status, answer.content
    assert ("'ingest' scope" if status == 403 else "API key") in answer.json()["detail"]
    assert _counters("r") == (1, 0, 0, 0)
    assert Decision.objects.filter(run__run_id="r").exclude(outcome_success=None).count() == 1


def test_a_key_never_found_valid_is_checked_before_anything_is_written(api_client, monkeypatch):
    _start(api_client, "r")
    monkeypatch.setattr(auth, "_SEEN", {})  # as after a restart
    monkeypatch.setattr(ingest, "record_first_outcome", lambda *args: pytest.fail("reached the storing statement"))
    assert _put(api_client, "r", "dec_0", {"success": True}, key="fwk_" + "x" * 43).status_code == 401
    assert _counters("r") == (0, 0, 0, 0)
