"""Periodic jobs of the runs app (scheduled by Celery beat, see CELERY_BEAT_SCHEDULE in settings)."""

import logging

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from . import retention, rollups

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def purge_expired_runs() -> int:
    """Delete runs past their retention; safe to run twice (the second finds nothing)."""
    report = retention.purge()
    if report.runs:
        logger.info("Retention purge deleted %d runs: %s", report.runs, report.per_goal)
    return report.runs


@shared_task(acks_late=True)
def fold_idle_runs() -> int:
    """Fold runs left running into the pattern groups, so goal patterns never regroup them at read time."""
    return rollups.fold_idle_runs(timedelta(minutes=settings.PATTERN_FOLD_IDLE_MINUTES))
