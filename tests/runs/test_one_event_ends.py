"""A run ended one per request (`POST /runs/{run_id}/end`, as a plain HTTP client ends each run): the end of
a running run not yet folded into the pattern groups, with a key this process has found valid, is stored
with its goal's day count and the fold of its decisions by one statement that also checks the key
(`ingest.end_pending_run`; on SQLite one transaction), before ninja's view; a replayed or conflicting end,
an unknown run, a run folded while idle, a bad body and a key revoked or narrowed since are answered by the
full path exactly as before."""

import json
from datetime import timedelta

import pytest

from runs import auth, ingest, queries, rollups
from runs.models import ApiKey, GoalDay, PatternGroup, Run

from tests.runs.test_pattern_groups import ordered, reference

pytestmark = pytest.mark.django_db(transaction=True)

DECISIONS = [  # errors, choices and texts of every kind the groups key on, with a failure without an error
    {"id": "dec_0", "node_id": "search", "intent": "Find «the» <b>docs</b>", "decision_type": "tool_selection",
     "options": [{"id": "a", "description": "web search"}, {"id": "b", "description": "local index"}],
     "chosen_option_id": "a", "outcome": {"success": False, "error": "timed out «after» 3 tries <b>",
                                           "tokens_used": 5, "latency_ms": 7}},
    {"id": "dec_1", "node_id": "search", "intent": "i" * 60, "decision_type": "custom",
     "options": [{"id": "a", "description": "ünïcode " + "x" * 3000}], "chosen_option_id": "a",
     "outcome": {"success": True, "tokens_used": 2}},
    {"id": "dec_2", "node_id": "answer", "intent": "reply", "outcome": {"success": False, "error": ""}},
    {"id": "dec_3", "node_id": "nöde/2", "intent": "reply", "chosen_option_id": "missing"},  # no outcome yet
]
END = {"status": "failed", "narrative": "gave up «politely» <script>", "output_data": {"rows": [1, 2.5, None]},
       "completed_at": "2024-05-01T23:30:00.123456-02:00", "retries": {"new": 1}}
# An end with no fields of its own (no extras), as the SDK sends it: on SQLite one UPDATE finds, checks and ends.
BARE = {k: v for k, v in END.items() if k != "retries"}


def _post(client, path: str, body, key: str | None = None):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.post(path, body if isinstance(body, str) else json.dumps(body), content_type="application/json",
                       **extra)


def _start(client, run_id: str, goal_id: str = "g", decisions: list[dict] = DECISIONS, **start) -> None:
    body = {"id": run_id, "goal_id": goal_id, "retries": {"old": 0}, "kept": True, **start}
    assert _post(client, "/api/v1/runs", body).status_code == 201
    for decision in decisions:
        answer = _post(client, f"/api/v1/runs/{run_id}/decisions", decision)
        assert answer.status_code == 201, answer.content


def _end(client, run_id: str, body=END, key: str | None = None):
    return _post(client, f"/api/v1/runs/{run_id}/end", body, key)


def _stored(run_id: str) -> dict:
    row = Run.objects.values().get(run_id=run_id)
    return {k: v for k, v in row.items() if k not in ("id", "run_id", "goal_id", "created_at", "updated_at")}


def _groups(goal_id: str) -> set[tuple]:
    """The goal's pattern groups, with the digest each was stored under, without the run they point at."""
    return set(PatternGroup.objects.filter(goal_id=goal_id).values_list(
        "digest", "kind", "key", "detail", "total", "failed", "first_seq", "stale"))


def _rollups_are_exact() -> None:
    """The day counts equal a recount, and every goal's patterns what the SDK computes from the runs."""
    assert rollups.stored(GoalDay) == rollups.recount(Run)
    for goal_id in set(Run.objects.values_list("goal_id", flat=True)):
        assert ordered(queries.goal_aggregates(goal_id)) == reference(goal_id), goal_id


