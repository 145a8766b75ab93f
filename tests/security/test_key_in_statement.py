"""One-event decision requests check the API key inside the statement that stores the decision
(`runs.auth.BearerKey`, `runs.ingest.append_decision`), once the process has found the key valid. A key
that is made up, forged on a real key's prefix, revoked (even after it was used), or without the ingest
scope stores nothing and gets the 401 / 403 every operation gives, whatever the body holds; a key never
found valid is checked before anything is written; the common case is stored by that one statement."""

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from runs import ingest
from runs.models import ApiKey, Decision, Run

pytestmark = pytest.mark.django_db(transaction=True)

RUN = "keyed"
URL = f"/api/v1/runs/{RUN}/decisions"
DECISION = {"id": "dec_0", "node_id": "planner", "intent": "Pick a tool",
            "options": [{"id": "a", "description": "search"}], "chosen_option_id": "a", "reasoning": "works",
            "outcome": {"success": True, "tokens_used": 5}}


@pytest.fixture
def started(api_client):
    assert api_client.post("/api/v1/runs", json.dumps({"id": RUN, "goal_id": "g"}),
                           content_type="application/json").status_code == 201


def _post(client, key, body):
    return client.post(URL, body if isinstance(body, str) else json.dumps(body), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {key}")


def _stored() -> tuple[int, int]:
    run = Run.objects.get(run_id=RUN)
    return run.decision_count, Decision.objects.filter(run=run).count()


def test_the_common_case_is_stored_by_the_statement_that_checks_the_key(client, api_key, started, monkeypatch):
    def full_path(*args, **kwargs):
        raise AssertionError("a plain new decision with a good key took the full path")

    monkeypatch.setattr(ingest, "add_decision", full_path)
    answer = _post(client, api_key, DECISION)
    assert answer.status_code == 201, answer.content
    assert answer.json()["decision_id"] == "dec_0" and answer.json()["outcome_success"] is True
    assert _stored() == (1, 1)


def _made_up(api_key):
    return "fwk_" + "x" * 43


def _forged(api_key):  # the lookup prefix of a real key, the rest wrong
    return api_key[:16] + "A" * (len(api_key) - 16)


def _revoked(api_key):
    key, raw = ApiKey.issue("revoked", scopes=["ingest"])
    key.revoke()
    return raw


def _read_only(api_key):
    return ApiKey.issue("reader", scopes=["read", "review"])[1]


@pytest.mark.parametrize("make_key, status", [(_made_up, 401), (_forged, 401), (_revoked, 401), (_read_only, 403)])
def test_a_key_that_may_not_ingest_stores_nothing(client, api_key, started, make_key, status):
    answer = _post(client, make_key(api_key), DECISION)
    assert answer.status_code == status, answer.content
    assert ("'ingest' scope" if status == 403 else "API key") in answer.json()["detail"]
    assert _stored() == (0, 0)
    assert _post(client, api_key, DECISION).status_code == 201  # the same request, with the right key
    assert _stored() == (1, 1)


@pytest.mark.parametrize("body", ["{", '{"id": 5}', json.dumps({**DECISION, "id": "dec_9"}), json.dumps(DECISION)])
def test_a_bad_key_is_refused_before_anything_about_the_body_or_the_run_is_said(client, api_key, started, body):
    assert _post(client, api_key, DECISION).status_code == 201  # so that dec_0 again would be a replay
    for url in (URL, "/api/v1/runs/no-such-run/decisions"):
        answer = client.post(url, body, content_type="application/json", HTTP_AUTHORIZATION="Bearer fwk_made-up")
        assert answer.status_code == 401, (url, body, answer.content)
    assert _stored() == (1, 1)


def test_the_checked_append_keeps_last_used_at_up_to_date(client, started, monkeypatch):
    from runs import auth

    key, raw = ApiKey.issue("fresh", scopes=["ingest"])
    assert _post(client, raw, _next(0)).status_code == 201  # checked the usual way: last_used_at set
    # Over a minute later, as far as the key and this process know: the append itself must bring it up to date.
    old = timezone.now() - timedelta(minutes=5)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=old)
    monkeypatch.setitem(auth._SEEN, ApiKey._digest(raw), time.monotonic() - 120)
    monkeypatch.setattr(ingest, "add_decision", lambda *args: pytest.fail("took the full path"))
    assert _post(client, raw, _next(1)).status_code == 201
    key.refresh_from_db()
    assert key.last_used_at > old + timedelta(minutes=4)


