"""URL mode's transport against small fake dashboards: the agent never waits, nothing is lost or reordered."""

import gc
import json
import logging
import subprocess
import sys
import time
import tracemalloc

from framework import Runtime
from framework.schemas.decision import Outcome
from framework.transport import Spool, Transport
from framework.transport.wire import to_wire, to_wire_json

from .conftest import free_port, wait_for

OPTIONS = {"api_key": "fwk_test", "flush_timeout": 2, "flush_interval": 0.05, "backoff_min": 0.1, "backoff_max": 0.3}


def spooled_events(root) -> list[dict]:
    lines = []
    for segment in sorted(root.glob("*/*.jsonl")):
        lines += [json.loads(line) for line in segment.read_text().splitlines()]
    return lines


def agent(runtime: Runtime, decisions: int, *, fail_at: int | None = None) -> str:
    run_id = runtime.start_run("ordering", "Keep the order")
    for n in range(decisions):
        decision_id = runtime.decide(intent=f"step {n}", options=[{"id": "a", "description": "do a"}], chosen="a",
                                     reasoning="because", node_id=f"node_{n % 3}")
        runtime.record_outcome(decision_id, success=n != fail_at, summary=f"did {n}", tokens_used=n)
    return run_id


def test_decide_never_waits_on_a_dashboard_that_accepts_but_never_answers(silent_port, spool_root):
    runtime = Runtime(f"http://127.0.0.1:{silent_port}", **{**OPTIONS, "flush_timeout": 0.3}, timeout=1, batch_size=50)
    runtime.start_run("slow_dashboard")
    gc.collect()
    gc.freeze()  # a full collection over the whole test process's heap is not the network's doing
    slowest = 0.0
    for n in range(1000):
        started = time.perf_counter()
        runtime.decide(intent=f"step {n}", options=[{"id": "a", "description": "do a"}], chosen="a", reasoning="r")
        took = time.perf_counter() - started
        if took > slowest:
            slowest, at = took, n
    gc.unfreeze()
    assert slowest < 0.05, (at, slowest)
    started = time.perf_counter()
    runtime.end_run(success=True)
    assert time.perf_counter() - started < 1.5  # the bounded flush wait, not the network's
    assert runtime.transport.stats["sent"] == 0
    runtime.transport.close(timeout=0.3)
    # Nothing was lost: every event (run start, 1000 decisions, run end) is on disk exactly once.
    events = spooled_events(spool_root)
    assert [e["type"] for e in events].count("decision") == 1000
    assert len({(e["type"], e.get("decision_id")) for e in events}) == len(events) == 1002


def test_events_arrive_in_order_exactly_once_through_an_outage(fake_dashboard, spool_root):
    runtime = Runtime(fake_dashboard.url, **OPTIONS)
    agent(runtime, 20)
    assert runtime.transport.flush()
    fake_dashboard.server.stop()
    for n in range(20, 40):
        decision_id = runtime.decide(intent=f"step {n}", options=[], chosen="a", reasoning="r")
        runtime.record_outcome(decision_id, success=True)
    runtime.end_run(success=True)
    assert runtime.flush()
    assert runtime.transport.stats["spooled"] == 41  # 20 decisions, 20 outcomes, the run end
    fake_dashboard.server.start()
    assert wait_for(lambda: len(fake_dashboard.events) == 82)
    decisions = [e["decision_id"] for e in fake_dashboard.events if e["type"] == "decision"]
    assert decisions == [f"dec_{n}" for n in range(40)]
    assert fake_dashboard.events[-1]["type"] == "run_end"
    assert wait_for(lambda: runtime.transport.stats["replayed"] == 41)  # counted once the answer is read
    # Once the spool is drained, new events go straight to the dashboard again, not through the disk.
    agent(runtime, 5)
    runtime.end_run(success=True)
    assert runtime.flush()
    assert runtime.transport.stats["spooled"] == 41 and len(fake_dashboard.events) == 82 + 12
    runtime.transport.close()
    assert spooled_events(spool_root) == []


