import pytest

from runs.models import Run
from tests.pages.factories import add_decision, add_problem, make_run, option

pytestmark = pytest.mark.django_db


def two_runs():
    a = make_run("ra", status="completed")
    b = make_run("rb", status="failed")
    for run, third in ((a, "x"), (b, "y")):
        add_decision(run, node_id="plan", chosen="a")
        add_decision(run, node_id="plan", chosen="b")
        add_decision(run, node_id="act", chosen=third, options=[option("x", "Ask the user"), option("y", "Guess")])
    add_decision(b, node_id="recover", chosen="a", success=False, error="gave up")
    return a, b


def test_compare_aligns_decisions_and_highlights_the_first_divergence(logged_in_client):
    two_runs()
    response = logged_in_client.get("/runs/compare/?a=ra&b=rb")
    html = response.content.decode()
    assert response.context["divergence"].seq == 2
    divergence_row = html[html.index('id="divergence"'):]
    divergence_row = divergence_row[: divergence_row.index("</tr>")]
    assert "first divergence" in divergence_row
    assert "Ask the user" in divergence_row and "Guess" in divergence_row
    assert html.count('class="divergence"') == 1
    assert "— no decision" in html  # run 1 has no decision at position 3


def test_compare_summarises_differences_in_the_builder_wording(logged_in_client):
    two_runs()
    differences = logged_in_client.get("/runs/compare/?a=ra&b=rb").context["differences"]
    assert differences == [
        "Status: completed vs failed",
        "Decision count: 3 vs 4",
        "Diverged at decision 2: chose 'x' vs 'y'",
        "Nodes only in run 2: {'recover'}",
    ]


def test_compare_reports_a_missing_run_by_field(logged_in_client):
    make_run("ra")
    response = logged_in_client.get("/runs/compare/?a=ra&b=ghost")
    assert response.status_code == 404
    assert "b: no run with id &#x27;ghost&#x27;" in response.content.decode()
    assert logged_in_client.get("/runs/compare/").status_code == 200  # the empty form
    assert logged_in_client.get("/runs/compare/?a=ra&b=ra&start=-1").status_code == 400


def test_goals_overview_lists_each_goal_with_rate_and_worst_node(logged_in_client):
    from django.utils import timezone

    now = timezone.now()
    for status in ("completed", "completed", "failed"):
        run = make_run(goal_id="weather", status=status, started_at=now)
        add_decision(run, node_id="fetch", success=status != "failed")
        add_decision(run, node_id="format", success=True)
    make_run(goal_id="weather", status="running", started_at=now)
    make_run(goal_id="email", status="completed", started_at=now)
    response = logged_in_client.get("/")
    goals = {g["goal_id"]: g for g in response.context["goals"]}
    assert goals["weather"]["runs"] == 4 and goals["weather"]["running"] == 1
    assert goals["weather"]["success_rate"] == pytest.approx(2 / 3)
    assert goals["weather"]["worst_node"] == "fetch"
    assert goals["email"]["worst_node"] is None
    html = response.content.decode()
    assert "67%" in html and "<svg class=\"sparkline\"" in html
    assert 'href="/runs/?goal_id=weather&amp;status=failed"' in html


def test_goal_page_shows_failures_nodes_and_decision_point_analytics(logged_in_client):
    # At "pick source": "api" chosen 3 times (2 good outcomes, 2 completed runs), "scrape" once (failed).
    opts = [option("api", "Call the API"), option("scrape", "Scrape the site")]
    plan = [("api", True, "completed"), ("api", True, "completed"), ("api", False, "failed"), ("scrape", False, "failed")]
    for chosen, success, status in plan:
        run = make_run(goal_id="news", status=status)
        add_decision(run, node_id="source", intent="pick source", options=opts, chosen=chosen, success=success,
                     error=None if success else "HTTP 429")
    add_problem(Run.objects.filter(status="failed").first(), description="rate limited")
    response = logged_in_client.get("/goals/news/")
    assert response.status_code == 200
    ctx = response.context
    assert ctx["summary"]["runs"] == 4 and ctx["summary"]["success_rate"] == 0.5
    assert ctx["failures"][0]["outcome_error"] == "HTTP 429" and ctx["failures"][0]["count"] == 2
    assert ctx["nodes"][0]["node_id"] == "source" and ctx["nodes"][0]["rate"] == 0.5
    [point] = ctx["points"]
    assert (point["node_id"], point["intent"], point["total"]) == ("source", "pick source", 4)
    api, scrape = point["choices"]
    assert (api["chosen_option_id"], api["count"], api["succeeded"], api["run_completed"]) == ("api", 3, 2, 2)
    assert api["share"] == 0.75 and api["outcome_rate"] == pytest.approx(2 / 3)
    assert (scrape["chosen_option_id"], scrape["count"], scrape["succeeded"], scrape["run_completed"]) == ("scrape", 1, 0, 0)
    assert scrape["example_good"] is None and scrape["example_bad"] is not None
    html = response.content.decode()
    assert "Call the API" in html and "67%" in html and "75%" in html
    assert f'href="/runs/{scrape["example_bad"]}/"' in html
    assert '<svg class="rate-chart"' in html
    assert 'hx-get="/builder/goals/news/panel/"' in html


def test_unknown_goal_is_404(logged_in_client):
    assert logged_in_client.get("/goals/nothing/").status_code == 404


@pytest.mark.parametrize("cut", [False, True])
def test_goal_page_nodes_are_counted_exactly_whether_or_not_the_decision_points_are_cut(logged_in_client, monkeypatch, cut):
    from runs import pages

    # 3 nodes, several intents and choices each, some outcomes missing (they count as not successful).
    for index in range(6):
        run = make_run(goal_id="mixed", status=["completed", "failed"][index % 2])
        for step in range(7):
            add_decision(run, node_id=f"node{step % 3}", intent=f"intent {step % 4}", chosen="ab"[step % 2],
                         success=None if step == 6 else (index + step) % 3 != 0)
    if cut:  # fewer rows than the groups: the page counts the nodes with their own query
        monkeypatch.setattr(pages, "DECISION_POINT_ROWS", 3)
    nodes = logged_in_client.get("/goals/mixed/").context["nodes"]
    assert nodes == pages.goal_nodes("mixed")  # the nodes' own GROUP BY, for comparison
    assert sum(node["total"] for node in nodes) == 6 * 7
    assert [node["rate"] for node in nodes] == sorted((node["rate"] for node in nodes), reverse=True)
