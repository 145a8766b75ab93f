"""URL mode against the real dashboard API: same answers as local storage, nothing lost through outages."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from framework import BuilderQuery, Runtime
from framework.storage import FileStorage
from framework.transport import flush_spool

from .conftest import Gate, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
FAST = {"flush_timeout": 2, "flush_interval": 0.05, "backoff_min": 0.1, "backoff_max": 0.3}


def readme_agent(runtime: Runtime):
    """The seed README's snippet, filled in, plus a failing run so every question has an answer."""
    run_id = runtime.start_run("my_goal", "Description")
    decision_id = runtime.decide(
        intent="Choose how to process the data",
        options=[
            {"id": "fast", "description": "Quick processing", "pros": ["fast"], "cons": ["less accurate"]},
            {"id": "thorough", "description": "Thorough processing", "pros": ["accurate"], "cons": ["slow"]},
        ],
        chosen="thorough",
        reasoning="Accuracy matters more than speed here",
    )
    runtime.record_outcome(decision_id=decision_id, success=True, result={"processed": 100},
                           summary="Processed 100 items", tokens_used=120, latency_ms=40)
    runs = [runtime.current_run]
    runtime.end_run(success=True, narrative="Processed the data", output_data={"items": 100})

    failed_id = runtime.start_run("my_goal", "Description", input_data={"n": 2})
    runtime.set_node("fetcher")
    first = runtime.decide(intent="Fetch the source", options=[{"id": "http", "description": "HTTP GET"},
                                                               {"id": "cache", "description": "Read the cache"}],
                           chosen="http", reasoning="Fresh data", constraints=["under 1s"])
    runtime.record_outcome(first, success=False, error="timeout after 1s", latency_ms=1000)
    runtime.report_problem("critical", "Source unreachable", decision_id=first, suggested_fix="Add a retry")
    runs.append(runtime.current_run)
    runtime.end_run(success=False)
    return [run_id, failed_id], runs


def assert_same_answers(remote, local, run_ids):
    for run_id in run_ids:
        assert remote.get_full_run(run_id).model_dump(mode="json") == local.get_full_run(run_id).model_dump(mode="json")
        assert remote.get_run_summary(run_id) == local.get_run_summary(run_id)
        assert remote.get_decision_trace(run_id) == local.get_decision_trace(run_id)
    assert remote.analyze_failure(run_ids[1]).to_dict() == local.analyze_failure(run_ids[1]).to_dict()
    assert remote.analyze_failure(run_ids[0]) is None
    assert remote.list_runs_for_goal("my_goal") == local.list_runs_for_goal("my_goal")
    assert remote.get_recent_failures(5) == local.get_recent_failures(5)
    assert remote.find_patterns("my_goal").to_dict() == local.find_patterns("my_goal").to_dict()
    assert remote.suggest_improvements("my_goal") == local.suggest_improvements("my_goal")
    assert remote.compare_runs(*run_ids) == local.compare_runs(*run_ids)
    assert remote.get_node_performance("fetcher") == local.get_node_performance("fetcher")
    assert remote.get_full_run("run_missing") is None and remote.find_patterns("no_such_goal") is None


def save_locally(runs, path) -> BuilderQuery:
    storage = FileStorage(path)
    for run in runs:
        storage.save_run(run)
    return BuilderQuery(path)


def test_readme_snippet_against_the_dashboard_answers_like_local_storage(live_server, api_key_raw, spool_root, tmp_path):
    runtime = Runtime(live_server.url, api_key=api_key_raw, **FAST)
    run_ids, runs = readme_agent(runtime)
    assert runtime.flush()  # end_run does not wait for delivery; flush() does
    assert runtime.transport.stats == {"sent": 9, "spooled": 0, "replayed": 0, "rejected": 0, "dropped": 0}
    remote = BuilderQuery(live_server.url, api_key=api_key_raw)
    assert_same_answers(remote, save_locally(runs, tmp_path / "local"), run_ids)
    assert remote.find_patterns("my_goal").common_failures == [("timeout after 1s", 1)]
    runtime.transport.close()


