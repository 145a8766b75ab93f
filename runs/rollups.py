"""Per-goal rollups, kept exact by every write so that pages and answers read O(goals) rows, not every run:

- `GoalDay`: runs per goal and UTC day, by status (the goals overview, the goal page's chart);
- `PatternGroup`: a goal's pattern groups with their first-seen keys (the patterns and suggestions answers),
  in the second half of this module.

Every write that creates a run or changes its status (runs/ingest.py) calls `record_status_change` inside
the same transaction as the run write; every delete, however it is made (retention purge, admin, shell),
reaches it through the `post_delete` receiver in runs/models.py. Each call is one portable upsert that adds
the change to the (goal, day) row (`INSERT ... ON CONFLICT (goal_id, day) DO UPDATE SET runs = runs +
excluded.runs, ...`, SQLite >= 3.24 and PostgreSQL), so concurrent writers never lose an increment.
`rebuild` recomputes both tables from the rows (`manage.py rebuild_rollups`; the migrations that create
them call the half each needs); tests compare the two.

The day is the run's `started_at` as a UTC date, the same day `Cast(started_at, DateField())` gives.
"""

import hashlib
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone

from django.db import connection, transaction
from django.db.models import Count, DateField, Q
from django.db.models.functions import Cast
from django.utils import timezone

COLUMNS = ("runs", "completed", "failed", "running")
_STATUS_COLUMN = {"completed": 1, "failed": 2, "running": 3}  # index into a delta; other statuses: runs only


def utc_day(started_at: datetime) -> date:
    if started_at.tzinfo is not None:
        started_at = started_at.astimezone(dt_timezone.utc)
    return started_at.date()


def _delta(status: str | None, sign: int) -> list[int]:
    delta = [0, 0, 0, 0]
    if status is not None:
        delta[0] = sign
        if (column := _STATUS_COLUMN.get(str(status))) is not None:
            delta[column] = sign
    return delta


def status_delta(status: str) -> list[int]:
    """What a new run with `status` adds to its day's `COLUMNS`."""
    return _delta(status, 1)


def change_delta(old_status: str | None, new_status: str | None) -> list[int]:
    """What a run moving from `old_status` to `new_status` adds to its day's `COLUMNS` (None: it did not
    exist / no longer exists)."""
    return [new - old for new, old in zip(_delta(new_status, 1), _delta(old_status, 1))]


def record_status_change(goal_id: str, started_at: datetime, old_status: str | None, new_status: str | None) -> None:
    """Count a run moving from `old_status` to `new_status` (None: it did not exist / no longer exists)."""
    if old_status == new_status:
        return
    _apply({(goal_id, utc_day(started_at)): change_delta(old_status, new_status)})


def day_upsert(source: str = "VALUES (%s, %s, %s, %s, %s, %s)") -> str:
    """The statement that adds a delta (goal_id, day, then `COLUMNS`) to its day's counts: `source` gives
    the row, as a VALUES list or a SELECT."""
    from .models import GoalDay

    table = connection.ops.quote_name(GoalDay._meta.db_table)
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in COLUMNS)
    return (f"INSERT INTO {table} (goal_id, day, {', '.join(COLUMNS)}) {source} "
            f"ON CONFLICT (goal_id, day) DO UPDATE SET {updates}")


def _apply(deltas: dict[tuple[str, date], list[int]]) -> None:
    params = [(goal_id, day, *delta) for (goal_id, day), delta in sorted(deltas.items()) if any(delta)]
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(day_upsert(), params)


def recount(run_model) -> dict[tuple[str, date], tuple[int, int, int, int]]:
    """{(goal_id, day): (runs, completed, failed, running)} counted from the runs (the reference)."""
    rows = (
        run_model.objects.order_by().annotate(day=Cast("started_at", DateField())).values("goal_id", "day")
        .annotate(runs=Count("pk"), completed=Count("pk", filter=Q(status="completed")),
                  failed=Count("pk", filter=Q(status="failed")), running=Count("pk", filter=Q(status="running")))
    )
    return {(r["goal_id"], r["day"]): (r["runs"], r["completed"], r["failed"], r["running"]) for r in rows}