def test_429_retry_after_is_honoured_and_nothing_is_dropped(fake_dashboard, spool_root):
    fake_dashboard.script.append((429, {"Retry-After": "1"}, {"detail": "Too many requests", "errors": []}))
    runtime = Runtime(fake_dashboard.url, **OPTIONS)
    agent(runtime, 3)
    runtime.end_run(success=True)
    assert wait_for(lambda: len(fake_dashboard.events) == 8)
    assert fake_dashboard.requests[1] - fake_dashboard.requests[0] >= 1.0
    assert [e["type"] for e in fake_dashboard.events] == ["run_start"] + ["decision", "outcome"] * 3 + ["run_end"]
    runtime.transport.close()


def test_an_event_the_dashboard_rejects_is_logged_dropped_and_counted(fake_dashboard, spool_root, caplog):
    fake_dashboard.reject = {"dec_1"}
    runtime = Runtime(fake_dashboard.url, **OPTIONS)
    with caplog.at_level(logging.WARNING, logger="framework.transport"):
        agent(runtime, 3)
        runtime.end_run(success=True)
        assert runtime.flush()
    assert runtime.transport.stats["rejected"] == 1
    assert "Invalid decision: intent: too long" in caplog.text
    assert [e.get("decision_id") for e in fake_dashboard.events if e["type"] == "decision"] == ["dec_0", "dec_2"]
    runtime.transport.close()


def test_memory_stays_bounded_while_the_dashboard_is_down_for_100000_events(spool_root):
    transport = Transport(f"http://127.0.0.1:{free_port()}", api_key="k", max_queue=10_000, backoff_min=5)
    event = {"type": "decision", "run_id": "run_1", "decision_id": "dec_0", "body": {"id": "dec_0", "intent": "x"}}
    largest = 0
    for _ in range(100_000):
        transport.enqueue(event)
        largest = max(largest, len(transport._queue))
    transport.close(timeout=1)
    assert largest <= 10_000
    assert transport.stats["spooled"] == 100_000
    assert len(spooled_events(spool_root)) == 100_000


def test_once_the_dashboard_is_known_down_at_most_a_batch_waits_in_memory(spool_root):
    transport = Transport(f"http://127.0.0.1:{free_port()}", api_key="k", batch_size=500, backoff_min=5)
    event = {"type": "decision", "run_id": "run_1", "decision_id": "dec_0", "body": {"id": "dec_0", "intent": "x"}}
    transport.enqueue(event)
    transport.flush(timeout=5)  # the sender tries, finds nothing listening, spools it
    assert transport._down
    largest = 0
    for _ in range(20_000):
        transport.enqueue(event)
        largest = max(largest, len(transport._queue))
    transport.close(timeout=1)
    assert largest <= 500  # not the 50,000-event bound for a dashboard that is merely slow
    assert transport.stats["spooled"] == len(spooled_events(spool_root)) == 20_001


def test_the_queue_is_bounded_in_bytes_too_and_spooled_events_are_what_the_runtime_reported(spool_root):
    # A dashboard that is down (nothing listens) and a sender that never wakes up: only the bound spills.
    runtime = Runtime(f"http://127.0.0.1:{free_port()}", api_key="k", max_queue_bytes=100_000, flush_interval=60,
                      batch_size=100_000)
    transport = runtime.transport
    run_id = agent(runtime, 600)
    largest = transport._queued_bytes
    for n in range(600, 2000):
        runtime.decide(intent=f"step {n} " + "x" * 200, options=[], chosen="a", reasoning="r")
        largest = max(largest, transport._queued_bytes)
    assert largest <= 100_000 + 2_000  # the bound plus the one event that crossed it
    transport.close(timeout=0.5)
    events = spooled_events(spool_root)
    assert transport.stats["spooled"] == len(events) == 1 + 600 * 2 + 1400
    decisions = [e for e in events if e["type"] == "decision"]
    assert [e["decision_id"] for e in decisions] == [f"dec_{n}" for n in range(2000)]
    assert decisions[3]["run_id"] == run_id and decisions[3]["body"]["index"] == 3
    assert decisions[3]["body"]["intent"] == "step 3" and "was_successful" not in decisions[3]["body"]
    outcome = next(e for e in events if e["type"] == "outcome" and e["decision_id"] == "dec_3")
    assert outcome["body"]["summary"] == "did 3" and outcome["body"]["tokens_used"] == 3


