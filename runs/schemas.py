"""What the API accepts and answers.

Input schemas validate what agents send before anything is written: types, per-field length limits,
timestamps (naive means UTC), and no NUL bytes or non-finite numbers anywhere (PostgreSQL can store
neither). Fields the original's models allow as extras are kept (`extras()`), so exports round-trip.
Keys the original computes and serialises (`chosen_option`, `was_successful`, `duration_ms`, ...) are
dropped: the dashboard recomputes them.
"""

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar

import pydantic_core
from ninja import Schema
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema, model_validator

from framework.schemas.decision import DecisionEvaluation, DecisionType
from framework.schemas.run import RunStatus

# Unknown keys of a run's `metrics` live in Run.extra under this key (export puts them back).
METRICS_EXTRA_KEY = "_metrics_extra"
ID_MAX = 200
NAME_MAX = 255
TEXT_MAX = 100_000
SEVERITY_MAX = 100
# Generous, but keeps sums far from the 64-bit limit of the counter columns.
NUMBER_LIMIT = 2**40


def unstorable_text(value: str) -> bool:
    """A NUL byte (PostgreSQL stores none) or a lone surrogate (no UTF-8 encoding: unstorable, unexportable)."""
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def find_unstorable(value: Any, path: str = "") -> str | None:
    """The path of the first NUL byte, lone surrogate or non-finite number inside a JSON value, or None."""
    if isinstance(value, str):
        return path or "value" if unstorable_text(value) else None
    if isinstance(value, float):
        return path or "value" if not math.isfinite(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            # The path is echoed in the error message: a lone surrogate in it must not break the answer.
            shown = str(key).encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
            sub = f"{path}.{shown}" if path else shown
            if isinstance(key, str) and unstorable_text(key):
                return sub
            if found := find_unstorable(item, sub):
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if found := find_unstorable(item, f"{path}[{index}]"):
                return found
    return None


def _storable_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL byte (\\u0000), which cannot be stored")
    if unstorable_text(value):
        raise ValueError("contains a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not valid text")
    return value


def _storable_json(value: Any) -> Any:
    if found := find_unstorable(value):
        raise ValueError(f"contains a NUL byte, a lone surrogate or a non-finite number at '{found}', which cannot be stored")
    return value


def _as_utc(value: datetime) -> datetime:
    # The original writes naive local times; the dashboard reads every naive time as UTC.
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of the supported date range once converted to UTC") from None


def _text(max_length: int, min_length: int = 0):
    return Annotated[
        str, StringConstraints(min_length=min_length, max_length=max_length), AfterValidator(_storable_text)
    ]


Id = _text(ID_MAX, min_length=1)
Name = _text(NAME_MAX, min_length=1)
Text = _text(TEXT_MAX)
OptionRef = _text(ID_MAX)
NodeId = _text(NAME_MAX)
Severity = _text(SEVERITY_MAX)
JsonValue = Annotated[Any, AfterValidator(_storable_json)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_storable_json)]
Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
Count = Annotated[int, Field(ge=-NUMBER_LIMIT, le=NUMBER_LIMIT)]


class _In(BaseModel):
    model_config = ConfigDict(extra="allow")
    # Keys the original serialises but computes: dropped, never stored.
    COMPUTED: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _storable_extras(self):
        for key, value in (self.model_extra or {}).items():
            if found := find_unstorable({key: value}):
                raise ValueError(f"field '{found}' contains a NUL byte, a lone surrogate or a non-finite number")
        return self

    def extras(self) -> dict[str, Any]:
        return {key: value for key, value in (self.model_extra or {}).items() if key not in self.COMPUTED}


class OptionIn(_In):
    id: OptionRef
    description: Text = ""
    action_type: _text(NAME_MAX) = "unknown"
    action_params: JsonObject = Field(default_factory=dict)
    pros: list[Text] = Field(default_factory=list)
    cons: list[Text] = Field(default_factory=list)
    confidence: float = Field(default=0.5, allow_inf_nan=False)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class OutcomeIn(_In):
    success: bool
    result: JsonValue = None
    error: Text | None = None
    state_changes: JsonObject = Field(default_factory=dict)
    tokens_used: Count = 0
    latency_ms: Count = 0
    summary: Text = ""
    timestamp: Timestamp | None = None


