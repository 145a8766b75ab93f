"""What keeps the goals overview, the goal page and the text search fast at scale, as a user sees it: counts
read from the per-goal rollup stay right through ingest, the goal page says which runs its analyses cover
and offers to widen them, and the text search says how far it looked."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from runs import ingest, pages
from tests.pages.factories import add_decision, make_run

pytestmark = pytest.mark.django_db


def test_goals_overview_counts_runs_as_agents_report_and_end_them(logged_in_client):
    now = timezone.localtime()
    # An hour ago, but today: between midnight and 1 am an hour ago is yesterday's bar.
    started = max(now - timedelta(hours=1), now.replace(hour=0, minute=0, second=0, microsecond=0)).isoformat()
    for run_id in ("w1", "w2", "w3"):
        ingest.start_run({"id": run_id, "goal_id": "weather", "started_at": started})
    ingest.end_run("w1", {"status": "completed"})
    ingest.end_run("w2", {"status": "failed"})
    goals = {g["goal_id"]: g for g in logged_in_client.get("/").context["goals"]}
    weather = goals["weather"]
    assert (weather["runs"], weather["completed"], weather["failed"], weather["running"]) == (3, 1, 1, 1)
    assert weather["success_rate"] == 0.5  # completed of the ended runs
    assert weather["last_failure"] is not None
    assert weather["trend"][-1][2] == 3  # today's bar in the sparkline: three runs started


def test_goals_overview_orders_goals_by_their_latest_run(logged_in_client):
    now = timezone.now()
    make_run(goal_id="old", started_at=now - timedelta(days=3))
    make_run(goal_id="new", started_at=now - timedelta(hours=1))
    make_run(goal_id="middle", started_at=now - timedelta(days=1))
    assert [g["goal_id"] for g in logged_in_client.get("/").context["goals"]] == ["new", "middle", "old"]


def test_goal_page_chart_counts_each_day_from_the_rollup(logged_in_client):
    day0 = timezone.now().replace(hour=12) - timedelta(days=5)
    for offset, status in [(0, "completed"), (0, "failed"), (2, "completed"), (5, "running")]:
        make_run(goal_id="chart", status=status, started_at=day0 + timedelta(days=offset))
    daily = {row["day"]: row for row in logged_in_client.get("/goals/chart/").context["daily"]}
    first = daily[day0.date()]
    assert (first["runs"], first["completed"], first["failed"], first["rate"]) == (2, 1, 1, 0.5)
    assert daily[(day0 + timedelta(days=1)).date()]["runs"] == 0
    assert daily[(day0 + timedelta(days=5)).date()]["rate"] is None  # only a running run that day


def test_goal_page_says_its_analyses_cover_the_latest_runs_and_offers_to_widen(logged_in_client, monkeypatch):
    monkeypatch.setattr(pages, "GOAL_ANALYTICS_RUNS", 3)
    monkeypatch.setattr(pages, "GOAL_WINDOWS", (3, 6))
    for i in range(5):  # the two oldest runs fail at "fetch"; the three latest succeed
        add_decision(make_run(f"g{i}", goal_id="wide"), node_id="fetch", success=i >= 2, error=None if i >= 2 else "timeout")
    narrow = logged_in_client.get("/goals/wide/")
    assert narrow.context["failures"] == []  # the failures are older than the latest three runs
    html = narrow.content.decode()
    assert "latest 3 of 5 runs" in html and 'href="/goals/wide/?window=6"' in html
    wide = logged_in_client.get("/goals/wide/?window=6")
    assert wide.context["failures"][0]["outcome_error"] == "timeout"
    assert "analysis-window" not in wide.content.decode()  # all five runs analysed: nothing to say


def test_goal_page_refuses_a_window_it_does_not_offer(logged_in_client):
    make_run(goal_id="wide")
    response = logged_in_client.get("/goals/wide/?window=999999")
    assert response.status_code == 400
    assert "window: must be one of" in response.content.decode()


@pytest.mark.skipif(connection.vendor == "postgresql", reason="PostgreSQL searches every run through trigram indexes")
def test_text_search_on_sqlite_covers_the_latest_runs_and_says_so(logged_in_client, monkeypatch):
    monkeypatch.setattr(pages, "SEARCH_WINDOW", 2)
    now = timezone.now()
    make_run("oldest", narrative="the quokka escaped", started_at=now - timedelta(hours=3))
    for run_id in ["older", "newer"]:  # started together: the later written is the newer
        make_run(run_id, narrative="the quokka escaped", started_at=now - timedelta(hours=1))
    response = logged_in_client.get("/runs/?q=quokka")
    assert [r.run_id for r in response.context["page"].runs] == ["newer", "older"]
    assert "Text search covered the latest 2 runs." in response.content.decode()
    make_run("newest", narrative="nothing here", started_at=now)  # the window moves on; "older" drops out
    counted = logged_in_client.get("/runs/?q=quokka&count=all")
    assert [r.run_id for r in counted.context["page"].runs] == ["newer"]
    assert "<strong>1</strong> run match these filters" in counted.content.decode()
