"""Runtime: the object agents call to record runs, decisions, outcomes and problems (SEED-SPEC §2).

One in-memory current run per instance; not thread-safe. In local mode the run is
written to a FileStorage when it ends, and only then. URL mode (framework.transport)
attaches a *sink* that observes every state change through ``_emit``:

    ("run_start", {"run": Run})
    ("decision",  {"run_id": str, "decision": Decision, "index": int})
    ("outcome",   {"run_id": str, "decision_id": str, "outcome": Outcome})
    ("problem",   {"run_id": str, "problem": Problem})
    ("run_end",   {"run": Run})

The payload objects are the live models held by the current run: a sink that
sends them later must serialise them when it receives them.
"""

import logging
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any

from framework.schemas.decision import Decision, DecisionType, Option, Outcome
from framework.schemas.run import Run, RunStatus
from framework.storage.backend import FileStorage

logger = logging.getLogger(__name__)

_trace_context: ContextVar[dict[str, str] | None] = ContextVar("framework_trace_context", default=None)


def get_trace_context() -> dict[str, str]:
    """The trace context set by the latest ``start_run`` in this context (empty before any)."""
    return dict(_trace_context.get() or {})


def _is_url(storage_path: str | Path) -> bool:
    return isinstance(storage_path, str) and storage_path.lower().startswith(("http://", "https://"))