@pytest.mark.parametrize("end", [END, BARE], ids=["with extras", "without"])
def test_a_run_end_is_stored_before_ninja_s_view_by_one_statement(api_client, monkeypatch, end):
    from ninja.operation import Operation

    _start(api_client, "quick")
    monkeypatch.setattr(Operation, "run", lambda *args, **kwargs: pytest.fail("went through ninja's operation"))
    monkeypatch.setattr(ingest, "end_run", lambda *args: pytest.fail("took the full path"))
    answer = _end(api_client, "quick", end)
    assert answer.status_code == 201, answer.content
    assert answer["Content-Type"] == "application/json; charset=utf-8"
    body = answer.json()
    assert body.pop("started_at") is not None and body.pop("duration_ms") is not None
    assert body == {"run_id": "quick", "goal_id": "g", "goal_description": "", "status": "failed",
                    "completed_at": "2024-05-02T01:30:00.123", "decision_count": 4, "success_count": 1,
                    "failure_count": 2, "success_rate": 0.25, "problem_count": 0, "total_tokens": 7,
                    "total_latency_ms": 7}
    run = Run.objects.get(run_id="quick")
    assert (run.status, run.end_seq, run.pattern_pending, run.narrative) == (
        "failed", 1, False, "gave up «politely» <script>")
    # the end's extras replace the start's, key by key; without any, the start's stay as they were
    assert run.extra == ({"retries": {"new": 1}, "kept": True} if end is END else {"retries": {"old": 0}, "kept": True})
    assert GoalDay.objects.values_list("runs", "running", "failed").get(goal_id="g") == (1, 0, 1)
    assert _groups("g") and not Run.objects.filter(pattern_pending=True).exists()  # folded: no live part left
    _rollups_are_exact()


def test_ends_store_and_answer_what_the_full_path_stores_and_answers(api_client, monkeypatch):
    """Two goals with the same runs: one ended by the statement, one by the full path. Runs, answers, day
    counts and pattern groups (their digests too, computed by the database on one side and by Python on
    the other) are the same."""
    ends = [END, {"status": "completed"}, {"status": "stuck", "narrative": "", "completed_at": "2024-05-03T10:00:00"},
            {"status": "cancelled", "output_data": {}}, {"status": "completed", "kept": False}, {"status": "completed"}]
    # started with a status other than running: with extras (0, 4) or without (5), the end moves its day count
    # from that status, not from running
    starts = [{"status": "failed"}, {}, {"started_at": "2024-05-01T23:59:59.999999Z"}, {}, {"status": "completed"},
              {"status": "failed"}]
    starts = [{"started_at": f"2024-05-0{1 + n % 2}T10:00:00", **start} for n, start in enumerate(starts)]
    for goal_id in ("quick", "full"):
        for n, start in enumerate(starts):
            _start(api_client, f"{goal_id}-{n}", goal_id, DECISIONS[n % 2:], **start)
    quick = [_end(api_client, f"quick-{n}", body) for n, body in enumerate(ends)]
    monkeypatch.setattr(ingest, "end_pending_run", lambda *args, **kwargs: None)
    full = [_end(api_client, f"full-{n}", body) for n, body in enumerate(ends)]
    assert [a.status_code for a in quick] == [a.status_code for a in full] == [201] * len(ends)

    def same(answer, name):
        return {k: v for k, v in answer.json().items() if k not in ("run_id", "goal_id") + name}
    assert [same(a, ("completed_at", "duration_ms")) for a in quick] == [
        same(a, ("completed_at", "duration_ms")) for a in full]
    assert [quick[n].json()["completed_at"] for n in (0, 2)] == [full[n].json()["completed_at"] for n in (0, 2)]
    untimed = [[{k: v for k, v in _stored(f"{goal}-{n}").items() if k not in ("completed_at", "end_seq")}
                for n in range(len(ends))] for goal in ("quick", "full")]
    assert untimed[0] == untimed[1]
    assert [_stored(f"quick-{n}")["completed_at"] for n in (0, 2)] == [
        _stored(f"full-{n}")["completed_at"] for n in (0, 2)]  # sent; the others: when received
    assert [row["pattern_pending"] for row in untimed[0]] == [False] * len(ends)
    assert _groups("quick") == _groups("full") != set()
    assert {(d.runs, d.completed, d.failed, d.running) for d in GoalDay.objects.filter(goal_id="quick")} == {
        (d.runs, d.completed, d.failed, d.running) for d in GoalDay.objects.filter(goal_id="full")}
    _rollups_are_exact()
    kept = set(PatternGroup.objects.values_list("goal_id", "digest", "total", "first_end_seq", "first_run", "first_seq"))
    rollups.rebuild()
    assert set(PatternGroup.objects.values_list("goal_id", "digest", "total", "first_end_seq", "first_run",
                                                "first_seq")) == kept


