import sys
import types

import pytest

from framework import BuilderQuery, FailureAnalysis, PatternAnalysis, Run, Runtime, RunStatus, RunSummary
from framework.builder import heuristics
from framework.schemas import Decision, DecisionEvaluation, Option, Outcome
from tests.sdk.fixtures import write_original_storage


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    path = tmp_path_factory.mktemp("original")
    info = write_original_storage(path)
    return BuilderQuery(path), info


def ids(summaries):
    return [s.run_id for s in summaries]


def make_run(run_id, status, decisions, nodes=None, problems=()):
    run = Run(id=run_id, goal_id="g", status=status)
    for d in decisions:
        run.add_decision(d)
        if d.outcome is not None:
            run.metrics.successful_decisions += d.outcome.success
            run.metrics.failed_decisions += not d.outcome.success
    if nodes is not None:
        run.metrics.nodes_executed = list(nodes)
    for severity, description, fix in problems:
        run.add_problem(severity, description, suggested_fix=fix)
    return run


def decision(i, *, node="n", intent="do it", chosen="a", options=("a", "b"), success=None, error=None, **kw):
    return Decision(
        id=f"dec_{i}", node_id=node, intent=intent, chosen_option_id=chosen,
        options=[Option(id=o, description=o.upper(), action_type="t") for o in options],
        outcome=None if success is None else Outcome(success=success, error=error), **kw,
    )


# === The seed README, verbatim but for the paths ===


def test_the_seed_readme_snippet_runs_unchanged(tmp_path, capsys):
    storage = str(tmp_path / "storage")
    from framework import Runtime
    runtime = Runtime(storage)
    run_id = runtime.start_run("my_goal", "Description of what we're doing")
    decision_id = runtime.decide(
        intent="Choose how to process the data",
        options=[{"id": "fast", "description": "Quick processing", "pros": ["Fast"], "cons": ["Less accurate"]},
                 {"id": "thorough", "description": "Detailed processing", "pros": ["Accurate"], "cons": ["Slower"]}],
        chosen="thorough", reasoning="Accuracy is more important for this task")
    runtime.record_outcome(decision_id=decision_id, success=True, result={"processed": 100},
                           summary="Processed 100 items with detailed analysis")
    runtime.end_run(success=True, narrative="Successfully processed all data")
    # A failed run, so that analyze_failure has something real to explain.
    failed_id = runtime.start_run("my_goal", "Description of what we're doing")
    failed_decision = runtime.decide(
        intent="Choose how to process the data",
        options=[{"id": "fast", "description": "Quick processing"},
                 {"id": "thorough", "description": "Detailed processing"}],
        chosen="fast", reasoning="In a hurry")
    runtime.record_outcome(decision_id=failed_decision, success=False, error="Out of memory")
    runtime.end_run(success=False)

    from framework import BuilderQuery
    query = BuilderQuery(storage)
    patterns = query.find_patterns("my_goal"); print(f"Success rate: {patterns.success_rate:.1%}")
    analysis = query.analyze_failure(failed_id); print(analysis.root_cause, analysis.suggestions)
    for s in query.suggest_improvements("my_goal"): print(f"[{s['priority']}] {s['recommendation']}")

    assert capsys.readouterr().out.splitlines() == [
        "Success rate: 50.0%",
        "Out of memory [\"Consider alternative: 'Detailed processing' instead of 'Quick processing'\", "
        "\"Decision 'Choose how to process the data' had no input context - ensure relevant data is passed\"]",
        "[high] Review and improve node 'unknown' - high failure rate suggests prompt or tool issues",
        "[high] Consider restructuring the agent graph or improving goal definition",
    ]
    assert query.analyze_failure("run_123") is None
    assert query.get_full_run(run_id).narrative == "Successfully processed all data"


# === BuilderQuery over a folder written by the original ===


def test_get_run_summary_reads_the_stored_file(original):
    query, info = original
    summary = query.get_run_summary(info["calc"]["calc_1"])
    assert summary.model_extra == {"schema_version": 1}
    assert summary.successes == ["Evaluated 2 + 3 * 4 = 14", "Formatted result as 14"]
    assert summary.key_decisions == [] and summary.duration_ms == 5000


