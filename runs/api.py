"""The agent API: ingestion (`ingest` scope) and reads, including every BuilderQuery question (`read` scope).

Request bodies are parsed here and validated by `runs/ingest.py`, so the single endpoints, the batch
endpoint and `import_runs` accept exactly the same input and word their errors the same way.
"""

import base64
import binascii
import gc
import json
import re
from collections.abc import Callable
from contextlib import contextmanager
from functools import wraps
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpResponse
from django.db.models import Q
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from ninja.responses import NinjaJSONEncoder
from ninja.responses import Status
from pydantic import Field

from framework.builder import heuristics

from . import ingest, queries
from .auth import BearerKey, ingest_auth, ingest_auth_in_view
from .export import (
    decision_trace, failure_analysis_run, run_summary, run_to_framework, run_to_json, summaries_for,
)
from .models import Run, RunStatus
from .schemas import (
    BatchOut, DecisionIn, DecisionOut, ErrorOut, OutcomeIn, ProblemIn, ProblemOut, RunEndIn, RunPageOut,
    RunStartIn, RunSummaryOut, storable_json, unchecked_one,
)

router = Router(tags=["runs"])

T = TypeVar("T")
ERRORS = {400: ErrorOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut, 422: ErrorOut, 503: ErrorOut}


# --- request bodies --------------------------------------------------------------------------------


def _inline_refs(schema: dict, defs: dict | None = None) -> dict:
    """A pydantic JSON schema with its $defs inlined, to embed in the OpenAPI request body."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline_refs(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {key: _inline_refs(value, defs) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(item, defs) for item in schema]
    return schema


def _documented(schema) -> dict:
    body = _inline_refs(schema.model_json_schema())
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}


def _json_body(request) -> Any:
    try:
        return json.loads(request.body or b"null")
    except UnicodeDecodeError:
        raise HttpError(400, "Request body is not UTF-8 encoded JSON.") from None
    except ValueError as exc:
        raise HttpError(400, f"Request body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise HttpError(400, "Request body is nested too deeply.") from None


def _error(exc: ingest.IngestError) -> Status | HttpResponse:
    body = {"detail": exc.detail, "errors": exc.errors}
    if isinstance(exc, ingest.Busy):  # nothing stored: the sender tries again (the SDK does)
        response = _json_answer(body, exc.status)
        response["Retry-After"] = "1"
        return response
    return Status(exc.status, body)


def _write(call: Callable[[], tuple[Any, bool]]) -> Status:
    """Run one ingest call: 201 when it created something, 200 on a replay or replacement, 4xx on errors."""
    try:
        obj, created = call()
    except ingest.IngestError as exc:
        return _error(exc)
    return Status(201 if created else 200, obj)


# --- ingestion -------------------------------------------------------------------------------------


@router.post("/runs", auth=ingest_auth, response={201: RunSummaryOut, 200: RunSummaryOut, **ERRORS},
             openapi_extra=_documented(RunStartIn), summary="Start a run")
def run_start(request):
    return _write(lambda: ingest.start_run(_json_body(request)))


@router.post("/runs/{path:run_id}/decisions", auth=ingest_auth_in_view,
             response={201: DecisionOut, 200: DecisionOut, **ERRORS},
             openapi_extra=_documented(DecisionIn), summary="Report a decision (its outcome may be inline)")
def decision_add(request, run_id: str):
    # One event per request is the hot path of agents that report without the SDK. The common case, a
    # new decision at the end of its run, is stored by one statement that also checks the API key
    # (`BearerKey`), once this process has found the key valid; anything else first checks the key as
    # every operation does, then takes the full path. With a key this process has seen, `storing_first`
    # has tried that statement before ninja's view was entered; here it is tried for a key seen the first time.
    bearer = request.auth
    payload = _plain(DecisionIn, request.body)
    if payload is not None and not bearer.seen():
        request.auth = bearer.verified()
        if (answer := _append(run_id, payload, bearer)) is not None:
            return answer
    request.auth = bearer.verified()
    try:
        answer, created = ingest.add_decision(run_id, payload if payload is not None else _json_body(request))
    except ingest.IngestError as exc:
        return _error(exc)
    return _json_answer(answer, 201 if created else 200)


def _append(run_id: str, payload: DecisionIn, bearer: BearerKey) -> HttpResponse | None:
    """The one-statement append (201), or None when it stored nothing (the full path answers then)."""
    return _stored_first(lambda: ingest.append_decision(run_id, payload, bearer.credentials()), bearer)


def _stored_first(store: Callable[[], Any], bearer: BearerKey,
                  render: Callable[[Any], str] = json.dumps) -> HttpResponse | None:
    """What `store` stored, answered 201 (`render` writes its JSON), or None when it stored nothing, also
    when the database refused it for conflicting writes: the full path answers then."""
    try:
        stored = store()
    except ingest.Busy:
        return None
    if stored is None:
        return None
    bearer.note_use()
    return _json_response(render(stored), 201)


_SUMMARY_FIELDS = tuple(RunSummaryOut.model_fields)


def _run_summary(run: Run) -> str:
    """A `RunSummaryOut`'s JSON as ninja renders it (its encoder writes times to the millisecond), read
    from the run's attributes and the schema's resolvers without validating the values read right there."""
    values = {name: getattr(run, name) for name in _SUMMARY_FIELDS}
    values["started_at"] = RunSummaryOut.resolve_started_at(run)
    values["completed_at"] = RunSummaryOut.resolve_completed_at(run)
    return json.dumps(values, cls=NinjaJSONEncoder)


def _seen_bearer(request) -> BearerKey | None:
    """The request's bearer key (read as ninja's `HttpBearer` reads it, from META: `request.headers` would
    build all the headers first), when this process has found it valid for ingestion before."""
    if header := request.META.get("HTTP_AUTHORIZATION"):
        scheme, *token = header.split(" ")
        if scheme.lower() == "bearer" and (bearer := BearerKey(" ".join(token), "ingest")).seen():
            return bearer
    return None


def storing_first(method: str, schema: type, store: Callable[..., Any],
                  render: Callable[[Any], str] = json.dumps) -> Callable[[Callable], Callable]:
    """What wraps ninja's view of a one-event route (`FIRST`): with a key this process has found valid
    before, a body that is plainly valid (`_plain`) is stored by one statement that also checks the key,
    `store(payload, key, **path)`, and answered 201 before ninja's per-request work (operation lookup,
    authentication, path parameters), about a tenth of what the request costs the web process
    (bench/RESULTS.md). Whatever that statement does not store (a replay, a conflict, an unknown run, a
    key revoked since) goes on to ninja's view exactly as before, which answers every other case."""
    def wrap(view: Callable) -> Callable:
        @wraps(view)
        def first(request, **path):
            if request.method == method and (bearer := _seen_bearer(request)) is not None and (
                    payload := _plain(schema, request.body)) is not None:
                if (answer := _stored_first(lambda: store(payload, bearer.credentials(), **path), bearer,
                                            render)) is not None:
                    return answer
            return view(request, **path)
        return first
    return wrap


