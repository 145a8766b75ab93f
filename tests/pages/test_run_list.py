import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.template import Context, Template
from django.urls import NoReverseMatch, reverse, set_script_prefix
from django.utils import timezone
from django.utils.html import escape

from runs import pages
from runs.templatetags import run_tags
from runs.models import Run
from tests.pages.factories import T0, add_decision, add_problem, make_run

pytestmark = pytest.mark.django_db


def run_ids_in(response) -> list[str]:
    return [run.run_id for run in response.context["page"].runs]


def test_every_page_requires_login(client):
    run = make_run("run_1")
    add_decision(run)
    for url in ["/", "/runs/", "/runs/run_1/", "/runs/run_1/decisions/dec_0/", "/runs/compare/?a=run_1&b=run_1",
                "/goals/goal_a/", "/runs/export.csv", "/runs/run_1/export.json", "/runs/run_1/header/"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url


def test_runs_list_shows_newest_first_with_counts(logged_in_client):
    old = make_run("run_old", started_at=T0)
    new = make_run("run_new", started_at=T0 + timedelta(days=1), status="failed")
    add_decision(new, success=False, error="boom")
    response = logged_in_client.get("/runs/")
    assert run_ids_in(response) == [new.run_id, old.run_id]
    html = response.content.decode()
    assert "<strong>2</strong> runs" in html
    assert '<span class="badge status-failed"><span aria-hidden="true">✗</span> failed</span>' in html


def test_filters_by_goal_status_node_problems_and_time_range(logged_in_client):
    a = make_run("a1", goal_id="alpha", status="failed", started_at=T0)
    add_decision(a, node_id="search")
    add_problem(a)
    b = make_run("b1", goal_id="beta", status="completed", started_at=T0 + timedelta(days=2))
    add_decision(b, node_id="write")
    make_run("a2", goal_id="alpha", status="completed", started_at=T0 + timedelta(days=5))

    def ids(query):
        return sorted(run_ids_in(logged_in_client.get("/runs/" + query)))

    assert ids("?goal_id=alpha") == ["a1", "a2"]
    assert ids("?status=failed") == ["a1"]
    assert ids("?node_id=write") == ["b1"]
    assert ids("?has_problems=1") == ["a1"]
    assert ids("?has_problems=0") == ["a2", "b1"]
    assert ids(f"?since={(T0 + timedelta(days=1)).date()}") == ["a2", "b1"]
    assert ids(f"?until={(T0 + timedelta(days=2)).date()}") == ["a1", "b1"]  # a whole day, inclusive
    assert ids("?goal_id=alpha&status=completed") == ["a2"]


def test_text_search_covers_intent_reasoning_narrative_errors_and_problems(logged_in_client):
    make_run("by_narrative", narrative="the quokka escaped")
    add_decision(make_run("by_intent"), intent="find the QUOKKA")
    add_decision(make_run("by_reasoning"), reasoning="quokkas are fast")
    add_decision(make_run("by_error"), success=False, error="quokka not found")
    add_problem(make_run("by_problem"), description="a quokka problem")
    make_run("unrelated", narrative="nothing here")
    ids = sorted(run_ids_in(logged_in_client.get("/runs/?q=quokka")))
    assert ids == ["by_error", "by_intent", "by_narrative", "by_problem", "by_reasoning"]


def test_cursor_pagination_walks_every_run_once(logged_in_client, settings, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 3)
    for i in range(8):
        make_run(f"r{i}", started_at=T0)  # equal timestamps: the pk breaks ties
    seen, url, requests = [], "/runs/?goal_id=goal_a", 0
    while url:
        requests += 1
        response = logged_in_client.get(url)
        seen += run_ids_in(response)
        cursor = response.context["page"].next_cursor
        url = f"/runs/?goal_id=goal_a&cursor={cursor}" if cursor else None
    assert sorted(seen) == [f"r{i}" for i in range(8)]
    assert len(seen) == 8
    assert requests == 3


def test_cursor_pagination_works_for_other_sort_orders(logged_in_client, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    for i, tokens in enumerate([5, 50, 5, 500, 50]):
        make_run(f"t{i}", total_tokens=tokens)
    first = logged_in_client.get("/runs/?sort=most_tokens")
    second = logged_in_client.get(f"/runs/?sort=most_tokens&cursor={first.context['page'].next_cursor}")
    third = logged_in_client.get(f"/runs/?sort=most_tokens&cursor={second.context['page'].next_cursor}")
    tokens = [r.total_tokens for resp in (first, second, third) for r in resp.context["page"].runs]
    assert tokens == [500, 50, 50, 5, 5]
    assert third.context["page"].next_cursor is None


def test_next_page_link_keeps_the_filters(logged_in_client, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 1)
    make_run("x1", status="failed")
    make_run("x2", status="failed")
    html = logged_in_client.get("/runs/?status=failed").content.decode()
    assert 'rel="next" href="/runs/?status=failed&amp;cursor=' in html


def test_count_is_bounded_and_shown_with_a_plus(logged_in_client, monkeypatch):
    monkeypatch.setattr(pages, "COUNT_LIMIT", 3)
    for i in range(5):
        make_run(f"c{i}", status="stuck")
    response = logged_in_client.get("/runs/?status=stuck")
    assert "<strong>3+</strong> runs" in response.content.decode()


@pytest.mark.parametrize("query, expected", [
    ("", 7), ("?goal_id=g1", 4), ("?goal_id=g1&status=failed", 2), ("?status=completed", 3),
    ("?status=running&sort=most_tokens", 1),
])
def test_goal_and_status_counts_are_exact_past_the_bound(logged_in_client, monkeypatch, query, expected):
    """Counts a list filtered by goal and status alone come from the goal-day rollups: exact however many
    runs match (no "3+"), and equal to the runs listed, across days and goals."""
    monkeypatch.setattr(pages, "COUNT_LIMIT", 3)
    monkeypatch.setattr(pages, "PAGE_SIZE", 50)
    specs = [("g1", "failed", 1), ("g1", "failed", 2), ("g1", "completed", 2), ("g1", "running", 3),
             ("g2", "completed", 1), ("g2", "completed", 5), ("g2", "stuck", 5)]
    for n, (goal, status, day) in enumerate(specs):
        make_run(f"e{n}", goal_id=goal, status=status, started_at=datetime(2025, 3, day, 12, tzinfo=UTC))
    page = logged_in_client.get(f"/runs/{query}").context["page"]
    assert (page.count, page.count_capped, len(page.runs)) == (expected, False, expected)


def test_htmx_request_gets_only_the_table(logged_in_client):
    make_run("only")
    response = logged_in_client.get("/runs/?status=completed", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="run-table"')
    assert "<html" not in html
    assert "HX-Request" in response["Vary"]


def test_history_restore_request_gets_the_whole_page(logged_in_client):
    response = logged_in_client.get("/runs/", HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in response.content.decode()


@pytest.mark.parametrize("query, field", [
    ("status=exploded", "status"), ("since=yesterday", "since"), ("until=2025-13-45", "until"),
    ("sort=random", "sort"), ("cursor=garbage!!", "cursor"), ("has_problems=maybe", "has_problems"),
])
def test_bad_filter_values_answer_400_naming_the_field(logged_in_client, query, field):
    response = logged_in_client.get(f"/runs/?{query}")
    assert response.status_code == 400
    assert f"{field}:" in response.content.decode()


def test_cursor_from_another_sort_order_is_rejected(logged_in_client, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 1)
    make_run("s1")
    make_run("s2")
    cursor = logged_in_client.get("/runs/").context["page"].next_cursor
    response = logged_in_client.get(f"/runs/?sort=most_tokens&cursor={cursor}")
    assert response.status_code == 400


def test_csv_export_streams_the_filtered_runs(logged_in_client):
    run = make_run("csv_1", goal_id="g", status="failed", narrative="=HYPERLINK(\"x\")")
    add_decision(run, success=False, tokens=7)
    make_run("csv_other", goal_id="other")
    response = logged_in_client.get("/runs/export.csv?goal_id=g")
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["run_id", "goal_id", "status"]
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1]))
    assert row["run_id"] == "csv_1" and row["status"] == "failed" and row["failures"] == "1"
    assert row["narrative"].startswith("'=")  # a spreadsheet will not run agent text as a formula


def test_compare_form_from_the_list_redirects_to_the_compare_page(logged_in_client):
    make_run("p")
    make_run("q")
    response = logged_in_client.get("/runs/compare/?run=p&run=q")
    assert response.status_code == 302
    assert response["Location"] == "/runs/compare/?a=p&b=q"
    assert logged_in_client.get("/runs/compare/?run=p").status_code == 400


def test_runs_list_links_use_escaped_urls_for_odd_ids(logged_in_client):
    make_run("odd id/with slash")
    html = logged_in_client.get("/runs/").content.decode()
    assert 'href="/runs/odd%20id/with%20slash/"' in html
    assert logged_in_client.get("/runs/odd%20id/with%20slash/").status_code == 200
    assert Run.objects.count() == 1


ODD_IDS = ["odd id/with slash", "ü-ñ 東", "100%", "a?b#c", "a&b'c\"d", "<b>x</b>", "x//y", "~u:1@h;+,=!$*()", "..."]


def test_runs_list_links_are_the_urls_django_reverses_for_any_id(logged_in_client):
    # The list builds its two links per row without {% url %} (run_tags.run_url / goal_url): each must be
    # exactly what reverse() makes, and lead to the run and the goal.
    for run_id in ODD_IDS:
        make_run(run_id, goal_id=f"goal {run_id}")
    html = logged_in_client.get("/runs/").content.decode()
    for run_id in ODD_IDS:
        run_href, goal_href = reverse("runs:detail", args=[run_id]), reverse("runs:goal", args=[f"goal {run_id}"])
        assert f'href="{escape(run_href)}"' in html and f'href="{escape(goal_href)}"' in html
        assert logged_in_client.get(run_href).context["run"].run_id == run_id
        assert logged_in_client.get(goal_href).status_code == 200
    set_script_prefix("/dashboard/")  # served below a path: the links carry it, as reverse() does
    try:
        assert run_tags.run_url("a b") == reverse("runs:detail", args=["a b"]) == "/dashboard/runs/a%20b/"
    finally:
        set_script_prefix("/")
    assert run_tags.run_url("a b") == "/runs/a%20b/"
    with pytest.raises(NoReverseMatch):  # refused as {% url %} refuses it
        run_tags.run_url("")


@pytest.mark.parametrize("zone", ["UTC", "America/St_Johns", "Asia/Kathmandu"])
def test_run_times_read_as_the_date_filters_showed_them_in_any_time_zone(zone):
    # run_tags.time_tag stands for the two `date` filters the list and the run pages used per timestamp.
    before = Template("""{% if value is not None %}<time datetime="{{ value|date:'c' }}">{{ value|date:"Y-m-d H:i:s" }}"""
                      """</time>{% else %}<time datetime=""></time>{% endif %}""")
    after = Template("{% load run_tags %}{{ value|time_tag }}")
    values = [T0, T0.replace(microsecond=123456), datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
              datetime(2026, 3, 29, 1, 30, tzinfo=UTC), None]
    with timezone.override(zone):
        for value in values:
            assert after.render(Context({"value": value})) == before.render(Context({"value": value})), value
    with timezone.override("Asia/Kathmandu"):  # shown in the reader's zone, not stored UTC
        assert "2025-03-01 17:45:00" in after.render(Context({"value": T0}))
