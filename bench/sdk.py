"""3. Agent overhead of the SDK: an agent making 10,000 decisions with outcomes through Runtime(URL)
against the same agent with Runtime(path); and the time from end_run until every decision is readable
through the API. Targets: <= 1.3x the local agent's wall time; readable within 5 s."""

import json
import random
import tempfile
import time

from framework.runtime.core import Runtime

from . import common, data
from .common import Check, Result

DB_NAME = "bench_framework"
SERVER = common.PRODUCTION_SERVER


def _agent(runtime: Runtime, decisions: int, goal: str) -> tuple[str, float, float]:
    """(run id, seconds until end_run was called, seconds end_run took)."""
    rng = random.Random(5)
    start = time.perf_counter()
    run_id = runtime.start_run(goal, "SDK overhead benchmark")
    for step in range(decisions):
        data.agent_step(runtime, rng, step)
    before_end = time.perf_counter()
    runtime.end_run(success=True)
    return run_id, before_end - start, time.perf_counter() - before_end


def _readable(url: str, key: str, run_id: str, decisions: int, deadline: float) -> bool:
    headers = {"Authorization": f"Bearer {key}"}
    while time.perf_counter() < deadline:
        status, body = common.request("GET", f"{url}/api/v1/runs/{run_id}/summary", None, headers)
        if status == 200:
            summary = json.loads(body)
            if summary["decision_count"] == decisions and summary["status"] == "completed":
                return True
        time.sleep(0.02)
    return False


def run(kind: str, scale: float) -> list[Result]:
    decisions = max(100, round(10_000 * scale))
    reps = 3 if scale >= 0.5 else 2
    env = common.fresh_database(kind, DB_NAME)
    key = common.issue_api_key(env)
    local, remote, readable = [], [], []
    with common.serve(SERVER, env) as server, tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            runtime = Runtime(f"{tmp}/local-{rep}")
            _run_id, body, end = _agent(runtime, decisions, "sdk-local")
            local.append(body + end)

            runtime = Runtime(server.url, api_key=key, spool_dir=f"{tmp}/spool")
            run_id, body, end = _agent(runtime, decisions, "sdk-url")
            end_called = time.perf_counter() - end
            remote.append(body + end)
            if not _readable(server.url, key, run_id, decisions, end_called + 30):
                raise RuntimeError(f"run {run_id} not readable with {decisions} decisions after 30 s")
            readable.append(time.perf_counter() - end_called)
            runtime.transport.close()
            if runtime.transport.stats["spooled"]:
                raise RuntimeError(f"the URL-mode agent spooled events: {runtime.transport.stats}")
    note = f"{decisions} decisions + outcomes in one run, {SERVER} (2 workers); wall time includes end_run"
    return [
        Result("sdk", kind, "agent wall, Runtime(URL)", "s", remote, baseline="Runtime(path)", baseline_values=local,
               checks=[Check("ratio", "<=", 1.3)], note=note),
        Result("sdk", kind, "agent wall, Runtime(path) (baseline)", "s", local),
        Result("sdk", kind, "end_run -> all readable via API", "s", readable, checks=[Check("median", "<=", 5.0)]),
    ]
