"""Queries behind the run-inspection pages.

Every function here issues a fixed, small number of SQL queries whatever the data size: counts come from
the denormalised counters on `Run`, aggregates are GROUP BY queries, lists are keyset-paginated and long
timelines are read in chunks. Views stay thin and call these.
"""

import base64
import binascii
import json
import operator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from functools import reduce
from typing import Any

from django.db import connection
from django.db.models import Count, Exists, F, Max, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .models import Decision, GoalDay, Problem, Run, RunStatus

PAGE_SIZE = 50
COUNT_LIMIT = 10_000
# Text search. A newest- (or oldest-) first page of matches stops reading once it is full, so a common
# phrase costs a page's worth of runs, not one per match; the total is counted only when the user asks
# (`count=all`). PostgreSQL has a trigram index per searched column (migration 0005) for rare phrases;
# counting reads up to SEARCH_BRANCH_LIMIT matches per column. SQLite has no such index: the search covers
# the latest SEARCH_WINDOW runs.
SEARCH_BRANCH_LIMIT = 1_000
SEARCH_WINDOW = 5_000
TIMELINE_CHUNK = 100
COMPARE_WINDOW = 200
GOALS_LIMIT = 200
SPARKLINE_DAYS = 30
GOAL_CHART_DAYS = 90
# Goal-page aggregates over decisions read the goal's latest runs only, so a goal with 100,000 runs
# answers as fast as a small one; the page says when the window cut runs off.
# 500 by default keeps the page within tens of milliseconds at any size; `?window=` widens it to one of
# GOAL_WINDOWS (slower, said so on the page).
GOAL_ANALYTICS_RUNS = 500
GOAL_WINDOWS = (500, 2_000, 10_000)
DECISION_POINT_ROWS = 400
GOAL_NODES = 20  # the goal page's node table: the worst nodes by failure rate
# The overview's "worst node" reads the decisions of the latest runs across all goals: a bounded cost.
WORST_NODE_RUNS = 1_000


class BadRequest(Exception):
    """Bad input from the query string; the message names the field and the problem."""


# --- runs list: filters, sorting, keyset cursor ---------------------------------------------------

SORTS = {
    # key: (label, field, descending)
    "newest": ("Newest first", "started_at", True),
    "oldest": ("Oldest first", "started_at", False),
    "most_decisions": ("Most decisions", "decision_count", True),
    "most_failures": ("Most failed decisions", "failure_count", True),
    "most_tokens": ("Most tokens", "total_tokens", True),
    "most_problems": ("Most problems", "problem_count", True),
}
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def _is_date(raw: str) -> bool:
    return len(raw) == 10 and raw[4] == "-" and raw[7] == "-"


def _safe_parse(parser, raw: str):
    try:
        return parser(raw)
    except ValueError:  # well-formed but impossible, like 2025-13-45
        return None


def _parse_when(name: str, raw: str, *, end_of_day: bool) -> datetime:
    """A date (whole day) or an ISO datetime; naive times are UTC, as the API treats them."""
    value = None if _is_date(raw) else _safe_parse(parse_datetime, raw)
    if value is None:
        day = _safe_parse(parse_date, raw)
        if day is None:
            raise BadRequest(f"{name}: expected a date like 2025-01-31 or a datetime like 2025-01-31T14:00, got {raw!r}")
        value = datetime.combine(day + timedelta(days=1) if end_of_day else day, time.min)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=dt_timezone.utc)
    return value


