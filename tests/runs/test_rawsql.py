"""The ingest hot path's statements go to the driver with its own placeholders (runs/rawsql.py): what they
store and answer is what Django's cursor would have given for the same statement and parameters."""

import pytest
from django.db import connection

from runs import rawsql


@pytest.mark.django_db
def test_placeholders_are_bound_in_order_and_a_doubled_percent_sign_is_one():
    sql = "SELECT %s || '%%' || %s || '%%s'"
    with rawsql.cursor(connection, sql, ["50", "+"]) as cursor:
        mine = cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute(sql, ["50", "+"])
        django = cursor.fetchone()
    assert mine == django == ("50%+%s",)


def test_postgresql_placeholders_are_numbered_once_per_statement():
    assert rawsql.numbered("INSERT INTO t VALUES (%s, %s) -- 100%% sure, %%s") == (
        "INSERT INTO t VALUES ($1, $2) -- 100% sure, %s")
