"""Synthetic data: SDK-shaped event streams, and whole stores written with bulk inserts.

Everything is deterministic (seeded), so a store built twice is the same store, and both sides of a
comparison see the same rows.
"""

import itertools
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from framework.runtime.core import Runtime
from framework.schemas.decision import Decision as FwDecision
from framework.schemas.decision import DecisionType, Option, Outcome
from framework.schemas.run import Run as FwRun
from framework.schemas.run import RunStatus, RunSummary
from framework.transport.wire import to_wire

NODES = ["planner", "search", "fetch", "parse", "rank", "write", "review", "deliver"]
ERRORS = ["Timeout calling search API", "Rate limited by provider", "Parser could not read the page",
          "Tool returned an empty result", "Validation failed: missing field 'email'", "Budget exceeded"]
INTENTS = ["Choose the search tool for the lead", "Decide how many results to fetch", "Pick the parser",
           "Choose the ranking strategy", "Decide whether to retry the call", "Pick the output format",
           "Decide whether to delegate the review", "Decide when to stop"]
TYPES = [t.value for t in DecisionType]
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def goal_name(index: int) -> str:
    return f"goal-{index:02d}"


# --- event streams, as Runtime(URL) sends them -----------------------------------------------------


class _Collector:
    def __init__(self):
        self.events: list[dict[str, Any]] = []

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append(to_wire(kind, payload))


class _NoStorage:
    def save_run(self, run) -> None:
        pass


def agent_step(runtime: Runtime, rng: random.Random, step: int) -> None:
    """One decision and its outcome, the way an agent's loop reports them."""
    node = NODES[step % len(NODES)]
    intent = INTENTS[step % len(INTENTS)]
    chosen = "a" if rng.random() < 0.7 else "b"
    decision_id = runtime.decide(
        intent=intent,
        options=[{"id": "a", "description": f"{node} with the default tool", "action_type": "tool_call",
                  "action_params": {"limit": 10}, "confidence": 0.8},
                 {"id": "b", "description": f"{node} with the fallback", "action_type": "tool_call",
                  "confidence": 0.4}],
        chosen=chosen, reasoning=f"Step {step}: the default tool worked for similar leads.", node_id=node,
        decision_type=DecisionType(TYPES[step % len(TYPES)]), context={"step": step},
    )
    ok = rng.random() < 0.85
    runtime.record_outcome(decision_id, success=ok, result={"items": step % 7} if ok else None,
                           error=None if ok else rng.choice(ERRORS), summary="done" if ok else "",
                           tokens_used=rng.randint(50, 800), latency_ms=rng.randint(5, 900))


def sdk_runs(count: int, decisions: int, *, seed: int = 1, goal: str = "bench-ingest") -> list[list[dict]]:
    """`count` runs of `decisions` decisions with outcomes, each as the wire events the SDK sends."""
    rng = random.Random(seed)
    runs = []
    for _ in range(count):
        runtime = Runtime.__new__(Runtime)
        runtime.strict, runtime._current_run, runtime._current_node = False, None, "unknown"
        runtime._sink, runtime.storage = _Collector(), _NoStorage()
        runtime.start_run(goal, "Benchmark ingestion", {"seed": seed})
        for step in range(decisions):
            agent_step(runtime, rng, step)
        runtime.end_run(success=rng.random() < 0.8)
        runs.append(runtime._sink.events)
    return runs


def batches(events: list[dict], size: int = 1000) -> list[list[dict]]:  # the SDK sender's batch_size
    """The SDK's batches: at most `size` events each (Transport's default batch_size)."""
    return [events[i:i + size] for i in range(0, len(events), size)]


# --- rows, for bulk loading --------------------------------------------------------------------------

RUN_COLUMNS = ["id", "run_id", "goal_id", "goal_description", "status", "started_at", "completed_at", "end_seq",
               "narrative", "input_data", "output_data", "extra", "nodes_executed", "edges_traversed",
               "decision_count", "success_count", "failure_count", "total_tokens", "total_latency_ms",
               "problem_count", "created_at", "updated_at"]
