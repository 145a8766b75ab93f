import json
import re

import pytest

from runs import pages
from tests.pages.factories import add_decision, add_problem, bulk_decisions, make_run, option

pytestmark = pytest.mark.django_db


def seqs(response) -> list[int]:
    return [int(n) for n in re.findall(r'<li class="decision[^"]*" id="dec-(\d+)"', response.content.decode())]


def test_run_header_shows_status_counts_and_narrative(logged_in_client):
    run = make_run("r1", status="failed", narrative="It fell over.", input_data={"query": "weather"},
                   minutes=3)
    add_decision(run, success=True, tokens=40, latency_ms=1500)
    add_decision(run, success=False, error="Timeout", tokens=2)
    html = logged_in_client.get("/runs/r1/").content.decode()
    assert "It fell over." in html
    assert "✓ 2" not in html and "✓ 1" in html and "✗ 1" in html
    assert "<dd>42</dd>" in html  # tokens, from the run's counters
    assert "3 min 00 s" in html
    assert "&quot;query&quot;: &quot;weather&quot;" in html  # input JSON, pretty-printed and escaped


def test_unknown_run_is_404(logged_in_client):
    assert logged_in_client.get("/runs/nope/").status_code == 404


def test_timeline_lists_decisions_in_order_with_problems_at_their_decision(logged_in_client):
    run = make_run("r1")
    add_decision(run, intent="first step")
    add_decision(run, intent="second step", success=False, error="Disk full")
    add_problem(run, decision_id="dec_1", description="Ran out of space", severity="critical")
    html = logged_in_client.get("/runs/r1/").content.decode()
    assert html.index("first step") < html.index("second step")
    second = html[html.index('id="dec-1"'):]
    second = second[: second.index("</li>")]
    assert "Disk full" in second and "Ran out of space" in second and "critical" in second
    assert '<a href="/runs/r1/?after=0#dec-1">decision #1</a>' in html  # the problems list links to it


def test_long_timeline_loads_in_chunks_with_a_real_link(logged_in_client, monkeypatch):
    monkeypatch.setattr(pages, "TIMELINE_CHUNK", 10)
    run = make_run("big")
    bulk_decisions(run, 25)
    first = logged_in_client.get("/runs/big/")
    assert seqs(first) == list(range(10))
    html = first.content.decode()
    assert 'href="/runs/big/?after=9"' in html  # works without JavaScript
    assert 'hx-get="/runs/big/timeline/?after=9"' in html
    more = logged_in_client.get("/runs/big/timeline/?after=9", HTTP_HX_REQUEST="true")
    assert seqs(more) == list(range(10, 20))
    assert "<html" not in more.content.decode()
    last = logged_in_client.get("/runs/big/timeline/?after=19", HTTP_HX_REQUEST="true")
    assert seqs(last) == list(range(20, 25))
    assert "Load more" not in last.content.decode()


def test_timeline_filters_failed_only_and_by_node(logged_in_client):
    run = make_run("r1")
    add_decision(run, node_id="search", intent="ok search")
    add_decision(run, node_id="search", intent="bad search", success=False)
    add_decision(run, node_id="write", intent="pending write", success=None)
    failed = logged_in_client.get("/runs/r1/?failed=1").context["chunk"].decisions
    assert [d.intent for d in failed] == ["bad search", "pending write"]
    by_node = logged_in_client.get("/runs/r1/?node=search").context["chunk"].decisions
    assert [d.intent for d in by_node] == ["ok search", "bad search"]
    both = logged_in_client.get("/runs/r1/?node=search&failed=1").context["chunk"].decisions
    assert [d.intent for d in both] == ["bad search"]
    assert logged_in_client.get("/runs/r1/?after=x").status_code == 400


def test_running_run_polls_and_appends_new_decisions_after_the_last_one_shown(logged_in_client):
    run = make_run("live", status="running")
    add_decision(run, intent="step zero")
    html = logged_in_client.get("/runs/live/").content.decode()
    assert 'hx-get="/runs/live/header/" hx-trigger="every 2s"' in html
    assert 'hx-get="/runs/live/timeline/?after=0&amp;live=1" hx-trigger="every 2s"' in html
    add_decision(run, intent="step one")
    poll = logged_in_client.get("/runs/live/timeline/?after=0&live=1", HTTP_HX_REQUEST="true")
    assert poll.status_code == 200
    body = poll.content.decode()
    assert "step one" in body and "step zero" not in body
    assert 'hx-get="/runs/live/timeline/?after=1&amp;live=1"' in body  # the poller moves on


def test_live_partials_answer_286_once_the_run_has_ended(logged_in_client):
    run = make_run("live", status="running")
    add_decision(run, intent="step zero")
    assert logged_in_client.get("/runs/live/header/", HTTP_HX_REQUEST="true").status_code == 200
    add_decision(run, intent="last step")
    run.status, run.completed_at = "completed", run.started_at
    run.save()
    header = logged_in_client.get("/runs/live/header/", HTTP_HX_REQUEST="true")
    assert header.status_code == 286
    assert "every 2s" not in header.content.decode()
    tail = logged_in_client.get("/runs/live/timeline/?after=0&live=1", HTTP_HX_REQUEST="true")
    assert tail.status_code == 286
    assert "last step" in tail.content.decode()  # the final decisions still arrive
    assert "every 2s" not in tail.content.decode()