def test_get_run_summary_computes_a_missing_summary(original):
    query, info = original
    summary = query.get_run_summary(info["calc"]["calc_6"])
    assert summary == RunSummary.from_run(query.get_full_run(info["calc"]["calc_6"]))
    assert summary.key_decisions == ["✗ [calculator] Choose evaluator → Evaluate with Python eval",
                                     "✗ [calculator] Retry evaluation → Evaluate with safe parser"]
    assert query.get_run_summary("run_nope") is None


def test_get_full_run_returns_the_run_or_none(original):
    query, info = original
    assert query.get_full_run(info["research"]["res_3"]).metrics.total_tokens == 3280
    assert query.get_full_run("run_nope") is None


def test_list_runs_for_goal_follows_the_goal_index(original):
    query, info = original
    assert ids(query.list_runs_for_goal("calculator")) == info["goals"]["calculator"]
    assert info["calc"]["calc_7"] not in info["goals"]["calculator"]
    assert query.list_runs_for_goal("nobody") == []


def test_get_recent_failures_returns_the_oldest_failures_first(original):
    query, info = original
    failed = info["by_status"]["failed"]
    assert failed[:2] == [info["calc"]["calc_2"], info["research"]["res_1"]]
    assert ids(query.get_recent_failures()) == failed
    assert ids(query.get_recent_failures(limit=2)) == failed[:2]


def test_analyze_failure_returns_none_unless_the_run_failed(original):
    query, info = original
    assert query.analyze_failure("run_nope") is None
    assert query.analyze_failure(info["calc"]["calc_1"]) is None  # completed
    assert query.analyze_failure(info["research"]["res_5"]) is None  # cancelled


def test_analyze_failure_blames_the_first_failed_decision(original):
    query, info = original
    run_id = info["calc"]["calc_4"]
    assert query.analyze_failure(run_id).to_dict() == {
        "run_id": run_id,
        "failure_point": "✗ [calculator] Choose evaluator → unknown action",
        "root_cause": "Division by zero",
        "decision_chain": ["✗ [calculator] Choose evaluator → unknown action"],
        "problems": ["[FATAL] Evaluator crashed"],
        "suggestions": [
            "Consider alternative: 'Evaluate with safe parser' instead of 'unknown'",
            "Decision 'Choose evaluator' had no input context - ensure relevant data is passed",
            "Review constraints: no-crash, max-latency-500ms - may be too restrictive",
            "Catch ZeroDivisionError and return 'Error'",
        ],
    }


def test_analyze_failure_counts_decisions_without_outcome_and_keeps_none_errors(original):
    query, info = original
    analysis = query.analyze_failure(info["calc"]["calc_6"])
    assert analysis.root_cause is None
    assert analysis.problems == []
    assert analysis.suggestions == [
        "Consider alternative: 'Evaluate with safe parser' instead of 'Evaluate with Python eval'",
        "Consider alternative: 'Evaluate with Python eval' instead of 'Evaluate with safe parser'",
    ]


def test_analyze_failure_does_not_remove_duplicate_suggestions(original):
    query, info = original
    analysis = query.analyze_failure(info["research"]["res_1"])
    assert analysis.suggestions == [
        "Consider alternative: 'Search the web' instead of 'Search arXiv'",
        "Consider alternative: 'Broaden the query' instead of 'Retry the same query'",
        "Consider alternative: 'Broaden the query' instead of 'Retry the same query'",
        "Add a fallback search provider",
    ]
    assert analysis.problems == ["[critical] Search backend unreachable", "[warning] Retried 2 times"]