DECISION_COLUMNS = ["id", "run_id", "decision_id", "seq", "timestamp", "node_id", "intent", "decision_type",
                    "options", "chosen_option_id", "chosen_description", "reasoning", "active_constraints",
                    "input_context", "evaluation", "extra", "outcome_success", "outcome_result", "outcome_error",
                    "outcome_state_changes", "outcome_tokens", "outcome_latency_ms", "outcome_summary",
                    "outcome_timestamp", "outcome_extra"]
PROBLEM_COLUMNS = ["id", "run_id", "problem_id", "seq", "severity", "description", "root_cause", "decision_id",
                   "suggested_fix", "timestamp", "extra"]
TABLES = {"run": ("runs_run", RUN_COLUMNS), "decision": ("runs_decision", DECISION_COLUMNS),
          "problem": ("runs_problem", PROBLEM_COLUMNS)}
_JSON_COLUMNS = {"input_data", "output_data", "extra", "nodes_executed", "edges_traversed", "options",
                 "active_constraints", "input_context", "evaluation", "outcome_result", "outcome_state_changes",
                 "outcome_extra"}


def _encode(column: str, value: Any, kind: str) -> Any:
    if column in _JSON_COLUMNS:
        return None if value is None and column in ("evaluation", "outcome_result") else json.dumps(value)
    if kind == "sqlite":
        if isinstance(value, datetime):
            return _sqlite_time(value)
        if isinstance(value, bool):
            return int(value)
    return value


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def encoded(kind: str, table: str, rows: Iterable[dict]) -> Iterator[list]:
    """Dict rows as the value lists `insert_rows` takes, in the table's column order."""
    columns = TABLES[table][1]
    for row in rows:
        yield [_encode(c, row[c], kind) for c in columns]


def insert_rows(conn, kind: str, table: str, rows: Iterable[Sequence], *, per_statement: int = 20000) -> int:
    """Bulk insert encoded rows (COPY on PostgreSQL, executemany on SQLite); the caller commits."""
    name, columns = TABLES[table]
    count = 0
    if kind == "postgres":
        with conn.cursor() as cursor, cursor.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        return count
    sql = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    for chunk in iter(lambda: list(itertools.islice(rows, per_statement)), []):
        conn.executemany(sql, chunk)
        count += len(chunk)
    return count


@contextmanager
def bulk_load(conn, kind: str):
    """One transaction on `conn` for loading the run tables, with their secondary indexes and (PostgreSQL)
    constraints dropped during the load and created again after it: building an index once over all rows is
    much faster than maintaining it row by row, and deferred foreign-key checks would queue one event per row.
    The indexes and constraints that come back are the migrations' own definitions, read from the catalog."""
    tables = [name for name, _columns in TABLES.values()]
    if kind == "postgres":
        restore = _pg_drop_indexes(conn, tables)
        conn.execute("SET maintenance_work_mem = '256MB'")
    else:
        # No rollback journal and no fsync while building: a build that dies is rebuilt from scratch.
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        conn.execute("BEGIN")
        indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                               f"AND tbl_name IN ({', '.join('?' * len(tables))})", tables).fetchall()
        for name, _sql in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        restore = [sql for _name, sql in indexes]
    yield
    for sql in restore:
        conn.execute(sql)
    if kind == "postgres":
        for name in tables:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                         f"COALESCE((SELECT MAX(id) FROM {name}), 1))")
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")
    else:  # SQLite's rowid continues from max(id) by itself
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA journal_mode=WAL")


def _pg_drop_indexes(conn, tables: list[str]) -> list[str]:
    """Drop the tables' foreign keys, unique constraints and secondary indexes; return the SQL that restores
    them (indexes first, then constraints, whose checks the indexes then serve)."""
    constraints = conn.execute(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "WHERE c.conrelid::regclass::text = ANY(%s) AND c.contype IN ('f', 'u')", [tables]).fetchall()
    indexes = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid::regclass::text = ANY(%s) AND NOT i.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)", [tables]).fetchall()
    for table, name, _definition in constraints:
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        conn.execute(f"DROP INDEX {name}")
    return ([definition for _name, definition in indexes]
            + [f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for table, name, definition in constraints])