class DecisionIn(_In):
    COMPUTED: ClassVar[frozenset[str]] = frozenset({"chosen_option", "was_successful", "was_good_decision"})

    id: Id
    node_id: NodeId
    intent: Text
    decision_type: DecisionType = DecisionType.CUSTOM
    options: list[OptionIn] = Field(default_factory=list)
    chosen_option_id: OptionRef = ""
    reasoning: Text = ""
    active_constraints: list[Text] = Field(default_factory=list)
    input_context: JsonObject = Field(default_factory=dict)
    timestamp: Timestamp | None = None
    index: int | None = Field(default=None, ge=0, le=2**31 - 1)
    outcome: OutcomeIn | None = None
    evaluation: DecisionEvaluation | None = None

    @model_validator(mode="after")
    def _storable_evaluation(self):
        if self.evaluation is not None and (found := find_unstorable(self.evaluation.model_dump(mode="json"))):
            raise ValueError(f"evaluation.{found} contains a NUL byte or a non-finite number")
        return self


class ProblemIn(_In):
    id: Id
    severity: Severity
    description: Text
    root_cause: Text | None = None
    decision_id: _text(ID_MAX) | None = None
    suggested_fix: Text | None = None
    timestamp: Timestamp | None = None


class RunStartIn(_In):
    COMPUTED: ClassVar[frozenset[str]] = frozenset({"duration_ms"})

    id: Id
    goal_id: Name
    goal_description: Text = ""
    input_data: JsonObject = Field(default_factory=dict)
    started_at: Timestamp | None = None
    status: RunStatus = RunStatus.RUNNING


class RunEndIn(_In):
    COMPUTED: ClassVar[frozenset[str]] = frozenset({"duration_ms"})

    status: RunStatus
    narrative: Text = ""
    output_data: JsonObject = Field(default_factory=dict)
    completed_at: Timestamp | None = None


class MetricsIn(_In):
    """Stored metrics are recomputed on import; `edges_traversed` and unknown keys are kept."""

    COMPUTED: ClassVar[frozenset[str]] = frozenset({
        "total_decisions", "successful_decisions", "failed_decisions", "total_tokens", "total_latency_ms",
        "nodes_executed", "success_rate",
    })
    edges_traversed: list[NodeId] = Field(default_factory=list)


class RunFileIn(RunStartIn):
    """A whole run as the original's storage writes it (`runs/{run_id}.json`)."""

    COMPUTED: ClassVar[frozenset[str]] = frozenset({"duration_ms"})

    completed_at: Timestamp | None = None
    narrative: Text = ""
    output_data: JsonObject = Field(default_factory=dict)
    decisions: list[DecisionIn] = Field(default_factory=list)
    problems: list[ProblemIn] = Field(default_factory=list)
    metrics: MetricsIn = Field(default_factory=MetricsIn)


# --- whole-body checks, for batches ----------------------------------------------------------------

# Digits as 0 and E as e (and "+" dropped): numbers too large for a float show as fixed substrings.
_NUMBER_SHAPE = bytes.maketrans(b"123456789E", b"000000000e")


# Read backwards (the bytes reversed, so the search starts from a fixed substring): a three-digit exponent
# ("e000" in the shape) whose number starts where JSON puts a value, after `:`, `,`, `[` or whitespace.
# Elsewhere it is text, like the "2e869" of a hex run id.
_BIG_EXPONENT_REVERSED = re.compile(rb"000e[0.]*-?(?:[:,\[\s]|$)")


def _may_overflow(shape: bytes) -> bool:
    """A number in the JSON (shaped by _NUMBER_SHAPE) that could be too large for a float: only a
    three-digit exponent or 200 digits in a row go past 1e299."""
    return b"0" * 200 in shape or _BIG_EXPONENT_REVERSED.search(shape[::-1]) is not None


