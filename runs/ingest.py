"""Writing what agents report: runs, decisions (with their outcome), outcomes, problems, run ends.

Every function validates its input, then writes inside one transaction that first locks the run row
(`fetch_one(..., for_update=True)`, SELECT ... FOR UPDATE; on SQLite the IMMEDIATE transaction does the
same for the whole database), so concurrent writers to one run queue up and the counters on `Run` are
updated in the same transaction as the row, as increments (`col = col + n`).

Idempotent on the agent's ids: replaying an event with the same content changes nothing and reports
`created=False`; a replayed decision or problem whose content differs is refused (`Conflict`), never
silently overwritten. A second outcome for a decision *replaces* the first, and the counters move by the
difference (the original counted it twice; see `Run.recount`).
"""

import json
import random
import re
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, OperationalError, connections, transaction
from django.db.models import F, Max
from django.db.models.signals import post_save
from django.utils import timezone
from pydantic import BaseModel, ValidationError

from . import rawsql, rollups
from .models import ApiKey, Decision, Problem, Run, RunStatus, columns_of, fetch_one, from_row
from .schemas import (
    METRICS_EXTRA_KEY, DecisionIn, OutcomeIn, ProblemIn, RunEndIn, RunFileIn, RunStartIn, unchecked_many,
    unstorable_text,
)

try:
    from psycopg.errors import DeadlockDetected, SerializationFailure
    _CONFLICTS: tuple[type, ...] = (DeadlockDetected, SerializationFailure)
except ImportError:  # SQLite only
    _CONFLICTS = ()

_DEC_N = re.compile(r"dec_(\d{1,9})")
_PROB_N = re.compile(r"prob_(\d{1,9})")


