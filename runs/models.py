"""Runs, decisions (options and outcome inline) and problems, as agents report them.

A run carries denormalised counters (decisions, successes, failures, tokens, latency, problems) so lists
and aggregates never scan decisions. Every write path keeps them correct: `runs/ingest.py` updates them
in the same transaction as the row it writes, and `Run.recount()` rebuilds them from the rows.
Unlike the original runtime, an outcome reported twice replaces the first and counts once.
"""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models.signals import post_delete, pre_delete
from django.dispatch import receiver
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

import framework as sdk

from . import rawsql, rollups


_FETCH_PLANS: dict[tuple, str] = {}
_READERS: dict[tuple, tuple[list[str], list[str], list]] = {}


def _reader(model: type[models.Model], connection, names: tuple[str, ...] | None) -> tuple[list[str], list[str], list]:
    """`model`'s concrete columns (quoted, in order; only the fields `names` when given), their attribute
    names, and each column's converters (what the ORM applies to a value read), built once per shape."""
    if (reader := _READERS.get((model, connection.vendor, names))) is None:
        meta = model._meta
        fields = [f for f in meta.concrete_fields if names is None or f.name in names or f.attname in names]
        cols = [field.get_col(meta.db_table) for field in fields]
        reader = _READERS[(model, connection.vendor, names)] = (
            [connection.ops.quote_name(f.column) for f in fields], [f.attname for f in fields],
            [(col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)) for col in cols])
    return reader


def columns_of(model: type[models.Model], alias: str = "", names: tuple[str, ...] | None = None) -> str:
    """`model`'s concrete columns (only the fields `names` when given; prefixed `alias.`), in the order
    `from_row` reads them."""
    connection = connections[DEFAULT_DB_ALIAS]
    return ", ".join(f"{alias}.{column}" if alias else column for column in _reader(model, connection, names)[0])


def from_row(model: type[models.Model], row: tuple, names: tuple[str, ...] | None = None):
    """The instance of `model` a row of its `columns_of` (with the same `names`) makes, its values
    converted as the ORM converts them; the fields left out are deferred (read from the database when
    used)."""
    connection = connections[DEFAULT_DB_ALIAS]
    _columns, attnames, conversions = _reader(model, connection, names)
    values = []
    for value, (col, functions) in zip(row, conversions):
        for function in functions:
            value = function(value, col, connection)
        values.append(value)
    return model.from_db(DEFAULT_DB_ALIAS, attnames, values)


def fetch_one(model: type[models.Model], where: dict[str, object], *, for_update: bool = False):
    """The row of `model` whose fields equal `where` (None: IS NULL) as an instance, or None.

    What `model.objects.filter(**where).first()` returns (`select_for_update()` with `for_update`), from
    SQL built once per shape, run on the driver's cursor (`rawsql`: prepared once on PostgreSQL), and values
    run through the same converters the ORM applies (`from_row`): the API-key and run lookups that start
    every ingest request no longer compile (or plan) a query each time.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    shape = (model, tuple((name, where[name] is None) for name in where), for_update, connection.vendor)
    if (sql := _FETCH_PLANS.get(shape)) is None:
        quote = connection.ops.quote_name
        meta = model._meta
        tests = [f"{quote(meta.get_field(name).column)} {'IS NULL' if null else '= %s'}" for name, null in shape[1]]
        sql = (f"SELECT {columns_of(model)} FROM {quote(meta.db_table)} "
               f"WHERE {' AND '.join(tests)} ORDER BY {quote(meta.pk.column)} LIMIT 1")
        if for_update and connection.features.has_select_for_update:
            sql += " FOR UPDATE"
        _FETCH_PLANS[shape] = sql
    params = [model._meta.get_field(name).get_db_prep_value(value, connection)
              for name, value in where.items() if value is not None]
    with rawsql.cursor(connection, sql, params) as cursor:
        row = cursor.fetchone()
    return None if row is None else from_row(model, row)


# The SDK's enums are the one definition; the models take their choices from them.
RunStatus = models.TextChoices("RunStatus", [(s.name, (s.value, s.value.title())) for s in sdk.RunStatus])
DecisionType = models.TextChoices("DecisionType", [(t.name, t.value) for t in sdk.DecisionType])


class RunQuerySet(models.QuerySet):
    def for_goal(self, goal_id: str):
        return self.filter(goal_id=goal_id)

    def with_status(self, status: str):
        return self.filter(status=status)

    def failed(self):
        return self.filter(status=RunStatus.FAILED)

    def ended(self):
        return self.exclude(completed_at=None)

    def touching_node(self, node_id: str):
        return self.filter(pk__in=Decision.objects.filter(node_id=node_id).values("run_id"))

    def in_index_order(self):
        """The order the original's indexes hold runs in: the order they ended (were saved), by `end_seq`."""
        return self.order_by(models.F("end_seq").asc(nulls_last=True), "pk")

    def newest_first(self):
        return self.order_by("-started_at", "-pk")


