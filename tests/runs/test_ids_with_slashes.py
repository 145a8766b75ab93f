"""Run, goal and node ids are the agent's own and may hold slashes: every API route that names one takes
it, whether the slash is sent as is or percent-encoded (as the SDK sends it). Where a path could name a run
below a route or a run whose id is the whole path (`/runs/x/summary`), the route reads it as the first and,
where that finds nothing, the run the whole path names is answered, as the dashboard's pages do."""

import json
from urllib.parse import quote

import pytest

from runs.models import Run

RUN = "team-a/checkout/run 7"
GOAL = "team-a/checkout"
NODE = "tools/search"


def _send(client, method, url, body=None):
    send = getattr(client, method)
    return send(url, json.dumps(body) if body is not None else None, content_type="application/json")


@pytest.mark.parametrize("encode", [lambda part: part, lambda part: quote(part, safe="")],
                         ids=["slashes", "percent-encoded"])
def test_a_run_with_slashes_in_its_id_is_reported_and_read_one_event_at_a_time(api_client, encode):
    run = f"/api/v1/runs/{encode(RUN)}"
    assert _send(api_client, "post", "/api/v1/runs", {"id": RUN, "goal_id": GOAL}).status_code == 201
    for n, success in enumerate((True, False)):
        added = _send(api_client, "post", f"{run}/decisions",
                      {"id": f"dec_{n}", "node_id": NODE, "intent": "look it up",
                       "options": [{"id": "web", "description": "search the web"}], "chosen_option_id": "web"})
        assert added.status_code == 201 and added.json()["run_id"] == RUN, added.content
        outcome = _send(api_client, "put", f"{run}/decisions/dec_{n}/outcome", {"success": success, "error": "timeout"})
        assert outcome.status_code == 201, outcome.content
    assert _send(api_client, "post", f"{run}/problems", {"id": "p1", "severity": "medium", "description": "slow search"}).status_code == 201
    assert _send(api_client, "post", f"{run}/end", {"status": "failed"}).status_code == 201

    stored = api_client.get(run)
    assert stored.status_code == 200 and stored.json()["id"] == RUN, stored.content
    assert [d["id"] for d in stored.json()["decisions"]] == ["dec_0", "dec_1"]
    summary = api_client.get(f"{run}/summary").json()
    assert summary["run_id"] == RUN and summary["decision_count"] == 2 and summary["success_rate"] == 0.5
    assert len(api_client.get(f"{run}/trace").json()["trace"]) == 2
    assert api_client.get(f"{run}/failure-analysis").json()["analysis"]["failure_point"].startswith("✗ [tools/search] look it up")

    goal = f"/api/v1/goals/{encode(GOAL)}"
    assert [r["run_id"] for r in api_client.get(f"{goal}/runs").json()["runs"]] == [RUN]
    assert api_client.get(f"{goal}/patterns").json()["patterns"] is not None
    assert api_client.get(f"{goal}/improvements").status_code == 200
    node = api_client.get(f"/api/v1/nodes/{encode(NODE)}/performance").json()
    assert node["node_id"] == NODE and node["total_decisions"] == 2 and node["success_rate"] == 0.5, node


def test_a_path_that_names_a_run_below_a_route_and_a_run_of_its_own_reads_as_the_route_first(api_client):
    for run_id in ("x", "x/summary", "y/summary", "z/decisions", "z/decisions/dec_0/outcome", "w/end"):
        assert _send(api_client, "post", "/api/v1/runs", {"id": run_id, "goal_id": "g"}).status_code == 201
    assert _send(api_client, "post", "/api/v1/runs/x/decisions", {"id": "dec_0", "node_id": "n", "intent": "i"}).status_code == 201

    # Run x exists: its summary, not the run named "x/summary".
    summary = api_client.get("/api/v1/runs/x/summary").json()
    assert summary["run_id"] == "x" and summary["decision_count"] == 1
    # No run y: the run whose id is the whole path.
    assert api_client.get("/api/v1/runs/y/summary").json()["id"] == "y/summary"
    # Routes that only take POST (or PUT) do not hide a run named by the whole path from a GET.
    assert api_client.get("/api/v1/runs/z/decisions").json()["id"] == "z/decisions"
    assert api_client.get("/api/v1/runs/z/decisions/dec_0/outcome").json()["id"] == "z/decisions/dec_0/outcome"
    assert api_client.get("/api/v1/runs/w/end").json()["id"] == "w/end"
    # ... and the POST still goes to the route: run w does not exist, whatever "w/end" is.
    ended = _send(api_client, "post", "/api/v1/runs/w/end", {"status": "completed"})
    assert ended.status_code == 404 and "'w'" in ended.json()["detail"], ended.content
    assert Run.objects.get(run_id="w/end").status == "running"

    missing = api_client.get("/api/v1/runs/nothing/summary")
    assert missing.status_code == 404 and missing.json()["detail"] == "Run 'nothing' not found."
    nothing = api_client.get("/api/v1/runs/nothing/decisions")  # read as GET /runs/{run_id}: no such run
    assert nothing.status_code == 404 and nothing.json()["detail"] == "Run 'nothing/decisions' not found."


@pytest.mark.parametrize("path", ["z/decisions", "nothing/decisions", "z/decisions/dec_0/outcome", "w/end", "y/summary",
                                  "nothing/summary"])
def test_without_a_key_no_path_tells_whether_a_run_exists(api_client, client, path):
    for run_id in ("z/decisions", "z/decisions/dec_0/outcome", "w/end", "y/summary"):
        assert _send(api_client, "post", "/api/v1/runs", {"id": run_id, "goal_id": "g"}).status_code == 201
    client.defaults.pop("HTTP_AUTHORIZATION", None)
    answer = client.get(f"/api/v1/runs/{path}")
    assert answer.status_code == 401 and "API key" in answer.json()["detail"], answer.content


def test_the_openapi_schema_names_the_parameters_as_before(api_client):
    paths = api_client.get("/api/v1/openapi.json").json()["paths"]
    for path in ("/api/v1/runs/{run_id}", "/api/v1/runs/{run_id}/decisions", "/api/v1/goals/{goal_id}/patterns",
                 "/api/v1/nodes/{node_id}/performance", "/api/v1/runs/{run_id}/decisions/{decision_id}/outcome"):
        assert path in paths, sorted(paths)
