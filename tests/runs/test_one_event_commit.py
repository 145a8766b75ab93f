"""PostgreSQL: a decision, a decision's first outcome, a new run or a new problem, reported one per
request, is answered without its commit waiting for the disk (`API_ONE_EVENT_ASYNC_COMMIT`, on by
default), and only they: the SDK's batches and every other write (run ends too) still wait, and a caller's own
transaction is never changed. What each commit did is read where PostgreSQL decides it, in the writing
transaction: triggers, made for these tests, copy `synchronous_commit` as each stored (or updated) row's
transaction has it."""

import json

import pytest
from django.db import connection, transaction

from runs import auth, ingest
from runs.auth import BearerKey
from runs.models import ApiKey, Run
from runs.schemas import DecisionIn

pytestmark = pytest.mark.postgres


@pytest.fixture
def commit_modes(transactional_db):
    """decision id (or "run " and a run id) -> the `synchronous_commit` its last writing transaction
    committed with."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_commit_mode (decision_id text PRIMARY KEY, mode text)")
        cursor.execute("CREATE FUNCTION test_note_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       "INSERT INTO test_commit_mode VALUES (NEW.decision_id, current_setting('synchronous_commit')) "
                       "ON CONFLICT (decision_id) DO UPDATE SET mode = EXCLUDED.mode; "
                       "RETURN NULL; END $$")
        cursor.execute("CREATE TRIGGER test_note_commit_mode AFTER INSERT OR UPDATE ON runs_decision "
                       "FOR EACH ROW EXECUTE FUNCTION test_note_commit_mode()")
        cursor.execute("CREATE FUNCTION test_note_run_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       "INSERT INTO test_commit_mode VALUES ('run ' || NEW.run_id, current_setting('synchronous_commit')); "
                       "RETURN NULL; END $$")
        cursor.execute("CREATE TRIGGER test_note_run_commit_mode AFTER INSERT ON runs_run "
                       "FOR EACH ROW EXECUTE FUNCTION test_note_run_commit_mode()")
        cursor.execute("CREATE FUNCTION test_note_problem_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       "INSERT INTO test_commit_mode VALUES ('problem ' || NEW.problem_id, "
                       "current_setting('synchronous_commit')); RETURN NULL; END $$")
        cursor.execute("CREATE TRIGGER test_note_problem_commit_mode AFTER INSERT ON runs_problem "
                       "FOR EACH ROW EXECUTE FUNCTION test_note_problem_commit_mode()")
        cursor.execute("CREATE FUNCTION test_note_end_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       "INSERT INTO test_commit_mode VALUES ('end ' || NEW.run_id, "
                       "current_setting('synchronous_commit')); RETURN NULL; END $$")
        cursor.execute("CREATE TRIGGER test_note_end_commit_mode AFTER UPDATE OF completed_at ON runs_run "
                       "FOR EACH ROW EXECUTE FUNCTION test_note_end_commit_mode()")

    def modes() -> dict[str, str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT decision_id, mode FROM test_commit_mode")
            return dict(cursor.fetchall())
    yield modes
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_note_commit_mode ON runs_decision")
        cursor.execute("DROP TRIGGER test_note_run_commit_mode ON runs_run")
        cursor.execute("DROP TRIGGER test_note_problem_commit_mode ON runs_problem")
        cursor.execute("DROP TRIGGER test_note_end_commit_mode ON runs_run")
        cursor.execute("DROP FUNCTION test_note_end_commit_mode()")
        cursor.execute("DROP FUNCTION test_note_problem_commit_mode()")
        cursor.execute("DROP FUNCTION test_note_run_commit_mode()")
        cursor.execute("DROP FUNCTION test_note_commit_mode()")
        cursor.execute("DROP TABLE test_commit_mode")


@pytest.fixture
def agent(client, transactional_db):
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {ApiKey.issue('agent', scopes=['ingest', 'read'])[1]}"
    return client


def _post(client, path: str, body) -> dict:
    answer = client.post(path, json.dumps(body), content_type="application/json")
    assert answer.status_code in (200, 201, 207), answer.content
    return answer.json()


def _decision(seq: int) -> dict:
    return {"id": f"dec_{seq}", "node_id": "n", "intent": "x", "outcome": {"success": True}}


def _session_mode() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def test_one_event_decisions_commit_without_waiting_for_the_disk_and_batches_still_wait(agent, commit_modes,
                                                                                        monkeypatch):
    _post(agent, "/api/v1/runs", {"id": "r", "goal_id": "g"})
    monkeypatch.setattr(auth, "_SEEN", {})  # as after a restart: the first decision checks the key first
    for seq in range(3):  # then the shortcut (`storing_first`) for a key found valid
        assert _post(agent, "/api/v1/runs/r/decisions", _decision(seq))["seq"] == seq
    _post(agent, "/api/v1/batch", {"events": [
        {"type": "decision", "run_id": "r", "decision_id": f"dec_{seq}", "body": _decision(seq)} for seq in (3, 4)]})
    assert commit_modes() == {"run r": "on", "dec_0": "off", "dec_1": "off", "dec_2": "off", "dec_3": "on",
                              "dec_4": "on"}  # the run: started before this process had seen the key
    assert _session_mode() == "on"  # held for the one transaction only: the next write on it waits again
    assert Run.objects.get(run_id="r").decision_count == 5  # stored, counted and readable on answering


def test_with_the_setting_off_one_event_decisions_wait_for_the_disk(agent, commit_modes, settings):
    settings.API_ONE_EVENT_ASYNC_COMMIT = False
    _post(agent, "/api/v1/runs", {"id": "r", "goal_id": "g"})
    for seq in range(2):
        _post(agent, "/api/v1/runs/r/decisions", _decision(seq))
    assert commit_modes() == {"run r": "on", "dec_0": "on", "dec_1": "on"}


def test_a_callers_transaction_keeps_its_own_commit(commit_modes):
    """Inside a caller's transaction the append's commit is the caller's: it waits for the disk."""
    bearer = BearerKey(ApiKey.issue("agent", scopes=["ingest"])[1], "ingest")
    ingest.start_run({"id": "r", "goal_id": "g"})
    with transaction.atomic():
        stored = ingest.append_decision("r", DecisionIn.model_validate(_decision(0)), bearer.credentials())
    assert stored is not None and stored["seq"] == 0
    assert commit_modes() == {"run r": "on", "dec_0": "on"}


