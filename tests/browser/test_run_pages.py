"""The run-inspection pages in a real browser: the flows an engineer follows, with screenshots."""

import json
import re
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from runs import pages
from tests.browser.conftest import CHROMIUM
from tests.browser.demo import seed

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]

SCRIPT = "<script>alert(1)</script>"


def test_engineer_logs_in_and_sees_the_goals(browser_page, live_server, engineer, shot):
    seed()
    page = browser_page
    page.goto(live_server.url + "/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    shot(page, "01-login")
    page.get_by_label("Username").fill("engineer")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Goals")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="weather_report")
    expect(row).to_contain_text("8")  # runs of that goal
    expect(row.locator("svg.sparkline")).to_be_visible()
    shot(page, "02-goals")


def test_filtering_the_runs_list_updates_the_table_in_place_and_the_url(logged_in_page, live_server, shot):
    seed()
    page = logged_in_page
    page.goto(live_server.url + "/runs/")
    expect(page.locator("#run-table tbody tr")).to_have_count(10)
    shot(page, "03-runs")
    page.get_by_label("Status").select_option("failed")
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(page.locator("#run-table tbody tr")).to_have_count(3)
    expect(page.locator("#run-table")).to_contain_text("3 runs match these filters")
    page.get_by_label("Search").fill("forecast source")
    expect(page).to_have_url(re.compile(r"/runs/\?status=failed&q=forecast(\+|%20)source$"))
    expect(page.locator("#run-table tbody tr")).to_have_count(1)
    expect(page.locator("#run-table")).to_contain_text("run_20250301_130000_bad")
    shot(page, "04-runs-filtered")
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"q=forecast"))
    expect(page.locator("#run-table tbody tr")).to_have_count(3)


def test_a_search_with_more_matches_than_a_page_counts_them_when_asked(logged_in_page, live_server, monkeypatch, shot):
    seed()
    monkeypatch.setattr(pages, "PAGE_SIZE", 3)
    page = logged_in_page
    page.goto(live_server.url + "/runs/?q=forecast")
    expect(page.locator("#run-table tbody tr")).to_have_count(3)
    expect(page.locator("#run-table .count")).to_contain_text("3+ runs match these filters")
    page.get_by_role("link", name="count them all").click()
    expect(page.locator("#run-table .count")).to_contain_text("8 runs match these filters")
    expect(page.locator("#run-table .count")).not_to_contain_text("count them all")
    expect(page).to_have_url(re.compile(r"/runs/\?q=forecast&count=all$"))
    expect(page.locator("#run-table tbody tr")).to_have_count(3)
    shot(page, "04b-runs-search-counted")


def test_opening_a_run_and_expanding_a_decision_shows_its_options(logged_in_page, live_server, shot):
    runs = seed()
    page = logged_in_page
    page.goto(live_server.url + "/runs/?status=failed")
    page.get_by_role("link", name=runs["bad"].run_id).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(runs["bad"].run_id)
    failed = page.locator("#dec-1")
    expect(failed).to_contain_text("KeyError: 'temperature'")
    expect(failed).to_contain_text("Cache returned an incomplete entry")  # the problem, at its decision
    shot(page, "05-run-detail")
    page.locator("#dec-0").get_by_role("link", name="Options & outcome").click()
    options = page.locator("#detail-0 article.option")
    expect(options).to_have_count(3)
    expect(page.locator("#detail-0 article.option.chosen")).to_contain_text("Answer from the cache")
    not_chosen = options.filter(has_text="Search the web")
    expect(not_chosen).to_contain_text("Fresh results")
    expect(not_chosen).to_contain_text("Slow")
    expect(not_chosen).to_contain_text("70%")
    expect(page).to_have_url(re.compile(r"/runs/run_20250301_130000_bad/$"))  # expanded in place
    page.locator("#detail-0").scroll_into_view_if_needed()
    shot(page, "06-option-comparison")
    page.emulate_media(color_scheme="dark")
    shot(page, "06-option-comparison-dark")
    page.emulate_media(color_scheme="light")
    page.get_by_label("Only unsuccessful (failed or no outcome)").check()
    expect(page.locator("#timeline-list > li.decision")).to_have_count(2)
    expect(page).to_have_url(re.compile(r"failed=1"))


def test_comparing_two_selected_runs_highlights_the_first_divergence(logged_in_page, live_server, shot):
    runs = seed()
    page = logged_in_page
    page.goto(live_server.url + "/runs/?goal_id=weather_report&since=" + runs["good"].started_at.date().isoformat())
    page.get_by_label(f"Select run {runs['good'].run_id} to compare").check()
    page.get_by_label(f"Select run {runs['bad'].run_id} to compare").check()
    page.get_by_role("button", name="Compare the two selected runs").click()
    expect(page.get_by_role("heading", name="Compare two runs")).to_be_visible()
    expect(page.locator("ul.differences")).to_contain_text("Diverged at decision 0")
    divergence = page.locator("#divergence")
    expect(divergence).to_contain_text("first divergence")
    expect(divergence).to_contain_text("Search the web")
    expect(divergence).to_contain_text("Answer from the cache")
    shot(page, "07-compare")