class Run(models.Model):
    run_id = models.CharField(max_length=200, unique=True)
    goal_id = models.CharField(max_length=255)
    goal_description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=32, choices=RunStatus.choices, default=RunStatus.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Index order: set when the run ends (or is imported, in the order of the original's indexes), so it
    # can differ from completed_at order. Concurrent ends may share a value; pk breaks the tie.
    end_seq = models.BigIntegerField(null=True, blank=True, editable=False)
    # True while its decisions are not in its goal's `PatternGroup` rows, so the patterns answer groups them
    # at read time: a running run, until it ends or idles (runs/rollups.py). Rows loaded by raw SQL read
    # False (the database default) and need `manage.py rebuild_rollups`, as the day counts do.
    pattern_pending = models.BooleanField(default=True, db_default=False, editable=False)
    narrative = models.TextField(blank=True, default="")
    input_data = models.JSONField(default=dict, blank=True)
    output_data = models.JSONField(default=dict, blank=True)
    # Unknown fields an agent sent (the original's models allow extras); kept so export round-trips.
    extra = models.JSONField(default=dict, blank=True)
    # metrics.nodes_executed: node ids in order of first appearance.
    nodes_executed = models.JSONField(default=list, blank=True)
    edges_traversed = models.JSONField(default=list, blank=True)

    decision_count = models.PositiveIntegerField(default=0)
    success_count = models.PositiveIntegerField(default=0)
    failure_count = models.PositiveIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    total_latency_ms = models.BigIntegerField(default=0)
    problem_count = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["-started_at", "-id"], name="run_started_idx"),
            models.Index(fields=["goal_id", "-started_at"], name="run_goal_started_idx"),
            models.Index(fields=["status", "-started_at"], name="run_status_started_idx"),
            models.Index(fields=["goal_id", "completed_at"], name="run_goal_completed_idx"),
            models.Index(fields=["end_seq", "id"], name="run_end_seq_idx"),
            models.Index(fields=["goal_id", "end_seq"], name="run_goal_end_seq_idx"),
            # The goals overview's per-goal counts and trends read only this index.
            models.Index(fields=["goal_id", "status", "started_at"], name="run_goal_status_started_idx"),
            # The few runs of a goal that the patterns answer groups at read time.
            models.Index(fields=["goal_id"], condition=Q(pattern_pending=True), name="run_goal_pending_idx"),
        ]

    def __str__(self) -> str:
        return self.run_id

    @property
    def is_running(self) -> bool:
        return self.status == RunStatus.RUNNING and self.completed_at is None

    @property
    def duration_ms(self) -> int:
        if self.completed_at is None:
            return 0
        return int((self.completed_at - self.started_at).total_seconds() * 1000)

    @property
    def success_rate(self) -> float:
        return self.success_count / self.decision_count if self.decision_count else 0.0

    def recount(self, *, save: bool = True) -> None:
        """Rebuild the counters from the rows (used by import and as the reference in tests)."""
        agg = self.decisions.aggregate(
            decisions=Count("pk"),
            successes=Count("pk", filter=Q(outcome_success=True)),
            failures=Count("pk", filter=Q(outcome_success=False)),
            tokens=Coalesce(Sum("outcome_tokens"), 0),
            latency=Coalesce(Sum("outcome_latency_ms"), 0),
        )
        self.decision_count = agg["decisions"]
        self.success_count = agg["successes"]
        self.failure_count = agg["failures"]
        self.total_tokens = agg["tokens"]
        self.total_latency_ms = agg["latency"]
        self.problem_count = self.problems.count()
        nodes: list[str] = []
        for node_id in self.decisions.order_by("seq", "pk").values_list("node_id", flat=True).iterator():
            if node_id not in nodes:
                nodes.append(node_id)
        self.nodes_executed = nodes
        if save:
            self.save(
                update_fields=[
                    "decision_count", "success_count", "failure_count", "total_tokens",
                    "total_latency_ms", "problem_count", "nodes_executed", "updated_at",
                ]
            )


