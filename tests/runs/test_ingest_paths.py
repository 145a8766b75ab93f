"""The batch endpoint's set-based path and the per-event endpoints store the same rows, byte for byte."""

import json

from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs.models import Decision, Run

OPTIONS = [
    {"id": "a", "description": "Ünïcode «quotes» \"and\" <tags>", "action_type": "tool", "action_params": {"q": [1, 2.5, None, True]},
     "pros": ["fast"], "cons": [], "confidence": 0.25},
    {"id": "b", "description": "B", "confidence": 1.0},
]


def decisions():
    """Decisions covering every column kind: JSON of each shape, NULLs, booleans, times, extras."""
    return [
        {"id": "dec_0", "node_id": "plan", "intent": "first 🧭", "options": OPTIONS, "chosen_option_id": "a",
         "reasoning": "because\nnewline", "active_constraints": ["c1", "c2"], "input_context": {"deep": {"x": [{}]}},
         "timestamp": "2024-05-01T10:00:01.123456", "decision_type": "tool_selection", "custom_key": {"kept": 1},
         "evaluation": None},
        {"id": "dec_1", "node_id": "act", "intent": "second", "options": OPTIONS, "chosen_option_id": "zzz",
         "timestamp": "2024-05-01T12:00:02+02:00",
         "outcome": {"success": False, "error": "boom", "result": None, "tokens_used": 7, "latency_ms": 11,
                     "state_changes": {"k": False}, "summary": "s", "timestamp": "2024-05-01T10:00:03", "odd": [1]}},
        {"id": "dec_2", "node_id": "plan", "intent": "third", "timestamp": "2024-05-01T10:00:04"},
        {"id": "custom-id", "node_id": "end", "intent": "fourth", "index": 9, "timestamp": "2024-05-01T10:00:05"},
    ]


OUTCOMES = {
    "dec_0": {"success": True, "result": {"answer": 42, "list": ["x", 0.1]}, "tokens_used": 3, "latency_ms": 5,
              "timestamp": "2024-05-01T10:00:01.5"},
    "dec_2": {"success": True, "result": "text", "timestamp": "2024-05-01T10:00:04.25"},
    "custom-id": {"success": False, "result": [None, False], "timestamp": "2024-05-01T10:00:06"},
}


def start(client, run_id):
    body = {"id": run_id, "goal_id": "paths", "started_at": "2024-05-01T10:00:00"}
    assert client.post("/api/v1/runs", json.dumps(body), content_type="application/json").status_code == 201


def stored(run_id):
    rows = Decision.objects.filter(run__run_id=run_id).values()
    return [{k: v for k, v in row.items() if k not in ("id", "run_id")} for row in rows]


def exported(client, run_id):
    text = client.get(f"/api/v1/runs/{run_id}").content.decode()
    return text.replace(run_id, "RUN")


def test_a_batch_stored_set_based_reads_back_identical_to_the_same_events_sent_one_by_one(api_client):
    start(api_client, "run_batch")
    events = []
    for decision in decisions():
        events.append({"type": "decision", "run_id": "run_batch", "decision_id": decision["id"], "body": decision})
        if decision["id"] in OUTCOMES:
            events.append({"type": "outcome", "run_id": "run_batch", "decision_id": decision["id"],
                           "body": OUTCOMES[decision["id"]]})
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post("/api/v1/batch", json.dumps({"events": events}), content_type="application/json")
    assert response.json() == {"successes": [{"index": i, "status": 201} for i in range(len(events))], "errors": []}
    inserts = [q for q in queries.captured_queries if "INSERT" in q["sql"].upper()]
    assert len(inserts) == 1, "the batch should be stored with one executemany INSERT"

    start(api_client, "run_single")
    for decision in decisions():
        answer = api_client.post("/api/v1/runs/run_single/decisions", json.dumps(decision), content_type="application/json")
        assert answer.status_code == 201, answer.content
        if decision["id"] in OUTCOMES:
            answer = api_client.put(f"/api/v1/runs/run_single/decisions/{decision['id']}/outcome",
                                    json.dumps(OUTCOMES[decision["id"]]), content_type="application/json")
            assert answer.status_code == 201, answer.content

    assert stored("run_batch") == stored("run_single")
    assert exported(api_client, "run_batch") == exported(api_client, "run_single")
    counters = ("decision_count", "success_count", "failure_count", "total_tokens", "total_latency_ms",
                "nodes_executed")
    batch, single = (Run.objects.values(*counters).get(run_id=run_id) for run_id in ("run_batch", "run_single"))
    assert batch == single == {"decision_count": 4, "success_count": 2, "failure_count": 2, "total_tokens": 10,
                               "total_latency_ms": 16, "nodes_executed": ["plan", "act", "end"]}


def test_a_replayed_batch_answers_200_and_stores_nothing_twice(api_client):
    start(api_client, "run_replay")
    events = [{"type": "decision", "run_id": "run_replay", "body": decision} for decision in decisions()]
    first = api_client.post("/api/v1/batch", json.dumps({"events": events}), content_type="application/json").json()
    again = api_client.post("/api/v1/batch", json.dumps({"events": events}), content_type="application/json").json()
    assert [s["status"] for s in first["successes"]] == [201] * 4
    assert again == {"successes": [{"index": i, "status": 200} for i in range(4)], "errors": []}
    assert Run.objects.get(run_id="run_replay").decision_count == Decision.objects.count() == 4


def test_a_single_decision_answer_carries_what_was_stored(api_client):
    start(api_client, "run_one")
    body = decisions()[1]
    answer = api_client.post("/api/v1/runs/run_one/decisions", json.dumps(body), content_type="application/json")
    assert answer.status_code == 201
    assert answer.json() == {"run_id": "run_one", "decision_id": "dec_1", "seq": 1, "node_id": "act",
                             "decision_type": "custom", "chosen_option_id": "zzz", "chosen_description": None,
                             "has_outcome": True, "outcome_success": False}
    replay = api_client.post("/api/v1/runs/run_one/decisions", json.dumps(body), content_type="application/json")
    assert replay.status_code == 200 and replay.json() == answer.json()


def test_one_event_requests_keep_the_runs_nodes_in_order_whatever_their_text(api_client):
    """Decisions reported one per request are appended in as few statements as the database allows
    (the nodes are added in SQL): nodes with quotes, non-ASCII text or JSON-looking names are each
    listed once, in the order of the decisions, as a recount from the rows lists them."""
    start(api_client, "run_nodes")
    nodes = ['say "hi"', "café ☕", "plan", '["plan"]', "plan", "\\", "café ☕"]
    for seq, node in enumerate(nodes):
        answer = api_client.post("/api/v1/runs/run_nodes/decisions", json.dumps(
            {"id": f"dec_{seq}", "node_id": node, "intent": "x", "outcome": {"success": seq % 2 == 0, "tokens_used": seq}}),
            content_type="application/json")
        assert answer.status_code == 201, answer.content
        assert answer.json()["node_id"] == node and answer.json()["seq"] == seq
    run = Run.objects.get(run_id="run_nodes")
    assert run.nodes_executed == ['say "hi"', "café ☕", "plan", '["plan"]', "\\"]
    assert (run.decision_count, run.success_count, run.failure_count, run.total_tokens) == (7, 4, 3, 21)
    live = [run.nodes_executed, run.decision_count, run.success_count, run.total_tokens]
    run.recount(save=False)
    assert live == [run.nodes_executed, run.decision_count, run.success_count, run.total_tokens]
