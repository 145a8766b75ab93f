"""Runs with decisions, written straight to the database (the ingest API has its own tests)."""

from django.utils import timezone

from runs import rollups
from runs.models import Decision, Problem, Run, RunStatus


def make_run(run_id="run_1", *, goal_id="checkout", status=RunStatus.FAILED, decisions=None, problems=(),
             narrative="Run failed.") -> Run:
    run = Run.objects.create(run_id=run_id, goal_id=goal_id, status=status, narrative=narrative,
                             goal_description="Buy the cheapest ticket",
                             completed_at=timezone.now() if status != RunStatus.RUNNING else None)
    rollups.record_status_change(run.goal_id, run.started_at, None, run.status)  # as runs/ingest.py does
    for seq, spec in enumerate(decisions if decisions is not None else default_decisions(status)):
        options = spec.get("options", [
            {"id": "fast", "description": "Use the cached price list", "action_type": "tool_call", "pros": ["quick"], "cons": ["stale"],
             "confidence": 0.7},
            {"id": "fresh", "description": "Query the live pricing API", "action_type": "tool_call", "pros": ["accurate"], "cons": ["slow"],
             "confidence": 0.6},
        ])
        chosen = spec.get("chosen", "fast")
        Decision.objects.create(
            run=run, decision_id=spec.get("id", f"dec_{seq}"), seq=seq, node_id=spec.get("node", "pricer"),
            intent=spec.get("intent", f"Step {seq}"), options=options, chosen_option_id=chosen,
            chosen_description=next((o["description"] for o in options if o["id"] == chosen), None),
            reasoning=spec.get("reasoning", "It seemed best"), input_context=spec.get("input_context", {"q": seq}),
            active_constraints=spec.get("constraints", []),
            outcome_success=spec.get("success", True), outcome_error=spec.get("error"),
            outcome_summary=spec.get("summary", ""), outcome_tokens=10, outcome_latency_ms=5,
        )
    for i, spec in enumerate(problems):
        Problem.objects.create(run=run, problem_id=f"prob_{i}", seq=i, **spec)
    run.recount()
    return run


def default_decisions(status):
    if status == RunStatus.FAILED:
        return [
            {"intent": "Find flights"},
            {"intent": "Price the cheapest flight"},
            {"intent": "Book the flight", "success": False, "error": "Price changed: 412 Precondition Failed",
             "input_context": {}},
        ]
    return [{"intent": "Find flights"}, {"intent": "Price the cheapest flight", "chosen": "fresh"},
            {"intent": "Book the flight"}]