def api_call(live_server, key, method, path, body):
    request = urllib.request.Request(live_server.url + "/api/v1" + path, data=json.dumps(body).encode(),
                                     method=method, headers={"Authorization": f"Bearer {key}",
                                                             "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_live_run_appends_decisions_and_stops_when_it_ends(logged_in_page, live_server, shot):
    from runs.models import ApiKey

    runs = seed()
    _key, raw = ApiKey.issue("agent", scopes=["ingest", "read"])
    live_id = runs["live"].run_id
    page = logged_in_page
    page.goto(live_server.url + f"/runs/{live_id}/")
    expect(page.locator("#timeline-live")).to_be_visible()
    assert api_call(live_server, raw, "POST", f"/runs/{live_id}/decisions",
                    {"id": "dec_1", "node_id": "responder", "intent": "Draft a reply to the customer",
                     "options": [{"id": "short", "description": "Short reply", "action_type": "generate"}],
                     "chosen_option_id": "short"}) == 201
    appended = page.locator("#dec-1")
    expect(appended).to_contain_text("Draft a reply to the customer", timeout=7000)
    expect(page.locator("#run-header dl")).to_contain_text("2", timeout=7000)
    shot(page, "08-live-run")
    assert api_call(live_server, raw, "POST", f"/runs/{live_id}/end", {"status": "completed"}) in (200, 201)
    expect(page.locator("#run-header .badge")).to_contain_text("completed", timeout=7000)
    expect(page.locator("#timeline-live")).to_have_count(0, timeout=7000)
    assert page.locator("#timeline-list > li.decision").count() == 2  # nothing appended twice


def test_run_and_runs_list_export_as_downloads(logged_in_page, live_server):
    runs = seed()
    page = logged_in_page
    page.goto(live_server.url + f"/runs/{runs['bad'].run_id}/")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export JSON").click()
    data = json.loads(Path(download_info.value.path()).read_text())
    assert data["id"] == runs["bad"].run_id and len(data["decisions"]) == 3
    page.goto(live_server.url + "/runs/?status=failed")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    lines = Path(download_info.value.path()).read_text().splitlines()
    assert lines[0].startswith("run_id,goal_id,status")
    assert len(lines) == 1 + 3


def test_goal_page_shows_trend_and_which_choices_succeed(logged_in_page, live_server, shot):
    seed()
    page = logged_in_page
    page.goto(live_server.url + "/goals/weather_report/")
    expect(page.locator("svg.rate-chart")).to_be_visible()
    point = page.locator(".point").filter(has_text="Decide how to find the forecast")
    expect(point.get_by_role("row").filter(has_text="Search the web")).to_contain_text("100%")
    shot(page, "09-goal")
    point.scroll_into_view_if_needed()
    shot(page, "09-goal-decision-points")


def test_script_injection_probe_shows_as_text_and_fires_nothing(logged_in_page, live_server, shot):
    from tests.pages.factories import add_decision, add_problem, make_run, option

    probe = f'{SCRIPT}" onmouseover="alert(2)<img src=x onerror=alert(3)>'
    run = make_run(f"run {SCRIPT}", goal_id=f"goal {SCRIPT}", status="failed", narrative=probe,
                   input_data={"q": probe})
    add_decision(run, node_id=probe, intent=probe, reasoning=probe, success=False, error=probe,
                 options=[option("a", probe, pros=[probe], cons=[probe], action_params={"p": probe})], chosen="a")
    add_problem(run, decision_id="dec_0", description=probe, severity=probe)
    page = logged_in_page
    for url in ["/", "/runs/", f"/runs/{quote(run.run_id)}/", f"/goals/{quote(run.goal_id)}/"]:
        page.goto(live_server.url + url)
        page.mouse.move(300, 300)
        page.mouse.move(700, 500)
    page.goto(live_server.url + f"/runs/{quote(run.run_id)}/")
    expect(page.locator("#dec-0 .intent")).to_have_text(probe)
    page.locator("#dec-0").get_by_role("link", name="Options & outcome").click()
    expect(page.locator("#detail-0 .option-desc")).to_have_text(probe)
    page.locator("#detail-0 .option-desc").hover()
    shot(page, "10-injection-probe")
    assert page.locator("img[src=x]").count() == 0
    assert page.recorder.dialogs == []