@receiver(pre_delete, sender=Run, dispatch_uid="runs.unfold_deleted_run")
def _unfold_deleted_run(sender, instance: Run, **kwargs) -> None:
    """The pattern groups forget a deleted run while its decisions are still there to count out."""
    rollups.unfold_deleted(instance)


@receiver(post_delete, sender=Run, dispatch_uid="runs.count_out_deleted_run")
def _count_out_deleted_run(sender, instance: Run, **kwargs) -> None:
    """However a run is deleted (retention purge, admin, shell), the goal rollups forget it, in the same
    transaction as the delete: the day counts here, and the pattern groups' first-seen keys, once every
    run of the delete is gone (`unfold_deleted` marked the keys it took away)."""
    rollups.record_status_change(instance.goal_id, instance.started_at, instance.status, None)
    rollups.repair_first_seen(instance.goal_id)


class GoalDay(models.Model):
    """Runs of one goal started on one UTC day, by status: what the goals overview and the goal page's chart
    read instead of the runs. Kept by `runs/rollups.py` on every run write; `manage.py rebuild_rollups`
    recomputes it. Statuses other than these three (stuck, cancelled) count in `runs` only."""

    goal_id = models.CharField(max_length=255)
    day = models.DateField()
    runs = models.IntegerField(default=0)
    completed = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    running = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["goal_id", "day"], name="goalday_unique")]

    def __str__(self) -> str:
        return f"{self.goal_id} {self.day}"

    @property
    def ended(self) -> int:
        return self.runs - self.running


class PatternGroup(models.Model):
    """One group a goal's patterns answer counts (an error label, a node, a decision type, or an intent's
    chosen option) over the goal's folded runs (`Run.pattern_pending` False), with the position of its
    first decision in index order (end_seq, or `rollups.NO_END_SEQ` for a running run; run pk; seq). Kept
    by `runs/rollups.py` on every write that changes it; `manage.py rebuild_rollups` recomputes it."""

    goal_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=8)  # error | node | type | choice
    digest = models.CharField(max_length=64)  # sha256 of kind, key and detail: texts may be too long to index
    key = models.TextField()  # the error label, node id, decision type, or intent[:50]
    detail = models.TextField(blank=True, default="")  # a choice's option description
    total = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)  # nodes: decisions without success
    first_end_seq = models.BigIntegerField()
    first_run = models.BigIntegerField()
    first_seq = models.BigIntegerField()
    # Only inside a writing transaction: the first-seen key is a lower bound until `rollups` repairs it.
    stale = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["goal_id", "digest"], name="patterngroup_unique")]
        # Every deleted run and every late write to a folded run asks for its goal's stale groups: almost
        # always none, found in this (nearly empty) index instead of a scan of the goal's groups.
        indexes = [models.Index(fields=["goal_id"], condition=Q(stale=True), name="patterngroup_stale_idx")]

    def __str__(self) -> str:
        return f"{self.goal_id} {self.kind} {self.key}"


class DecisionQuerySet(models.QuerySet):
    def failed(self):
        """Not successful, as the original counts it: a failed outcome or no outcome at all."""
        return self.exclude(outcome_success=True)

    def with_outcome(self):
        return self.exclude(outcome_success=None)


