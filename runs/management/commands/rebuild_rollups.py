"""python manage.py rebuild_rollups: recompute the per-goal rollups (day counts, pattern groups) from the rows."""

from django.core.management.base import BaseCommand

from runs import rollups


class Command(BaseCommand):
    help = ("Recompute the per-goal, per-day run counts (what the goals overview and goal pages read) and the "
            "per-goal pattern groups (what the patterns and suggestions answers read) from the rows. Every "
            "write keeps them current; run this after loading rows by other means (raw SQL, a restored dump). "
            "On PostgreSQL, run writers wait while it runs; readers do not.")

    def handle(self, *args, **options):
        rows = rollups.rebuild()
        self.stdout.write(f"Rebuilt the goal rollup: {rows['goal_days']} (goal, day) rows, "
                          f"{rows['pattern_groups']} pattern groups.")