def _put(client, path: str, body) -> dict:
    answer = client.put(path, json.dumps(body), content_type="application/json")
    assert answer.status_code in (200, 201), answer.content
    return answer.json()


@pytest.mark.parametrize("async_commit, mode", [(True, "off"), (False, "on")])
def test_a_first_outcome_reported_alone_commits_as_one_event_decisions_do(agent, commit_modes, settings,
                                                                          async_commit, mode):
    settings.API_ONE_EVENT_ASYNC_COMMIT = async_commit
    _post(agent, "/api/v1/runs", {"id": "r", "goal_id": "g"})
    _post(agent, "/api/v1/batch", {"events": [  # stored waiting for the disk
        {"type": "decision", "run_id": "r", "decision_id": f"dec_{seq}", "body": {**_decision(seq), "outcome": None}}
        for seq in (0, 1)]})
    assert commit_modes() == {"run r": "on", "dec_0": "on", "dec_1": "on"}
    assert _put(agent, "/api/v1/runs/r/decisions/dec_0/outcome", {"success": False})["outcome_success"] is False
    _put(agent, "/api/v1/runs/r/decisions/dec_1/outcome", {"success": True})
    _put(agent, "/api/v1/runs/r/decisions/dec_1/outcome", {"success": False})  # a replacement: the full path
    assert commit_modes() == {"run r": "on", "dec_0": mode, "dec_1": "on"}
    assert _session_mode() == "on"
    assert Run.objects.values_list("success_count", "failure_count").get(run_id="r") == (0, 2)


@pytest.mark.parametrize("async_commit, mode", [(True, "off"), (False, "on")])
def test_runs_and_problems_reported_alone_commit_as_one_event_decisions_do(agent, commit_modes, settings,
                                                                          async_commit, mode):
    settings.API_ONE_EVENT_ASYNC_COMMIT = async_commit
    _post(agent, "/api/v1/runs", {"id": "first", "goal_id": "g"})  # the key is found valid: then the shortcut
    _post(agent, "/api/v1/runs", {"id": "second", "goal_id": "g"})
    _post(agent, "/api/v1/runs/second/problems", {"id": "alone", "severity": "high", "description": "x"})
    _post(agent, "/api/v1/batch", {"events": [
        {"type": "run_start", "run_id": "batched", "body": {"id": "batched", "goal_id": "g"}},
        {"type": "problem", "run_id": "batched", "body": {"id": "in-batch", "severity": "low", "description": "y"}}]})
    assert commit_modes() == {"run first": "on", "run second": mode, "problem alone": mode, "run batched": "on",
                              "problem in-batch": "on"}
    assert _session_mode() == "on"


def test_run_ends_reported_alone_still_wait_for_the_disk(agent, commit_modes):
    """An end is where a plain HTTP client's run becomes durable: its commit waits for the disk, and with
    it every one-event write of the run before it (PostgreSQL's WAL is flushed in order)."""
    _post(agent, "/api/v1/runs", {"id": "first", "goal_id": "g"})  # the key is found valid: then the shortcuts
    _post(agent, "/api/v1/runs", {"id": "r", "goal_id": "g"})
    _post(agent, "/api/v1/runs/r/decisions", _decision(0))
    assert _post(agent, "/api/v1/runs/r/end", {"status": "completed"})["status"] == "completed"
    assert commit_modes() == {"run first": "on", "run r": "off", "dec_0": "off", "end r": "on"}
    assert Run.objects.values_list("end_seq", "pattern_pending").get(run_id="r") == (1, False)  # by the statement