def or_the_run_named_by_the_whole_path(view: Callable, run_view: Callable) -> Callable:
    """Wraps ninja's view of a route below a run (framework_site/urls.py). Run ids are the agent's own and
    may hold slashes, so `GET /runs/x/summary` may be run x's summary or the run whose id is `x/summary`.
    The route reads it as the first; where that finds nothing (404: no run x; 405: a route that only takes
    POST) and the whole path names a run, that run is answered (`GET /runs/{run_id}`), as the dashboard's
    pages do. A 405 comes before authentication, so it is always answered as `GET /runs/{run_id}` would be
    (401 without a key, 404 for no such run): whether a run exists is only ever told to a reader."""
    @wraps(view)
    def wrapper(request, **kwargs):
        response = view(request, **kwargs)
        if request.method == "GET" and response.status_code in (404, 405):
            whole = request.path_info.split(RUNS_IN_PATH, 1)[-1]
            if response.status_code == 405 or Run.objects.filter(run_id=whole).exists():
                return run_view(request, run_id=whole)
        return response
    return wrapper


RUNS_IN_PATH = "/runs/"
FIRST = {  # route -> what wraps ninja's view of it: the one-statement writes (runs/ingest.py)
    "runs/<path:run_id>/decisions": storing_first(  # a new decision at the end of its run
        "POST", DecisionIn, lambda payload, key, run_id: ingest.append_decision(run_id, payload, key)),
    "runs/<path:run_id>/decisions/<decision_id>/outcome": storing_first(  # a decision's first outcome
        "PUT", OutcomeIn, lambda payload, key, run_id, decision_id: ingest.record_first_outcome(
            run_id, decision_id, payload, key)),
    "runs/<path:run_id>/problems": storing_first(  # a problem new to its run
        "POST", ProblemIn, lambda payload, key, run_id: ingest.add_new_problem(run_id, payload, key)),
    "runs/<path:run_id>/end": storing_first(  # the end of a running run not folded while idle
        "POST", RunEndIn, lambda payload, key, run_id: ingest.end_pending_run(run_id, payload, key), _run_summary),
    "runs": storing_first(  # a new run
        "POST", RunStartIn, lambda payload, key: ingest.start_new_run(payload, key), _run_summary),
}
_RUN = "runs/<path:run_id>"