def test_failure_analysis_prints_like_the_original(original):
    query, info = original
    assert str(query.analyze_failure(info["calc"]["calc_2"])) == "\n".join([
        f"=== Failure Analysis for {info['calc']['calc_2']} ===",
        "",
        "Failure Point: ✗ [calculator] Choose evaluator → Evaluate with safe parser",
        "Root Cause: Division by zero",
        "",
        "Decision Chain Leading to Failure:",
        "  1. ✗ [calculator] Choose evaluator → Evaluate with safe parser",
        "",
        "Reported Problems:",
        "  - [critical] Division by zero in expression",
        "  - [minor] Formatter skipped",
        "",
        "Suggestions:",
        "  → Consider alternative: 'Evaluate with Python eval' instead of 'Evaluate with safe parser'",
        "  → Decision 'Format the result' had no input context - ensure relevant data is passed",
        "  → Validate the divisor before evaluating",
    ])


def test_get_decision_trace_lists_every_decision(original):
    query, info = original
    assert query.get_decision_trace(info["research"]["res_3"]) == [
        "✓ [search] Find papers → Search arXiv",
        "✓ [summarize] Summarize the papers → Detailed summary [quality: 0.9]",
    ] + ["✓ [cite] Cite a paper → Format citation"] * 4
    assert query.get_decision_trace("run_nope") == []


def test_find_patterns_over_the_calculator_goal(original):
    query, _ = original
    patterns = query.find_patterns("calculator")
    assert patterns.to_dict() == {
        "goal_id": "calculator",
        "run_count": 6,
        "success_rate": 2 / 6,
        "common_failures": [("Division by zero", 3), ("Unknown error", 1)],
        "problematic_nodes": [("calculator", 5 / 7), ("formatter", 1 / 3)],
        "decision_patterns": {
            "decision_type_distribution": {"tool_selection": 6, "output_format": 3, "retry_strategy": 1},
            "common_choices": {
                "Choose evaluator": {"choice": "Evaluate with safe parser", "count": 4, "alternatives": 1},
                "Format the result": {"choice": "Plain number", "count": 2, "alternatives": 1},
                "Retry evaluation": {"choice": "Evaluate with safe parser", "count": 1, "alternatives": 0},
            },
        },
    }
    assert str(patterns) == "\n".join([
        "=== Pattern Analysis for Goal calculator ===",
        "",
        "Runs Analyzed: 6",
        "Success Rate: 33.3%",
        "",
        "Common Failures:",
        "  - Division by zero (3 occurrences)",
        "  - Unknown error (1 occurrences)",
        "",
        "Problematic Nodes (failure rate):",
        "  - calculator: 71.4% failure rate",
        "  - formatter: 33.3% failure rate",
    ])


def test_find_patterns_counts_cancelled_runs_in_the_denominator(original):
    query, _ = original
    patterns = query.find_patterns("research")
    assert (patterns.run_count, patterns.success_rate) == (5, 0.4)
    assert patterns.common_failures == [("Timeout after 30s", 5), ("Citation format invalid", 2)]
    assert patterns.problematic_nodes == [("search", 5 / 8), ("cite", 0.2)]
    assert patterns.decision_patterns["decision_type_distribution"] == {
        "tool_selection": 5, "retry_strategy": 3, "output_format": 10, "parameter_choice": 3}


def test_find_patterns_is_none_for_an_unknown_goal(original):
    query, _ = original
    assert query.find_patterns("nobody") is None
    assert query.suggest_improvements("nobody") == []


def test_suggest_improvements_for_the_research_goal(original):
    query, _ = original
    node = "Review and improve node '{}' - high failure rate suggests prompt or tool issues"
    assert query.suggest_improvements("research") == [
        {"type": "node_improvement", "target": "search", "reason": "Node has 62.5% failure rate",
         "recommendation": node.format("search"), "priority": "high"},
        {"type": "node_improvement", "target": "cite", "reason": "Node has 20.0% failure rate",
         "recommendation": node.format("cite"), "priority": "medium"},
        {"type": "error_handling", "target": "Timeout after 30s", "reason": "Error occurred 5 times",
         "recommendation": "Add handling for: Timeout after 30s", "priority": "high"},
        {"type": "error_handling", "target": "Citation format invalid", "reason": "Error occurred 2 times",
         "recommendation": "Add handling for: Citation format invalid", "priority": "medium"},
        {"type": "architecture", "target": "research", "reason": "Goal success rate is only 40.0%",
         "recommendation": "Consider restructuring the agent graph or improving goal definition",
         "priority": "high"},
    ]


