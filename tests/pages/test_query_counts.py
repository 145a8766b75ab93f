"""Every page issues a fixed number of SQL queries, however many runs and decisions there are."""

from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.pages.factories import add_decision, add_problem, bulk_decisions, make_run

pytestmark = pytest.mark.django_db

# Session and user lookups are two of these. A text search reads its page only (on SQLite, after finding
# where its window of runs starts); the full count is asked for (`count=all`).
MAX_QUERIES = {
    "/": 5, "/runs/": 4, "/runs/?q=step&node_id=worker&has_problems=1": 4, "/runs/big/": 6,
    "/runs/big/?failed=1&node=worker": 6, "/runs/big/timeline/?after=150": 5, "/runs/big/header/": 3,
    "/runs/big/decisions/dec_7/": 5, "/runs/compare/?a=big&b=other": 6, "/goals/goal_a/": 8,
}


def build(runs: int, decisions: int):
    big = make_run("big", status="failed")
    bulk_decisions(big, decisions, fail_every=7)
    for i in range(0, decisions, max(decisions // 5, 1)):
        add_problem(big, decision_id=f"dec_{i}")
    other = make_run("other")
    bulk_decisions(other, decisions // 2)
    for i in range(runs):
        run = make_run(f"r{i}", goal_id=f"goal_{'ab'[i % 2]}", status=["completed", "failed"][i % 2])
        add_decision(run, node_id=f"node{i % 3}", intent=f"step {i % 4}", chosen="ab"[i % 2], success=bool(i % 3))


@pytest.mark.parametrize("size", [(3, 30), (60, 600)], ids=["small", "large"])
def test_query_count_does_not_grow_with_the_data(logged_in_client, size):
    build(*size)
    for url, limit in MAX_QUERIES.items():
        htmx = {"HTTP_HX_REQUEST": "true"} if "timeline" in url or "header" in url else {}
        with CaptureQueriesContext(connection) as ctx:
            response = logged_in_client.get(url, **htmx)
        assert response.status_code in (200, 286), url
        assert len(ctx.captured_queries) <= limit, (url, [q["sql"][:120] for q in ctx.captured_queries])


def test_run_detail_stays_within_its_query_budget_at_scale(logged_in_client, django_assert_max_num_queries):
    build(20, 2000)
    with django_assert_max_num_queries(MAX_QUERIES["/runs/big/"]):
        response = logged_in_client.get("/runs/big/")
    assert len(response.context["chunk"].decisions) == 100  # one chunk, not 2,000 decisions


def test_goal_page_stays_within_its_query_budget(logged_in_client, django_assert_max_num_queries):
    build(40, 50)
    with django_assert_max_num_queries(MAX_QUERIES["/goals/goal_a/"]):
        assert logged_in_client.get(f"/goals/{quote('goal_a')}/").status_code == 200