class _DecisionRows:
    """Decision rows for one database kind, encoded straight into column order. The JSON values repeat (a
    node's options, a step's context), so each distinct one is serialised once."""

    def __init__(self, kind: str):
        self.kind = kind
        self.time = _sqlite_time if kind == "sqlite" else (lambda value: value)
        self.success = (lambda ok: int(ok)) if kind == "sqlite" else (lambda ok: ok)
        self.options: dict[str, tuple[str, str, str]] = {}
        self.results = [json.dumps({"items": n}) for n in range(7)]

    def _options(self, node: str) -> tuple[str, str, str]:
        if node not in self.options:
            options = [{"id": "a", "description": f"{node} with the default tool", "action_type": "tool_call",
                        "action_params": {}, "pros": [], "cons": [], "confidence": 0.8},
                       {"id": "b", "description": f"{node} with the fallback", "action_type": "tool_call",
                        "action_params": {}, "pros": [], "cons": [], "confidence": 0.4}]
            self.options[node] = (json.dumps(options), options[0]["description"], options[1]["description"])
        return self.options[node]

    def row(self, rng: random.Random, run_pk: int, pk: int, seq: int, at: datetime, *, fail_bias: float = 0.0,
            node: str | None = None) -> tuple[list, bool]:
        """(the row, whether its outcome succeeded)."""
        node = node or NODES[(seq + run_pk) % len(NODES)]
        ok = rng.random() >= 0.12 + fail_bias
        chosen = "a" if rng.random() < 0.7 else "b"
        options, first, second = self._options(node)
        when = self.time(at)
        return [
            pk, run_pk, f"dec_{seq}", seq, when, node, INTENTS[seq % len(INTENTS)], TYPES[seq % len(TYPES)], options,
            chosen, first if chosen == "a" else second, f"Step {seq}: the default tool worked for similar leads.",
            "[]", f'{{"step": {seq}}}', None, "{}", self.success(ok), self.results[seq % 7] if ok else None,
            None if ok else ERRORS[(seq + run_pk) % len(ERRORS)], "{}", 50 + (pk * 37) % 750, 5 + (pk * 53) % 900,
            "done" if ok else "", when, "{}",
        ], ok


