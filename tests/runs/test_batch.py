"""POST /api/v1/batch: events applied in order, each on its own, answered per event with 207."""

import json

from runs.models import Decision, Problem, Run

RUN = {"id": "run_b", "goal_id": "calculator", "started_at": "2024-05-01T10:00:00"}


def decision(n, **extra):
    return {"id": f"dec_{n}", "node_id": "calc", "intent": f"step {n}",
            "options": [{"id": "a", "description": "A"}], "chosen_option_id": "a", **extra}


def send(client, events):
    return client.post("/api/v1/batch", json.dumps({"events": events}), content_type="application/json")


def test_batch_applies_good_events_and_reports_each_bad_one(api_client):
    events = [
        {"type": "run_start", "run_id": "run_b", "body": RUN},
        {"type": "decision", "run_id": "run_b", "decision_id": "dec_0", "body": decision(0)},
        {"type": "decision", "run_id": "run_b", "body": decision(1, outcome={"success": "maybe"})},
        {"type": "outcome", "run_id": "run_b", "decision_id": "dec_5", "body": {"success": True}},
        {"type": "outcome", "run_id": "run_b", "decision_id": "dec_0", "body": {"success": False, "error": "boom"}},
        {"type": "problem", "run_id": "run_b", "body": {"id": "prob_0", "severity": "critical", "description": "x"}},
        {"type": "teleport", "run_id": "run_b", "body": {}},
        {"type": "run_end", "run_id": "run_b", "body": {"status": "failed", "completed_at": "2024-05-01T10:00:05"}},
    ]
    response = send(api_client, events)
    assert response.status_code == 207
    body = response.json()
    assert body["successes"] == [{"index": 0, "status": 201}, {"index": 1, "status": 201},
                                 {"index": 4, "status": 201}, {"index": 5, "status": 201},
                                 {"index": 7, "status": 201}]
    errors = {error["index"]: error for error in body["errors"]}
    assert sorted(errors) == [2, 3, 6]
    assert errors[2]["status"] == 422 and "outcome.success" in errors[2]["detail"]
    assert errors[3]["status"] == 404 and "dec_5" in errors[3]["detail"]
    assert errors[6]["status"] == 422 and "type" in errors[6]["detail"]
    # The bad decision wrote nothing, not even the decision row its outcome came with.
    assert list(Decision.objects.values_list("decision_id", flat=True)) == ["dec_0"]
    run = Run.objects.get(run_id="run_b")
    assert (run.status, run.decision_count, run.failure_count, run.problem_count) == ("failed", 1, 1, 1)


def test_replaying_a_whole_batch_answers_200_for_every_event_and_changes_nothing(api_client):
    events = [
        {"type": "run_start", "run_id": "run_b", "body": RUN},
        {"type": "decision", "run_id": "run_b", "body": decision(0, outcome={"success": True, "tokens_used": 3})},
        {"type": "problem", "run_id": "run_b", "body": {"id": "prob_0", "severity": "minor", "description": "x"}},
        {"type": "run_end", "run_id": "run_b", "body": {"status": "completed"}},
    ]
    assert [s["status"] for s in send(api_client, events).json()["successes"]] == [201] * 4
    # The end's completed_at was chosen by the server the first time; a replay without one still matches.
    replay = send(api_client, events).json()
    assert replay == {"successes": [{"index": i, "status": 200} for i in range(4)], "errors": []}
    run = Run.objects.get(run_id="run_b")
    assert (run.decision_count, run.success_count, run.total_tokens, run.problem_count) == (1, 1, 3, 1)
    assert Problem.objects.count() == 1


def test_event_body_id_must_match_the_event_ids(api_client):
    response = send(api_client, [{"type": "run_start", "run_id": "run_b", "body": {**RUN, "id": "other"}}])
    assert response.json()["errors"][0]["status"] == 422
    assert "run_id" in response.json()["errors"][0]["detail"]
    assert not Run.objects.exists()


def test_batch_over_the_event_limit_is_refused_with_the_limit(api_client, settings):
    settings.API_MAX_BATCH_EVENTS = 3
    response = send(api_client, [{"type": "run_start", "run_id": f"r{i}", "body": {"goal_id": "g"}} for i in range(4)])
    assert response.status_code == 413
    assert "the limit is 3 events" in response.json()["detail"]
    assert "API_MAX_BATCH_EVENTS" in response.json()["detail"]
    assert not Run.objects.exists()