def _next(n: int) -> dict:
    return {**DECISION, "id": f"dec_{n}"}


def test_a_key_revoked_after_this_process_used_it_is_refused_at_once_and_stores_nothing(client, started):
    key, raw = ApiKey.issue("soon revoked", scopes=["ingest"])
    assert _post(client, raw, _next(0)).status_code == 201  # the key is now known good to this process
    key.revoke()
    answer = _post(client, raw, _next(1))
    assert answer.status_code == 401 and "API key" in answer.json()["detail"]
    assert _stored() == (1, 1)


def test_a_key_whose_ingest_scope_was_taken_away_is_refused_at_once_and_stores_nothing(client, started):
    key, raw = ApiKey.issue("narrowed", scopes=["ingest", "read"])
    assert _post(client, raw, _next(0)).status_code == 201
    ApiKey.objects.filter(pk=key.pk).update(scopes=["read"])
    answer = _post(client, raw, _next(1))
    assert answer.status_code == 403 and "'ingest' scope" in answer.json()["detail"]
    assert _stored() == (1, 1)


@pytest.mark.parametrize("make_key", [_made_up, _forged])
def test_a_key_never_found_valid_is_refused_before_anything_is_written(client, api_key, started, make_key, monkeypatch):
    def no_write(*args, **kwargs):
        raise AssertionError("an unchecked key reached the storing statement")

    monkeypatch.setattr(ingest, "append_decision", no_write)
    assert _post(client, make_key(api_key), DECISION).status_code == 401


def test_with_a_key_already_seen_the_append_is_answered_before_ninja_s_view(client, api_key, started, monkeypatch):
    from ninja.operation import Operation

    assert _post(client, api_key, _next(0)).status_code == 201  # the key is now known good to this process
    monkeypatch.setattr(Operation, "run", lambda *args, **kwargs: pytest.fail("went through ninja's operation"))
    answer = _post(client, api_key, _next(1))
    assert answer.status_code == 201 and answer.json()["seq"] == 1, answer.content
    assert answer["Content-Type"] == "application/json; charset=utf-8"
    assert _stored() == (2, 2)


def test_what_the_first_statement_does_not_store_is_tried_once_and_answered_by_the_full_path(client, api_key, started,
                                                                                               monkeypatch):
    assert _post(client, api_key, _next(0)).status_code == 201
    tries = []
    append = ingest.append_decision
    monkeypatch.setattr(ingest, "append_decision", lambda *args: tries.append(args) or append(*args))
    replay = _post(client, api_key, _next(0))
    assert replay.status_code == 200 and replay.json()["seq"] == 0, replay.content
    assert len(tries) == 1  # the replay took one statement that stored nothing, then the full path
    invalid = _post(client, api_key, {**_next(1), "chosen_option_id": 7})
    assert invalid.status_code == 422 and "chosen_option_id" in invalid.json()["detail"]
    assert _stored() == (1, 1)


@pytest.mark.parametrize("header, status", [
    ("bearer {key}", 201),  # the scheme in any case, as ninja reads it
    ("BEARER {key}", 201),
    ("Bearer  {key}", 401),  # the token is everything after the first space
    ("Bearer {key} ", 401),
    ("Basic {key}", 401),
    ("{key}", 401),
    ("Bearer", 401),
])
def test_the_bearer_token_is_read_as_every_other_operation_reads_it(client, api_key, started, header, status):
    assert _post(client, api_key, _next(0)).status_code == 201  # a seen key: the first statement is tried
    answer = client.post(URL, json.dumps(_next(1)), content_type="application/json",
                         HTTP_AUTHORIZATION=header.format(key=api_key))
    assert answer.status_code == status, answer.content
    outcome = client.put(f"{URL}/dec_0/outcome", json.dumps({"success": False}), content_type="application/json",
                         HTTP_AUTHORIZATION=header.format(key=api_key))  # a plain ninja operation, same header
    assert (outcome.status_code == 401) == (status == 401), outcome.content
    assert _stored()[0] == (2 if status == 201 else 1)