def test_runtime_events_serialised_as_text_say_exactly_what_the_event_dicts_say():
    runtime = Runtime.__new__(Runtime)
    runtime.strict, runtime._current_run, runtime._current_node = False, None, "unknown"
    seen = []
    runtime._sink = type("Sink", (), {"emit": lambda self, kind, payload: seen.append(
        (to_wire(kind, payload), to_wire_json(kind, payload)))})()
    runtime.storage = type("Nowhere", (), {"save_run": lambda self, run: None})()
    runtime.start_run("wire", "Ünïcode \"quotes\"", {"nan": float("nan"), "n": [1, 2.5]})
    decision_id = runtime.decide(intent="bad \udc80 text", options=[{"id": "a", "description": "A"}], chosen="a",
                                 reasoning="r")
    runtime.decide(intent="line\nbreak", options=[{"id": "a", "description": "é", "confidence": 1}], chosen="z",
                   reasoning="r", context={"deep": {"x": None}}, constraints=["c"])
    runtime.record_outcome(decision_id, success=False, error="e", result={"k": "v"}, state_changes={"s": 1})
    runtime.report_problem("warning", "p", decision_id=decision_id, suggested_fix="f")
    runtime.end_run(success=False)
    assert [kind["type"] for kind, _text in seen] == ["run_start", "decision", "decision", "outcome", "problem",
                                                      "run_end"]
    # Ids the Runtime did not make (a run id or decision id with quotes, backslashes, non-ASCII) are escaped.
    for run_id, odd_id in (('run "x"', 'dec "1"'), ("run\\é", "dec-1"), ("r", "déc_1")):
        payload = {"run_id": run_id, "decision_id": odd_id, "outcome": Outcome(success=True)}
        seen.append((to_wire("outcome", payload), to_wire_json("outcome", payload)))
    for as_dict, as_text in seen:
        assert "\n" not in as_text  # one spool line per event
        assert json.loads(as_text) == json.loads(json.dumps(as_dict))


def test_only_one_replayer_at_a_time_holds_a_spool(tmp_path):
    first, second = Spool(tmp_path), Spool(tmp_path)
    first.append([(1, {"type": "run_start", "run_id": "r"})])
    seen = []

    def send(events):
        seen.extend(events)
        assert second.replay(lambda _: True) == "locked"  # while the first replays
        return True

    assert first.replay(send) == "done"
    assert len(seen) == 1
    assert first.replay(send) == "done" and len(seen) == 1  # delivered once, never again


def test_a_retry_against_a_dashboard_still_down_reads_one_batch_of_the_spool_not_all_of_it(tmp_path):
    # An agent whose dashboard is down retries the spool after each back-off: each try must not load the
    # whole segment (up to 16 MB) into the agent's memory.
    spool = Spool(tmp_path)
    body = {"id": "dec_0", "intent": "x" * 400}
    spool.append([(n, {"type": "decision", "run_id": "r", "decision_id": f"dec_{n}", "body": body})
                  for n in range(1, 20_001)])  # about 10 MB on disk
    assert sum(p.stat().st_size for p in tmp_path.glob("*.jsonl")) > 9_000_000
    tries = []
    tracemalloc.start()
    try:
        assert spool.replay(lambda events: tries.append(len(events)) or False, batch_size=500) == "failed"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tries == [500]
    assert peak < 2_000_000, f"{peak:,} bytes held to find the dashboard still down"
    delivered = []
    assert spool.replay(lambda events: delivered.extend(events) or True, batch_size=500) == "done"
    assert [e["decision_id"] for e in delivered] == [f"dec_{n}" for n in range(1, 20_001)]  # nothing skipped