def test_suggest_improvements_for_the_calculator_goal(original):
    query, _ = original
    assert [(s["type"], s["target"], s["priority"]) for s in query.suggest_improvements("calculator")] == [
        ("node_improvement", "calculator", "high"),
        ("node_improvement", "formatter", "high"),
        ("error_handling", "Division by zero", "medium"),
        ("architecture", "calculator", "high"),
    ]


def test_a_healthy_goal_gets_no_suggestions(original):
    query, _ = original
    assert query.find_patterns("greeting").success_rate == 1.0
    assert query.suggest_improvements("greeting") == []


def test_compare_runs_reports_status_divergence_and_nodes(original):
    query, info = original
    calc_5, calc_6 = info["calc"]["calc_5"], info["calc"]["calc_6"]
    assert query.compare_runs(calc_6, calc_5) == {
        "run_1": {"id": calc_6, "status": "failed", "decisions": 2, "success_rate": 0.0},
        "run_2": {"id": calc_5, "status": "completed", "decisions": 2, "success_rate": 1.0},
        "differences": [
            "Status: failed vs completed",
            "Diverged at decision 0: chose 'eval_unsafe' vs 'eval_safe'",
            "Nodes only in run 2: {'formatter'}",
        ],
    }
    assert query.compare_runs(calc_5, "run_nope") == {"error": "One or both runs not found"}


def test_get_node_performance_follows_the_node_index(original):
    query, _ = original
    # calc_7 is missing from the goal index but present in the node index, so it counts here.
    assert query.get_node_performance("calculator") == {
        "node_id": "calculator",
        "total_decisions": 8,
        "success_rate": 3 / 8,
        "avg_latency_ms": 450.0,
        "total_tokens": 530,
        "decision_type_distribution": {"tool_selection": 7, "retry_strategy": 1},
    }


def test_get_node_performance_of_an_unknown_node_has_int_zeros(original):
    query, _ = original
    performance = query.get_node_performance("nobody")
    assert performance == {"node_id": "nobody", "total_decisions": 0, "success_rate": 0, "avg_latency_ms": 0,
                           "total_tokens": 0, "decision_type_distribution": {}}
    assert type(performance["success_rate"]) is int and type(performance["avg_latency_ms"]) is int


def test_aggregate_runs_gives_the_pattern_analysis_inputs(original):
    query, info = original
    runs = [query.get_full_run(run_id) for run_id in info["goals"]["calculator"]]
    assert heuristics.aggregate_runs(runs) == {
        "run_count": 6,
        "completed_count": 2,
        "error_counts": [("Division by zero", 3), ("Unknown error", 1)],
        "node_counts": [("calculator", 5, 7), ("formatter", 1, 3)],
        "type_counts": {"tool_selection": 6, "output_format": 3, "retry_strategy": 1},
        "choice_counts": {
            "Choose evaluator": [("Evaluate with safe parser", 4), ("Evaluate with Python eval", 1)],
            "Format the result": [("Plain number", 2), ("Full sentence", 1)],
            "Retry evaluation": [("Evaluate with safe parser", 1)],
        },
    }


def test_a_url_returns_the_remote_query(monkeypatch):
    class RemoteQuery:
        def __init__(self, url, **kw):
            self.url, self.kw = url, kw

    fake = types.ModuleType("framework.transport")
    fake.RemoteQuery = RemoteQuery
    monkeypatch.setitem(sys.modules, "framework.transport", fake)
    query = BuilderQuery("http://127.0.0.1:8000", api_key="k")
    assert isinstance(query, RemoteQuery) and (query.url, query.kw) == ("http://127.0.0.1:8000", {"api_key": "k"})


# === The heuristics on their own: thresholds and ordering ===