class Decision(models.Model):
    # No index of its own: the unique (run, decision_id) and the (run, seq) index both start with it, and
    # a third B-tree to update cost every insert.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="decisions", db_index=False)
    decision_id = models.CharField(max_length=200)
    seq = models.PositiveIntegerField(help_text="Position in the run (dec_N has seq N for Runtime ids).")
    timestamp = models.DateTimeField(default=timezone.now)
    node_id = models.CharField(max_length=255)
    intent = models.TextField()
    decision_type = models.CharField(max_length=64, default=DecisionType.CUSTOM)
    options = models.JSONField(default=list, blank=True)
    chosen_option_id = models.CharField(max_length=255, blank=True, default="")
    # Description of the chosen option, or NULL when `chosen_option_id` matches no option.
    chosen_description = models.TextField(null=True, blank=True)
    reasoning = models.TextField(blank=True, default="")
    active_constraints = models.JSONField(default=list, blank=True)
    input_context = models.JSONField(default=dict, blank=True)
    evaluation = models.JSONField(null=True, blank=True)
    extra = models.JSONField(default=dict, blank=True)

    # The outcome, inline: outcome_success is NULL while there is none.
    outcome_success = models.BooleanField(null=True, blank=True)
    outcome_result = models.JSONField(null=True, blank=True)
    outcome_error = models.TextField(null=True, blank=True)
    outcome_state_changes = models.JSONField(default=dict, blank=True)
    outcome_tokens = models.BigIntegerField(default=0)
    outcome_latency_ms = models.BigIntegerField(default=0)
    outcome_summary = models.TextField(blank=True, default="")
    outcome_timestamp = models.DateTimeField(null=True, blank=True)
    outcome_extra = models.JSONField(default=dict, blank=True)

    objects = DecisionQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "decision_id"], name="decision_unique_in_run")]
        indexes = [
            models.Index(fields=["run", "seq"], name="decision_run_seq_idx"),
            models.Index(fields=["node_id", "run"], name="decision_node_run_idx"),
        ]
        ordering = ["seq", "pk"]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.decision_id}"

    @property
    def has_outcome(self) -> bool:
        return self.outcome_success is not None

    @property
    def was_successful(self) -> bool:
        return self.outcome_success is True

    @property
    def chosen_option(self) -> dict | None:
        for option in self.options or []:
            if isinstance(option, dict) and option.get("id") == self.chosen_option_id:
                return option
        return None


class Problem(models.Model):
    # No index of its own: the unique (run, problem_id) starts with it.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="problems", db_index=False)
    problem_id = models.CharField(max_length=200)
    seq = models.PositiveIntegerField(default=0)
    severity = models.CharField(max_length=100)
    description = models.TextField()
    root_cause = models.TextField(null=True, blank=True)
    decision_id = models.CharField(max_length=200, null=True, blank=True)
    suggested_fix = models.TextField(null=True, blank=True)
    timestamp = models.DateTimeField(default=timezone.now)
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "problem_id"], name="problem_unique_in_run")]
        ordering = ["seq", "pk"]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.problem_id}"


class ApiKeyScope(models.TextChoices):
    INGEST = "ingest"
    READ = "read"
    REVIEW = "review"


DEFAULT_SCOPES = [ApiKeyScope.INGEST.value, ApiKeyScope.READ.value]


class ApiKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at=None)


class ApiKey(models.Model):
    """An API key. Only a SHA-256 of the secret is stored; the key is shown once, when created."""

    PREFIX = "fwk_"

    name = models.CharField(max_length=100)
    lookup = models.CharField(max_length=16, unique=True, help_text="First characters of the key, to find its row.")
    digest = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.name} ({self.lookup}…)"

    @staticmethod
    def _digest(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @staticmethod
    def _lookup(raw: str) -> str:
        return raw[:16]

    @classmethod
    def issue(cls, name: str, scopes: list[str] | None = None, created_by=None) -> tuple["ApiKey", str]:
        raw = cls.PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            name=name, lookup=cls._lookup(raw), digest=cls._digest(raw), scopes=list(scopes or DEFAULT_SCOPES),
            created_by=created_by,
        )
        return key, raw

    @classmethod
    def authenticate(cls, raw: str) -> "ApiKey | None":
        key = fetch_one(cls, {"lookup": cls._lookup(raw), "revoked_at": None})
        if key is None or not hmac.compare_digest(key.digest, cls._digest(raw)):
            return None
        return key

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])