def test_a_line_still_being_written_is_replayed_only_once_complete(tmp_path):
    writer = Spool(tmp_path)
    writer.append([(1, {"type": "run_start", "run_id": "r"}), (2, {"type": "run_end", "run_id": "r"})])
    (segment,) = tmp_path.glob("*.jsonl")
    with open(segment, "ab") as handle:  # the writer's next line, half-written
        handle.write(b'{"type": "problem", "run_id": "r", "bo')
    seen = []
    assert Spool(tmp_path).replay(lambda events: seen.extend(events) or True) == "done"
    assert [e["type"] for e in seen] == ["run_start", "run_end"]
    with open(segment, "ab") as handle:
        handle.write(b'dy": {}}\n')
    assert Spool(tmp_path).replay(lambda events: seen.extend(events) or True) == "done"
    assert [e["type"] for e in seen] == ["run_start", "run_end", "problem"]
    assert seen[-1]["body"] == {}


def test_an_agent_that_exits_while_the_dashboard_is_down_leaves_its_events_in_the_spool(spool_root):
    script = (
        "from framework import Runtime\n"
        f"rt = Runtime('http://127.0.0.1:{free_port()}', api_key='k', flush_timeout=1)\n"
        "rt.start_run('g')\n"
        "for n in range(5):\n"
        "    rt.record_outcome(rt.decide(intent=f'i{n}', options=[], chosen='', reasoning=''), success=True)\n"
        "rt.end_run(success=True)\n"
        "rt.start_run('g')\n"  # never ended: the atexit flush still keeps what was reported
        "rt.decide(intent='last', options=[], chosen='', reasoning='')\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 5
    assert "Traceback" not in done.stderr
    events = spooled_events(spool_root)
    assert [e["type"] for e in events] == ["run_start"] + ["decision", "outcome"] * 5 + ["run_end", "run_start", "decision"]


def test_end_run_hands_the_run_over_without_waiting_and_flush_waits_for_delivery(slow_dashboard, spool_root):
    runtime = Runtime(slow_dashboard.url, **OPTIONS)
    agent(runtime, 20)
    runtime.end_run(success=True)
    assert slow_dashboard.events == [] and not runtime.flush(timeout=0.2)  # handed over, not delivered yet
    slow_dashboard.gate.open()
    assert runtime.flush(timeout=10)
    assert [e["type"] for e in slow_dashboard.events] == ["run_start"] + ["decision", "outcome"] * 20 + ["run_end"]
    assert runtime.transport.stats["spooled"] == 0
    runtime.transport.close()


def test_an_agent_that_exits_right_after_end_run_still_delivers_every_event(slow_dashboard, spool_root, tmp_path):
    ended = tmp_path / "ended"
    script = (
        "import pathlib\n"
        "from framework import Runtime\n"
        f"rt = Runtime({slow_dashboard.url!r}, api_key='k', flush_timeout=60, flush_interval=0.05, batch_size=50)\n"
        "rt.start_run('exit', 'Exit at once')\n"
        "for n in range(100):\n"
        "    rt.record_outcome(rt.decide(intent=f'i{n}', options=[], chosen='', reasoning=''), success=True)\n"
        "rt.end_run(success=True)\n"
        f"pathlib.Path({str(ended)!r}).touch()\n"  # and the script ends: the exit flush delivers the rest
    )
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(ended.exists)  # end_run returned while the dashboard had stored nothing
        assert slow_dashboard.events == []
    finally:
        slow_dashboard.gate.open()
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    events = slow_dashboard.events
    assert [e["type"] for e in events] == ["run_start"] + ["decision", "outcome"] * 100 + ["run_end"]
    assert [e["decision_id"] for e in events if e["type"] == "decision"] == [f"dec_{n}" for n in range(100)]
    assert spooled_events(spool_root) == []


def test_the_exit_flush_waits_once_for_all_runtimes_not_once_each(silent_port, spool_root):
    script = (
        "from framework import Runtime\n"
        "for n in range(4):\n"  # a Runtime per task, as a worker process might do
        f"    rt = Runtime('http://127.0.0.1:{silent_port}', api_key='k', flush_timeout=3, timeout=30)\n"
        "    rt.start_run(f'g{n}')\n"
        "    rt.record_outcome(rt.decide(intent='i', options=[], chosen='', reasoning=''), success=True)\n"
        "    rt.end_run(success=True)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 10  # one 3 s flush deadline, not 4 of them
    events = spooled_events(spool_root)
    assert sorted(e["body"]["goal_id"] for e in events if e["type"] == "run_start") == ["g0", "g1", "g2", "g3"]
    assert len(events) == 16