def patterns(**overrides):
    args = {"goal_id": "g", "run_count": 10, "completed_count": 10, "error_counts": [], "node_counts": [],
            "type_counts": {}, "choice_counts": {}}
    return heuristics.pattern_analysis(**{**args, **overrides})


def test_pattern_analysis_is_none_without_runs():
    assert patterns(run_count=0, completed_count=0) is None
    assert heuristics.suggest_improvements(None) == []


def test_a_node_needs_strictly_more_than_ten_percent_failures():
    result = patterns(node_counts=[("exact", 1, 10), ("above", 1001, 10000), ("zero", 0, 5), ("empty", 0, 0)])
    assert result.problematic_nodes == [("above", 0.1001)]


def test_node_priority_is_high_only_above_thirty_percent():
    result = patterns(node_counts=[("thirty", 3, 10), ("more", 31, 100)])
    assert [(s["target"], s["priority"]) for s in heuristics.suggest_improvements(result)] == [
        ("more", "high"), ("thirty", "medium")]


def test_errors_need_two_occurrences_and_five_for_high_priority():
    result = patterns(error_counts=[("once", 1), ("twice", 2), ("four", 4), ("five", 5)])
    assert [(s["target"], s["priority"], s["reason"]) for s in heuristics.suggest_improvements(result)] == [
        ("five", "high", "Error occurred 5 times"),
        ("four", "medium", "Error occurred 4 times"),
        ("twice", "medium", "Error occurred 2 times"),
    ]


def test_common_failures_keep_the_top_five_with_ties_in_first_seen_order():
    errors = [("a", 1), ("b", 3), ("c", 2), ("d", 3), ("e", 1), ("f", 2), ("g", 1)]
    assert patterns(error_counts=errors).common_failures == [("b", 3), ("d", 3), ("c", 2), ("f", 2), ("a", 1)]


def test_problematic_nodes_tie_in_first_seen_order():
    result = patterns(node_counts=[("x", 1, 2), ("y", 2, 3), ("z", 2, 4)])
    assert result.problematic_nodes == [("y", 2 / 3), ("x", 0.5), ("z", 0.5)]


def test_architecture_suggestion_below_eighty_percent_only():
    assert heuristics.suggest_improvements(patterns(run_count=5, completed_count=4)) == []
    suggestion = heuristics.suggest_improvements(patterns(run_count=100, completed_count=79))
    assert suggestion == [{
        "type": "architecture", "target": "g", "reason": "Goal success rate is only 79.0%",
        "recommendation": "Consider restructuring the agent graph or improving goal definition", "priority": "high",
    }]


def test_common_choice_ties_go_to_the_first_seen_and_alternatives_count_other_choices():
    result = patterns(choice_counts={"pick": [("B", 2), ("A", 2), ("C", 1)], "none": []})
    assert result.decision_patterns["common_choices"] == {"pick": {"choice": "B", "count": 2, "alternatives": 2}}


def test_aggregate_runs_truncates_intents_and_skips_unknown_choices():
    long_intent = "x" * 60
    run = make_run("r1", RunStatus.RUNNING, [
        decision(0, intent=long_intent, success=True),
        decision(1, intent=long_intent + "y", chosen="b", success=False),
        decision(2, chosen="zzz", success=False, error="bad"),
        decision(3, node="m"),
    ])
    aggregate = heuristics.aggregate_runs([run])
    assert aggregate["choice_counts"] == {"x" * 50: [("A", 1), ("B", 1)], "do it": [("A", 1)]}
    assert aggregate["error_counts"] == [("Unknown error", 1), ("bad", 1)]
    assert aggregate["node_counts"] == [("n", 2, 3), ("m", 1, 1)]
    assert (aggregate["run_count"], aggregate["completed_count"]) == (1, 0)


