"""The admin shows what agents reported and never edits it (an edit would bypass the run's counters, the
per-day counts and the pattern groups); deleting a run there keeps them right."""

import pytest
from django.contrib.auth.models import User

from runs import ingest, rollups
from runs.models import Decision, GoalDay, PatternGroup, Problem, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests"))
    return client


@pytest.fixture
def ended_run():
    ingest.start_run({"id": "r1", "goal_id": "g"})
    ingest.add_decision("r1", {"id": "dec_0", "node_id": "n", "intent": "x", "outcome": {"success": False,
                                                                                        "error": "boom"}})
    ingest.add_problem("r1", {"id": "p1", "severity": "minor", "description": "x"})
    ingest.end_run("r1", {"status": "failed"})
    return Run.objects.get(run_id="r1")


def test_agent_records_can_be_read_but_not_edited_or_added(staff_client, ended_run):
    decision, problem = Decision.objects.get(), Problem.objects.get()
    for name, obj in (("run", ended_run), ("decision", decision), ("problem", problem)):
        page = staff_client.get(f"/admin/runs/{name}/{obj.pk}/change/")
        assert page.status_code == 200  # the view-only form
        assert 'name="_save"' not in page.content.decode()
        posted = staff_client.post(f"/admin/runs/{name}/{obj.pk}/change/", {"goal_id": "other", "status": "completed",
                                                                          "outcome_success": "1"})
        assert posted.status_code == 403
        assert staff_client.get(f"/admin/runs/{name}/add/").status_code == 403
    ended_run.refresh_from_db()
    assert (ended_run.goal_id, ended_run.status, ended_run.failure_count) == ("g", "failed", 1)
    assert staff_client.post(f"/admin/runs/decision/{decision.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Decision.objects.count() == 1


def test_deleting_a_run_in_the_admin_keeps_the_rollups_equal_to_a_recount(staff_client, ended_run):
    ingest.start_run({"id": "r2", "goal_id": "g"})
    ingest.end_run("r2", {"status": "completed"})
    assert PatternGroup.objects.filter(goal_id="g").exists()
    answer = staff_client.post(f"/admin/runs/run/{ended_run.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302
    assert not Run.objects.filter(run_id="r1").exists() and Decision.objects.count() == 0
    assert rollups.stored(GoalDay) == rollups.recount(Run)
    assert not PatternGroup.objects.filter(goal_id="g", total__gt=0).exists()  # r1's decision is gone from them
