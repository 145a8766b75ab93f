"""The runs list's text search as a user meets it, on either database: matching runs newest first, page
after page, whichever field the text is in; a page's count that is exact when everything fits and a lower
bound ("2+") otherwise, with a link that counts them all."""

from datetime import timedelta

import pytest
from django.db import connection

from runs import pages
from tests.pages.factories import T0, add_decision, add_problem, make_run

pytestmark = pytest.mark.django_db


def build_matches():
    """Six runs with "quokka" in a different field each, started an hour apart and written oldest first,
    between runs without it; the newest first: by_narrative, by_problem, by_error, by_reasoning, by_intent,
    by_id_quokka."""
    matches = {}
    for hour, name in enumerate(["by_id_quokka", "by_intent", "by_reasoning", "by_error", "by_problem", "by_narrative"]):
        started = T0 + timedelta(hours=2 * hour)
        make_run(f"plain_{hour}", started_at=started - timedelta(minutes=30), narrative="nothing here")
        run = make_run(name, started_at=started, narrative="the quokka escaped" if name == "by_narrative" else "")
        add_decision(run, intent="find the QUOKKA" if name == "by_intent" else "Pick a tool",
                     reasoning="quokkas are fast" if name == "by_reasoning" else "",
                     success=name != "by_error", error="quokka not found" if name == "by_error" else None)
        if name == "by_problem":
            add_problem(run, description="a quokka problem")
        matches[name] = run
    return list(reversed(matches))


def count_line(response) -> str:
    html = response.content.decode()
    start = html.index('<p class="count">')
    return html[start:html.index("</p>", start)]


def test_a_search_lists_the_newest_matching_runs_first_page_after_page(logged_in_client, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    # The count's per-column cap (PostgreSQL) must not decide which runs are listed.
    monkeypatch.setattr(pages, "SEARCH_BRANCH_LIMIT", 1)
    newest_first = build_matches()
    seen, lines, url = [], [], "/runs/?q=quokka"
    while url:
        response = logged_in_client.get(url)
        seen += [run.run_id for run in response.context["page"].runs]
        lines.append(count_line(response))
        cursor = response.context["page"].next_cursor
        url = f"/runs/?q=quokka&cursor={cursor}" if cursor else None
    assert seen == newest_first
    assert "<strong>2+</strong> runs match these filters" in lines[0]
    assert "count them all" in lines[0]
    assert "<strong>4+</strong>" in lines[1] and "<strong>4+</strong>" in lines[2]  # at least what was shown


def test_counting_them_all_gives_the_exact_count_which_a_single_page_needs_no_asking_for(logged_in_client, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    build_matches()
    first = logged_in_client.get("/runs/?q=quokka")
    assert 'href="/runs/?q=quokka&amp;count=all"' in count_line(first)
    counted = logged_in_client.get("/runs/?q=quokka&count=all")
    assert "<strong>6</strong> runs match these filters" in count_line(counted)
    assert "count them all" not in count_line(counted)
    assert [r.run_id for r in counted.context["page"].runs] == ["by_narrative", "by_problem"]
    assert 'id="search-stopped"' not in counted.content.decode()
    fits = logged_in_client.get("/runs/?q=quokka+not+found")  # one page holds them all: exact, nothing to ask
    assert [r.run_id for r in fits.context["page"].runs] == ["by_error"]
    assert "<strong>1</strong> run match these filters" in count_line(fits)
    assert "count them all" not in count_line(fits)


def test_the_count_link_keeps_the_filters_and_updates_the_table_in_place(logged_in_client, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 1)
    build_matches()
    response = logged_in_client.get("/runs/?q=quokka&status=completed&count=all", HTTP_HX_REQUEST="true")
    assert response.content.decode().lstrip().startswith('<section id="run-table"')
    assert response["HX-Push-Url"] == "/runs/?status=completed&q=quokka&count=all"
    assert "<strong>6</strong>" in count_line(response)


def test_an_unknown_count_value_is_refused_naming_the_field(logged_in_client):
    response = logged_in_client.get("/runs/?q=quokka&count=everything")
    assert response.status_code == 400
    assert "count: must be all" in response.content.decode()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the per-column cap is the PostgreSQL count's")
def test_on_postgresql_a_capped_count_says_it_is_a_lower_bound_but_every_run_is_listed(logged_in_client, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 4)
    monkeypatch.setattr(pages, "SEARCH_BRANCH_LIMIT", 3)
    for i in range(6):
        add_decision(make_run(f"q{i}", started_at=T0 + timedelta(hours=i)), success=False, error="quokka not found")
    counted = logged_in_client.get("/runs/?q=quokka&count=all")
    assert [r.run_id for r in counted.context["page"].runs] == ["q5", "q4", "q3", "q2"]
    assert "<strong>4+</strong>" in count_line(counted)  # the cap found 3; the page shows 4
    html = counted.content.decode()
    assert "every matching run is listed, but the count is a lower bound" in html
    # Sorted by anything but start time, the list is drawn from the capped matches, and says so.
    by_tokens = logged_in_client.get("/runs/?q=quokka&sort=most_tokens").content.decode()
    assert "some matching runs may not be listed" in by_tokens


def test_the_csv_export_of_a_search_lists_every_matching_run(logged_in_client, monkeypatch):
    """The download holds every match, in the list's order, even where the list's count stops early (on
    PostgreSQL the capped search behind it reads SEARCH_BRANCH_LIMIT matches per column)."""
    monkeypatch.setattr(pages, "SEARCH_BRANCH_LIMIT", 1)
    for i in range(5):
        add_decision(make_run(f"x{i}", started_at=T0 + timedelta(hours=i)), success=False, error="quokka not found")
    make_run("unrelated", started_at=T0 + timedelta(hours=9))
    response = logged_in_client.get("/runs/export.csv?q=quokka")
    rows = b"".join(response.streaming_content).decode().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["x4", "x3", "x2", "x1", "x0"]