def adapted_urls(patterns: list) -> list:
    """ninja's URL patterns of the API, adapted: the routes in `FIRST` wrapped by what goes first on them,
    the routes below a run wrapped by `or_the_run_named_by_the_whole_path`, and each route that ends in a
    path (`runs/<path:run_id>`) after every other, so that it never takes a path meant for a route below
    it (`runs/x/summary` is run x's summary; Django takes the first route that matches). The routes in
    `FIRST`, the hot ones, come first: Django tries the routes in order, and none of them ends in a path."""
    run_view = next(pattern.callback for pattern in patterns if str(pattern.pattern) == _RUN)
    for pattern in patterns:
        route = str(pattern.pattern)
        if (wrap := FIRST.get(route)) is not None:
            pattern.callback = wrap(pattern.callback)
        if route.startswith(_RUN + "/"):
            pattern.callback = or_the_run_named_by_the_whole_path(pattern.callback, run_view)
    return sorted(patterns, key=lambda pattern: (str(pattern.pattern) not in FIRST,
                                                 bool(re.search(r"<path:\w+>$", str(pattern.pattern)))))


def _json_answer(answer: dict, status: int) -> HttpResponse:
    """Rendered as ninja renders a DecisionOut or an ErrorOut (the schema still documents them), without
    validating the answer built right there."""
    return _json_response(json.dumps(answer), status)


def _json_response(content: str, status: int) -> HttpResponse:
    return HttpResponse(content, status=status, content_type="application/json; charset=utf-8")


def _plain(schema: type[T], body: bytes) -> T | None:
    """A one-event request's body (`FIRST`'s schemas), validated in one pydantic-core call, when it provably
    holds nothing the storable checks refuse (`storable_json`) and is valid; else None, and
    `ingest.validate` words every error of the parsed body."""
    try:
        return unchecked_one(schema, storable_json(body))
    except ValueError:  # pydantic's ValidationError is one: the per-field path says what is wrong
        return None


@router.put("/runs/{path:run_id}/decisions/{decision_id}/outcome", auth=ingest_auth,
            response={201: DecisionOut, 200: DecisionOut, **ERRORS},
            openapi_extra=_documented(OutcomeIn), summary="Report (or replace) a decision's outcome")
def outcome_record(request, run_id: str, decision_id: str):
    return _write(lambda: ingest.record_outcome(run_id, decision_id, _json_body(request)))


@router.post("/runs/{path:run_id}/problems", auth=ingest_auth, response={201: ProblemOut, 200: ProblemOut, **ERRORS},
             openapi_extra=_documented(ProblemIn), summary="Report a problem")
def problem_add(request, run_id: str):
    return _write(lambda: ingest.add_problem(run_id, _json_body(request)))


@router.post("/runs/{path:run_id}/end", auth=ingest_auth, response={201: RunSummaryOut, 200: RunSummaryOut, **ERRORS},
             openapi_extra=_documented(RunEndIn), summary="End a run")
def run_end(request, run_id: str):
    return _write(lambda: ingest.end_run(run_id, _json_body(request)))


class _BatchDoc(Schema):
    events: list[dict[str, Any]] = Field(
        description="Events applied in order: {type: run_start|decision|outcome|problem|run_end, run_id, "
        "decision_id?, body}; at most API_MAX_BATCH_EVENTS (default 1000) per batch",
    )


@router.post("/batch", auth=ingest_auth, response={207: BatchOut, **ERRORS}, openapi_extra=_documented(_BatchDoc),
             summary="Report many events at once; answers per event")
def batch(request):
    with _collector_paused():
        return _batch(request)