def test_analyze_failure_of_a_run_whose_decisions_all_succeeded():
    run = make_run("r", RunStatus.FAILED, [decision(0, success=True)], problems=[("minor", "m", "fix it")])
    analysis = heuristics.analyze_failure(run)
    assert analysis.failure_point == "Unknown - no decision marked as failed"
    assert analysis.root_cause == "Run failed but all decisions succeeded (external cause?)"
    assert analysis.decision_chain == ["✓ [n] do it → A"]
    assert analysis.suggestions == ["fix it"]


def test_analyze_failure_root_cause_is_unknown_when_the_failure_has_no_outcome():
    run = make_run("r", RunStatus.FAILED, [
        decision(0, success=True), decision(1, input_context={"k": 1}), decision(2, success=False, error="late"),
    ])
    analysis = heuristics.analyze_failure(run)
    assert analysis.root_cause == "Unknown"
    assert analysis.decision_chain == ["✓ [n] do it → A", "✗ [n] do it → A"]
    assert analysis.suggestions == [
        "Consider alternative: 'B' instead of 'A'",
        "Consider alternative: 'B' instead of 'A'",
        "Decision 'do it' had no input context - ensure relevant data is passed",
    ]


def test_analyze_failure_skips_alternatives_when_no_other_option_exists():
    run = make_run("r", RunStatus.FAILED, [decision(0, options=("a", "a"), success=False, input_context={"k": 1})])
    assert heuristics.analyze_failure(run).suggestions == []


def test_analyze_failure_ignores_stuck_runs():
    assert heuristics.analyze_failure(make_run("r", RunStatus.STUCK, [decision(0, success=False)])) is None


def test_compare_runs_prints_python_set_reprs():
    run1 = make_run("r1", RunStatus.COMPLETED, [decision(0)], nodes=["a", "shared"])
    run2 = make_run("r2", RunStatus.COMPLETED, [decision(0), decision(1)], nodes=["shared", "b", "c"])
    differences = heuristics.compare_runs(run1, run2)["differences"]
    assert differences[:2] == ["Decision count: 1 vs 2", "Nodes only in run 1: {'a'}"]
    # A set of two prints in hash order, which changes from process to process (as in the original).
    assert differences[2] in ("Nodes only in run 2: {'b', 'c'}", "Nodes only in run 2: {'c', 'b'}")
    assert len(differences) == 3
    assert heuristics.compare_runs(None, run1) == {"error": "One or both runs not found"}


def test_node_performance_averages_over_every_decision():
    assert heuristics.node_performance(node_id="n", total_decisions=4, successful=1, total_latency_ms=10,
                                       total_tokens=3, type_counts={"custom": 4}) == {
        "node_id": "n", "total_decisions": 4, "success_rate": 0.25, "avg_latency_ms": 2.5, "total_tokens": 3,
        "decision_type_distribution": {"custom": 4},
    }


def test_result_types_are_plain_classes_with_to_dict():
    analysis = FailureAnalysis("r", "fp", "rc", ["a"], [], [])
    assert str(analysis) == "=== Failure Analysis for r ===\n\nFailure Point: fp\nRoot Cause: rc\n\n" \
                            "Decision Chain Leading to Failure:\n  1. a"
    pattern = PatternAnalysis("g", 1, 1.0, [], [], {})
    assert pattern.to_dict()["problematic_nodes"] == []
    assert str(pattern) == "=== Pattern Analysis for Goal g ===\n\nRuns Analyzed: 1\nSuccess Rate: 100.0%"


def test_runtime_runs_are_queryable_with_evaluation_quality(tmp_path):
    runtime = Runtime(tmp_path)
    runtime.start_run("g")
    runtime.quick_decision("Greet", "Say hi", "simple", node_id="greeter")
    runtime.record_outcome("dec_0", success=True, latency_ms=12, tokens_used=3)
    runtime.current_run.decisions[0].evaluation = DecisionEvaluation(outcome_quality=0.95)
    runtime.end_run(success=True)
    query = BuilderQuery(tmp_path)
    assert query.list_runs_for_goal("g")[0].key_decisions == ["✓ [greeter] Greet → Say hi [quality: 0.9]"]
    assert query.get_node_performance("greeter")["avg_latency_ms"] == 12.0