def test_finished_run_does_not_poll(logged_in_client):
    add_decision(make_run("done"))
    assert "every 2s" not in logged_in_client.get("/runs/done/").content.decode()


def test_option_comparison_shows_every_option_and_highlights_the_chosen_one(logged_in_client):
    run = make_run("r1")
    add_decision(run, options=[
        option("fast", "Use the cache", pros=["quick"], cons=["may be stale"], confidence=0.8),
        option("slow", "Query the database", pros=["fresh"], cons=["slow"], confidence=0.3,
               action_params={"table": "users"}),
    ], chosen="fast", reasoning="Latency matters most", active_constraints=["under 1s"],
        input_context={"user": 42})
    response = logged_in_client.get("/runs/r1/decisions/dec_0/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<html" not in html
    for text in ["Use the cache", "Query the database", "quick", "may be stale", "fresh", "slow",
                 "&quot;table&quot;: &quot;users&quot;", "Latency matters most", "under 1s", "&quot;user&quot;: 42"]:
        assert text in html, text
    chosen = html[html.index('class="option chosen"'):]
    assert chosen.index("Use the cache") < chosen.index("</article>")
    assert html.count('class="option chosen"') == 1
    assert 'value="0.8"' in html and "80%" in html and "30%" in html
    assert "not among the options" not in html


def test_chosen_option_matching_no_option_is_shown_as_such(logged_in_client):
    run = make_run("r1")
    add_decision(run, options=[option("a", "Alpha"), option("b", "Beta")], chosen="gamma")
    html = logged_in_client.get("/runs/r1/decisions/dec_0/").content.decode()
    assert "Chosen option <strong class=\"mono\">gamma</strong> is not among the options" in html
    assert "Alpha" in html and "Beta" in html
    assert 'class="option chosen"' not in html
    timeline = logged_in_client.get("/runs/r1/").content.decode()
    assert "gamma (not among the options)" in timeline


def test_decision_page_works_as_a_full_page_with_its_outcome(logged_in_client):
    run = make_run("r1")
    add_decision(run, success=False, error="API returned 500", outcome_summary="Search failed",
                 outcome_state_changes={"retries": 2})
    response = logged_in_client.get("/runs/r1/decisions/dec_0/")
    html = response.content.decode()
    assert "<html" in html
    assert "API returned 500" in html and "Search failed" in html and "&quot;retries&quot;: 2" in html
    assert logged_in_client.get("/runs/r1/decisions/dec_9/").status_code == 404


def test_malformed_options_are_shown_not_hidden(logged_in_client):
    run = make_run("r1")
    add_decision(run, options=["just a string", option("a", confidence="very")], chosen="a")
    html = logged_in_client.get("/runs/r1/decisions/dec_0/").content.decode()
    assert "just a string" in html and "(not an object)" in html
    assert "very" in html  # a non-numeric confidence is printed, not drawn as a bar


def test_run_exports_as_json_in_the_storage_format(logged_in_client):
    run = make_run("run <1>")
    add_decision(run, intent="Pick", chosen="b")
    response = logged_in_client.get("/runs/run%20%3C1%3E/export.json")
    assert response.status_code == 200
    assert 'filename="run_1_.json"' in response["Content-Disposition"]
    data = json.loads(response.content)
    assert data["id"] == "run <1>"
    assert data["decisions"][0]["chosen_option_id"] == "b"
    assert data["metrics"]["total_decisions"] == 1


@pytest.mark.parametrize("run_id", ["compare", "a/timeline", "a/header", "a/decisions/dec_0", "solo/timeline"])
def test_a_run_whose_id_looks_like_another_route_opens_at_its_own_address(logged_in_client, run_id):
    # Run ids are the agent's own: "compare", or ids ending like the timeline, header or decision routes.
    base = make_run("a", narrative="The base run's story.")
    add_decision(base, decision_id="dec_1", intent="the base run decided")
    run = make_run(run_id, narrative=f"This is run {run_id}.")
    add_decision(run, intent="what the odd run decided")
    page = logged_in_client.get(f"/runs/{run_id}/")
    assert page.status_code == 200, page.content[:300]
    assert page.context["run"].run_id == run_id
    assert "what the odd run decided" in page.content.decode()
    # the routes of run "a" still answer for run "a" (the header and timeline ones answer htmx)
    assert "base run&#x27;s story" in logged_in_client.get("/runs/a/header/", HTTP_HX_REQUEST="true").content.decode()
    more = logged_in_client.get("/runs/a/timeline/?after=-1", HTTP_HX_REQUEST="true").content.decode()
    assert "the base run decided" in more and "what the odd run decided" not in more
    assert "the base run decided" in logged_in_client.get("/runs/a/decisions/dec_1/").content.decode()
    assert logged_in_client.get("/runs/compare/?a=a&b=a").status_code == 200  # comparing still works
    assert logged_in_client.get("/runs/nothing/timeline/").status_code == 404