@dataclass
class RunFilters:
    goal_id: str = ""
    status: str = ""
    node_id: str = ""
    q: str = ""
    since: str = ""
    until: str = ""
    has_problems: str = ""
    sort: str = "newest"
    since_at: datetime | None = None
    until_at: datetime | None = None

    FIELDS = ("goal_id", "status", "node_id", "q", "since", "until", "has_problems", "sort")

    @classmethod
    def from_query(cls, params) -> "RunFilters":
        values = {name: params.get(name, "").strip() for name in cls.FIELDS}
        filters = cls(**{**values, "sort": values["sort"] or "newest"})
        if filters.status and filters.status not in RunStatus.values:
            raise BadRequest(f"status: must be one of {', '.join(RunStatus.values)}, got {filters.status!r}")
        if filters.sort not in SORTS:
            raise BadRequest(f"sort: must be one of {', '.join(SORTS)}, got {filters.sort!r}")
        if filters.has_problems and filters.has_problems.lower() not in TRUE_WORDS | FALSE_WORDS:
            raise BadRequest(f"has_problems: must be 1 or 0, got {filters.has_problems!r}")
        if filters.since:
            filters.since_at = _parse_when("since", filters.since, end_of_day=False)
        if filters.until:
            filters.until_at = _parse_when("until", filters.until, end_of_day=True)
        if len(filters.q) > 500:
            raise BadRequest("q: the search text is longer than 500 characters")
        return filters

    def apply(self, runs, *, search: bool = True):
        """`runs` narrowed by every filter (the text search too, unless `search` is False)."""
        if self.goal_id:
            runs = runs.for_goal(self.goal_id)
        if self.status:
            runs = runs.with_status(self.status)
        if self.node_id:
            runs = runs.touching_node(self.node_id)
        if self.since_at:
            runs = runs.filter(started_at__gte=self.since_at)
        if self.until_at:
            # A plain date means "through that whole day"; a datetime is taken as given.
            runs = runs.filter(started_at__lt=self.until_at) if _is_date(self.until) \
                else runs.filter(started_at__lte=self.until_at)
        if self.has_problems:
            runs = runs.filter(problem_count__gt=0) if self.has_problems.lower() in TRUE_WORDS \
                else runs.filter(problem_count=0)
        if self.q and search:
            runs = _text_search(runs, self.q)
        return runs

    @property
    def search_window(self) -> int | None:
        """How many of the latest runs a text search covers, when it does not cover them all."""
        return SEARCH_WINDOW if self.q and connection.vendor != "postgresql" else None

    def as_params(self, **overrides) -> dict[str, str]:
        """The non-empty filters as query parameters (for links that keep the current filters)."""
        params = {name: getattr(self, name) for name in self.FIELDS}
        params.update(overrides)
        if params.get("sort") == "newest":
            params.pop("sort")
        return {k: v for k, v in params.items() if v}

    @property
    def active(self) -> bool:
        return any(getattr(self, name) for name in self.FIELDS if name != "sort") or self.sort != "newest"


def _search_branches(text: str) -> list:
    """One subquery of matching run ids per indexed column, each stopping at SEARCH_BRANCH_LIMIT rows."""
    decisions = Decision.objects.order_by()
    branches = [
        decisions.filter(intent__icontains=text).values("run_id"),
        decisions.filter(reasoning__icontains=text).values("run_id"),
        decisions.filter(outcome_error__icontains=text).values("run_id"),
        Problem.objects.order_by().filter(description__icontains=text).values("run_id"),
        Run.objects.order_by().filter(narrative__icontains=text).values("pk"),
        Run.objects.order_by().filter(run_id__icontains=text).values("pk"),
    ]
    return [branch[:SEARCH_BRANCH_LIMIT] for branch in branches]


def search_truncated(text: str) -> bool:
    """Whether the PostgreSQL search may have stopped short (some column had SEARCH_BRANCH_LIMIT matches or
    more; counted over all columns, so it errs towards saying so). One query, as cheap as the search."""
    branches = _search_branches(text)
    return branches[0].union(*branches[1:], all=True).count() >= SEARCH_BRANCH_LIMIT


def _column_matches(text: str) -> list:
    """One condition per searched column, each true for a run with `text` in that column: the run's id or
    narrative, a decision's intent, reasoning or error, a problem's description (case-insensitive)."""
    def in_decisions(name):
        return Exists(Decision.objects.filter(run_id=OuterRef("pk"), **{f"{name}__icontains": text}))

    return [Q(narrative__icontains=text), Q(run_id__icontains=text),
            in_decisions("intent"), in_decisions("reasoning"), in_decisions("outcome_error"),
            Exists(Problem.objects.filter(run_id=OuterRef("pk"), description__icontains=text))]


def _in_search_window(runs):
    """`runs` among the latest SEARCH_WINDOW runs, as a range on `run_started_idx` (one query finds where
    it starts), so a newest-first scan reads the index in order and stops as soon as its page is full."""
    start = list(Run.objects.newest_first().values_list("started_at", "pk")[SEARCH_WINDOW - 1:SEARCH_WINDOW])
    if not start:
        return runs
    started_at, pk = start[0]
    return runs.filter(started_at__gte=started_at).exclude(started_at=started_at, pk__lt=pk)


