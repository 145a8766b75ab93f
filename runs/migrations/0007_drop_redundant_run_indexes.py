"""Decision.run and Problem.run lose the index Django gives every foreign key: the unique (run,
decision_id) / (run, problem_id) constraints and the (run, seq) index all start with the run, so the
planner never needed it, and every insert paid for a third B-tree.

Only the index is dropped (`SeparateDatabaseAndState`): Django's own AlterField would rebuild both tables
on SQLite, copying every decision of an existing store.
"""

import django.db.models.deletion
from django.db import migrations, models

# Django's names for the two foreign-key indexes (`_create_index_name`: the same on both databases).
INDEXES = {"runs_decision": "runs_decision_run_id_1889ec43", "runs_problem": "runs_problem_run_id_4cb3fb60"}


class Migration(migrations.Migration):

    dependencies = [
        ("runs", "0006_pattern_groups"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(f'DROP INDEX IF EXISTS "{index}"',
                                  reverse_sql=f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ("run_id")')
                for table, index in INDEXES.items()
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="decision",
                    name="run",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name="decisions", to="runs.run"),
                ),
                migrations.AlterField(
                    model_name="problem",
                    name="run",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name="problems", to="runs.run"),
                ),
            ],
        ),
    ]