@contextmanager
def _collector_paused():
    """The cyclic GC off for one batch. Parsing and validating 1,000 events makes ~100,000 containers
    that live until the answer and hold no cycles (reference counting frees them): each collection
    triggered on the way walked them all again, about a quarter of a batch's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _batch(request):
    try:  # the common case: nothing in the body the per-field storable checks could refuse
        data, checked = storable_json(request.body), True
    except ValueError:
        data, checked = _json_body(request), False
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list):
        return Status(422, {"detail": "Invalid batch: events: expected a JSON array of events.",
                            "errors": [{"loc": ["events"], "msg": "expected an array"}]})
    limit = settings.API_MAX_BATCH_EVENTS
    if len(events) > limit:
        return Status(413, {"detail": f"Batch has {len(events)} events; the limit is {limit} events per batch "
                                      "(API_MAX_BATCH_EVENTS). Split it into smaller batches.", "errors": []})
    successes, errors = [], []
    for index, (status, detail) in enumerate(ingest.apply_events(events, checked=checked)):
        if status < 300:
            successes.append({"index": index, "status": status})
        else:
            errors.append({"index": index, "status": status, "detail": detail})
    # Rendered as ninja renders a BatchOut, without validating its up to 1,000 items one by one (the
    # schema still documents it): they are built right above.
    return HttpResponse(json.dumps({"successes": successes, "errors": errors}), status=207,
                        content_type="application/json; charset=utf-8")


# --- reads -----------------------------------------------------------------------------------------


def _get_run(run_id: str) -> Run:
    run = Run.objects.filter(run_id=run_id).first()
    if run is None:
        raise HttpError(404, f"Run '{run_id}' not found.")
    return run


class RunFilters(Schema):
    goal_id: str | None = None
    status: RunStatus | None = None
    node_id: str | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = None


def _encode_cursor(run: Run) -> str:
    raw = json.dumps([run.started_at.isoformat(), run.pk]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        started, pk = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(started), int(pk)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise HttpError(422, "cursor: not a cursor this API gave out; use next_cursor from the previous page.") from None


@router.get("/runs", response={200: RunPageOut, **ERRORS}, summary="List runs, newest first")
def run_list(request, filters: Query[RunFilters]):
    runs = Run.objects.all()
    if filters.goal_id is not None:
        runs = runs.for_goal(filters.goal_id)
    if filters.status is not None:
        runs = runs.with_status(filters.status.value)
    if filters.node_id is not None:
        runs = runs.touching_node(filters.node_id)
    count = runs.count()
    if filters.cursor:
        started, pk = _decode_cursor(filters.cursor)
        runs = runs.filter(Q(started_at__lt=started) | Q(started_at=started, pk__lt=pk))
    page = list(runs.newest_first()[: filters.limit + 1])
    more = len(page) > filters.limit
    page = page[: filters.limit]
    return {"items": page, "next_cursor": _encode_cursor(page[-1]) if more else None, "count": count}


@router.get("/runs/{path:run_id}", response={200: dict, **ERRORS}, summary="A run in the original storage JSON format")
def run_detail(request, run_id: str):
    return HttpResponse(run_to_json(_get_run(run_id)), content_type="application/json")


@router.get("/runs/{path:run_id}/summary", response={200: dict, **ERRORS}, summary="RunSummary")
def run_summary_detail(request, run_id: str):
    return run_summary(_get_run(run_id)).model_dump(mode="json")


@router.get("/runs/{path:run_id}/trace", response={200: dict, **ERRORS}, summary="The decision trace")
def run_trace(request, run_id: str):
    return {"trace": decision_trace(_get_run(run_id))}


@router.get("/runs/{path:run_id}/failure-analysis", response={200: dict, **ERRORS},
            summary="Why the run failed (null unless it failed)")
def run_failure_analysis(request, run_id: str):
    analysis = heuristics.analyze_failure(failure_analysis_run(_get_run(run_id)))
    return {"analysis": analysis.to_dict() if analysis is not None else None}


@router.get("/goals", response={200: dict, **ERRORS}, summary="Every goal id")
def goal_list(request):
    goals = Run.objects.order_by("goal_id").values_list("goal_id", flat=True).distinct()
    return {"goals": list(goals)}


@router.get("/goals/{path:goal_id}/runs", response={200: dict, **ERRORS}, summary="The goal's run summaries, index order")
def goal_runs(request, goal_id: str):
    runs = Run.objects.for_goal(goal_id).in_index_order()
    return {"runs": [summary.model_dump(mode="json") for summary in summaries_for(runs)]}


@router.get("/goals/{path:goal_id}/patterns", response={200: dict, **ERRORS}, summary="Patterns across the goal's runs")
def goal_patterns(request, goal_id: str):
    patterns = queries.goal_patterns(goal_id)
    return {"patterns": patterns.to_dict() if patterns is not None else None}


@router.get("/goals/{path:goal_id}/improvements", response={200: dict, **ERRORS}, summary="Improvement suggestions")
def goal_improvements(request, goal_id: str):
    return {"suggestions": heuristics.suggest_improvements(queries.goal_patterns(goal_id))}


@router.get("/failures/recent", response={200: dict, **ERRORS},
            summary="The first `limit` failed runs in index order (the oldest, as the original)")
def recent_failures(request, limit: int = Query(10, ge=1, le=500)):
    runs = Run.objects.failed().in_index_order()[:limit]
    return {"runs": [summary.model_dump(mode="json") for summary in summaries_for(runs)]}


@router.get("/compare", response={200: dict, **ERRORS}, summary="Compare two runs")
def compare(request, run_1: str, run_2: str):
    first, second = (Run.objects.filter(run_id=run_id).first() for run_id in (run_1, run_2))
    return heuristics.compare_runs(
        run_to_framework(first) if first is not None else None,
        run_to_framework(second) if second is not None else None,
    )


@router.get("/nodes/{path:node_id}/performance", response={200: dict, **ERRORS}, summary="One node's record")
def node_performance(request, node_id: str):
    return queries.node_performance(node_id)


@router.get("/stats", response={200: dict, **ERRORS}, summary="Totals across every run")
def stats(request):
    return queries.stats()