class IngestError(Exception):
    status = 400

    def __init__(self, detail: str, errors: list[dict] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class NotFound(IngestError):
    status = 404


class Conflict(IngestError):
    status = 409


class Invalid(IngestError):
    status = 422


class Busy(IngestError):
    status = 503


def built_once(build: Callable) -> Callable:
    """`build(connection, **options)`, the statements of a one-statement write and its column writers,
    run once per database vendor and options: what it returns depends on nothing else, and each request
    then finds its plan in a dict instead of building SQL. The options are keyed with their names, in the
    order given: a call that names them in another order builds the same plan once more, never another's."""
    plans: dict[tuple, Any] = {}

    @wraps(build)
    def plan(connection, **options):
        key = (connection.vendor, *options.items())
        if (found := plans.get(key)) is None:
            found = plans[key] = build(connection, **options)
        return found
    return plan


CONFLICT_ATTEMPTS = 3  # tries of a write PostgreSQL refuses for a conflicting one (deadlock, serialization)


def retrying_conflicts(write: Callable) -> Callable:
    """A write in its own transaction, run again when PostgreSQL refused it for a conflicting one (a
    deadlock, a serialization failure): the refused transaction stored nothing, so running it again is
    what its sender would have to do, done before answering. After `CONFLICT_ATTEMPTS`, or when SQLite's
    write lock stayed taken for its whole busy timeout, Busy (503: nothing stored, try again). Inside a
    caller's transaction the write runs once and the caller's transaction decides."""
    @wraps(write)
    def wrapper(*args, **kwargs):
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return write(*args, **kwargs)
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return write(*args, **kwargs)
            except OperationalError as exc:
                locked = "database is locked" in str(exc)  # SQLite, after its busy timeout: no retry
                if not locked and not isinstance(exc.__cause__, _CONFLICTS):
                    raise
                if locked or attempt == CONFLICT_ATTEMPTS:
                    raise Busy(f"The database refused this write because of conflicting writes ({exc}); nothing "
                               "of it was stored. Send it again.") from exc
                time.sleep(random.uniform(0.005, 0.02) * attempt)  # the other writer finishes meanwhile
    return wrapper


T = TypeVar("T", bound=BaseModel)


def validate(schema: type[T], data: Any, what: str) -> T:
    """`data` as a `schema` instance, or Invalid naming each bad field."""
    if isinstance(data, schema):
        return data
    if not isinstance(data, dict):
        raise Invalid(f"Invalid {what}: expected a JSON object, got {type(data).__name__}.")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": [str(part) for part in err["loc"]], "msg": err["msg"]} for err in exc.errors()]
        summary = "; ".join(f"{'.'.join(e['loc']) or what}: {e['msg']}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise Invalid(f"Invalid {what}: {summary}{more}", errors) from None
    except RecursionError:
        raise Invalid(f"Invalid {what}: nested too deeply.") from None


def _locked_run(run_id: str) -> Run:
    run = fetch_one(Run, {"run_id": run_id}, for_update=True)
    if run is None:
        raise NotFound(f"Run '{run_id}' not found: start it first (POST /api/v1/runs).")
    return run


def _bump_run(run: Run, **changes) -> None:
    Run.objects.filter(pk=run.pk).update(updated_at=timezone.now(), **changes)


def next_end_seq() -> int:
    """The next position in index order. Two runs ending at the same instant may share one (pk breaks ties)."""
    return (Run.objects.aggregate(last=Max("end_seq"))["last"] or 0) + 1


def _differences(obj, fields: dict[str, Any]) -> list[str]:
    return [name for name, value in fields.items() if getattr(obj, name) != value]


# --- runs ------------------------------------------------------------------------------------------


@retrying_conflicts
def start_run(data: Any) -> tuple[Run, bool]:
    payload = validate(RunStartIn, data, "run")
    fields = {
        "goal_id": payload.goal_id,
        "goal_description": payload.goal_description,
        "input_data": payload.input_data,
        "extra": payload.extras(),
    }
    if payload.started_at is not None:
        fields["started_at"] = payload.started_at
    with transaction.atomic():
        run = fetch_one(Run, {"run_id": payload.id}, for_update=True)
        if run is None:
            try:
                with transaction.atomic():
                    run = Run.objects.create(run_id=payload.id, status=payload.status.value, **fields)
                    rollups.record_status_change(run.goal_id, run.started_at, None, run.status)
                    return run, True
            except IntegrityError:  # another writer created it a moment ago: compare with theirs
                run = Run.objects.select_for_update().get(run_id=payload.id)
        if changed := _differences(run, fields):
            raise Conflict(
                f"Run '{payload.id}' already exists with a different {', '.join(changed)}; "
                "a replayed run start must carry the same content."
            )
        return run, False


@retrying_conflicts
def start_new_run(payload: RunStartIn, key: tuple[str, str, str] | None = None) -> Run | None:
    """A run that does not exist yet, stored with its goal's count for the day in the fewest statements the
    database allows, as `append_decision` stores a new decision (with `key`, only if an active API key
    matches; on PostgreSQL committed without waiting for the disk while `API_ONE_EVENT_ASYNC_COMMIT` is
    on): the stored run, or None, with nothing stored, when a run with its id exists (a replayed or a
    conflicting start) or the key does not match: `start_run` answers every case.

    - PostgreSQL: one autocommitted statement: INSERT ... ON CONFLICT DO NOTHING, and the day's count
      (`rollups.day_upsert`) for the row it inserted.
    - SQLite: one IMMEDIATE transaction with the same two statements.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor not in ("postgresql", "sqlite"):
        return None
    now = timezone.now()
    run = Run(run_id=payload.id, status=payload.status.value, goal_id=payload.goal_id,
              goal_description=payload.goal_description, input_data=payload.input_data, extra=payload.extras(),
              started_at=payload.started_at if payload.started_at is not None else now, created_at=now,
              updated_at=now)
    unsynced = settings.API_ONE_EVENT_ASYNC_COMMIT and not connection.in_atomic_block
    plan, writers = _start_plan(connection, checked=key is not None, unsynced=unsynced)
    values = [write(getattr(run, attname)) for attname, write in writers]
    day = [run.goal_id, connection.ops.adapt_datefield_value(rollups.utc_day(run.started_at)),
           *rollups.status_delta(run.status)]
    key = _key_params(connection, key)
    sqlite = connection.vendor == "sqlite"
    if (found := _write_one_event(connection, plan, [*values, *key] if sqlite else [*values, *key, *day],
                                  lambda found: day)) is None:
        return None
    run.pk = found[0]
    run._state.adding = False
    _saved(run, created=True)
    return run


@built_once
def _start_plan(connection, *, checked: bool, unsynced: bool) -> tuple[tuple[str, ...], list]:
    """The statements of `start_new_run` for `connection`'s database, built once, and each column's
    (attribute, writer) in the order of their parameters."""
    unsynced = unsynced and connection.vendor == "postgresql"
    quote = connection.ops.quote_name
    fields = [field for field in Run._meta.concrete_fields if not field.primary_key]
    runs, pk = quote(Run._meta.db_table), quote(Run._meta.pk.column)
    insert = f"INSERT INTO {runs} ({', '.join(quote(field.column) for field in fields)}) "
    key_check = f"EXISTS ({_active_key(connection)})" if checked else "1 = 1"  # SQLite: the SELECT needs a WHERE
    new = f"WHERE {key_check} ON CONFLICT ({quote(Run._meta.get_field('run_id').column)}) DO NOTHING RETURNING {pk}"
    if connection.vendor == "sqlite":
        statements = (f"{insert}SELECT {', '.join(['%s'] * len(fields))} {new}", rollups.day_upsert())
    else:
        values = ", ".join(f"CAST(%s AS {field.db_type(connection)})" for field in fields)
        day = rollups.day_upsert("SELECT CAST(%s AS varchar), CAST(%s AS date), "
                                 f"{', '.join(['CAST(%s AS integer)'] * len(rollups.COLUMNS))} FROM new")
        statements = (f"WITH {_unsynced_cte(unsynced)}new AS ({insert}SELECT {values} {new}), day AS ({day}) "
                      f"SELECT new.{pk} FROM new{', unsynced' if unsynced else ''}",)
    return (statements, [(field.attname, _column_writer(field, connection)) for field in fields])


@retrying_conflicts
def end_run(run_id: str, data: Any) -> tuple[Run, bool]:
    payload = validate(RunEndIn, data, "run end")
    if payload.status == RunStatus.RUNNING:
        raise Invalid(
            "Invalid run end: status: a run cannot end as 'running'; use completed, failed, stuck or cancelled.",
            [{"loc": ["status"], "msg": "must not be 'running'"}],
        )
    fields = {"status": payload.status.value, "narrative": payload.narrative, "output_data": payload.output_data}
    if payload.completed_at is not None:
        fields["completed_at"] = payload.completed_at
    with transaction.atomic():
        run = _locked_run(run_id)
        if run.completed_at is not None:
            if changed := _differences(run, fields):
                raise Conflict(
                    f"Run '{run_id}' already ended ({run.status} at {run.completed_at.isoformat()}); "
                    f"this end differs in {', '.join(changed)} and was refused."
                )
            return run, False
        fields.setdefault("completed_at", timezone.now())
        fields["end_seq"] = next_end_seq()
        rollups.record_status_change(run.goal_id, run.started_at, run.status, fields["status"])
        with rollups.refolding(run):  # its place in index order is final now: its decisions join the groups
            for name, value in fields.items():
                setattr(run, name, value)
            run.extra = {**run.extra, **payload.extras()}
            run.save(update_fields=[*fields, "extra", "updated_at"])
        return run, True


def _saved(run: Run, *, created: bool, update_fields: frozenset[str] | None = None) -> None:
    """What `run.save()` would signal, for a run a one-statement write stored (after its statement): the
    receivers (the Builder's automatic analysis of failed runs, builder/apps.py) see every run the same
    way, whichever path stored it."""
    post_save.send(sender=Run, instance=run, created=created, update_fields=update_fields, raw=False,
                   using=DEFAULT_DB_ALIAS)


# The fields `end_run` saves (`post_save`'s update_fields).
_ENDED_UPDATES = frozenset({"status", "narrative", "output_data", "completed_at", "end_seq", "extra", "updated_at"})
# What `end_pending_run` reads back of the ended run: its header and counters, what the API answers
# (`RunSummaryOut`); its JSON columns stay deferred, unread and unparsed.
ENDED_FIELDS = ("id", "run_id", "goal_id", "goal_description", "status", "started_at", "completed_at",
                "decision_count", "success_count", "failure_count", "problem_count", "total_tokens",
                "total_latency_ms")


@retrying_conflicts
def end_pending_run(run_id: str, payload: RunEndIn, key: tuple[str, str, str] | None = None) -> Run | None:
    """The end of a running run whose decisions are not folded into the pattern groups yet (it has not
    idled), stored with its goal's day count and the fold in the fewest statements the database allows
    (with `key`, only if an active API key matches): the ended run, or None, with nothing stored, when the
    run is unknown, has ended (a replay or a conflict) or is folded already, the end is not an end
    (`running`), the key does not match, or (PostgreSQL) another writer changed the run while the statement
    waited for its lock: `end_run`'s locked transaction answers every case. It commits waiting for the
    disk: an end is what makes the run's one-event writes before it durable (README, "The API").

    - PostgreSQL: one statement that locks the run row, checks that the row it locked is the one its
      snapshot read (its `xmin`: every write to a run's decisions also writes the run row, so then no
      decision the snapshot misses exists), sets the end, its place in index order and the run's fields,
      moves the goal's day count and adds the run's decisions to the groups (`rollups.run_fold`).
    - SQLite: one IMMEDIATE transaction of three statements: the run found, checked and ended by one
      UPDATE, the day count (when the status moves it), the fold. An end with fields of its own (extras,
      merged into the run's) reads the run first: four.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor not in ("postgresql", "sqlite") or payload.status == RunStatus.RUNNING:
        return None
    now = timezone.now()
    status = payload.status.value
    plan, writers = _end_plan(connection, checked=key is not None)
    written = [writers[name](value) for name, value in (
        ("status", status), ("narrative", payload.narrative), ("output_data", payload.output_data),
        ("completed_at", payload.completed_at if payload.completed_at is not None else now),
        ("updated_at", now))]
    key = _key_params(connection, key)
    if connection.vendor == "postgresql":
        added = rollups.status_delta(status)  # the day's delta: what the new status adds, less the old's
        delta = [value for i, column in enumerate(rollups.COLUMNS[1:], 1) for value in (added[i], column)]
        extra = writers["extra"](payload.extras())
        with rawsql.cursor(connection, plan[0], [*key, run_id, *written, extra, *delta, status,
                                                 *rollups.GROUPED_PARAMS]) as cursor:
            row = cursor.fetchone()
        if row is None:
            return None
        run = from_row(Run, row, ENDED_FIELDS)
    else:
        extras = payload.extras()
        with rawsql.immediate_transaction(connection):
            if extras:  # merged into the run's own, key by key, so read first
                with rawsql.cursor(connection, plan[0], [run_id, *key]) as cursor:
                    found = cursor.fetchone()
                if found is None:
                    return None
                pk, _goal_id, old_status, extra = found
                extra = writers["extra"]({**json.loads(extra), **extras})
                with rawsql.cursor(connection, plan[1], [*written, extra, pk]) as cursor:
                    row = cursor.fetchone()
            else:  # found, checked and ended by one UPDATE (a status other than running: the full path)
                old_status = RunStatus.RUNNING
                with rawsql.cursor(connection, plan[4], [*written, run_id, *key]) as cursor:
                    if (row := cursor.fetchone()) is None:
                        return None
            run = from_row(Run, row, ENDED_FIELDS)
            if any(delta := rollups.change_delta(old_status, status)):
                day = connection.ops.adapt_datefield_value(rollups.utc_day(run.started_at))
                with rawsql.cursor(connection, plan[2], [run.goal_id, day, *delta]):
                    pass
            with rawsql.cursor(connection, plan[3], [run.pk, *rollups.GROUPED_PARAMS]):
                pass
    _saved(run, created=False, update_fields=_ENDED_UPDATES)
    return run


@built_once
def _end_plan(connection, *, checked: bool) -> tuple[tuple[str, ...], dict[str, Callable]]:
    """The statements of `end_pending_run` for `connection`'s database, built once, and the writers of the
    run columns it sets."""
    quote = connection.ops.quote_name
    column = {name: quote(Run._meta.get_field(name).column) for name in (
        "id", "goal_id", "status", "started_at", "narrative", "output_data", "completed_at", "end_seq", "extra",
        "pattern_pending", "updated_at")}
    sets = ("status", "narrative", "output_data", "completed_at", "updated_at", "extra")
    runs = quote(Run._meta.db_table)
    place = f"(SELECT COALESCE(MAX(e.{column['end_seq']}), 0) + 1 FROM {runs} e)"
    unended = f" AND r.{column['completed_at']} IS NULL"
    run = _run_lock(connection, checked=checked, unsynced=False, also=unended,
                    counted=("goal_id", "status", "started_at") if connection.vendor == "postgresql"
                    else ("goal_id", "status", "extra"), versioned=True)
    if connection.vendor == "sqlite":
        picked, fold = rollups.run_fold("ended")
        ending = (f"UPDATE {runs} SET {', '.join(f'{column[name]} = %s' for name in sets[:-1])}, "
                  f"{column['end_seq']} = {place}, {column['pattern_pending']} = FALSE")
        returning = f"RETURNING {columns_of(Run, names=ENDED_FIELDS)}"
        running = _run_lock(connection, checked=checked, unsynced=False,
                            also=f"{unended} AND r.{column['status']} = '{RunStatus.RUNNING.value}'")
        statements = (
            run["found"],
            f"{ending}, {column['extra']} = %s WHERE {column['id']} = %s {returning}",
            rollups.day_upsert(),
            f"WITH ended AS (SELECT {column['id']} AS id, {column['goal_id']} AS goal_id, "
            f"{column['end_seq']} AS end_seq FROM {runs} WHERE {column['id']} = %s), {picked} {fold}",
            f"{ending} WHERE {column['id']} = ({running['found']}) {returning}",  # an end without extras
        )
    else:
        types = {name: Run._meta.get_field(name).db_type(connection) for name in sets}
        values = ", ".join(f"{column[name]} = CAST(%s AS {types[name]})" for name in sets[:-1])
        deltas = ", ".join(f"CAST(%s AS integer) - CASE WHEN c.{column['status']} = %s THEN 1 ELSE 0 END"
                           for _ in rollups.COLUMNS[1:])
        day = rollups.day_upsert(f"SELECT c.{column['goal_id']}, CAST(c.{column['started_at']} AT TIME ZONE 'UTC' "
                                 f"AS date), 0, {deltas} FROM calm c WHERE c.{column['status']} <> %s")
        picked, fold = rollups.run_fold("calm")
        statements = (
            f"{run['locked']}, "
            f"calm AS (SELECT l.{column['id']} AS id, l.{column['goal_id']} AS goal_id, l.{column['status']}, "
            f"l.{column['started_at']}, {place} AS end_seq FROM locked l "
            f"JOIN {runs} s ON s.{column['id']} = l.{column['id']} AND s.xmin = l.version), "
            f"ended AS (UPDATE {runs} r SET {values}, {column['extra']} = r.{column['extra']} || CAST(%s AS jsonb), "
            f"{column['end_seq']} = c.end_seq, {column['pattern_pending']} = FALSE FROM calm c "
            f"WHERE r.{column['id']} = c.id RETURNING {columns_of(Run, 'r', ENDED_FIELDS)}), "
            f"day AS ({day}), {picked}, fold AS ({fold}) "
            "SELECT * FROM ended",
        )
    return (statements, {name: _column_writer(Run._meta.get_field(name), connection) for name in sets})


# --- decisions and outcomes ------------------------------------------------------------------------


def _decision_fields(payload: DecisionIn) -> dict[str, Any]:
    options = [option.stored() for option in payload.options]
    chosen = next((o for o in payload.options if o.id == payload.chosen_option_id), None)
    return {
        "node_id": payload.node_id,
        "intent": payload.intent,
        "decision_type": payload.decision_type.value,
        "options": options,
        "chosen_option_id": payload.chosen_option_id,
        "chosen_description": chosen.description if chosen is not None else None,
        "reasoning": payload.reasoning,
        "active_constraints": payload.active_constraints,
        "input_context": payload.input_context,
        "evaluation": payload.evaluation.model_dump(mode="json") if payload.evaluation is not None else None,
        "extra": payload.extras(),
    }


def _outcome_fields(payload: OutcomeIn) -> dict[str, Any]:
    fields = {
        "outcome_success": payload.success,
        "outcome_result": payload.result,
        "outcome_error": payload.error,
        "outcome_state_changes": payload.state_changes,
        "outcome_tokens": payload.tokens_used,
        "outcome_latency_ms": payload.latency_ms,
        "outcome_summary": payload.summary,
        "outcome_extra": payload.extras(),
    }
    if payload.timestamp is not None:
        fields["outcome_timestamp"] = payload.timestamp
    return fields


M = TypeVar("M", Decision, Problem)


def _stored_in(run: Run, model: type[M], **where) -> M | None:
    """`run.decisions.filter(**where).first()` (or problems), through `fetch_one`, with its run attached."""
    found = fetch_one(model, {"run": run.pk, **where})
    if found is not None:
        found.run = run
    return found


def _default_seq(run: Run, decision_id: str) -> int:
    if match := _DEC_N.fullmatch(decision_id):
        return int(match.group(1))
    return run.decision_count


def _nodes_after_insert(run: Run, node_id: str, *, later: bool) -> list[str]:
    """metrics.nodes_executed once a decision at `node_id` is in (`later`: a decision after it was already
    stored, so the order is read back from the rows)."""
    if not later:
        nodes = list(run.nodes_executed)
        return nodes if node_id in nodes else [*nodes, node_id]
    nodes: list[str] = []
    for node_id in run.decisions.order_by("seq", "pk").values_list("node_id", flat=True):
        if node_id not in nodes:
            nodes.append(node_id)
    return nodes


@retrying_conflicts
def add_decision(run_id: str, data: Any) -> tuple[dict[str, Any], bool]:
    """Record a decision (and its inline outcome, if any): what the API answers (`DecisionOut`'s fields)
    and `created`, False on a replay."""
    payload = validate(DecisionIn, data, "decision")
    fields = _decision_fields(payload)
    new = _new_decision(payload, fields)
    if (seq := _append_decision(run_id, payload, new)) is not None:
        return _decision_answer(run_id, payload.id, seq, new), True
    with transaction.atomic():
        run = _locked_run(run_id)
        seq = payload.index if payload.index is not None else _default_seq(run, payload.id)
        decision = Decision(run=run, decision_id=payload.id, seq=seq, **new)
        inserted = _insert_new_decision(_row_of(decision))
        created = inserted is not None
        if created:
            decision.pk, later = inserted
            decision._state.adding = False
            ok, bad, tokens, latency = _outcome_contribution(decision)
            _add_decisions_to_run(run, _nodes_after_insert(run, decision.node_id, later=later), 1, ok, bad, tokens,
                                  latency)
            rollups.fold_new_decisions(run, [decision.decision_id])
        else:
            decision = _stored_in(run, Decision, decision_id=payload.id)
            compared = dict(fields)
            if payload.index is not None:
                compared["seq"] = payload.index
            if payload.timestamp is not None:
                compared["timestamp"] = payload.timestamp
            if changed := _differences(decision, compared):
                raise Conflict(
                    f"Decision '{payload.id}' already exists in run '{run_id}' with a different "
                    f"{', '.join(changed)}; decisions cannot be changed once reported."
                )
            if payload.outcome is not None:
                _apply_outcome(run, decision, payload.outcome)
        return _decision_answer(run_id, decision.decision_id, decision.seq, vars(decision)), created


@retrying_conflicts
def append_decision(run_id: str, payload: DecisionIn, key: tuple[str, str, str]) -> dict[str, Any] | None:
    """A new decision at the end of its run, stored only if `key` (lookup, digest, scope: `BearerKey`)
    matches an active API key that carries the scope, checked in the statement that stores it: what the API
    answers (201), or None, with nothing stored, when the key does not match or this is not the plain
    append case. The caller then checks the key on its own and calls `add_decision`, which answers every case.
    On PostgreSQL its commit does not wait for the disk while `API_ONE_EVENT_ASYNC_COMMIT` is on."""
    new = _new_decision(payload, _decision_fields(payload))
    if (seq := _append_decision(run_id, payload, new, key=key,
                                unsynced=settings.API_ONE_EVENT_ASYNC_COMMIT)) is None:
        return None
    return _decision_answer(run_id, payload.id, seq, new)


def _new_decision(payload: DecisionIn, fields: dict[str, Any]) -> dict[str, Any]:
    """A new decision's stored fields: `fields`, its timestamp if given and its inline outcome if any."""
    new = dict(fields)
    if payload.timestamp is not None:
        new["timestamp"] = payload.timestamp
    if payload.outcome is not None:  # a new decision's inline outcome: one INSERT, one counter UPDATE
        new.update(_outcome_fields(payload.outcome))
        new.setdefault("outcome_timestamp", timezone.now())
    return new


def _decision_answer(run_id: str, decision_id: str, seq: int, fields: dict[str, Any]) -> dict[str, Any]:
    """`DecisionOut`'s fields, from the stored decision's column values by field name."""
    success = fields.get("outcome_success")
    return {"run_id": run_id, "decision_id": decision_id, "seq": seq, "node_id": fields["node_id"],
            "decision_type": fields["decision_type"], "chosen_option_id": fields["chosen_option_id"],
            "chosen_description": fields["chosen_description"], "has_outcome": success is not None,
            "outcome_success": success}


# PostgreSQL: SET LOCAL synchronous_commit = off, as a query, to put in a CTE of an autocommitted statement:
# it holds until that statement's own commit, which reads it, and costs no round trip of its own.
NOT_WAITING_FOR_THE_DISK = "SELECT set_config('synchronous_commit', 'off', true)"


def _append_decision(run_id: str, payload: DecisionIn, new: dict[str, Any], *,
                     key: tuple[str, str, str] | None = None, unsynced: bool = False) -> int | None:
    """A new decision at the end of its run, stored in the fewest statements the database allows (its
    position), or None when this is not that case (unknown run, replay, a later decision stored, no position without the
    run's count, a run already folded into the pattern groups): then `add_decision` takes its locked
    transaction, which answers every case. The statements go through `rawsql` (prepared on PostgreSQL).

    Only a run whose decisions are not folded into the pattern groups yet qualifies (a folded run's new
    decisions must reach the groups: the locked path does that), and only when no decision at or after
    this position is stored (else the run's nodes need the recount of the locked path).

    - PostgreSQL: one autocommitted statement. It first locks the run row (SELECT ... FOR UPDATE in a
      CTE, re-checked on the latest row version), so it queues behind every other writer of the run
      exactly as the locked transaction does; then it INSERTs the row and UPDATEs the counters as
      increments. What the statement's snapshot cannot see is a decision a concurrent writer stored while
      it waited for that lock: the count it saw differs from the count it updated, and the run's nodes
      are then rebuilt under the lock.
    - SQLite: one IMMEDIATE transaction (the whole database's write lock, so nothing can race it) with an
      INSERT ... SELECT that finds the run and checks the conditions, and the counter UPDATE, which adds
      the node to `nodes_executed` in SQL (JSON1).

    With `key` (lookup, digest, scope), the run is only found if an active API key matches all three.
    With `unsynced`, PostgreSQL answers the statement's commit before it reaches the disk, except inside a
    caller's transaction, whose commit that would be.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor not in ("postgresql", "sqlite"):
        return None
    seq = payload.index
    if seq is None:
        if (match := _DEC_N.fullmatch(payload.id)) is None:
            return None
        seq = int(match.group(1))
    _, columns = _insert_plan(connection)
    row = {"decision_id": payload.id, "seq": seq, **new}
    values = _params(row, columns[1:])  # the run's column comes from the run row
    added = _contribution(row.get("outcome_success"), row.get("outcome_tokens", 0), row.get("outcome_latency_ms", 0))
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    unsynced = unsynced and not connection.in_atomic_block
    node_id, plan = row["node_id"], _append_plan(connection, checked=key is not None, unsynced=unsynced)
    key = _key_params(connection, key)
    if connection.vendor == "sqlite":
        params = [*values, run_id, *key, seq]
    else:
        nodes = connection.ops.adapt_json_value([node_id], None)
        params = [*key, run_id, *values, seq, now, *added, nodes, nodes]
    if (found := _write_one_event(connection, plan, params,
                                  lambda found: [now, *added, node_id, node_id, found[1]])) is None:
        return None
    if connection.vendor == "postgresql" and found[2]:  # raced: a decision stored while it waited for the run's lock
        _renode_after_race(run_id, node_id)
    return seq


@retrying_conflicts
def _renode_after_race(run_id: str, node_id: str) -> None:
    """The run's nodes rebuilt under its lock, after the append's statement (committed) found it had raced
    another writer: a transaction of its own, so that a refused try runs again without the append."""
    with transaction.atomic():
        run = _locked_run(run_id)
        _bump_run(run, nodes_executed=_nodes_after_insert(run, node_id, later=True))


def _write_one_event(connection, plan: tuple[str, ...], params: list,
                     then: Callable[[tuple], list]) -> tuple | None:
    """A one-event write's statements (`plan`): on PostgreSQL its one statement with `params`; on SQLite,
    in one IMMEDIATE transaction, the first with `params`, then, when that returned a row, the second with
    `then(row)`. The row the first statement returned, or None when it stored nothing."""
    if connection.vendor == "sqlite":
        with rawsql.immediate_transaction(connection):
            with rawsql.cursor(connection, plan[0], params) as cursor:
                found = cursor.fetchone()
            if found is not None:
                with rawsql.cursor(connection, plan[1], then(found)):
                    pass
        return found
    with rawsql.cursor(connection, plan[0], params) as cursor:
        return cursor.fetchone()


def _run_lock(connection, *, checked: bool, unsynced: bool, also: str = "", pending: bool = True,
              counted: tuple[str, ...] = (), versioned: bool = False) -> dict[str, str]:
    """The pieces the one-statement writes share: `locked`, on PostgreSQL the start of a WITH clause that
    locks the run row found by its `run_id` (a parameter), with `pending` only while its decisions are not
    folded into the pattern groups, plus the condition `also` (`r.` is the run), and with `checked` only
    when an active API key matches (lookup, digest, scope: parameters before the run's id); it holds the
    run's `id` and the `counted` columns (with `versioned`, also `version`, the locked row version's
    `xmin`). `join`: what the statement's last FROM joins so that the
    `unsynced` CTE is evaluated (its commit not waiting for the disk). On SQLite, `found`: the same run
    found and checked, as a query."""
    quote = connection.ops.quote_name
    runs = quote(Run._meta.db_table)
    run_pk, run_id, pending_column = (quote(Run._meta.get_field(name).column)
                                      for name in ("id", "run_id", "pattern_pending"))
    where = f"WHERE r.{run_id} = %s{f' AND r.{pending_column}' if pending else ''}{also}"
    selected = ", ".join(f"r.{quote(Run._meta.get_field(name).column)}" for name in ("id", *counted))
    if versioned and connection.vendor == "postgresql":
        selected += ", r.xmin AS version"
    if connection.vendor == "sqlite":
        key_check = f" AND EXISTS ({_active_key(connection)})" if checked else ""
        return {"found": f"SELECT {selected} FROM {runs} r {where}{key_check}"}
    key_cte = f"WITH key AS ({_active_key(connection)}), " if checked else "WITH "
    unsynced_cte = _unsynced_cte(unsynced)
    return {"locked": f"{key_cte}{unsynced_cte}locked AS (SELECT {selected} FROM {runs} r {where}"
                      f"{' AND EXISTS (SELECT 1 FROM key)' if checked else ''} FOR UPDATE OF r)",
            "join": ", unsynced" if unsynced else ""}


def _active_key(connection) -> str:
    """A query with a row when an active API key matches (lookup, digest, scope: parameters)."""
    quote = connection.ops.quote_name
    column = {name: quote(ApiKey._meta.get_field(name).column) for name in ("lookup", "digest", "revoked_at", "scopes")}
    scope = (f"EXISTS (SELECT 1 FROM json_each(k.{column['scopes']}) s WHERE s.value = %s)"
             if connection.vendor == "sqlite" else f"k.{column['scopes']} @> CAST(%s AS jsonb)")
    return (f"SELECT 1 FROM {quote(ApiKey._meta.db_table)} k WHERE k.{column['lookup']} = %s "
            f"AND k.{column['digest']} = %s AND k.{column['revoked_at']} IS NULL AND {scope}")


def _unsynced_cte(unsynced: bool) -> str:
    """PostgreSQL: the WITH item that keeps the statement's own commit from waiting for the disk (it must
    be joined by the statement to be evaluated)."""
    return f"unsynced AS ({NOT_WAITING_FOR_THE_DISK}), " if unsynced else ""


def _key_params(connection, key: tuple[str, str, str] | None) -> tuple:
    """`_active_key`'s parameters for `key` (lookup, digest, scope): none without one."""
    if key is None:
        return ()
    return key[0], key[1], connection.ops.adapt_json_value([key[2]], None) if connection.vendor == "postgresql" else key[2]


@built_once
def _append_plan(connection, *, checked: bool, unsynced: bool = False) -> tuple[str, ...]:
    """The statements of `_append_decision` for `connection`'s database, built once (`checked`: with the
    API-key condition; `unsynced`: on PostgreSQL, the statement's own transaction commits without waiting
    for the disk, `settings.API_ONE_EVENT_ASYNC_COMMIT`)."""
    unsynced = unsynced and connection.vendor == "postgresql"
    quote = connection.ops.quote_name
    fields = [field for field in Decision._meta.concrete_fields if not field.primary_key]
    assert fields[0].name == "run"  # filled from the run row, not a parameter
    column = {name: quote(Run._meta.get_field(name).column) for name in (
        "id", "updated_at", "nodes_executed", "decision_count", "success_count", "failure_count",
        "total_tokens", "total_latency_ms")}
    owner, position = quote(fields[0].column), quote(Decision._meta.get_field("seq").column)
    decisions, runs = quote(Decision._meta.db_table), quote(Run._meta.db_table)
    decision_pk = quote(Decision._meta.pk.column)
    insert = f"INSERT INTO {decisions} AS added ({', '.join(quote(f.column) for f in fields)}) "
    run = _run_lock(connection, checked=checked, unsynced=unsynced)

    def nothing_after(alias: str) -> str:
        # On PostgreSQL, OFFSET 0 keeps the planner from turning this into an anti-join: with the run taken
        # from a CTE, the prepared statement's generic plan, made while the table was small and not yet
        # analyzed, read every decision (a Seq Scan) and kept doing so as the table grew: the append got
        # slower with every decision stored. As a subplan it is one probe of the (run, seq) index.
        fence = " OFFSET 0" if connection.vendor == "postgresql" else ""
        return (f"NOT EXISTS (SELECT 1 FROM {decisions} d WHERE d.{owner} = {alias}.{column['id']} "
                f"AND d.{position} >= %s{fence})")
    nodes = column["nodes_executed"]
    if connection.vendor == "sqlite":
        plan = (
            f"{insert}SELECT r.{column['id']}, {', '.join(['%s'] * (len(fields) - 1))} FROM ({run['found']}) r "
            f"WHERE {nothing_after('r')} ON CONFLICT DO NOTHING RETURNING {decision_pk}, {owner}",
            f"UPDATE {runs} SET {column['updated_at']} = %s, "
            f"{column['decision_count']} = {column['decision_count']} + 1, {_counters_added(column, '')}, "
            f"{nodes} = CASE WHEN EXISTS (SELECT 1 FROM json_each({nodes}) WHERE value = %s) THEN {nodes} "
            f"ELSE json_insert({nodes}, '$[#]', %s) END WHERE {column['id']} = %s",
        )
    else:
        values = ", ".join(f"CAST(%s AS {field.db_type(connection)})" for field in fields[1:])
        plan = (
            f"{run['locked']}, "
            f"ins AS ({insert}SELECT l.{column['id']}, {values} FROM locked l WHERE {nothing_after('l')} "
            f"ON CONFLICT DO NOTHING RETURNING added.{decision_pk}, added.{owner}, "
            f"(SELECT s.{column['decision_count']} FROM {runs} s WHERE s.{column['id']} = added.{owner}) AS seen) "
            f"UPDATE {runs} r SET {column['updated_at']} = %s, "
            f"{column['decision_count']} = r.{column['decision_count']} + 1, {_counters_added(column, 'r.')}, "
            f"{nodes} = CASE WHEN r.{nodes} @> CAST(%s AS jsonb) THEN r.{nodes} ELSE r.{nodes} || CAST(%s AS jsonb) END "
            f"FROM ins{run['join']} WHERE r.{column['id']} = ins.{owner} "
            f"RETURNING ins.{decision_pk}, r.{column['id']}, r.{column['decision_count']} <> ins.seen + 1",
        )
    return plan


def _counters_added(column: dict[str, str], alias: str) -> str:
    """SET's increments of a run's outcome counters, each by a parameter (`_contribution`'s order)."""
    return ", ".join(f"{column[name]} = {alias}{column[name]} + %s"
                     for name in ("success_count", "failure_count", "total_tokens", "total_latency_ms"))


_OUTCOME_ANSWERED = ("seq", "node_id", "decision_type", "chosen_option_id", "chosen_description")


@retrying_conflicts
def record_first_outcome(run_id: str, decision_id: str, payload: OutcomeIn,
                         key: tuple[str, str, str] | None = None) -> dict[str, Any] | None:
    """A decision's first outcome, stored in the fewest statements the database allows, as
    `append_decision` stores a new decision (with `key`, only if an active API key matches; on PostgreSQL
    committed without waiting for the disk while `API_ONE_EVENT_ASYNC_COMMIT` is on): what the API
    answers (201), or None, with nothing stored, when this is not that case (no such run or decision, an
    outcome already there, a run that has ended or is folded into the pattern groups, whose groups must
    follow): `record_outcome`'s locked transaction answers every case.

    - PostgreSQL: one autocommitted statement that locks the run row (as `_append_decision`), UPDATEs the
      decision while it has no outcome (re-checked on the latest row version, so a racing outcome makes it
      store nothing) and adds the outcome to the run's counters.
    - SQLite: one IMMEDIATE transaction with the same UPDATE and the counters' UPDATE.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor not in ("postgresql", "sqlite"):
        return None
    fields = _outcome_fields(payload)
    fields.setdefault("outcome_timestamp", timezone.now())
    unsynced = settings.API_ONE_EVENT_ASYNC_COMMIT and not connection.in_atomic_block
    plan, writers = _outcome_plan(connection, checked=key is not None, unsynced=unsynced)
    values = [write(fields[name]) for name, write in writers]
    added = _contribution(payload.success, payload.tokens_used, payload.latency_ms)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    key = _key_params(connection, key)
    params = ([*values, decision_id, run_id, *key] if connection.vendor == "sqlite"
              else [*key, run_id, *values, decision_id, now, *added])
    if (found := _write_one_event(connection, plan, params, lambda found: [now, *added, found[0]])) is None:
        return None
    return {"run_id": run_id, "decision_id": decision_id, **dict(zip(_OUTCOME_ANSWERED, found[1:])),
            "has_outcome": True, "outcome_success": payload.success}


@built_once
def _outcome_plan(connection, *, checked: bool, unsynced: bool) -> tuple[tuple[str, ...], list]:
    """The statements of `record_first_outcome` for `connection`'s database, built once, and each outcome
    column's (field name, writer) in the order of their parameters."""
    unsynced = unsynced and connection.vendor == "postgresql"
    quote = connection.ops.quote_name
    fields = [field for field in Decision._meta.concrete_fields if field.name.startswith("outcome_")]
    column = {name: quote(Run._meta.get_field(name).column) for name in (
        "id", "updated_at", "success_count", "failure_count", "total_tokens", "total_latency_ms")}
    owner, decision_id, success = (quote(Decision._meta.get_field(name).column)
                                   for name in ("run", "decision_id", "outcome_success"))
    answered = [quote(Decision._meta.get_field(name).column) for name in _OUTCOME_ANSWERED]
    decisions, runs = quote(Decision._meta.db_table), quote(Run._meta.db_table)
    run = _run_lock(connection, checked=checked, unsynced=unsynced, also=f" AND r.{quote(Run._meta.get_field('end_seq').column)} IS NULL")
    if connection.vendor == "sqlite":
        sets = ", ".join(f"{quote(field.column)} = %s" for field in fields)
        statements = (
            f"UPDATE {decisions} SET {sets} WHERE {decision_id} = %s AND {success} IS NULL "
            f"AND {owner} = ({run['found']}) RETURNING {owner}, {', '.join(answered)}",
            f"UPDATE {runs} SET {column['updated_at']} = %s, {_counters_added(column, '')} WHERE {column['id']} = %s",
        )
    else:
        sets = ", ".join(f"{quote(field.column)} = CAST(%s AS {field.db_type(connection)})" for field in fields)
        statements = (
            f"{run['locked']}, "
            f"outcome AS (UPDATE {decisions} d SET {sets} FROM locked l WHERE d.{owner} = l.{column['id']} "
            f"AND d.{decision_id} = %s AND d.{success} IS NULL RETURNING d.{owner}, "
            f"{', '.join(f'd.{name}' for name in answered)}) "
            f"UPDATE {runs} r SET {column['updated_at']} = %s, {_counters_added(column, 'r.')} "
            f"FROM outcome d{run['join']} WHERE r.{column['id']} = d.{owner} "
            f"RETURNING d.{owner}, {', '.join(f'd.{name}' for name in answered)}",
        )
    return (statements, [(field.name, _column_writer(field, connection)) for field in fields])


def _outcome_contribution(decision: Decision) -> tuple[int, int, int, int]:
    return _contribution(decision.outcome_success, decision.outcome_tokens, decision.outcome_latency_ms)


def _contribution(success: bool | None, tokens: int, latency: int) -> tuple[int, int, int, int]:
    """What one decision's outcome adds to its run's (successes, failures, tokens, latency)."""
    if success is None:
        return 0, 0, 0, 0
    return int(success is True), int(success is False), tokens, latency


def _apply_outcome(run: Run, decision: Decision, payload: OutcomeIn) -> bool:
    """Attach or replace the outcome; True when the decision had none before."""
    fields = _outcome_fields(payload)
    first = decision.outcome_success is None
    if not first and not _differences(decision, fields):
        return False
    fields.setdefault("outcome_timestamp", timezone.now())
    before = _outcome_contribution(decision)
    for name, value in fields.items():
        setattr(decision, name, value)
    with rollups.refolding(run, [decision.decision_id]):  # a folded run's pattern groups follow
        decision.save(update_fields=list(fields))
    after = _outcome_contribution(decision)
    delta = [new - old for new, old in zip(after, before)]
    _bump_run(
        run,
        success_count=F("success_count") + delta[0],
        failure_count=F("failure_count") + delta[1],
        total_tokens=F("total_tokens") + delta[2],
        total_latency_ms=F("total_latency_ms") + delta[3],
    )
    return first


@retrying_conflicts
def record_outcome(run_id: str, decision_id: str, data: Any) -> tuple[Decision, bool]:
    """Attach an outcome. `created` is True the first time; a different outcome replaces the old one."""
    payload = validate(OutcomeIn, data, "outcome")
    with transaction.atomic():
        run = _locked_run(run_id)
        decision = _stored_in(run, Decision, decision_id=decision_id)
        if decision is None:
            raise NotFound(f"Decision '{decision_id}' not found in run '{run_id}': report the decision first.")
        return decision, _apply_outcome(run, decision, payload)


# --- problems --------------------------------------------------------------------------------------


def _problem_fields(payload: ProblemIn) -> dict[str, Any]:
    return {
        "severity": payload.severity,
        "description": payload.description,
        "root_cause": payload.root_cause,
        "decision_id": payload.decision_id,
        "suggested_fix": payload.suggested_fix,
        "extra": payload.extras(),
    }


@retrying_conflicts
def add_problem(run_id: str, data: Any) -> tuple[Problem, bool]:
    payload = validate(ProblemIn, data, "problem")
    fields = _problem_fields(payload)
    if payload.timestamp is not None:
        fields["timestamp"] = payload.timestamp
    with transaction.atomic():
        run = _locked_run(run_id)
        problem = _stored_in(run, Problem, problem_id=payload.id)
        if problem is not None:
            if changed := _differences(problem, fields):
                raise Conflict(
                    f"Problem '{payload.id}' already exists in run '{run_id}' with a different "
                    f"{', '.join(changed)}; problems cannot be changed once reported."
                )
            return problem, False
        match = _PROB_N.fullmatch(payload.id)
        seq = int(match.group(1)) if match else run.problem_count
        problem = Problem.objects.create(run=run, problem_id=payload.id, seq=seq, **fields)
        _bump_run(run, problem_count=F("problem_count") + 1)
        return problem, True


@retrying_conflicts
def add_new_problem(run_id: str, payload: ProblemIn, key: tuple[str, str, str] | None = None) -> dict[str, Any] | None:
    """A problem new to its run, stored with the run's count in the fewest statements the database allows,
    as `append_decision` stores a new decision (with `key`, only if an active API key matches; on
    PostgreSQL committed without waiting for the disk while `API_ONE_EVENT_ASYNC_COMMIT` is on): what the
    API answers (201), or None, with nothing stored, when the run is unknown, the problem is there already
    (a replay or a conflict) or the key does not match: `add_problem` answers every case.

    - PostgreSQL: one autocommitted statement that locks the run row (its problem count gives the
      position of an id that does not name one), INSERTs the problem and counts it.
    - SQLite: one IMMEDIATE transaction with the INSERT ... SELECT and the count's UPDATE.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor not in ("postgresql", "sqlite"):
        return None
    fields = _problem_fields(payload)
    fields["timestamp"] = payload.timestamp if payload.timestamp is not None else timezone.now()
    fields["problem_id"] = payload.id
    unsynced = settings.API_ONE_EVENT_ASYNC_COMMIT and not connection.in_atomic_block
    plan, writers = _problem_plan(connection, checked=key is not None, unsynced=unsynced)
    values = [write(fields[name]) for name, write in writers]
    match = _PROB_N.fullmatch(payload.id)
    seq = int(match.group(1)) if match else None  # else the run's problem count, read under its lock
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    key = _key_params(connection, key)
    params = [seq, *values, run_id, *key] if connection.vendor == "sqlite" else [*key, run_id, seq, *values, now]
    if _write_one_event(connection, plan, params, lambda found: [now, found[0]]) is None:
        return None
    return {"run_id": run_id, "problem_id": payload.id, "severity": fields["severity"],
            "description": fields["description"], "decision_id": fields["decision_id"]}


@built_once
def _problem_plan(connection, *, checked: bool, unsynced: bool) -> tuple[tuple[str, ...], list]:
    """The statements of `add_new_problem` for `connection`'s database, built once, and each column's
    (field name, writer) after the run and the position, in the order of their parameters."""
    unsynced = unsynced and connection.vendor == "postgresql"
    quote = connection.ops.quote_name
    fields = [field for field in Problem._meta.concrete_fields if field.name not in ("id", "run", "seq")]
    owner, position = (quote(Problem._meta.get_field(name).column) for name in ("run", "seq"))
    column = {name: quote(Run._meta.get_field(name).column) for name in ("id", "problem_count", "updated_at")}
    problems, runs = quote(Problem._meta.db_table), quote(Run._meta.db_table)
    run = _run_lock(connection, checked=checked, unsynced=unsynced, pending=False, counted=("problem_count",))
    insert = f"INSERT INTO {problems} ({owner}, {position}, {', '.join(quote(f.column) for f in fields)}) "
    if connection.vendor == "sqlite":
        statements = (
            f"{insert}SELECT r.{column['id']}, COALESCE(%s, r.{column['problem_count']}), "
            f"{', '.join(['%s'] * len(fields))} FROM ({run['found']}) r WHERE 1 = 1 "
            f"ON CONFLICT DO NOTHING RETURNING {owner}",
            f"UPDATE {runs} SET {column['problem_count']} = {column['problem_count']} + 1, "
            f"{column['updated_at']} = %s WHERE {column['id']} = %s",
        )
    else:
        values = ", ".join(f"CAST(%s AS {field.db_type(connection)})" for field in fields)
        statements = (
            f"{run['locked']}, ins AS ({insert}SELECT r.{column['id']}, "
            f"COALESCE(CAST(%s AS integer), r.{column['problem_count']}), {values} FROM locked r "
            f"ON CONFLICT DO NOTHING RETURNING {owner}) "
            f"UPDATE {runs} r SET {column['problem_count']} = r.{column['problem_count']} + 1, "
            f"{column['updated_at']} = %s FROM ins{run['join']} WHERE r.{column['id']} = ins.{owner} "
            f"RETURNING r.{column['id']}",
        )
    return (statements, [(field.name, _column_writer(field, connection)) for field in fields])


# --- batches ---------------------------------------------------------------------------------------

EVENT_TYPES = ("run_start", "decision", "outcome", "problem", "run_end")


def _event_text(event: dict, key: str, *, required: bool = True) -> str | None:
    value = event.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 200 or unstorable_text(value):
        rule = "must be a non-empty string of at most 200 characters, without NUL bytes or lone surrogates"
        raise Invalid(f"Invalid event: {key}: {rule}.", [{"loc": [key], "msg": rule}])
    return value


def _body_id(body: dict, key: str, expected: str | None, what: str) -> dict:
    """The body with its `id` filled from the event (or Invalid when the two disagree)."""
    if expected is None:
        return body
    if "id" in body and body["id"] != expected:
        raise Invalid(f"Invalid event: body.id '{body['id']}' does not match {key} '{expected}' of the {what}.",
                      [{"loc": ["body", "id"], "msg": f"does not match {key}"}])
    return {**body, "id": expected}


def apply_event(event: Any) -> tuple[int, str]:
    """Apply one batch event in its own transaction: (201|200, "") or (4xx, what went wrong)."""
    try:
        if not isinstance(event, dict):
            raise Invalid(f"Invalid event: expected a JSON object, got {type(event).__name__}.")
        kind = event.get("type")
        if kind not in EVENT_TYPES:
            raise Invalid(f"Invalid event: type: must be one of {', '.join(EVENT_TYPES)}; got {kind!r}.",
                          [{"loc": ["type"], "msg": "unknown event type"}])
        run_id = _event_text(event, "run_id")
        body = event.get("body", {})
        if not isinstance(body, dict):
            raise Invalid("Invalid event: body: expected a JSON object.", [{"loc": ["body"], "msg": "not an object"}])
        created = _dispatch(kind, run_id, event, body)
    except IngestError as exc:
        return exc.status, exc.detail
    return (201 if created else 200), ""


def _dispatch(kind: str, run_id: str, event: dict, body: dict) -> bool:
    if kind == "run_start":
        return start_run(_body_id(body, "run_id", run_id, "run"))[1]
    if kind == "decision":
        decision_id = _event_text(event, "decision_id", required=False)
        return add_decision(run_id, _body_id(body, "decision_id", decision_id, "decision"))[1]
    if kind == "outcome":
        return record_outcome(run_id, _event_text(event, "decision_id"), body)[1]
    if kind == "problem":
        return add_problem(run_id, body)[1]
    return end_run(run_id, body)[1]


def apply_events(events: list, *, checked: bool = False) -> list[tuple[int, str]]:
    """Apply a batch's events in order: (status, detail) per event, as `apply_event` would answer each.

    A run of consecutive new decisions and their outcomes for one run (what the SDK sends) is written
    set-based, in one transaction: one lock, one MAX(seq), one INSERT (`executemany`; a decision stored
    already makes it fail, and the segment falls back), one counter UPDATE. `checked`: the events come
    from `schemas.storable_json`, so their bodies are validated in one call without the per-field
    storable checks.
    Anything else (other event types, replays, errors, out-of-order positions) takes `apply_event`, so the
    answers and the stored rows are the same either way, only faster.
    """
    answers: list[tuple[int, str]] = []
    position = 0
    while position < len(events):
        end = position
        while end < len(events) and _bulk_candidate(events[end], events[position]):
            end += 1
        if end - position >= 2 and (bulk := _bulk_or_busy(events[position:end], checked)) is not None:
            answers.extend(bulk)
            position = end
        else:
            answers.append(apply_event(events[position]))
            position += 1
    return answers


def _bulk_or_busy(segment: list[dict], checked: bool) -> list[tuple[int, str]] | None:
    try:
        return _apply_bulk(segment, checked)
    except Busy as exc:  # nothing of the segment stored: each event answers so, for its sender to retry
        return [(exc.status, exc.detail)] * len(segment)


def _bulk_candidate(event: Any, first: Any) -> bool:
    return (isinstance(event, dict) and isinstance(first, dict) and event.get("type") in ("decision", "outcome")
            and isinstance(event.get("run_id"), str) and event.get("run_id") == first.get("run_id")
            and isinstance(event.get("body", {}), dict))


def _validate_many(schema: type[T], items: list[dict], what: str, checked: bool) -> list[T]:
    if not checked:
        return [validate(schema, item, what) for item in items]
    try:
        return unchecked_many(schema, items)
    except ValidationError:
        raise Invalid(f"Invalid {what}") from None  # the per-event path words it, field by field


@retrying_conflicts
def _apply_bulk(segment: list[dict], checked: bool) -> list[tuple[int, str]] | None:
    """Store new decisions (and their first outcomes) of one run set-based; None to fall back."""
    try:
        run_id = _event_text(segment[0], "run_id")
        decision_bodies, outcome_bodies = [], []
        for event in segment:
            body = event.get("body", {})
            if event["type"] == "decision":
                decision_id = _event_text(event, "decision_id", required=False)
                decision_bodies.append(_body_id(body, "decision_id", decision_id, "decision"))
            else:
                _event_text(event, "decision_id")
                outcome_bodies.append(body)
        decision_payloads = iter(_validate_many(DecisionIn, decision_bodies, "decision", checked))
        outcome_payloads = iter(_validate_many(OutcomeIn, outcome_bodies, "outcome", checked))
    except IngestError:
        return None  # the per-event path words the error and applies the others
    decisions: dict[str, DecisionIn] = {}
    outcomes: dict[str, OutcomeIn] = {}
    for event in segment:
        if event["type"] == "decision":
            payload = next(decision_payloads)
            if payload.id in decisions:
                return None
            decisions[payload.id] = payload
        else:
            decision_id = event["decision_id"]
            if decision_id not in decisions or decision_id in outcomes or decisions[decision_id].outcome:
                return None
            outcomes[decision_id] = next(outcome_payloads)
    # Everything that does not depend on what is stored is computed before the run's lock: on SQLite that
    # lock is the whole database's, and converting 500 rows' values held it about 35 ms per batch.
    rows = _bulk_rows(decisions, outcomes)
    counters = _bulk_counters(rows)
    connection = connections[DEFAULT_DB_ALIAS]  # the connection itself, not the per-attribute proxy
    sql, columns = _insert_plan(connection)
    params = [_params(row, columns) for row in rows]
    try:
        with transaction.atomic():
            run = fetch_one(Run, {"run_id": run_id}, for_update=True)
            if run is None:
                return None
            if not _place_rows(run, decisions, params, columns):
                return None
            with connection.cursor() as cursor:
                cursor.executemany(sql, params)
            _add_decisions_to_run(run, _nodes_with(run, rows), *counters)
            rollups.fold_new_decisions(run, list(decisions))
    except IntegrityError:  # one is stored already (a replay, or a concurrent writer): the per-event path answers
        return None
    return [(201, "")] * len(segment)


def _bulk_rows(decisions: dict[str, DecisionIn], outcomes: dict[str, OutcomeIn]) -> list[dict]:
    """Each new decision's column values by field name (what `Decision(**fields)` would hold), but for its
    run and position, which `_place_rows` fills in under the run's lock."""
    rows = []
    now = timezone.now()
    for payload in decisions.values():
        fields = _decision_fields(payload)
        if payload.timestamp is not None:
            fields["timestamp"] = payload.timestamp
        outcome = payload.outcome or outcomes.get(payload.id)
        if outcome is not None:
            fields.update(_outcome_fields(outcome))
            fields.setdefault("outcome_timestamp", now)
        rows.append({"decision_id": payload.id, **fields})
    return rows


def _place_rows(run: Run, decisions: dict[str, DecisionIn], params: list[list], columns: list) -> bool:
    """Fill each row's run and position into its INSERT parameters; False when one would land before a
    decision already stored (the run's nodes then need the per-event path's recount)."""
    owner, position = (next(i for i, (name, *_) in enumerate(columns) if name == wanted) for wanted in ("run_id", "seq"))
    count = run.decision_count
    last_seq = _last_seq(run)
    for payload, values in zip(decisions.values(), params):
        seq = payload.index if payload.index is not None else (
            int(match.group(1)) if (match := _DEC_N.fullmatch(payload.id)) else count)
        if last_seq is not None and seq <= last_seq:
            return False
        last_seq, count = seq, count + 1
        values[owner], values[position] = run.pk, seq
    return True


def _last_seq(run: Run) -> int | None:
    """The highest position stored in the run (what `aggregate(Max("seq"))` answers), without compiling it."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    column = quote(Decision._meta.get_field("seq").column)
    sql = (f"SELECT MAX({column}) FROM {quote(Decision._meta.db_table)} "
           f"WHERE {quote(Decision._meta.get_field('run').column)} = %s")
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(sql, [run.pk])
        return cursor.fetchone()[0]


def _row_of(decision: Decision) -> dict:
    return {field.attname: getattr(decision, field.attname) for field in Decision._meta.concrete_fields
            if not field.primary_key}


# Column types whose `get_db_prep_save` hands a value of the field's own Python type to the driver unchanged.
_AS_IS = frozenset({"CharField", "TextField", "IntegerField", "BigIntegerField", "PositiveIntegerField",
                    "BooleanField", "ForeignKey"})


def _column_writer(field, connection) -> Callable[[Any], Any]:
    """`field.get_db_prep_save(value, connection)` without the layers that change nothing for the
    validated values written here (str, int, bool, aware datetimes or None): JSON is encoded as
    `JSONField` does (None is SQL NULL), datetimes only take the backend's adaptation (the field's own
    preparation only warns about naive ones), anything else goes through the field itself."""
    kind = field.get_internal_type()
    if kind in _AS_IS:
        return _same
    if kind == "DateTimeField":
        return connection.ops.adapt_datetimefield_value
    if kind == "JSONField":
        adapt, encoder = connection.ops.adapt_json_value, field.encoder
        empty = {dict: adapt({}, encoder), list: adapt([], encoder)}

        def write_json(value):
            if value is None:
                return None
            if not value and type(value) in empty:  # most of a decision's JSON columns: encoded once, not per row
                return empty[type(value)]
            return adapt(value, encoder)
        return write_json
    prep = field.get_db_prep_save
    return lambda value: prep(value, connection)


def _same(value: Any) -> Any:
    return value


@built_once
def _insert_plan(connection) -> tuple[str, list]:
    fields = [field for field in Decision._meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(Decision._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    return sql, [(field.attname, _column_writer(field, connection), field.get_default) for field in fields]


def _insert_new_decision(row: dict) -> tuple[int, bool] | None:
    """INSERT one decision as `_apply_bulk` does, unless the run has one with its id already:
    (its pk, whether a decision after its position is stored), or None when it was there. One statement
    (ON CONFLICT DO NOTHING ... RETURNING, SQLite >= 3.35 and PostgreSQL) where a lookup first took two.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    sql, columns = _insert_plan(connection)
    quote = connection.ops.quote_name
    owner, position = (quote(Decision._meta.get_field(name).column) for name in ("run", "seq"))
    later = f"EXISTS(SELECT 1 FROM {quote(Decision._meta.db_table)} WHERE {owner} = %s AND {position} > %s)"
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} ON CONFLICT DO NOTHING RETURNING {quote(Decision._meta.pk.column)}, {later}",
                       [*_params(row, columns), row["run_id"], row["seq"]])
        found = cursor.fetchone()
    return None if found is None else (found[0], bool(found[1]))


