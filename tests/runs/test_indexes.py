"""A run's decisions and problems are found through an index, without one of their own on the run
(migration 0007 dropped the foreign-key indexes the composite ones already cover): run pages, exports,
recounts and cascade deletes stay index lookups, and each insert updates one B-tree fewer."""

import pytest
from django.db import connection

from runs.models import Decision, Problem


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")  # an empty table would be scanned anyway
            cursor.execute(f"EXPLAIN {sql}")
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return " ".join(str(part) for row in cursor.fetchall() for part in row)


def _indexes(table: str) -> list[list[str]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return [info["columns"] for info in constraints.values() if info["index"] or info["unique"]]


@pytest.mark.parametrize("model", [Decision, Problem])
def test_rows_of_a_run_are_found_by_index_without_a_run_only_index(db, model):
    table = model._meta.db_table
    assert ["run_id"] not in _indexes(table)
    plan = _plan(f'SELECT * FROM "{table}" WHERE "run_id" = 1')
    assert "Seq Scan" not in plan and "SCAN" not in plan.replace("SCAN USING", ""), plan
    assert "index" in plan.lower(), plan