def outage_run(runtime: Runtime, server, *, restart: bool = True):
    """Report half a run, lose the dashboard, finish the run, bring the dashboard back."""
    runtime.start_run("outage", "Survive a restart")
    for n in range(10):
        decision_id = runtime.decide(intent=f"step {n}", options=[{"id": "a", "description": "A"}], chosen="a",
                                     reasoning="r", node_id=f"node_{n % 2}")
        runtime.record_outcome(decision_id, success=n % 4 != 3, error=None if n % 4 != 3 else "flaky", tokens_used=5)
    assert runtime.transport.flush()
    server.stop()
    for n in range(10, 25):
        decision_id = runtime.decide(intent=f"step {n}", options=[{"id": "a", "description": "A"}], chosen="a",
                                     reasoning="r", node_id=f"node_{n % 2}")
        runtime.record_outcome(decision_id, success=True, tokens_used=5)
    runtime.report_problem("warning", "dashboard went away")
    run = runtime.current_run
    runtime.end_run(success=True)
    assert runtime.flush()
    assert runtime.transport.stats["spooled"] == 32  # 15 decisions, 15 outcomes, a problem, the run end
    if restart:
        server.start()
    return run


def assert_arrived_once(url, key, run, tmp_path):
    from runs.models import Decision, Run

    remote = BuilderQuery(url, api_key=key)
    arrived = wait_for(lambda: (r := remote.get_full_run(run.id)) is not None and r.status == "completed" and r)
    assert arrived.model_dump(mode="json") == save_locally([run], tmp_path / "mirror").get_full_run(run.id).model_dump(mode="json")
    assert Decision.objects.filter(run__run_id=run.id).count() == 25
    stored = Run.objects.get(run_id=run.id)
    assert (stored.decision_count, stored.success_count, stored.failure_count, stored.problem_count) == (25, 23, 2, 1)


def test_outage_mid_run_is_replayed_by_the_same_process_exactly_once(dashboard, api_key_raw, spool_root, tmp_path):
    runtime = Runtime(dashboard.url, api_key=api_key_raw, **FAST)
    run = outage_run(runtime, dashboard)
    assert wait_for(lambda: runtime.transport.stats["replayed"] == 32)
    assert_arrived_once(dashboard.url, api_key_raw, run, tmp_path)
    runtime.transport.close()
    assert not list(spool_root.glob("*/*.jsonl"))


def test_outage_mid_run_is_replayed_by_the_next_runtime(dashboard, api_key_raw, spool_root, tmp_path):
    first = Runtime(dashboard.url, api_key=api_key_raw, **FAST)
    run = outage_run(first, dashboard, restart=False)
    first.transport.close()  # the agent process ends while the dashboard is down
    dashboard.start()
    second = Runtime(dashboard.url, api_key=api_key_raw, **FAST)
    assert wait_for(lambda: second.transport.stats["replayed"] == 32)
    assert_arrived_once(dashboard.url, api_key_raw, run, tmp_path)
    second.transport.close()