def stored(goal_day_model) -> dict[tuple[str, date], tuple[int, int, int, int]]:
    """The rollup as stored, without all-zero rows (a day whose runs were all purged)."""
    return {
        (r.goal_id, r.day): (r.runs, r.completed, r.failed, r.running)
        for r in goal_day_model.objects.all() if r.runs or r.completed or r.failed or r.running
    }


def rebuild_goal_days(run_model, goal_day_model) -> int:
    """Replace the day rollup with a recount of the runs; the number of rows. The caller holds writers off."""
    goal_day_model.objects.all().delete()
    counts = recount(run_model)
    goal_day_model.objects.bulk_create(
        [goal_day_model(goal_id=goal_id, day=day, **dict(zip(COLUMNS, values)))
         for (goal_id, day), values in counts.items()],
        batch_size=1000,
    )
    return len(counts)


def rebuild() -> dict[str, int]:
    """Recompute both rollups from the rows, holding writers off meanwhile; the number of rows of each."""
    from .models import GoalDay, PatternGroup, Run

    with transaction.atomic():
        if connection.vendor == "postgresql":  # writers wait; readers go on
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {connection.ops.quote_name(Run._meta.db_table)} IN SHARE MODE")
        return {"goal_days": rebuild_goal_days(Run, GoalDay), "pattern_groups": rebuild_patterns(Run, PatternGroup)}


# --- per-goal pattern groups (`PatternGroup`) ------------------------------------------------------------
#
# The groups `queries.goal_aggregates` counts (errors, nodes, decision types, choices), per goal, over its
# folded runs: each with its counts and its first-seen key
# (end_seq, run pk, seq), the position of its first decision in index order; a running run sorts after every
# ended one (`NO_END_SEQ`). A run is folded in when it ends or is imported, in the same transaction, or once
# it has been idle for a while (`fold_idle_runs`, Celery beat), and `Run.pattern_pending` turns False. Runs
# still pending (running ones, active lately) are grouped live at read time and the keys merge both, so the
# order is exact either way and the live part stays as small as the number of active runs, however many
# runs were left running for good. Rows loaded by other means (raw SQL) need `rebuild`, as the day counts.
#
# Adding decisions only adds counts and can only lower a key (MIN). Taking some away (an outcome replaced
# on a folded run, a run whose place moves, a deleted run) subtracts their counts; a group whose key pointed
# at one of them keeps that key as a lower bound, marked `stale`, and `repair_first_seen` finds the true
# key by walking the goal's runs in index order from that bound, in growing chunks, before the transaction
# ends. Writers lock a goal's rows in digest order, so run ends and imports queue behind each other; a late
# write to a folded run locks in two passes (out, then in), so it can rarely deadlock with one of them and
# be refused by PostgreSQL, like any conflicting write; `ingest.retrying_conflicts` then runs it again.

RANK_BITS = 4294967296  # 2**32: a decision ranks as its run's rank * 2**32 + seq
NO_END_SEQ = 2**62  # a running run's place in a first-seen key: after every ended run, then by pk


def _table(model_name: str) -> str:
    from django.apps import apps

    return connection.ops.quote_name(apps.get_model("runs", model_name)._meta.db_table)


def ranked_runs(where: str) -> str:
    """A CTE `ranked` (id, goal_id, end_seq, rnk) numbering the runs `where` selects in index order
    (`Run.objects.in_index_order()`: ended runs by end_seq, then running ones; pk breaks ties)."""
    return (f"ranked AS (SELECT id, goal_id, end_seq, ROW_NUMBER() OVER (ORDER BY CASE WHEN end_seq IS NULL "
            f"THEN 1 ELSE 0 END, end_seq, id) AS rnk FROM {_table('Run')} WHERE {where})")


def rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _picked_columns() -> str:
    """What `groups_query` reads of each decision (alias d), after its goal and position."""
    from framework.builder.heuristics import INTENT_KEY_LENGTH

    return ("d.outcome_success AS ok, COALESCE(NULLIF(d.outcome_error, ''), 'Unknown error') AS label, d.node_id, "
            f"d.decision_type, SUBSTR(d.intent, 1, {INTENT_KEY_LENGTH}) AS intent_key, d.chosen_description")


# The CTE that groups `picked` (goal_id, pos and `_picked_columns`) into one row per (goal, group): goal_id,
# kind, k, detail, total, failed and fs, the lowest position; its parameters: `GROUPED_PARAMS`.
GROUPED = (
    "grouped AS ("
    "SELECT goal_id, 'error' AS kind, label AS k, '' AS detail, COUNT(*) AS total, 0 AS failed, MIN(pos) AS fs "
    "FROM picked WHERE ok = %s GROUP BY goal_id, label "
    "UNION ALL SELECT goal_id, 'node', node_id, '', COUNT(*), SUM(CASE WHEN ok = %s THEN 0 ELSE 1 END), "
    "MIN(pos) FROM picked GROUP BY goal_id, node_id "
    "UNION ALL SELECT goal_id, 'type', decision_type, '', COUNT(*), 0, MIN(pos) FROM picked "
    "GROUP BY goal_id, decision_type "
    "UNION ALL SELECT goal_id, 'choice', intent_key, chosen_description, COUNT(*), 0, MIN(pos) FROM picked "
    "WHERE chosen_description IS NOT NULL GROUP BY goal_id, intent_key, chosen_description)"
)
GROUPED_PARAMS = (False, True)


def groups_query(run_where: str, run_params: list, decision_where: str = "1 = 1",
                 decision_params: list | None = None) -> tuple[str, list]:
    """SQL and parameters for one row per (goal, group) over the decisions (`decision_where`, alias d) of
    the runs `run_where` selects: goal_id, kind, key, detail, total, failed, then the first-seen key
    end_seq, run pk, seq. Runs rank in index order with ROW_NUMBER and the decisions are read once
    (`picked`, used by the four GROUP BYs), so one row per group leaves the database."""
    sql = (
        f"WITH {ranked_runs(run_where)}, "
        f"picked AS (SELECT r.goal_id, r.rnk * {RANK_BITS} + d.seq AS pos, {_picked_columns()} "
        f"FROM {_table('Decision')} d JOIN ranked r ON r.id = d.run_id WHERE {decision_where}), {GROUPED} "
        f"SELECT g.goal_id, g.kind, g.k, g.detail, g.total, g.failed, COALESCE(r.end_seq, {NO_END_SEQ}), r.id, "
        f"g.fs %% {RANK_BITS} "
        f"FROM grouped g JOIN ranked r ON r.rnk = g.fs / {RANK_BITS}"
    )
    return sql, [*run_params, *(decision_params or []), *GROUPED_PARAMS]


def run_fold(run: str) -> tuple[str, str]:
    """Two CTEs that fold one ended run's decisions into its goal's groups inside a bigger statement:
    `picked` and `grouped` from `run` (a CTE or table with the run's id, goal_id and end_seq), then the
    statement that adds `grouped` to the groups (`upsert_groups`), for a WITH item or on its own. Its
    parameters: `GROUPED_PARAMS`. Each group's first-seen key is the run's first decision in it."""
    picked = (f"picked AS (SELECT c.goal_id, d.seq AS pos, {_picked_columns()} "
              f"FROM {_table('Decision')} d JOIN {run} c ON d.run_id = c.id), {GROUPED}")
    digest = digest_sql("g.kind", "g.k", "g.detail")
    add = upsert_groups(f"SELECT g.goal_id, {digest}, g.kind, g.k, g.detail, g.total, g.failed, c.end_seq, c.id, "
                        f"g.fs, FALSE FROM grouped g CROSS JOIN {run} c ORDER BY 2")  # `_add`'s lock order
    return picked, add