def _text_search(runs, text: str):
    """Runs whose intent, reasoning, error (of a decision), narrative, id or problem contains `text`.

    PostgreSQL: a UNION of one small subquery per searched column, each answered by its trigram index
    (migration 0005) and capped at SEARCH_BRANCH_LIMIT rows, so a common word costs no more than the cap
    (the list then says its count is a lower bound). This serves the full count and the lists sorted by a
    counter; pages sorted by start time come from `_matches_in_order`, and the CSV export tests every run
    (`runs_for_export`), both exactly.
    SQLite has no such index: the search covers the latest SEARCH_WINDOW runs, one EXISTS per run over its
    decisions; read newest first, the page's query stops once the page is full. The page says so.
    """
    if connection.vendor == "postgresql":
        branches = _search_branches(text)
        return runs.filter(pk__in=branches[0].union(*branches[1:]))
    in_decisions = Decision.objects.filter(
        Q(intent__icontains=text) | Q(reasoning__icontains=text) | Q(outcome_error__icontains=text),
        run_id=OuterRef("pk"))
    in_problems = Problem.objects.filter(description__icontains=text, run_id=OuterRef("pk"))
    return _in_search_window(runs).filter(
        Q(narrative__icontains=text) | Q(run_id__icontains=text) | Exists(in_decisions) | Exists(in_problems))


def _matches_in_order(runs, text: str, order: tuple[str, str], limit: int):
    """The first `limit` of `runs` in `order` (by start time) that contain `text`, on PostgreSQL: exact,
    whatever the number of matches. One subquery per searched column, each its first `limit` runs in that
    order, so the planner picks per column either the trigram index (a rare phrase: few rows) or a walk
    down `run_started_idx` checking each run's decisions until `limit` match (a common phrase: a few
    hundred runs); the UNION holds at most 6 x `limit` ids."""
    branches = [runs.filter(match).order_by(*order).values("pk")[:limit] for match in _column_matches(text)]
    return Run.objects.filter(pk__in=branches[0].union(*branches[1:])).order_by(*order)[:limit]


