"""The ingest hot path's few statements, run on the database driver's own cursor.

Every ingest request runs the same handful of statements (the API-key lookup, the run lookup, a new
decision's INSERT and counter UPDATE). Through Django's cursor each one pays for the wrapper layers
(about 25 µs on SQLite, where the `%s` placeholders are also rewritten by a regular expression every
time), and on PostgreSQL Django binds parameters client-side, so the server parses and plans the same
statement on every request: half a millisecond for the one-statement append. Here:

- SQLite: the statement, written once with `?` placeholders, goes to `sqlite3` directly (whose own
  statement cache keeps it compiled);
- PostgreSQL: a server-side binding cursor prepares it once per connection (`prepare=True`), so later
  requests only bind and execute. The statement goes to it numbered (`$1`, `$2`, ...) through psycopg's
  raw cursor, converted once here: psycopg's own cursor splits a `%s` statement at its placeholders with
  a regular expression on every execute once the text is longer than it caches (4,096 bytes; the run
  end's one statement is longer), about 40 µs a request.

Errors are Django's (`wrap_database_errors`), and the statements run in whatever transaction Django has
open, exactly as through `connection.cursor()`. They do not appear in `connection.queries`, which only
DEBUG collects. A connection pooler in transaction mode (pgbouncer < 1.21) cannot keep prepared
statements: DB_PREPARED_STATEMENTS=0 turns them off (the `prepare_threshold` option in settings).
"""

import itertools
import re
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

_DRIVER_SQL: dict[tuple[str, str], str] = {}


_PLACEHOLDER = re.compile("%([s%])")


def numbered(sql: str) -> str:
    """`sql`, written with Django's `%s` placeholders (and `%%` for a `%`), with PostgreSQL's own: $1, $2..."""
    count = itertools.count(1)
    return _PLACEHOLDER.sub(lambda match: f"${next(count)}" if match[1] == "s" else "%", sql)


def driver_sql(connection, sql: str) -> str:
    """`sql`, written with Django's `%s` placeholders (`%%` for a `%`), as the driver takes it: SQLite's
    placeholders are `?`, PostgreSQL's are numbered."""
    key = (connection.vendor, sql)
    if (found := _DRIVER_SQL.get(key)) is None:
        found = _DRIVER_SQL[key] = (_PLACEHOLDER.sub(lambda match: "?" if match[1] == "s" else "%", sql)
                                    if connection.vendor == "sqlite" else numbered(sql))
    return found


@contextmanager
def cursor(connection, sql: str, params: Sequence[Any]):
    """`sql` (Django's placeholders) executed with `params` on a driver cursor: the cursor, to fetch from."""
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    statement = driver_sql(connection, sql)
    with connection.wrap_database_errors:
        if connection.vendor == "postgresql":
            import psycopg

            with psycopg.RawCursor(connection.connection) as found:
                found.execute(statement, params, prepare=True)
                yield found
        else:
            found = connection.connection.execute(statement, params)
            try:
                yield found
            finally:
                found.close()


@contextmanager
def immediate_transaction(connection):
    """SQLite: the block in one BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception), as
    `transaction.atomic()` runs it with this project's settings, without its savepoint bookkeeping, and
    queued behind our other writers as every write transaction is (framework_site/sqlite_backend); inside
    an atomic block the statements simply join the transaction already open."""
    if connection.in_atomic_block:
        yield
        return
    connection.ensure_connection()
    with connection.wrap_database_errors:
        connection.begin_writing("IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.end_writing(commit=False)
        raise
    connection.end_writing(commit=True)