def test_outage_mid_run_is_replayed_by_the_flush_command(dashboard, api_key_raw, spool_root, tmp_path):
    runtime = Runtime(dashboard.url, api_key=api_key_raw, **FAST)
    run = outage_run(runtime, dashboard, restart=False)
    runtime.transport.close()
    dashboard.start()
    done = subprocess.run([sys.executable, "-m", "framework", "flush", "--to", dashboard.url, "--api-key", api_key_raw],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"Replayed 32 events to {dashboard.url}" in done.stdout
    assert_arrived_once(dashboard.url, api_key_raw, run, tmp_path)
    again = subprocess.run([sys.executable, "-m", "framework", "flush", "--to", dashboard.url, "--api-key", api_key_raw],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert again.returncode == 0 and "Nothing to flush." in again.stdout


def test_a_rejected_key_loses_nothing_once_the_key_is_fixed(live_server, api_key_raw, spool_root, tmp_path, caplog):
    runtime = Runtime(live_server.url, api_key="fwk_not_a_real_key_at_all", **FAST)
    with caplog.at_level(logging.WARNING, logger="framework.transport"):
        run_ids, runs = readme_agent(runtime)
        runtime.transport.close()
    assert caplog.text.count("API key rejected") == 1
    assert runtime.transport.stats["sent"] == 0 and runtime.transport.stats["spooled"] == 9
    assert BuilderQuery(live_server.url, api_key=api_key_raw).get_full_run(run_ids[0]) is None
    tally = flush_spool(live_server.url, api_key=api_key_raw)
    assert (tally.created, tally.rejected) == (9, 0)
    assert_same_answers(BuilderQuery(live_server.url, api_key=api_key_raw), save_locally(runs, tmp_path / "l"), run_ids)


def test_an_agent_that_exits_before_a_slow_dashboard_stores_anything_loses_nothing(dashboard, api_key_raw, spool_root):
    from runs.models import Decision

    dashboard.stop()
    dashboard.app = gate = Gate(dashboard.app)
    dashboard.start()
    script = (
        "from framework import Runtime\n"
        f"rt = Runtime({dashboard.url!r}, api_key={api_key_raw!r}, flush_timeout=0.5, batch_size=50)\n"
        "print(rt.start_run('impatient', 'Exit before the dashboard answers'))\n"
        "for n in range(100):\n"
        "    rt.record_outcome(rt.decide(intent=f'i{n}', options=[], chosen='', reasoning=''), success=n % 3 > 0)\n"
        "rt.end_run(success=True)\n"
    )
    try:
        agent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    finally:
        gate.open()  # the dashboard catches up once the agent is gone
    assert agent.returncode == 0, agent.stderr
    run_id = agent.stdout.strip()
    done = subprocess.run([sys.executable, "-m", "framework", "flush", "--to", dashboard.url, "--api-key", api_key_raw],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    run = BuilderQuery(dashboard.url, api_key=api_key_raw).get_full_run(run_id)
    assert run.status == "completed"
    assert [d.intent for d in run.decisions] == [f"i{n}" for n in range(100)]
    assert [d.outcome.success for d in run.decisions] == [n % 3 > 0 for n in range(100)]
    assert Decision.objects.filter(run__run_id=run_id).count() == 100
    assert not list(spool_root.glob("*/*.jsonl"))


def test_goal_and_node_ids_with_slashes_are_answered_through_the_dashboard(live_server, api_key_raw, spool_root):
    # Local storage refuses them (a goal id is a file name there); the dashboard stores them, and the SDK
    # reading it must find them, not answer "no such goal" as it did.
    runtime = Runtime(live_server.url, api_key=api_key_raw, **FAST)
    for n in range(3):
        runtime.start_run("team-a/checkout", "Pay for the basket")
        runtime.set_node("tools/search")
        decision_id = runtime.decide(intent="Find the product", options=[{"id": "web", "description": "Search"}],
                                     chosen="web", reasoning="Only option")
        runtime.record_outcome(decision_id, success=n != 1, error=None if n != 1 else "no results", tokens_used=10)
        runtime.end_run(success=n != 1)
    assert runtime.flush()
    remote = BuilderQuery(live_server.url, api_key=api_key_raw)
    assert [summary.status for summary in remote.list_runs_for_goal("team-a/checkout")] == ["completed", "failed", "completed"]
    patterns = remote.find_patterns("team-a/checkout")
    assert patterns.run_count == 3 and patterns.common_failures == [("no results", 1)]
    assert remote.get_node_performance("tools/search")["total_decisions"] == 3
    runtime.transport.close()