class StoreBuilder:
    """Writes runs with their decisions and counters straight into the tables, ids assigned here."""

    def __init__(self, conn, kind: str, seed: int = 7):
        self.conn, self.kind, self.rng = conn, kind, random.Random(seed)
        self.decision_rows = _DecisionRows(kind)
        self.run_pk = self.decision_pk = self.problem_pk = 0
        self.run_rows: list[dict] = []
        self.problem_rows: list[dict] = []

    def _decisions_for(self, run: dict, count: int, *, node_override=None, fail_bias=0.0) -> Iterator[list]:
        ok_count = tokens = latency = 0
        nodes: list[str] = []
        started = run["started_at"]
        for seq in range(count):
            self.decision_pk += 1
            node = node_override(seq) if node_override else None
            row, ok = self.decision_rows.row(self.rng, run["id"], self.decision_pk, seq,
                                             started + timedelta(seconds=seq), fail_bias=fail_bias, node=node)
            ok_count += ok
            tokens += row[20]
            latency += row[21]
            if row[5] not in nodes:
                nodes.append(row[5])
            yield row
        run.update(decision_count=count, success_count=ok_count, failure_count=count - ok_count,
                   total_tokens=tokens, total_latency_ms=latency, nodes_executed=nodes)

    def runs(self, count: int, decisions: int, goals: int, *, days: int = 60, prefix: str = "run") -> None:
        """`count` runs of `decisions` decisions each, spread over `goals` goals and the last `days` days."""
        now = datetime.now(UTC)
        start_pk = self.run_pk

        def rows():
            for i in range(count):
                self.run_pk += 1
                pk = self.run_pk
                goal = goal_name(0 if i % 10 == 0 else 1 + i % max(1, goals - 1)) if goals > 1 else goal_name(0)
                started = now - timedelta(seconds=(count - i) * days * 86400 / count)
                roll = self.rng.random()
                status = "completed" if roll < 0.7 else "failed" if roll < 0.95 else "running" if roll < 0.98 else "stuck"
                run = self._run_row(pk, f"{prefix}-{pk:07d}", goal, status, started)
                yield from self._decisions_for(run, decisions, fail_bias=0.25 if status == "failed" else 0.0)
                self._finish(run)

        insert_rows(self.conn, self.kind, "decision", rows())
        self._flush_runs()
        assert self.run_pk - start_pk == count

    def one_run(self, run_id: str, goal: str, decisions: int, *, status="completed", diverge_at: int | None = None) -> None:
        now = datetime.now(UTC)
        self.run_pk += 1
        run = self._run_row(self.run_pk, run_id, goal, status, now - timedelta(hours=1))

        def node_for(seq):
            base = NODES[seq % len(NODES)]
            return base if diverge_at is None or seq < diverge_at else NODES[(seq + 3) % len(NODES)]

        insert_rows(self.conn, self.kind, "decision", self._decisions_for(run, decisions, node_override=node_for))
        self._finish(run)
        self._flush_runs()

    def _run_row(self, pk: int, run_id: str, goal: str, status: str, started: datetime) -> dict:
        ended = status != "running"
        return {
            "id": pk, "run_id": run_id, "goal_id": goal, "goal_description": f"Qualify leads ({goal})",
            "status": status, "started_at": started,
            "completed_at": started + timedelta(seconds=30 + pk % 600) if ended else None,
            "end_seq": pk if ended else None,
            "narrative": f"Run {run_id} {'failed on fetch' if status == 'failed' else 'finished'}.",
            "input_data": {"lead": pk % 1000}, "output_data": {}, "extra": {}, "edges_traversed": [],
            "problem_count": 0, "created_at": started, "updated_at": started,
        }

    def _finish(self, run: dict) -> None:
        if run["status"] == "failed":
            self.problem_pk += 1
            run["problem_count"] = 1
            self.problem_rows.append({
                "id": self.problem_pk, "run_id": run["id"], "problem_id": "prob_0", "seq": 0, "severity": "critical",
                "description": "Fetch kept timing out", "root_cause": "provider slow", "decision_id": "dec_1",
                "suggested_fix": "raise the timeout", "timestamp": run["started_at"], "extra": {},
            })
        self.run_rows.append(run)

    def _flush_runs(self) -> None:
        insert_rows(self.conn, self.kind, "run", encoded(self.kind, "run", self.run_rows))
        insert_rows(self.conn, self.kind, "problem", encoded(self.kind, "problem", self.problem_rows))
        self.run_rows, self.problem_rows = [], []


# --- framework runs and the original's files (analysis benchmark) -------------------------------------


def framework_runs(count: int, decisions: int, goal: str, *, seed: int = 3) -> Iterator[FwRun]:
    rng = random.Random(seed)
    base = datetime(2026, 3, 1, 9, 0, 0)
    for i in range(count):
        started = base + timedelta(minutes=i)
        run = FwRun(id=f"run_{i:06d}", goal_id=goal, started_at=started, goal_description="Qualify leads")
        for seq in range(decisions):
            node = NODES[(seq + i) % len(NODES)]
            chosen = "a" if rng.random() < 0.7 else "b"
            decision = FwDecision(
                id=f"dec_{seq}", node_id=node, intent=INTENTS[(seq + i) % len(INTENTS)],
                decision_type=DecisionType(TYPES[seq % len(TYPES)]), timestamp=started + timedelta(seconds=seq),
                options=[Option(id="a", description=f"{node} default", action_type="tool_call"),
                         Option(id="b", description=f"{node} fallback", action_type="tool_call")],
                chosen_option_id=chosen if rng.random() < 0.97 else "missing", reasoning="because",
            )
            run.add_decision(decision)
            if rng.random() < 0.95:
                ok = rng.random() < 0.8
                run.record_outcome(decision.id, Outcome(
                    success=ok, error=None if ok else (rng.choice(ERRORS) if rng.random() < 0.9 else None),
                    tokens_used=rng.randint(10, 500), latency_ms=rng.randint(1, 700),
                    timestamp=started + timedelta(seconds=seq)))
        run.complete(RunStatus.COMPLETED if rng.random() < 0.75 else RunStatus.FAILED)
        run.completed_at = started + timedelta(seconds=decisions + 5)
        yield run


