"""The run-inspection pages. Each view renders the whole page, or only the partial htmx asked for."""

import csv
import json
import re
from functools import wraps

from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django_htmx.http import HttpResponseStopPolling

from . import pages
from .models import Run, RunStatus


def _partial(request) -> bool:
    # A history-restore request wants the whole page even though htmx sent it.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _render(request, template, partial, context, status=200, push_params=None):
    name = f"{template}#{partial}" if _partial(request) else template
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    if push_params is not None and _partial(request):
        # The address bar gets the tidy URL (only the filters in use), not every empty form field.
        response["HX-Push-Url"] = request.path + (f"?{urlencode(push_params)}" if push_params else "")
    return response


def bad_request_page(view):
    """Bad query parameters answer 400 with the message naming the field, never a 500."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except pages.BadRequest as exc:
            return render(request, "runs/bad_request.html", {"message": str(exc)}, status=400)

    return wrapper


def _run_or_404(run_id: str) -> Run:
    return get_object_or_404(Run.objects.defer("extra"), run_id=run_id)


RUNS_PREFIX = "/runs/"


def or_the_run_named_by_the_whole_path(*, visits: bool):
    """Run ids are the agent's own and may hold slashes, so `/runs/x/timeline/` may be run x's timeline or
    the page of a run whose id is `x/timeline`. The route reads it as the first. The page of the run the
    whole path names is shown instead where the route finds nothing (no run x, no such decision) and, with
    `visits`, for a visit (not an htmx request): the timeline and header routes only answer htmx."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            whole = request.path_info.removeprefix(RUNS_PREFIX).removesuffix("/")

            def named() -> bool:
                return request.path_info.startswith(RUNS_PREFIX) and Run.objects.filter(run_id=whole).exists()

            if visits and not _partial(request) and named():
                return run_detail(request, whole)
            try:
                return view(request, *args, **kwargs)
            except Http404:
                if named():
                    return run_detail(request, whole)
                raise

        return wrapper

    return decorate


def goal_list(request):
    return render(request, "runs/goal_list.html", {"goals": pages.goals_overview(), "limit": pages.GOALS_LIMIT,
                                                   "worst_node_runs": pages.WORST_NODE_RUNS})


@bad_request_page
def run_list(request):
    filters = pages.RunFilters.from_query(request.GET)
    cursor = request.GET.get("cursor", "").strip()
    count = "all" if pages.count_all_from_query(request.GET) else ""
    page = pages.run_page(filters, cursor, count_all=bool(count))
    context = {"filters": filters, "page": page, "statuses": RunStatus.choices, "sorts": pages.SORTS,
               "first_page": bool(cursor), "cursor": cursor}
    return _render(request, "runs/run_list.html", "run-table", context,
                   push_params=filters.as_params(cursor=cursor, count=count))


