"""Runtime events and stored runs in the API's wire format (docs/CONTRACTS.md, POST /api/v1/batch).

An event travels as a dict or, from the Runtime's sink, as its JSON text already (``to_wire_json``):
serialised once, by pydantic, on the agent's thread, then queued, spooled and posted as that text,
never encoded again. ``encode``/``decode`` accept either form.
"""

import functools
import json
from typing import Any

from framework.schemas.run import Run, RunStatus

# Derived values the models serialise; the server recomputes them, so they are not sent.
_DERIVED = {"chosen_option", "was_successful", "was_good_decision"}
_RUN_START_FIELDS = {"id", "goal_id", "goal_description", "input_data", "started_at", "status"}
_RUN_END_FIELDS = {"status", "narrative", "output_data", "completed_at"}


def _decision_body(decision, index: int) -> dict[str, Any]:
    body = decision.model_dump(mode="json", exclude=_DERIVED)
    for key in ("outcome", "evaluation"):
        if body.get(key) is None:
            body.pop(key, None)
    body["index"] = index
    return body


def to_wire(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """One Runtime sink event as a batch event. Serialised now: the models are live and change later."""
    if kind == "run_start":
        run = payload["run"]
        return {"type": "run_start", "run_id": run.id,
                "body": run.model_dump(mode="json", include=_RUN_START_FIELDS)}
    if kind == "decision":
        decision = payload["decision"]
        return {"type": "decision", "run_id": payload["run_id"], "decision_id": decision.id,
                "body": _decision_body(decision, payload["index"])}
    if kind == "outcome":
        return {"type": "outcome", "run_id": payload["run_id"], "decision_id": payload["decision_id"],
                "body": payload["outcome"].model_dump(mode="json")}
    if kind == "problem":
        return {"type": "problem", "run_id": payload["run_id"],
                "body": payload["problem"].model_dump(mode="json")}
    if kind == "run_end":
        run = payload["run"]
        return {"type": "run_end", "run_id": run.id, "body": run.model_dump(mode="json", include=_RUN_END_FIELDS)}
    raise ValueError(f"unknown runtime event {kind!r}")


def encode(event: dict[str, Any] | str) -> str:
    """An event's JSON text (compact; non-ASCII kept as is)."""
    return event if isinstance(event, str) else json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def decode(event: dict[str, Any] | str) -> dict[str, Any]:
    return json.loads(event) if isinstance(event, str) else event


@functools.lru_cache(maxsize=64)
def _run_head(kind: str, run_id: str) -> str:
    """Cached: every event of a run starts with the same text, and the agent's thread pays for each."""
    return f'{{"type":"{kind}","run_id":{json.dumps(run_id, ensure_ascii=False)}'


def _head(kind: str, run_id: str, decision_id: str | None = None) -> str:
    if decision_id is None:
        return f'{_run_head(kind, run_id)},"body":'
    # Ids the Runtime makes ("dec_12") need no escaping; json.dumps for anything else.
    quoted = f'"{decision_id}"' if decision_id.isascii() and decision_id.isidentifier() else json.dumps(
        decision_id, ensure_ascii=False)
    return f'{_run_head(kind, run_id)},"decision_id":{quoted},"body":'


def to_wire_json(kind: str, payload: dict[str, Any]) -> str:
    """``to_wire(kind, payload)`` as JSON text: the same event, serialised now in one pydantic call."""
    try:
        return _to_wire_json(kind, payload)
    except ValueError:
        if kind not in _KINDS:
            raise
        # Text pydantic cannot write as UTF-8 (a lone surrogate): the dict path, \u-escaped as before.
        return json.dumps(to_wire(kind, payload), separators=(",", ":"))


_KINDS = ("run_start", "decision", "outcome", "problem", "run_end")


def _to_wire_json(kind: str, payload: dict[str, Any]) -> str:
    if kind == "decision":
        decision = payload["decision"]
        skip = {key for key in ("outcome", "evaluation") if getattr(decision, key) is None}
        body = decision.model_dump_json(exclude=skip or None, exclude_computed_fields=True)
        return f'{_head("decision", payload["run_id"], decision.id)}{body[:-1]},"index":{int(payload["index"])}}}}}'
    if kind == "outcome":
        body = payload["outcome"].model_dump_json()
        return f'{_head("outcome", payload["run_id"], payload["decision_id"])}{body}}}'
    if kind == "problem":
        return f'{_head("problem", payload["run_id"])}{payload["problem"].model_dump_json()}}}'
    if kind in ("run_start", "run_end"):
        run = payload["run"]
        fields = _RUN_START_FIELDS if kind == "run_start" else _RUN_END_FIELDS
        return f'{_head(kind, run.id)}{run.model_dump_json(include=fields)}}}'
    raise ValueError(f"unknown runtime event {kind!r}")


def run_to_events(run: Run) -> list[dict[str, Any]]:
    """A stored run as the events that recreate it (decisions carry their outcome inline)."""
    events = [to_wire("run_start", {"run": run})]
    events[0]["body"]["status"] = RunStatus.RUNNING.value
    for index, decision in enumerate(run.decisions):
        events.append(to_wire("decision", {"run_id": run.id, "decision": decision, "index": index}))
    for problem in run.problems:
        events.append(to_wire("problem", {"run_id": run.id, "problem": problem}))
    if run.status != RunStatus.RUNNING or run.completed_at is not None:
        events.append(to_wire("run_end", {"run": run}))
    return events
