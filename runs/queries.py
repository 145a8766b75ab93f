"""The Builder's questions over many runs, aggregated in SQL and worded by `framework.builder.heuristics`.

The heuristics want counts in "first-seen order": runs in index order (the order they ended), then
decisions in order. Each group's first appearance is ranked in SQL as rank(run) * 2**32 + seq, where
rank numbers the runs with ROW_NUMBER() in index order (end_seq, then pk), so only one row per group reaches Python,
however many runs a goal has. A goal's patterns read those groups kept per goal (runs/rollups.py) rather
than every decision. The SQL is plain enough for SQLite (3.25+) and PostgreSQL alike.
"""

from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Coalesce

from framework.builder import heuristics
from framework.builder.results import PatternAnalysis

from . import rollups
from .models import Decision, GoalDay, PatternGroup, Run, RunStatus

DECISIONS = Decision._meta.db_table
GROUPS = PatternGroup._meta.db_table
GOAL_DAYS = GoalDay._meta.db_table
WORST_NODES = 5


FIRST_SEEN = f"MIN(r.rnk * {rollups.RANK_BITS} + d.seq)"


def goal_aggregates(goal_id: str) -> dict[str, Any]:
    """The keyword arguments of `heuristics.pattern_analysis` (all but goal_id) for one goal's runs.

    One statement, so one snapshot: the goal's pattern groups over its folded runs (runs/rollups.py), the
    same groups computed live over its runs not folded yet (active running ones: few), and its run counts
    from the day rollup. Each group's counts add up, and the lower first-seen key orders it.
    """
    live_sql, live_params = rollups.groups_query("goal_id = %s AND pattern_pending", [goal_id])
    sql = (
        f"{live_sql} UNION ALL SELECT goal_id, kind, key, detail, total, failed, first_end_seq, first_run, "
        f"first_seq FROM {GROUPS} WHERE goal_id = %s UNION ALL SELECT goal_id, 'runs', '', '', SUM(runs), "
        f"SUM(completed), NULL, NULL, NULL FROM {GOAL_DAYS} WHERE goal_id = %s GROUP BY goal_id"
    )
    groups: dict[tuple[str, str, str], list] = {}
    run_count = completed_count = 0
    answer = rollups.rows(sql, [*live_params, goal_id, goal_id])
    for _goal, kind, key, detail, total, failed, end_seq, run, seq in answer:
        if kind == "runs":
            run_count, completed_count = int(total), int(failed)
            continue
        first = (end_seq, run, seq)  # index order (a running run's end_seq reads rollups.NO_END_SEQ)
        group = groups.setdefault((kind, key, detail), [0, 0, first])
        group[0] += int(total)
        group[1] += int(failed)
        group[2] = min(group[2], first)
    error_counts, node_counts, type_counts, choice_counts = [], [], {}, {}
    for (kind, key, detail), (total, failed, _first) in sorted(groups.items(), key=lambda item: item[1][2]):
        if kind == "error":
            error_counts.append((key, total))
        elif kind == "node":
            node_counts.append((key, failed, total))
        elif kind == "type":
            type_counts[key] = total
        else:
            choice_counts.setdefault(key, []).append((detail, total))
    return {
        "run_count": run_count,
        "completed_count": completed_count,
        "error_counts": error_counts,
        "node_counts": node_counts,
        "type_counts": type_counts,
        "choice_counts": choice_counts,
    }


def goal_patterns(goal_id: str) -> PatternAnalysis | None:
    return heuristics.pattern_analysis(goal_id=goal_id, **goal_aggregates(goal_id))


def node_aggregates(node_id: str) -> dict[str, Any]:
    """The keyword arguments of `heuristics.node_performance` for one node, over every run."""
    rows = rollups.rows(
        f"WITH {rollups.ranked_runs(f'id IN (SELECT run_id FROM {DECISIONS} WHERE node_id = %s)')} "
        f"SELECT d.decision_type, COUNT(*), SUM(CASE WHEN d.outcome_success = %s THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN d.outcome_success IS NULL THEN 0 ELSE d.outcome_latency_ms END), "
        f"SUM(CASE WHEN d.outcome_success IS NULL THEN 0 ELSE d.outcome_tokens END), {FIRST_SEEN} AS fs "
        f"FROM {DECISIONS} d JOIN ranked r ON r.id = d.run_id WHERE d.node_id = %s "
        f"GROUP BY d.decision_type ORDER BY fs",
        [node_id, True, node_id],
    )
    return {
        "node_id": node_id,
        "total_decisions": sum(int(row[1]) for row in rows),
        "successful": sum(int(row[2]) for row in rows),
        "total_latency_ms": sum(int(row[3]) for row in rows),
        "total_tokens": sum(int(row[4]) for row in rows),
        "type_counts": {row[0]: int(row[1]) for row in rows},
    }


def node_performance(node_id: str) -> dict[str, Any]:
    return heuristics.node_performance(**node_aggregates(node_id))


def stats() -> dict[str, Any]:
    """Totals across every run: the original CLI's `stats` (#1734), from the counters and one GROUP BY."""
    duration = ExpressionWrapper(F("completed_at") - F("started_at"), output_field=DurationField())
    totals = Run.objects.aggregate(
        total_runs=Count("pk"),
        total_goals=Count("goal_id", distinct=True),
        completed=Count("pk", filter=Q(status=RunStatus.COMPLETED)),
        failed=Count("pk", filter=Q(status=RunStatus.FAILED)),
        running=Count("pk", filter=Q(status=RunStatus.RUNNING)),
        total_decisions=Coalesce(Sum("decision_count"), 0),
        total_tokens=Coalesce(Sum("total_tokens"), 0),
        avg_duration=Avg(duration, filter=Q(completed_at__isnull=False)),
    )
    total = totals["total_runs"]
    worst = (
        Decision.objects.values("node_id")
        .annotate(total=Count("pk"), failed=Count("pk", filter=~Q(outcome_success=True)))
        .filter(failed__gt=0)
        .order_by("-failed", "node_id")[:WORST_NODES]
    )
    avg_duration = totals.pop("avg_duration")
    return {
        **{key: int(value) for key, value in totals.items()},
        "success_rate": totals["completed"] / total if total else 0.0,
        "failure_rate": totals["failed"] / total if total else 0.0,
        "avg_duration_ms": int(avg_duration.total_seconds() * 1000) if avg_duration is not None else 0,
        "avg_tokens": int(totals["total_tokens"]) / total if total else 0.0,
        "worst_nodes": [
            {"node_id": row["node_id"], "failed": row["failed"], "total": row["total"],
             "failure_rate": row["failed"] / row["total"]}
            for row in worst
        ],
    }