@bad_request_page
def run_list_csv(request):
    filters = pages.RunFilters.from_query(request.GET)
    response = StreamingHttpResponse(_csv_rows(pages.runs_for_export(filters)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="runs.csv"'
    return response


CSV_HEADER = ["run_id", "goal_id", "status", "started_at", "completed_at", "duration_ms", "decisions",
              "successes", "failures", "problems", "total_tokens", "total_latency_ms", "narrative"]


class _Echo:
    def write(self, value):
        return value


def _cell(value):
    # Spreadsheets run cells starting with these as formulas; agent text must stay text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _csv_rows(runs):
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for run in runs.iterator(chunk_size=2000):
        yield writer.writerow([_cell(v) for v in (
            run.run_id, run.goal_id, run.status, run.started_at.isoformat(),
            run.completed_at.isoformat() if run.completed_at else "", run.duration_ms, run.decision_count,
            run.success_count, run.failure_count, run.problem_count, run.total_tokens, run.total_latency_ms,
            run.narrative)])


@bad_request_page
def run_detail(request, run_id):
    run = _run_or_404(run_id)
    filters = pages.TimelineFilters.from_query(request.GET)
    context = {"run": run, "filters": filters, "chunk": pages.timeline_chunk(run, filters),
               "problems": pages.run_problems(run)}
    return _render(request, "runs/run_detail.html", "timeline", context, push_params=filters.as_params(after=filters.after))


@or_the_run_named_by_the_whole_path(visits=True)
@bad_request_page
def run_timeline(request, run_id):
    """The next chunk of the timeline ("load more"), or the live tail of a running run (polled)."""
    run = _run_or_404(run_id)
    filters = pages.TimelineFilters.from_query(request.GET)
    if not _partial(request):
        return redirect(f"{reverse('runs:detail', args=[run.run_id])}?{urlencode(filters.as_params(after=filters.after))}")
    chunk = pages.timeline_chunk(run, filters)
    response = render(request, "runs/run_detail.html#timeline-items", {"run": run, "filters": filters, "chunk": chunk})
    if request.GET.get("live") and not run.is_running and not chunk.has_more:
        response.status_code = HttpResponseStopPolling.status_code
    return response


@or_the_run_named_by_the_whole_path(visits=True)
def run_header(request, run_id):
    """The run's header, polled every 2 s while the run is running; 286 stops the polling."""
    run = _run_or_404(run_id)
    response = render(request, "runs/run_detail.html#run-header", {"run": run})
    if not run.is_running:
        response.status_code = HttpResponseStopPolling.status_code
    return response


@or_the_run_named_by_the_whole_path(visits=False)
def decision_detail(request, run_id, decision_id):
    run = _run_or_404(run_id)
    decision = get_object_or_404(run.decisions.all(), decision_id=decision_id)
    options, matched = pages.option_cards(decision)
    problems = list(run.problems.filter(decision_id=decision.decision_id)[:50])
    context = {"run": run, "decision": decision, "options": options, "chosen_matched": matched, "problems": problems}
    return _render(request, "runs/decision_detail.html", "option-comparison", context)


def run_export(request, run_id):
    from .export import run_to_json  # written alongside the import path; imported here only when used

    run = _run_or_404(run_id)
    payload = run_to_json(run)
    body = payload if isinstance(payload, str) else json.dumps(payload, indent=2, ensure_ascii=False)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", run.run_id)[:150] or "run"
    response["Content-Disposition"] = f'attachment; filename="{safe_name}.json"'
    return response


@bad_request_page
def run_compare(request):
    chosen = [v.strip() for v in request.GET.getlist("run") if v.strip()]
    if chosen:  # the runs list's "compare selected" form
        if len(chosen) != 2:
            raise pages.BadRequest(f"run: select exactly two runs to compare, got {len(chosen)}")
        return redirect(f"{reverse('runs:compare')}?{urlencode({'a': chosen[0], 'b': chosen[1]})}")
    a, b = request.GET.get("a", "").strip(), request.GET.get("b", "").strip()
    if not request.GET and Run.objects.filter(run_id="compare").exists():
        return run_detail(request, "compare")  # a run whose id is "compare" (see the decorator above)
    if not (a and b):
        return render(request, "runs/run_compare.html", {"a": a, "b": b})
    runs = {r.run_id: r for r in Run.objects.filter(run_id__in=[a, b]).defer("input_data", "output_data", "extra")}
    missing = [f"{name}: no run with id {value!r}" for name, value in (("a", a), ("b", b)) if value not in runs]
    if missing:
        return render(request, "runs/run_compare.html", {"a": a, "b": b, "errors": missing}, status=404)
    start = request.GET.get("start", "0").strip()
    if not start.isdigit():
        raise pages.BadRequest(f"start: expected a decision position (a whole number), got {start!r}")
    run_a, run_b = runs[a], runs[b]
    divergence = pages.first_divergence(run_a, run_b)
    rows, more = pages.aligned_rows(run_a, run_b, int(start), divergence.seq if divergence else None)
    context = {"a": a, "b": b, "run_a": run_a, "run_b": run_b, "divergence": divergence, "rows": rows,
               "more": more, "start": int(start), "jump_start": max(0, divergence.seq - 3) if divergence else 0, "window": pages.COMPARE_WINDOW,
               "differences": pages.compare_differences(run_a, run_b, divergence),
               "metrics": pages.compare_metrics(run_a, run_b)}
    return render(request, "runs/run_compare.html", context)


@bad_request_page
def goal_detail(request, goal_id):
    window = pages.goal_window_from_query(request.GET)
    summary = pages.goal_summary(goal_id)
    if summary is None:
        return render(request, "runs/bad_request.html", {"message": f"goal_id: no runs for goal {goal_id!r}"}, status=404)
    nodes, points = pages.goal_nodes_and_points(goal_id, window=window)
    context = {
        "goal_id": goal_id, "summary": summary, "daily": pages.goal_daily(goal_id, summary["first_started"], summary["last_started"]),
        "failures": pages.goal_failures(goal_id, window=window), "nodes": nodes,
        "points": points, "truncated": pages.goal_window_truncated(summary, window),
        "window": window, "wider": [w for w in pages.GOAL_WINDOWS if w > window and w < summary["runs"] * 2][:1],
    }
    return render(request, "runs/goal_detail.html", context)