def write_original_files(path: Path, runs: list[FwRun]) -> None:
    """The folder FileStorage writes (runs/, summaries/, indexes/), written in one pass: saving runs one
    at a time rewrites every index per run, which is quadratic and is not what is measured here."""
    from framework.storage.backend import FileStorage

    storage = FileStorage(path)
    indexes: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        (path / "runs" / f"{run.id}.json").write_text(run.model_dump_json(indent=2))
        (path / "summaries" / f"{run.id}.json").write_text(RunSummary.from_run(run).model_dump_json(indent=2))
        keys = [("by_goal", run.goal_id), ("by_status", run.status.value)]
        keys += [("by_node", node) for node in run.metrics.nodes_executed]
        for key in keys:
            indexes.setdefault(key, []).append(run.id)
    for (index_type, key), ids in indexes.items():
        storage._index_path(index_type, key).write_text(json.dumps(ids, indent=2))


def rows_from_framework(runs: list[FwRun]) -> tuple[list[dict], list[dict]]:
    """Rows equal to what `runs.ingest.import_run` stores for these runs (in this order)."""
    run_rows, decision_rows = [], []
    pk = 0
    for end_seq, run in enumerate(runs, start=1):
        started = run.started_at.replace(tzinfo=UTC)
        run_pk = end_seq
        m = run.metrics
        successes = sum(1 for d in run.decisions if d.outcome is not None and d.outcome.success)
        failures = sum(1 for d in run.decisions if d.outcome is not None and not d.outcome.success)
        run_rows.append({
            "id": run_pk, "run_id": run.id, "goal_id": run.goal_id, "goal_description": run.goal_description,
            "status": run.status.value, "started_at": started, "completed_at": run.completed_at.replace(tzinfo=UTC),
            "end_seq": end_seq, "narrative": run.narrative, "input_data": {}, "output_data": {}, "extra": {},
            "nodes_executed": list(m.nodes_executed), "edges_traversed": [], "decision_count": len(run.decisions),
            "success_count": successes, "failure_count": failures, "total_tokens": m.total_tokens,
            "total_latency_ms": m.total_latency_ms, "problem_count": 0, "created_at": started, "updated_at": started,
        })
        for seq, d in enumerate(run.decisions):
            pk += 1
            chosen = d.chosen_option
            o = d.outcome
            at = d.timestamp.replace(tzinfo=UTC)
            decision_rows.append({
                "id": pk, "run_id": run_pk, "decision_id": d.id, "seq": seq, "timestamp": at, "node_id": d.node_id,
                "intent": d.intent, "decision_type": d.decision_type.value,
                "options": [opt.model_dump(mode="json") for opt in d.options], "chosen_option_id": d.chosen_option_id,
                "chosen_description": chosen.description if chosen is not None else None, "reasoning": d.reasoning,
                "active_constraints": [], "input_context": {}, "evaluation": None, "extra": {},
                "outcome_success": o.success if o else None, "outcome_result": o.result if o else None,
                "outcome_error": o.error if o else None, "outcome_state_changes": {},
                "outcome_tokens": o.tokens_used if o else 0, "outcome_latency_ms": o.latency_ms if o else 0,
                "outcome_summary": o.summary if o else "", "outcome_timestamp": o.timestamp.replace(tzinfo=UTC) if o else None,
                "outcome_extra": {},
            })
    return run_rows, decision_rows