def _params(row: dict, columns: list) -> list:
    """A row's INSERT parameters, each value written as its field's `get_db_prep_save` would (JSON encoding,
    `Jsonb` on PostgreSQL, aware datetimes, SQL NULL for None) and an absent field as its model default, so
    the stored rows read back exactly as if the ORM had written them, without its SQL building."""
    return [write(row[key]) if key in row else write(default()) for key, write, default in columns]


def _bulk_counters(rows: list[dict]) -> tuple[int, int, int, int, int]:
    """What the rows add to their run's counters: decisions, successes, failures, tokens, latency."""
    totals = [sum(column) for column in zip(*(
        _contribution(row.get("outcome_success"), row.get("outcome_tokens", 0), row.get("outcome_latency_ms", 0))
        for row in rows))]
    return len(rows), *totals


def _nodes_with(run: Run, rows: list[dict]) -> list[str]:
    """The run's nodes_executed with the rows' nodes that are new to it, in order."""
    nodes = list(run.nodes_executed)
    for row in rows:
        if row["node_id"] not in nodes:
            nodes.append(row["node_id"])
    return nodes


def _add_decisions_to_run(run: Run, nodes: list[str], decisions: int, ok: int, bad: int, tokens: int,
                          latency: int) -> None:
    """The run's counter UPDATE after new decisions, as one prepared statement (what `_bump_run` writes)."""
    connection = connections[DEFAULT_DB_ALIAS]
    field = Run._meta.get_field
    quote = connection.ops.quote_name
    added = [("decision_count", decisions), ("success_count", ok), ("failure_count", bad),
             ("total_tokens", tokens), ("total_latency_ms", latency)]
    sets = [f"{quote(field(name).column)} = {quote(field(name).column)} + %s" for name, _ in added]
    sql = (f"UPDATE {quote(Run._meta.db_table)} SET {quote(field('updated_at').column)} = %s, "
           f"{quote(field('nodes_executed').column)} = %s, {', '.join(sets)} WHERE {quote(Run._meta.pk.column)} = %s")
    params = [field("updated_at").get_db_prep_save(timezone.now(), connection),
              field("nodes_executed").get_db_prep_save(nodes, connection), *(value for _, value in added), run.pk]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# --- whole runs (import) ---------------------------------------------------------------------------