def test_batch_without_an_events_array_answers_422(api_client):
    response = api_client.post("/api/v1/batch", json.dumps({"event": []}), content_type="application/json")
    assert response.status_code == 422 and "events" in response.json()["detail"]


# --- the batch's fast path: the whole body checked at once, bodies validated in one call --------------

SDK_LIKE = [{"type": "run_start", "run_id": "run_b", "body": RUN}]
for _n in range(4):
    SDK_LIKE += [{"type": "decision", "run_id": "run_b", "decision_id": f"dec_{_n}", "body": decision(_n, index=_n)},
                 {"type": "outcome", "run_id": "run_b", "decision_id": f"dec_{_n}",
                  "body": {"success": True, "result": {"n": _n}}}]


def send_raw(client, text):
    return client.post("/api/v1/batch", text, content_type="application/json")


def with_hostile(fragment: str, where: str) -> str:
    """The SDK-like batch as JSON text, with dec_2's `where` (a JSON-object field) set to `fragment`."""
    events = json.loads(json.dumps(SDK_LIKE))
    events[5]["body"][where] = {"marker": 2}
    return json.dumps({"events": events}).replace(json.dumps({"marker": 2}), fragment)


HOSTILE = {
    "NUL in a JSON string": ('{"k": "a\\u0000b"}', "input_context", "NUL byte"),
    "lone surrogate in a JSON string": ('{"k": "\\udfff"}', "input_context", "lone surrogate"),
    "NaN": ('{"k": NaN}', "input_context", "non-finite"),
    "a number too large for a float": ('{"k": 1e400}', "input_context", "non-finite"),
    "an overflowing exponent after whitespace": ('{"k":\n -2.5E+0400}', "input_context", "non-finite"),
    "a long run of digits that overflows": ('{"k": ' + "9" * 400 + '.0}', "input_context", "non-finite"),
    "NUL in an extra field": ('"x\\u0000"', "custom", "NUL byte"),
}


def test_a_batch_with_an_unstorable_value_stores_the_rest_and_names_the_field(api_client):
    for name, (fragment, where, words) in HOSTILE.items():
        Run.objects.all().delete()
        response = send_raw(api_client, with_hostile(fragment, where))
        assert response.status_code == 207, name
        answer = response.json()
        assert [(e["index"], e["status"]) for e in answer["errors"]] == [(5, 422), (6, 404)], (name, answer)
        detail = answer["errors"][0]["detail"]
        assert where in detail and words in detail, (name, detail)
        stored = set(Decision.objects.values_list("decision_id", flat=True))
        assert stored == {"dec_0", "dec_1", "dec_3"}, name


def test_escaped_emoji_and_large_finite_numbers_are_stored_as_sent(api_client):
    """Surrogate *pairs* (json.dumps escapes every emoji so) and big but finite numbers are fine."""
    events = json.loads(json.dumps(SDK_LIKE))
    events[1]["body"]["intent"] = "find the 🧭 and the 🚀"
    events[1]["body"]["input_context"] = {"big": 1.5e99, "tiny": 1e-300, "int": 10**60}
    response = send_raw(api_client, json.dumps({"events": events}))  # ensure_ascii: \ud83e\udded ...
    assert response.status_code == 207 and response.json()["errors"] == []
    stored = Decision.objects.get(decision_id="dec_0")
    assert stored.intent == "find the 🧭 and the 🚀"
    context = stored.input_context  # PostgreSQL's jsonb gives 1.5e99 back as an integer: compare values
    assert float(context["big"]) == 1.5e99 and context["tiny"] == 1e-300 and context["int"] == 10**60


def test_a_batch_stores_the_columns_the_orm_would(api_client):
    """Byte for byte at the driver: the batch INSERT writes what Decision.objects.create writes."""
    from django.db import connection

    events = json.loads(json.dumps(SDK_LIKE))
    events[1]["body"].update(reasoning="Ünïcode «x»", input_context={"deep": [1, 2.5, None, True, {"é": "ü"}]},
                             evaluation=None, extra_key={"kept": [1]})
    assert send(api_client, events).json()["errors"] == []
    batch = Decision.objects.get(decision_id="dec_0")
    copy = Decision.objects.get(pk=batch.pk)
    copy.pk, copy.decision_id = None, "orm_copy"
    copy.save()

    def raw(decision_id):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM runs_decision WHERE decision_id = %s", [decision_id])
            names = [column[0] for column in cursor.description]
            return {name: value for name, value in zip(names, cursor.fetchone()) if name not in ("id", "decision_id")}

    assert raw("dec_0") == raw("orm_copy")