def digest_sql(kind: str, key: str, detail: str) -> str:
    """`_digest` of three SQL text expressions, computed by the database."""
    if connection.vendor == "postgresql":
        zero = "decode('00', 'hex')"
        return (f"encode(sha256(convert_to({kind}, 'UTF8') || {zero} || convert_to({key}, 'UTF8') || {zero} || "
                f"convert_to({detail}, 'UTF8')), 'hex')")
    return f"SHA256({kind} || char(0) || {key} || char(0) || {detail})"  # Django registers SHA256 on SQLite


def _digest(kind: str, key: str, detail: str) -> str:
    """The group's identity in the unique constraint: its texts can be longer than an index entry may be."""
    return hashlib.sha256(f"{kind}\0{key}\0{detail}".encode()).hexdigest()


def _contributions(run, decision_ids: list[str] | None) -> list[tuple]:
    """What `run`'s decisions (or only `decision_ids`) add to its goal's groups, with their first-seen keys."""
    if decision_ids is None:
        return rows(*groups_query("id = %s", [run.pk]))
    marks = ", ".join(["%s"] * len(decision_ids))
    return rows(*groups_query("id = %s", [run.pk], f"d.decision_id IN ({marks})", list(decision_ids)))


def upsert_groups(source: str) -> str:
    """The statement that adds groups' counts (`source`: rows of goal_id, digest, kind, key, detail, total,
    failed, the first-seen key's three parts and stale, as a VALUES list or a SELECT); a key only moves down
    (an earlier first decision)."""
    table = _table("PatternGroup")
    key, excluded = (f"({table}.first_end_seq, {table}.first_run, {table}.first_seq)",
                     "(excluded.first_end_seq, excluded.first_run, excluded.first_seq)")
    firsts = ", ".join(f"{c} = CASE WHEN {excluded} < {key} THEN excluded.{c} ELSE {table}.{c} END"
                       for c in ("first_end_seq", "first_run", "first_seq"))
    return (f"INSERT INTO {table} (goal_id, digest, kind, key, detail, total, failed, first_end_seq, first_run, "
            f"first_seq, stale) {source} ON CONFLICT (goal_id, digest) "
            f"DO UPDATE SET total = {table}.total + excluded.total, failed = {table}.failed + excluded.failed, "
            f"{firsts}")


def _add(rows: list[tuple]) -> None:
    """Add groups' counts (`upsert_groups`)."""
    sql = upsert_groups("VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
    params = sorted(((goal, _digest(kind, k, detail), kind, k, detail, total, failed, end_seq, run, seq, False)
                     for goal, kind, k, detail, total, failed, end_seq, run, seq in rows),
                    key=lambda row: row[:2])  # one lock order for every writer
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)


def _subtract(rows: list[tuple]) -> None:
    """Take groups' counts away; a group whose key was one of these decisions keeps it only as a lower bound."""
    table = _table("PatternGroup")
    sql = (f"UPDATE {table} SET total = total - %s, failed = failed - %s, stale = (stale OR (first_end_seq = %s "
           "AND first_run = %s AND first_seq = %s)) WHERE goal_id = %s AND digest = %s")
    params = sorted(((total, failed, end_seq, run, seq, goal, _digest(kind, k, detail))
                     for goal, kind, k, detail, total, failed, end_seq, run, seq in rows),
                    key=lambda row: row[-2:])  # the order `_add` locks rows in
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)
            cursor.execute(f"DELETE FROM {table} WHERE goal_id = %s AND total <= 0", [rows[0][0]])


REPAIR_CHUNK = 64  # runs in the first chunk a repair groups; each next chunk is twice as large