def storable_json(body: bytes) -> Any:
    """`body` parsed, when it provably holds nothing the storable-text/JSON validators refuse; else ValueError.

    The parser (pydantic-core's, as exact as `json.loads`) refuses lone surrogates and NaN / Infinity
    itself; a NUL byte can only come from the escape \\u0000 and an infinite float only from a number
    `_may_overflow` finds, so both are ruled out on the bytes (inside a string they only cost the per-field
    checks). What this returns may be validated with `unchecked_many`. On ValueError, parse the body as
    usual: the per-field validators then name the bad field.
    """
    if b"\\u0000" in body or _may_overflow(body.translate(_NUMBER_SHAPE, b"+")):
        raise ValueError("may hold a NUL byte or a non-finite number")
    return pydantic_core.from_json(body, allow_inf_nan=False)


T = TypeVar("T", bound=BaseModel)
_STORABLE_CHECKS = {"_storable_text", "_storable_json", "_storable_extras", "_storable_evaluation"}
_UNCHECKED: dict[type, pydantic_core.SchemaValidator] = {}


def _without_storable_checks(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_without_storable_checks(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") == "function-after" and schema["function"]["function"].__name__ in _STORABLE_CHECKS:
        inner = _without_storable_checks(schema["schema"])
        return {**inner, "ref": schema["ref"]} if "ref" in schema and "ref" not in inner else inner
    return {key: _without_storable_checks(value) for key, value in schema.items()}


def unchecked_one(schema: type[T], item: Any) -> T:
    """`unchecked_many` for one item (an object parsed by `storable_json`)."""
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")  # `ingest.validate` words it
    return unchecked_many(schema, [item])[0]


def unchecked_many(schema: type[BaseModel], items: list) -> list:
    """`[schema.model_validate(item) for item in items]` in one call, without the storable-text/JSON
    validators: only for items parsed by `storable_json`, which already rules out what they refuse.
    Raises pydantic's ValidationError as model_validate would (its messages are not the per-field ones:
    on an error, validate item by item)."""
    if (validator := _UNCHECKED.get(schema)) is None:
        core = _without_storable_checks(schema.__pydantic_core_schema__)
        validator = _UNCHECKED[schema] = pydantic_core.SchemaValidator({"type": "list", "items_schema": core})
    return validator.validate_python(items)


# --- answers ---------------------------------------------------------------------------------------


class ErrorOut(Schema):
    detail: str
    errors: list[dict] = []


# Answers carry naive times (the original's format), which JSON Schema's "date-time" (RFC 3339, with an
# offset) does not allow: the published schema says what is really sent.
NaiveUtcOut = Annotated[datetime, WithJsonSchema({
    "type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?$",
    "description": "ISO 8601 without an offset, in UTC (e.g. 2025-03-01T12:00:00)"})]


class RunSummaryOut(Schema):
    """One run's header and counters, no decisions. Timestamps naive, in UTC, as the original writes them."""

    run_id: str
    goal_id: str
    goal_description: str
    status: str
    started_at: NaiveUtcOut
    completed_at: NaiveUtcOut | None
    duration_ms: int
    decision_count: int
    success_count: int
    failure_count: int
    success_rate: float
    problem_count: int
    total_tokens: int
    total_latency_ms: int

    @staticmethod
    def resolve_started_at(obj) -> datetime:
        return obj.started_at.astimezone(UTC).replace(tzinfo=None)

    @staticmethod
    def resolve_completed_at(obj) -> datetime | None:
        return obj.completed_at.astimezone(UTC).replace(tzinfo=None) if obj.completed_at else None


class RunPageOut(Schema):
    items: list[RunSummaryOut]
    next_cursor: str | None
    count: int


class BatchIn(Schema):
    events: list[Any]


class BatchSuccessOut(Schema):
    index: int
    status: int


class BatchErrorOut(Schema):
    index: int
    status: int
    detail: str


class BatchOut(Schema):
    successes: list[BatchSuccessOut]
    errors: list[BatchErrorOut]


class DecisionOut(Schema):
    run_id: str
    decision_id: str
    seq: int
    node_id: str
    decision_type: str
    chosen_option_id: str
    chosen_description: str | None
    has_outcome: bool
    outcome_success: bool | None

    @staticmethod
    def resolve_run_id(obj) -> str:
        return obj.run.run_id


class ProblemOut(Schema):
    run_id: str
    problem_id: str
    severity: str
    description: str
    decision_id: str | None

    @staticmethod
    def resolve_run_id(obj) -> str:
        return obj.run.run_id