def _encode_cursor(sort: str, value: Any, pk: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([sort, value, pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, value, pk = json.loads(raw)
        if cursor_sort != sort or not isinstance(pk, int):
            raise ValueError
        if SORTS[sort][1] == "started_at":
            value = datetime.fromisoformat(value)
        elif not isinstance(value, int):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("cursor: not a cursor from this list (it may belong to another sort order); start from the first page") from None
    return value, pk


@dataclass
class RunPage:
    runs: list
    next_cursor: str | None
    count: int
    count_capped: bool  # `count` is a lower bound ("50+")
    # A text search's count, not asked for: what the pages seen so far show; `count=all` counts the rest.
    count_deferred: bool = False
    # PostgreSQL's capped search stopped at SEARCH_BRANCH_LIMIT matches in some column: the count is a lower
    # bound and, unless `all_listed` (pages sorted by start time are found exactly), runs may be missing.
    search_stopped: bool = False
    all_listed: bool = True


def count_all_from_query(params) -> bool:
    """Whether the user asked for a text search's full count (`?count=all`)."""
    raw = params.get("count", "").strip()
    if raw not in ("", "all"):
        raise BadRequest(f"count: must be all, got {raw!r}")
    return raw == "all"


def _after_cursor(runs, cursor: str, sort: str):
    value, pk = _decode_cursor(cursor, sort)
    _label, field_name, descending = SORTS[sort]
    if descending:
        return runs.filter(Q(**{f"{field_name}__lt": value}) | Q(**{field_name: value, "pk__lt": pk}))
    return runs.filter(Q(**{f"{field_name}__gt": value}) | Q(**{field_name: value, "pk__gt": pk}))


def _order(sort: str) -> tuple[str, str]:
    """The list's ORDER BY for `sort`, the pk breaking ties in the same direction (what cursors rely on)."""
    _label, field_name, descending = SORTS[sort]
    return (f"-{field_name}", "-pk") if descending else (field_name, "pk")


def _page_rows(runs, filters: RunFilters, cursor: str, page_size: int, exact_search: bool):
    """The page's runs (at most `page_size`) and the cursor of the next page, if there is one."""
    order = _order(filters.sort)
    if cursor:
        runs = _after_cursor(runs, cursor, filters.sort)
    if exact_search:
        runs = _matches_in_order(runs, filters.q, order, page_size + 1)
    else:
        runs = runs.order_by(*order)[: page_size + 1]
    rows = list(runs.defer("input_data", "output_data", "extra", "edges_traversed"))
    if len(rows) <= page_size:
        return rows, None
    rows = rows[:page_size]
    return rows, _encode_cursor(filters.sort, getattr(rows[-1], SORTS[filters.sort][1]), rows[-1].pk)


def run_page(filters: RunFilters, cursor: str = "", *, page_size: int | None = None,
             count_all: bool = False) -> RunPage:
    """One page of the runs list and how many runs match.

    Without a text search: 2 queries, the page and a count bounded at COUNT_LIMIT. With one, the page
    alone: read in the list's order, it stops once full, so its cost follows the page and not the number
    of runs or matches. Its count is then what the pages so far show: exact when everything fitted,
    otherwise a lower bound ("50+") with an offer to count them all (`count_all`: a count bounded by
    SEARCH_WINDOW on SQLite, SEARCH_BRANCH_LIMIT matches per column on PostgreSQL).
    """
    page_size = page_size or PAGE_SIZE
    postgres = connection.vendor == "postgresql"
    exact_search = bool(filters.q) and postgres and SORTS[filters.sort][1] == "started_at"
    runs = filters.apply(Run.objects.all(), search=not exact_search)
    rows, next_cursor = _page_rows(runs, filters, cursor, page_size, exact_search)
    # The capped search (a full count, or any other sort) may have stopped short.
    stopped = bool(filters.q) and postgres and (count_all or not exact_search) and search_truncated(filters.q)
    all_listed = exact_search or not stopped
    # Runs the pages so far have shown: this one, and before a cursor at least the full page that led here.
    seen = len(rows) + (page_size if cursor else 0)
    if filters.q and not count_all:
        more = bool(next_cursor or cursor)
        return RunPage(rows, next_cursor, seen, more, count_deferred=more, search_stopped=stopped,
                       all_listed=all_listed)
    if (rolled_up := _rollup_count(filters)) is not None:
        return RunPage(rows, next_cursor, rolled_up, False)
    if exact_search:
        runs = filters.apply(Run.objects.all())
    bounded_count = runs.order_by().values("pk")[: COUNT_LIMIT + 1].count()
    count = min(bounded_count, COUNT_LIMIT)
    if stopped:  # a capped count may come out below what the exact pages list: the larger bound holds
        count = max(count, seen)
    return RunPage(rows, next_cursor, count, bounded_count > COUNT_LIMIT or stopped,
                   search_stopped=stopped, all_listed=all_listed)


# The statuses the goal-day rollups count (`GoalDay` columns); any status at all is its `runs` column.
_ROLLED_UP_STATUSES = {"": "runs", RunStatus.COMPLETED: "completed", RunStatus.FAILED: "failed",
                       RunStatus.RUNNING: "running"}


def _rollup_count(filters: RunFilters) -> int | None:
    """The exact number of matching runs from the goal-day rollups (`GoalDay`, one row per goal and day),
    when the only filters are a goal and a status they count; None otherwise. Counting the runs themselves
    reads one index entry per match (up to COUNT_LIMIT): the unfiltered list and a busy goal's failures
    cost 10x more on a 100x store; this reads one row per goal and day, and is exact beyond COUNT_LIMIT."""
    if any(getattr(filters, name) for name in filters.FIELDS if name not in ("goal_id", "status", "sort")):
        return None
    if (column := _ROLLED_UP_STATUSES.get(filters.status)) is None:
        return None  # stuck, cancelled: counted in `runs` only
    days = GoalDay.objects.filter(goal_id=filters.goal_id) if filters.goal_id else GoalDay.objects.all()
    return days.aggregate(total=Sum(column))["total"] or 0


def runs_for_export(filters: RunFilters):
    """Every run the list matches, in its order, for the CSV download (streamed). A text search on
    PostgreSQL is exact here: the capped search behind the list's count would silently stop at
    SEARCH_BRANCH_LIMIT matches per column, so the export tests every run instead (one pass, as a download
    may take). SQLite's search covers its window, as the list says."""
    if filters.q and connection.vendor == "postgresql":
        runs = filters.apply(Run.objects.all(), search=False).filter(reduce(operator.or_, _column_matches(filters.q)))
    else:
        runs = filters.apply(Run.objects.all())
    return runs.order_by(*_order(filters.sort)).defer("input_data", "output_data", "extra")


# --- goals overview -------------------------------------------------------------------------------


def _days(end: date, count: int) -> list[date]:
    return [end - timedelta(days=count - 1 - i) for i in range(count)]


def _latest_started(goal_id, **filters):
    """The goal's latest started_at (with `filters`), as a subquery that reads one index entry."""
    return Subquery(Run.objects.filter(goal_id=goal_id, **filters).order_by("-started_at").values("started_at")[:1])


def _rollup_totals():
    return {name: Coalesce(Sum(name), 0) for name in ("runs", "completed", "failed", "running")}


def goals_overview() -> list[dict]:
    """Every goal (up to GOALS_LIMIT, most recently active first) with counts, trend and worst node.

    Counts and the trend come from the per-goal, per-day rollup (`GoalDay`), so the cost is goals x days,
    not runs; the latest run and latest failure of each goal are one index entry each. Three queries in
    all: per goal, per (goal, day) for the sparkline, and per (goal, node) over the decisions of the
    latest WORST_NODE_RUNS runs.
    """
    goals = list(
        GoalDay.objects.values("goal_id")
        .annotate(**_rollup_totals())
        .filter(runs__gt=0)
        .annotate(last_started=_latest_started(OuterRef("goal_id")),
                  last_failure=_latest_started(OuterRef("goal_id"), status=RunStatus.FAILED))
        .order_by("-last_started", "goal_id")[:GOALS_LIMIT]
    )
    if not goals:
        return []
    goal_ids = [g["goal_id"] for g in goals]
    today = timezone.now().date()
    days = _days(today, SPARKLINE_DAYS)
    daily: dict[tuple[str, date], GoalDay] = {
        (row.goal_id, row.day): row for row in GoalDay.objects.filter(goal_id__in=goal_ids, day__gte=days[0])
    }
    worst: dict[str, tuple[str, float]] = {}
    for row in (
        Decision.objects.filter(run__in=Run.objects.newest_first().values("pk")[:WORST_NODE_RUNS], run__goal_id__in=goal_ids)
        .values("run__goal_id", "node_id")
        .annotate(total=Count("pk"), failed=Count("pk", filter=Q(outcome_success=False)))
        .filter(failed__gt=0)
        .order_by()
    ):
        rate = row["failed"] / row["total"]
        current = worst.get(row["run__goal_id"])
        if current is None or rate > current[1]:
            worst[row["run__goal_id"]] = (row["node_id"], rate)
    for goal in goals:
        ended = goal["runs"] - goal["running"]
        goal["success_rate"] = goal["completed"] / ended if ended else None
        goal["trend"] = [
            (day, (r.completed / r.ended) if (r := daily.get((goal["goal_id"], day))) and r.ended else None,
             r.runs if r else 0)
            for day in days
        ]
        goal["worst_node"], goal["worst_node_rate"] = worst.get(goal["goal_id"], (None, None))
    return goals


# --- run detail: header, problems, timeline chunks --------------------------------------------------


@dataclass
class TimelineFilters:
    failed_only: bool = False
    node_id: str = ""
    after: int | None = None

    @classmethod
    def from_query(cls, params) -> "TimelineFilters":
        after = params.get("after", "").strip()
        if after and not after.lstrip("-").isdigit():
            raise BadRequest(f"after: expected a decision position (a whole number), got {after!r}")
        failed = params.get("failed", "").strip().lower()
        if failed and failed not in TRUE_WORDS | FALSE_WORDS:
            raise BadRequest(f"failed: must be 1 or 0, got {failed!r}")
        return cls(failed_only=failed in TRUE_WORDS, node_id=params.get("node", "").strip(),
                   after=int(after) if after else None)

    def as_params(self, **overrides) -> dict[str, str]:
        params = {"failed": "1" if self.failed_only else "", "node": self.node_id}
        params.update(overrides)
        return {k: str(v) for k, v in params.items() if v not in ("", None)}

    @property
    def active(self) -> bool:
        return self.failed_only or bool(self.node_id)


@dataclass
class TimelineChunk:
    decisions: list
    has_more: bool
    last_seq: int | None
    problems_by_decision: dict = field(default_factory=dict)


def timeline_chunk(run: Run, filters: TimelineFilters, *, size: int | None = None) -> TimelineChunk:
    """Up to `size` decisions after `filters.after`, with the problems pointing at them (2 queries)."""
    size = size or TIMELINE_CHUNK
    decisions = run.decisions.all()
    if filters.failed_only:
        decisions = decisions.failed()
    if filters.node_id:
        decisions = decisions.filter(node_id=filters.node_id)
    if filters.after is not None:
        decisions = decisions.filter(seq__gt=filters.after)
    rows = list(
        decisions.order_by("seq", "pk").only(
            "run_id", "decision_id", "seq", "timestamp", "node_id", "intent", "decision_type",
            "chosen_option_id", "chosen_description", "outcome_success", "outcome_error",
            "outcome_tokens", "outcome_latency_ms", "outcome_summary",
        )[: size + 1]
    )
    has_more = len(rows) > size
    rows = rows[:size]
    problems: dict[str, list] = {}
    if rows and run.problem_count:
        for problem in run.problems.filter(decision_id__in=[d.decision_id for d in rows]):
            problems.setdefault(problem.decision_id, []).append(problem)
    for decision in rows:
        decision.problem_list = problems.get(decision.decision_id, [])
    last_seq = rows[-1].seq if rows else filters.after
    return TimelineChunk(rows, has_more, last_seq, problems)


def run_problems(run: Run, *, limit: int = 50) -> list:
    """The run's problems, each with the position of the decision it points at (None if none matches)."""
    if not run.problem_count:
        return []
    seq = Decision.objects.filter(run=run, decision_id=OuterRef("decision_id")).values("seq")[:1]
    return list(run.problems.annotate(decision_seq=Subquery(seq))[:limit])


# --- option comparison ------------------------------------------------------------------------------


def option_cards(decision: Decision) -> tuple[list[dict], bool]:
    """The options as display cards, and whether the chosen id matches one of them."""
    cards, matched = [], False
    for index, option in enumerate(decision.options or []):
        if not isinstance(option, dict):
            cards.append({"index": index, "malformed": option, "chosen": False})
            continue
        chosen = bool(decision.chosen_option_id) and str(option.get("id")) == decision.chosen_option_id
        matched = matched or chosen
        confidence = option.get("confidence")
        numeric = isinstance(confidence, (int, float)) and not isinstance(confidence, bool)
        cards.append({
            "index": index,
            "id": option.get("id"),
            "description": option.get("description", ""),
            "action_type": option.get("action_type", ""),
            "action_params": option.get("action_params") or {},
            "pros": [p for p in option.get("pros") or []] if isinstance(option.get("pros"), list) else [option.get("pros")],
            "cons": [c for c in option.get("cons") or []] if isinstance(option.get("cons"), list) else [option.get("cons")],
            "confidence": confidence,
            "confidence_value": max(0.0, min(1.0, float(confidence))) if numeric else None,
            "chosen": chosen,
        })
    return cards, matched


# --- compare two runs -------------------------------------------------------------------------------


def _set_repr(values: set[str]) -> str:
    return repr(set(sorted(values))) if values else "set()"


def first_divergence(run_a: Run, run_b: Run) -> Decision | None:
    """The first position where the two runs chose differently (one query, index-driven)."""
    other = Decision.objects.filter(run=run_b, seq=OuterRef("seq")).values("chosen_option_id")[:1]
    return (
        Decision.objects.filter(run=run_a)
        .annotate(other_chosen=Subquery(other))
        .exclude(other_chosen=None)
        .exclude(chosen_option_id=F("other_chosen"))
        .order_by("seq")
        .only("seq", "decision_id", "chosen_option_id")
        .first()
    )


def compare_differences(run_a: Run, run_b: Run, divergence: Decision | None) -> list[str]:
    """The original compare_runs() differences, worded the same, computed from counters and one query."""
    differences = []
    if run_a.status != run_b.status:
        differences.append(f"Status: {run_a.status} vs {run_b.status}")
    if run_a.decision_count != run_b.decision_count:
        differences.append(f"Decision count: {run_a.decision_count} vs {run_b.decision_count}")
    if divergence is not None:
        differences.append(
            f"Diverged at decision {divergence.seq}: chose '{divergence.chosen_option_id}' vs '{divergence.other_chosen}'"
        )
    nodes_a, nodes_b = set(run_a.nodes_executed or []), set(run_b.nodes_executed or [])
    if nodes_a - nodes_b:
        differences.append(f"Nodes only in run 1: {_set_repr(nodes_a - nodes_b)}")
    if nodes_b - nodes_a:
        differences.append(f"Nodes only in run 2: {_set_repr(nodes_b - nodes_a)}")
    return differences


def compare_metrics(run_a: Run, run_b: Run) -> list[dict]:
    rows = [
        ("Status", run_a.status, run_b.status),
        ("Decisions", run_a.decision_count, run_b.decision_count),
        ("Succeeded", run_a.success_count, run_b.success_count),
        ("Failed", run_a.failure_count, run_b.failure_count),
        ("Decision success rate", f"{run_a.success_rate:.0%}", f"{run_b.success_rate:.0%}"),
        ("Problems", run_a.problem_count, run_b.problem_count),
        ("Tokens", run_a.total_tokens, run_b.total_tokens),
        ("Latency (ms)", run_a.total_latency_ms, run_b.total_latency_ms),
        ("Duration (ms)", run_a.duration_ms, run_b.duration_ms),
    ]
    return [{"label": label, "a": a, "b": b, "differs": a != b} for label, a, b in rows]


def aligned_rows(run_a: Run, run_b: Run, start: int, divergence_seq: int | None, *, size: int | None = None):
    """Both runs' decisions at positions [start, start+size), side by side (2 queries)."""
    size = size or COMPARE_WINDOW
    fields = ("seq", "decision_id", "node_id", "intent", "chosen_option_id", "chosen_description", "outcome_success")

    def window(run):
        return {d.seq: d for d in run.decisions.filter(seq__gte=start, seq__lt=start + size).only("run_id", *fields)}

    a, b = window(run_a), window(run_b)
    rows = []
    for seq in sorted(set(a) | set(b)):
        da, db = a.get(seq), b.get(seq)
        rows.append({
            "seq": seq, "a": da, "b": db,
            "same_choice": bool(da and db and da.chosen_option_id == db.chosen_option_id),
            "is_divergence": seq == divergence_seq,
        })
    end = max(run_a.decision_count, run_b.decision_count)
    return rows, start + size < end


# --- goal page --------------------------------------------------------------------------------------


def goal_summary(goal_id: str) -> dict | None:
    """Counts from the rollup; first and latest run and the description from one index entry each (1 query)."""
    rows = list(
        GoalDay.objects.filter(goal_id=goal_id).values("goal_id").annotate(
            **_rollup_totals(),
            first_started=Subquery(Run.objects.for_goal(goal_id).order_by("started_at").values("started_at")[:1]),
            last_started=_latest_started(goal_id),
            description=Subquery(Run.objects.for_goal(goal_id).exclude(goal_description="")
                                 .order_by("-started_at").values("goal_description")[:1]),
        )
    )
    if not rows or not rows[0]["runs"] or rows[0]["last_started"] is None:
        return None
    summary = rows[0]
    # Success rate as the original's find_patterns defines it: completed / all runs.
    summary["success_rate"] = summary["completed"] / summary["runs"]
    summary["description"] = summary["description"] or ""
    return summary


def goal_daily(goal_id: str, first_started: datetime, last_started: datetime) -> list[dict]:
    """Per day, up to GOAL_CHART_DAYS ending at the goal's latest run (at least two weeks, so a young goal
    still gets a readable chart): volume and success rate, read from the rollup."""
    end = timezone.localtime(last_started, dt_timezone.utc).date()
    span = (end - timezone.localtime(first_started, dt_timezone.utc).date()).days + 1
    days = _days(end, min(GOAL_CHART_DAYS, max(span, 14)))
    rows = {row.day: row for row in GoalDay.objects.filter(goal_id=goal_id, day__gte=days[0], day__lte=end)}
    series = []
    for day in days:
        row = rows.get(day)
        ended = row.ended if row else 0
        series.append({"day": day, "runs": row.runs if row else 0, "completed": row.completed if row else 0,
                       "failed": row.failed if row else 0, "rate": row.completed / ended if ended else None})
    return series


def goal_window_from_query(params) -> int:
    raw = params.get("window", "").strip()
    if not raw:
        return GOAL_ANALYTICS_RUNS
    if not raw.isdigit() or int(raw) not in GOAL_WINDOWS:
        raise BadRequest(f"window: must be one of {', '.join(map(str, GOAL_WINDOWS))} (runs analysed), got {raw!r}")
    return int(raw)


def _goal_window(goal_id: str, window: int | None = None):
    return Run.objects.for_goal(goal_id).order_by("-started_at", "-pk").values("pk")[:window or GOAL_ANALYTICS_RUNS]


def goal_failures(goal_id: str, *, limit: int = 10, window: int | None = None) -> list[dict]:
    """Most common outcome errors of failed decisions, as the original counts them."""
    return list(
        Decision.objects.filter(run__in=_goal_window(goal_id, window), outcome_success=False)
        .values("outcome_error").annotate(count=Count("pk"), example_run=Max("run__run_id"))
        .order_by("-count", "outcome_error")[:limit]
    )


def goal_nodes(goal_id: str, *, limit: int = GOAL_NODES, window: int | None = None) -> list[dict]:
    """Nodes by failure rate, where failed means not successful (missing outcomes count), as the original."""
    rows = list(
        Decision.objects.filter(run__in=_goal_window(goal_id, window)).values("node_id")
        .annotate(total=Count("pk"), failed=Count("pk", filter=~Q(outcome_success=True)))
        .order_by("node_id")[:500]
    )
    return _worst_nodes(rows, limit)


def _worst_nodes(rows: list[dict], limit: int) -> list[dict]:
    for row in rows:
        row["rate"] = row["failed"] / row["total"] if row["total"] else 0.0
    rows.sort(key=lambda r: (-r["rate"], -r["total"], r["node_id"]))
    return rows[:limit]


def goal_nodes_and_points(goal_id: str, *, window: int | None = None) -> tuple[list[dict], list[dict]]:
    """`goal_nodes` and `decision_points` for the goal page, from one GROUP BY over the window's decisions
    when every group fits in its DECISION_POINT_ROWS: a node's totals are the sums of its choices' counts.
    Otherwise (the groups were cut) the nodes are counted by their own query."""
    rows = _decision_point_rows(goal_id, window)
    if len(rows) >= DECISION_POINT_ROWS:
        return goal_nodes(goal_id, window=window), _decision_points(rows)
    nodes: dict[str, dict] = {}
    for row in rows:
        node = nodes.setdefault(row["node_id"], {"node_id": row["node_id"], "total": 0, "failed": 0})
        node["total"] += row["count"]
        node["failed"] += row["count"] - row["succeeded"]
    return _worst_nodes(list(nodes.values()), GOAL_NODES), _decision_points(rows)


def decision_points(goal_id: str, *, groups: int = 30, window: int | None = None) -> list[dict]:
    """For each decision point (node, intent): each chosen option, how often, and where it led.

    One GROUP BY over the goal's recent decisions; per choice: times chosen, outcome successes, runs
    completed, and an example run that succeeded and one that did not.
    """
    return _decision_points(_decision_point_rows(goal_id, window), groups)


def _decision_point_rows(goal_id: str, window: int | None) -> list[dict]:
    return list(
        Decision.objects.filter(run__in=_goal_window(goal_id, window))
        .values("node_id", "intent", "chosen_option_id", "chosen_description")
        .annotate(
            count=Count("pk"),
            succeeded=Count("pk", filter=Q(outcome_success=True)),
            with_outcome=Count("pk", filter=~Q(outcome_success=None)),
            run_completed=Count("pk", filter=Q(run__status=RunStatus.COMPLETED)),
            example_good=Max("run__run_id", filter=Q(run__status=RunStatus.COMPLETED)),
            example_bad=Max("run__run_id", filter=Q(run__status=RunStatus.FAILED)),
        )
        .order_by("node_id", "intent", "-count")[:DECISION_POINT_ROWS]
    )


def _decision_points(rows: list[dict], groups: int = 30) -> list[dict]:
    points: dict[tuple[str, str], dict] = {}
    for row in rows:
        point = points.setdefault((row["node_id"], row["intent"]), {
            "node_id": row["node_id"], "intent": row["intent"], "total": 0, "choices": []})
        point["total"] += row["count"]
        row["outcome_rate"] = row["succeeded"] / row["count"]
        row["run_rate"] = row["run_completed"] / row["count"]
        point["choices"].append(row)
    ordered = sorted(points.values(), key=lambda p: (-p["total"], p["node_id"], p["intent"]))[:groups]
    for point in ordered:
        for choice in point["choices"]:
            choice["share"] = choice["count"] / point["total"]
    return ordered


def goal_window_truncated(summary: dict, window: int | None = None) -> bool:
    return summary["runs"] > (window or GOAL_ANALYTICS_RUNS)
