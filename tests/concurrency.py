"""Run `work(index)` in `count` threads released together, each with its own database connection."""

import threading


def in_threads(count: int, work, *, timeout: float = 120) -> list:
    """Returns the (index, repr(exception)) of every thread that raised; fails if one hangs (deadlock?)."""
    from django.db import connection

    errors, barrier = [], threading.Barrier(count)

    def runner(index):
        try:
            barrier.wait()
            work(index)
        except Exception as exc:  # collected and reported with the thread's index
            errors.append((index, repr(exc)))
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a client hung (deadlock?)"
    return errors


COUNTERS = ("decision_count", "success_count", "failure_count", "total_tokens", "total_latency_ms", "problem_count",
            "nodes_executed")


def race_on_one_run(run_id: str, *, threads: int, per_thread: int) -> tuple[list, list, list]:
    """`threads` writers racing on one new run, each reporting `per_thread` decisions with an inline outcome
    (half failed), replacing that outcome with a success, and reporting a problem: (the errors, the run's
    counters as stored, the same counters recounted from its rows)."""
    from runs import ingest
    from runs.models import Run

    ingest.start_run({"id": run_id, "goal_id": "g"})

    def work(index):
        for n in range(per_thread):
            decision_id = f"dec_{index * per_thread + n}"
            ingest.add_decision(run_id, {"id": decision_id, "node_id": f"node_{n % 3}", "intent": "x",
                                         "outcome": {"success": n % 2 == 0, "tokens_used": 10, "latency_ms": 1}})
            ingest.record_outcome(run_id, decision_id, {"success": True, "tokens_used": 7, "latency_ms": 2})
            ingest.add_problem(run_id, {"id": f"p{index}_{n}", "severity": "minor", "description": "x"})

    errors = in_threads(threads, work)
    run = Run.objects.get(run_id=run_id)
    live = [getattr(run, name) for name in COUNTERS]
    run.recount(save=False)
    return errors, live, [getattr(run, name) for name in COUNTERS]


def raced_counters(count: int) -> list:
    """What `race_on_one_run` leaves for `count` decisions in all: every outcome replaced by a success."""
    return [count, count, 0, 7 * count, 2 * count, count, ["node_0", "node_1", "node_2"]]