def test_what_the_statement_does_not_store_is_answered_by_the_full_path(api_client):
    _start(api_client, "r")
    first = _end(api_client, "r")
    assert first.status_code == 201
    replay = _end(api_client, "r")
    assert replay.status_code == 200 and replay.json() == first.json()
    conflict = _end(api_client, "r", {**END, "status": "completed"})
    assert conflict.status_code == 409 and "status" in conflict.json()["detail"]
    no_run = _end(api_client, "nope")
    assert no_run.status_code == 404 and "nope" in no_run.json()["detail"]
    _start(api_client, "s", decisions=[])
    running = _end(api_client, "s", {"status": "running"})
    assert running.status_code == 422 and "running" in running.json()["detail"]
    invalid = _end(api_client, "s", {"status": "done"})
    assert invalid.status_code == 422 and "status" in invalid.json()["detail"]
    assert _end(api_client, "s", "{").status_code == 400
    nul = _end(api_client, "s", {"status": "completed", "narrative": "a\u0000b"})
    assert nul.status_code == 422 and "narrative" in nul.json()["detail"]
    assert Run.objects.get(run_id="s").completed_at is None
    assert Run.objects.get(run_id="r").end_seq == 1
    _rollups_are_exact()


def test_a_run_folded_while_idle_is_ended_by_the_full_path_and_its_groups_stay_exact(api_client, monkeypatch):
    _start(api_client, "idle")
    _start(api_client, "busy")
    assert rollups.fold_idle_runs(timedelta(0)) == 2  # both left running: folded with a provisional place
    ended = []
    full_path = ingest.end_run
    monkeypatch.setattr(ingest, "end_run", lambda *args: ended.append(args[0]) or full_path(*args))
    assert _end(api_client, "idle").status_code == 201
    assert ended == ["idle"]  # folded already: its place in the groups moves, which the statement leaves alone
    _start(api_client, "new")
    assert _end(api_client, "new", {"status": "completed"}).status_code == 201
    assert ended == ["idle"]
    _rollups_are_exact()


@pytest.mark.parametrize("end", [END, BARE], ids=["with extras", "without"])
@pytest.mark.parametrize("change, status", [("revoke", 401), ("narrow", 403)])
def test_a_key_revoked_or_narrowed_after_this_process_used_it_ends_no_run(client, change, status, end):
    key, raw = ApiKey.issue("agent", scopes=["ingest", "read"])
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    _start(client, "first", decisions=DECISIONS[:1])
    _start(client, "second", decisions=DECISIONS[:1])
    assert _end(client, "first").status_code == 201  # the key is known good here now
    if change == "revoke":
        key.revoke()
    else:
        ApiKey.objects.filter(pk=key.pk).update(scopes=["read"])
    answer = _end(client, "second", end)
    assert answer.status_code == status, answer.content
    assert ("'ingest' scope" if status == 403 else "API key") in answer.json()["detail"]
    second = Run.objects.get(run_id="second")
    assert (second.status, second.completed_at, second.pattern_pending) == ("running", None, True)
    _rollups_are_exact()


def test_a_key_never_found_valid_is_checked_before_anything_is_written(api_client, monkeypatch):
    _start(api_client, "r")
    monkeypatch.setattr(auth, "_SEEN", {})  # as after a restart
    monkeypatch.setattr(ingest, "end_pending_run", lambda *args: pytest.fail("reached the storing statement"))
    assert _end(api_client, "r", key="fwk_" + "x" * 43).status_code == 401
    assert Run.objects.get(run_id="r").completed_at is None


def test_a_run_ending_failed_is_analysed_automatically_as_the_full_path_has_it(api_client, settings):
    """The Builder's automatic analysis hears of every run saved as failed (builder/apps.py), whichever
    path stored it."""
    from builder.models import Analysis

    settings.BUILDER_AUTO_ANALYZE = 1.0
    for run_id in ("failed", "completed"):
        _start(api_client, run_id, decisions=DECISIONS[:1])
    assert _end(api_client, "failed").status_code == 201  # `END` is a failure
    assert _end(api_client, "completed", {"status": "completed"}).status_code == 201
    assert [(job.run.run_id, job.source) for job in Analysis.objects.all()] == [("failed", "auto")]