class Runtime:
    """Records what an agent decided and why.

        runtime = Runtime("/path/to/storage")
        run_id = runtime.start_run("goal_123", "Qualify sales leads")
        decision_id = runtime.decide(intent=..., options=[{"id": "ask", ...}], chosen="ask", reasoning=...)
        runtime.record_outcome(decision_id=decision_id, success=True, summary="...")
        runtime.end_run(success=True)

    With no run open, ``decide``/``record_outcome``/``report_problem``/``end_run`` log
    a warning and do nothing, as the original does; ``strict=True`` makes them raise
    RuntimeError instead (upstream #2284).
    """

    def __init__(
        self,
        storage_path: str | Path,
        *,
        strict: bool = False,
        api_key: str | None = None,
        **transport_options: Any,
    ):
        self.strict = strict
        self._current_run: Run | None = None
        self._current_node: str = "unknown"
        self._sink = None
        self.transport = None  # URL mode's framework.transport.Transport

        if _is_url(storage_path):
            # URL mode: the transport (written separately) sets self.transport, self.storage and self._sink.
            from framework.transport import attach_url_mode

            attach_url_mode(self, storage_path, api_key=api_key, **transport_options)
            return

        if transport_options:
            raise TypeError(
                f"Runtime got options that only apply to a dashboard URL: {sorted(transport_options)}"
            )
        path = Path(storage_path)
        if not path.exists():
            logger.warning("Storage directory %s does not exist; creating it", path)
            path.mkdir(parents=True, exist_ok=True)
        self.storage = FileStorage(path)

    # === EVENTS ===

    def _emit(self, kind: str, **payload: Any) -> None:
        if self._sink is None:
            return
        try:
            self._sink.emit(kind, payload)
        except Exception:
            # Reporting must never break the agent.
            logger.exception("Runtime sink failed on %s event", kind)

    def _no_run(self, method: str, detail: str) -> None:
        message = f"{method} called but no run in progress{detail}"
        if self.strict:
            raise RuntimeError(f"{message}. Call start_run() first.")
        logger.warning(message)

    # === RUN LIFECYCLE ===

    def start_run(
        self,
        goal_id: str,
        goal_description: str = "",
        input_data: dict[str, Any] | None = None,
    ) -> str:
        """Open a new run in memory and return its id. An open run is silently replaced."""
        run_id = f"run_{datetime.now().strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:8]}"
        _trace_context.set(
            {"trace_id": uuid.uuid4().hex, "execution_id": uuid.uuid4().hex, "goal_id": goal_id}
        )
        self._current_run = Run(
            id=run_id,
            goal_id=goal_id,
            goal_description=goal_description,
            input_data=input_data or {},
        )
        self._emit("run_start", run=self._current_run)
        return run_id

    def end_run(
        self,
        success: bool,
        narrative: str = "",
        output_data: dict[str, Any] | None = None,
    ) -> None:
        """Complete the current run and persist it. This is the only place runs are saved.

        In URL mode the run's events are handed to the background sender and this returns at once;
        ``flush()`` waits for their delivery.
        """
        run = self._current_run
        if run is None:
            self._no_run("end_run", " (already ended or never started)")
            return
        run.output_data = output_data or {}
        run.complete(RunStatus.COMPLETED if success else RunStatus.FAILED, narrative)
        self._emit("run_end", run=run)
        self.storage.save_run(run)
        self._current_run = None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event reported so far is delivered or spooled; False if ``timeout`` ran out.

        URL mode's ``end_run`` does not wait for the dashboard (delivery goes on in the background, and
        the exit flushes); call this to wait. ``timeout`` defaults to ``FRAMEWORK_FLUSH_TIMEOUT``.
        Local mode writes each run at ``end_run``: nothing to wait for.
        """
        return True if self.transport is None else self.transport.flush(timeout)

    def set_node(self, node_id: str) -> None:
        """Set the node that later decisions are attributed to by default."""
        self._current_node = node_id

    @property
    def current_run(self) -> Run | None:
        return self._current_run

    @property
    def execution_id(self) -> str:
        return ""

    # === RECORDING ===

    def decide(
        self,
        intent: str,
        options: list[dict[str, Any]],
        chosen: str,
        reasoning: str,
        node_id: str | None = None,
        decision_type: DecisionType = DecisionType.CUSTOM,
        constraints: list[str] | None = None,
        context: dict[str, Any] | None = None,
    ) -> str:
        """Record a decision and return its id (``dec_N``), or "" with no run open.

        Nothing is validated, as in the original: ``chosen`` need not name an option.
        """
        run = self._current_run
        if run is None:
            self._no_run("decide", f": {intent}")
            return ""
        decision = Decision(
            id=f"dec_{len(run.decisions)}",
            node_id=node_id or self._current_node,
            intent=intent,
            decision_type=decision_type,
            options=[
                Option(
                    id=option["id"],
                    description=option.get("description", ""),
                    action_type=option.get("action_type", "unknown"),
                    action_params=option.get("action_params", {}),
                    pros=option.get("pros", []),
                    cons=option.get("cons", []),
                    confidence=option.get("confidence", 0.5),
                )
                for option in options
            ],
            chosen_option_id=chosen,
            reasoning=reasoning,
            active_constraints=constraints or [],
            input_context=context or {},
        )
        run.add_decision(decision)
        self._emit("decision", run_id=run.id, decision=decision, index=len(run.decisions) - 1)
        return decision.id

    def record_outcome(
        self,
        decision_id: str,
        success: bool,
        result: Any = None,
        error: str | None = None,
        summary: str = "",
        state_changes: dict[str, Any] | None = None,
        tokens_used: int = 0,
        latency_ms: int = 0,
    ) -> None:
        """Attach what happened to a decision. Unknown ids are ignored; repeats count twice."""
        run = self._current_run
        if run is None:
            self._no_run("record_outcome", f" (decision_id={decision_id})")
            return
        outcome = Outcome(
            success=success,
            result=result,
            error=error,
            summary=summary,
            state_changes=state_changes or {},
            tokens_used=tokens_used,
            latency_ms=latency_ms,
        )
        if not run.record_outcome(decision_id, outcome):
            if self.strict:
                raise RuntimeError(f"record_outcome called for unknown decision {decision_id!r} in run {run.id}")
            return
        self._emit("outcome", run_id=run.id, decision_id=decision_id, outcome=outcome)

    def report_problem(
        self,
        severity: str,
        description: str,
        decision_id: str | None = None,
        root_cause: str | None = None,
        suggested_fix: str | None = None,
    ) -> str:
        """Record a problem ("critical", "warning" or "minor" by convention); returns ``prob_N`` or ""."""
        run = self._current_run
        if run is None:
            self._no_run("report_problem", f": [{severity}] {description}")
            return ""
        problem_id = run.add_problem(
            severity=severity,
            description=description,
            decision_id=decision_id,
            root_cause=root_cause,
            suggested_fix=suggested_fix,
        )
        self._emit("problem", run_id=run.id, problem=run.problems[-1])
        return problem_id

    # === CONVENIENCE ===

    def decide_and_execute(
        self,
        intent: str,
        options: list[dict[str, Any]],
        chosen: str,
        reasoning: str,
        executor: Callable[[], Any],
        **kwargs: Any,
    ) -> tuple[str, Any]:
        """Record a decision, run ``executor()``, record its outcome; exceptions are re-raised."""
        decision_id = self.decide(intent=intent, options=options, chosen=chosen, reasoning=reasoning, **kwargs)
        start = time.time()
        try:
            result = executor()
        except Exception as exc:
            latency_ms = int((time.time() - start) * 1000)
            self.record_outcome(decision_id=decision_id, success=False, error=str(exc), latency_ms=latency_ms)
            raise
        latency_ms = int((time.time() - start) * 1000)
        self.record_outcome(decision_id=decision_id, success=True, result=result, latency_ms=latency_ms)
        return decision_id, result

    def quick_decision(self, intent: str, action: str, reasoning: str, node_id: str | None = None) -> str:
        """Record a decision with a single option, ``action``, chosen."""
        return self.decide(
            intent=intent,
            options=[{"id": "action", "description": action, "action_type": "execute"}],
            chosen="action",
            reasoning=reasoning,
            node_id=node_id,
        )