def import_run(data: Any, *, end_seq: int | None = None) -> tuple[Run, bool]:
    """Store a whole run as the original's storage wrote it; an already-present run is left untouched.

    Counters are rebuilt from the rows (`Run.recount`), so an outcome the original counted twice counts once.
    """
    payload = validate(RunFileIn, data, "run file")
    seen: set[str] = set()
    for decision in payload.decisions:
        if decision.id in seen:
            raise Invalid(f"Invalid run file: decision id '{decision.id}' appears twice.")
        seen.add(decision.id)
    if len({problem.id for problem in payload.problems}) != len(payload.problems):
        raise Invalid("Invalid run file: a problem id appears twice.")
    metrics_extra = payload.metrics.extras()
    with transaction.atomic():
        existing = Run.objects.filter(run_id=payload.id).first()
        if existing is not None:
            return existing, False
        run = Run.objects.create(
            run_id=payload.id,
            goal_id=payload.goal_id,
            goal_description=payload.goal_description,
            status=payload.status.value,
            started_at=payload.started_at or timezone.now(),
            completed_at=payload.completed_at,
            narrative=payload.narrative,
            input_data=payload.input_data,
            output_data=payload.output_data,
            extra={**payload.extras(), **({METRICS_EXTRA_KEY: metrics_extra} if metrics_extra else {})},
            edges_traversed=payload.metrics.edges_traversed,
            end_seq=end_seq if end_seq is not None else next_end_seq(),
        )
        rollups.record_status_change(run.goal_id, run.started_at, None, run.status)
        Decision.objects.bulk_create(
            [_imported_decision(run, seq, decision) for seq, decision in enumerate(payload.decisions)],
            batch_size=500,
        )
        rollups.fold_run(run)  # imported runs have their place in index order: they join the pattern groups
        Problem.objects.bulk_create(
            [
                Problem(run=run, problem_id=problem.id, seq=seq, timestamp=problem.timestamp or run.started_at,
                        **_problem_fields(problem))
                for seq, problem in enumerate(payload.problems)
            ],
            batch_size=500,
        )
        run.recount()
        return run, True


def _imported_decision(run: Run, seq: int, payload: DecisionIn) -> Decision:
    decision = Decision(
        run=run, decision_id=payload.id, seq=seq, timestamp=payload.timestamp or run.started_at,
        **_decision_fields(payload),
    )
    if payload.outcome is not None:
        fields = _outcome_fields(payload.outcome)
        fields.setdefault("outcome_timestamp", decision.timestamp)
        for name, value in fields.items():
            setattr(decision, name, value)
    return decision

