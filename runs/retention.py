"""Retention: ended runs older than RETENTION_DAYS (or their goal's RETENTION_DAYS_PER_GOAL) are deleted
with their decisions and problems (and Builder analyses of them, by cascade), in small batches so the
purge never holds long locks against agents reporting. Running runs are never purged.

Counters live on each run, and the per-goal rollups (runs/rollups.py) forget each deleted run in the
same transaction as its delete (the receivers in runs/models.py), so nothing needs recomputing after a purge.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from .models import Run

BATCH_SIZE = 500


@dataclass
class PurgeReport:
    runs: int = 0
    per_goal: dict[str, int] = field(default_factory=dict)

    def add(self, goal_id: str, count: int) -> None:
        if count:
            self.runs += count
            self.per_goal[goal_id] = self.per_goal.get(goal_id, 0) + count


def expired_runs(*, now=None):
    """Ended runs past their retention, or None when nothing has a retention limit."""
    now = now or timezone.now()
    per_goal = settings.RETENTION_DAYS_PER_GOAL
    ended = Run.objects.ended()
    selected = None
    for goal_id, days in per_goal.items():
        if days:
            query = ended.filter(goal_id=goal_id, completed_at__lt=now - timedelta(days=days))
            selected = query if selected is None else selected | query
    if settings.RETENTION_DAYS:
        query = ended.exclude(goal_id__in=list(per_goal)).filter(
            completed_at__lt=now - timedelta(days=settings.RETENTION_DAYS))
        selected = query if selected is None else selected | query
    return selected


def purge(*, dry_run: bool = False, now=None, batch_size: int = BATCH_SIZE) -> PurgeReport:
    report = PurgeReport()
    runs = expired_runs(now=now)
    if runs is None:
        return report
    if dry_run:
        for row in runs.order_by().values("goal_id").annotate(n=Count("pk")):
            report.add(row["goal_id"], row["n"])
        return report
    while batch := list(runs.order_by("pk").values_list("pk", "goal_id")[:batch_size]):
        with transaction.atomic():
            Run.objects.filter(pk__in=[pk for pk, _goal in batch]).delete()
        for _pk, goal_id in batch:
            report.add(goal_id, 1)
    return report