def repair_first_seen(goal_id: str) -> None:
    """Give each stale group of the goal its true first-seen key, walking the goal's folded runs in index
    order from the lowest bound: the first chunk that holds one of a group's decisions holds its first."""
    table = _table("PatternGroup")
    stale = {digest: (end_seq, run) for digest, end_seq, run in rows(
        f"SELECT digest, first_end_seq, first_run FROM {table} WHERE goal_id = %s AND stale", [goal_id])}
    start, size = min(stale.values(), default=None), REPAIR_CHUNK
    while stale:
        chunk = rows(
            f"SELECT id, COALESCE(end_seq, {NO_END_SEQ}) AS place FROM {_table('Run')} WHERE goal_id = %s "
            f"AND NOT pattern_pending AND (COALESCE(end_seq, {NO_END_SEQ}), id) >= (%s, %s) "
            "ORDER BY place, id LIMIT %s",
            [goal_id, *start, size])
        if not chunk:  # the groups count decisions no folded run holds (rows edited by hand): start over
            _refold_goal(goal_id)
            return
        marks = ", ".join(["%s"] * len(chunk))
        found = []
        for _goal, kind, k, detail, _total, _failed, end_seq, run, seq in rows(
                *groups_query(f"id IN ({marks})", [pk for pk, _ in chunk])):
            if stale.pop(digest := _digest(kind, k, detail), None) is not None:
                found.append((end_seq, run, seq, goal_id, digest))
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {table} SET first_end_seq = %s, first_run = %s, first_seq = %s, "
                               "stale = FALSE WHERE goal_id = %s AND digest = %s", sorted(found))
        last_pk, last_end_seq = chunk[-1]
        start, size = (last_end_seq, last_pk + 1), size * 2


@contextmanager
def refolding(run, decision_ids: list[str] | None = None):
    """Around a write to a run that changes what its decisions (or only `decision_ids`) add to the pattern
    groups, or where they stand (its end, an outcome on a folded run): a folded run's old share goes out
    before and the new one comes in after; a pending run is folded once it has ended. All in the caller's
    transaction; a pending running run costs nothing."""
    folded = not run.pattern_pending
    if folded:
        _subtract(_contributions(run, decision_ids))
    yield
    if folded:
        _add(_contributions(run, decision_ids))
        repair_first_seen(run.goal_id)
    elif run.end_seq is not None:
        fold_run(run)


def fold_run(run) -> None:
    """Fold a pending run's decisions into its goal's groups (its run row locked by the caller)."""
    _add(_contributions(run, None))
    type(run).objects.filter(pk=run.pk).update(pattern_pending=False)
    run.pattern_pending = False


def fold_new_decisions(run, decision_ids: list[str]) -> None:
    """Decisions new to a folded run (reported after its end or its idle fold) only add: no repair."""
    if not run.pattern_pending:
        _add(_contributions(run, decision_ids))


def unfold_deleted(run) -> None:
    """Before `run` is deleted (while its decisions are still there): take its share away."""
    if not run.pattern_pending:
        _subtract(_contributions(run, None))


def fold_idle_runs(idle: timedelta, *, limit: int = 1000) -> int:
    """Fold running runs with no write for `idle` (left running, crashed agents), so the patterns answer's
    live part stays as small as the number of active runs; the number folded. A run that wakes up again
    is kept folded by every later write (`fold_new_decisions`, `refolding`)."""
    from .models import Run

    cutoff = timezone.now() - idle
    folded = 0
    idle_runs = Run.objects.filter(pattern_pending=True, updated_at__lt=cutoff)
    for pk in list(idle_runs.values_list("pk", flat=True)[:limit]):
        with transaction.atomic():
            run = idle_runs.select_for_update().filter(pk=pk).first()  # still idle once locked
            if run is not None:
                fold_run(run)
                folded += 1
    return folded


def _refold_goal(goal_id: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table('PatternGroup')} WHERE goal_id = %s", [goal_id])
    _add(rows(*groups_query("goal_id = %s AND NOT pattern_pending", [goal_id])))


def rebuild_patterns(run_model, group_model) -> int:
    """Fold every run from scratch, running ones too (nothing left for the live part); the number of groups.
    The caller holds writers off (see `rebuild`)."""
    group_model.objects.all().delete()
    run_model.objects.filter(pattern_pending=True).update(pattern_pending=False)
    groups = rows(*groups_query("1 = 1", []))
    _add(groups)
    return len(groups)
