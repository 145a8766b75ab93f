"""6. Memory: peak RSS of a gunicorn worker across the page suite on the large store, of a Celery worker
(the production command) across 100 Builder analyses of that store, and the growth of an agent whose
dashboard is down for 100,000 events (the SDK must spool to disk). Targets: web worker <= 250 MB, Celery
worker <= 300 MB, agent growth <= 50 MB."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import common, pages, stores
from .common import Check, Result


def _login(url: str) -> dict[str, str]:
    """A logged-in session cookie from the real login form."""
    import http.client

    conn = http.client.HTTPConnection(url.split("//")[1].split(":")[0], int(url.rsplit(":", 1)[1]), timeout=60)
    conn.request("GET", "/accounts/login/")
    response = conn.getresponse()
    page = response.read().decode()
    csrf = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie", "")).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = f"username={stores.USER}&password={stores.PASSWORD}&csrfmiddlewaretoken={token}"
    conn.request("POST", "/accounts/login/", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf}", "Referer": url + "/"})
    response = conn.getresponse()
    response.read()
    session = re.search(r"sessionid=([^;]+)", response.getheader("Set-Cookie", "") or "")
    if response.status != 302 or session is None:
        raise RuntimeError(f"login failed: HTTP {response.status}")
    conn.close()
    return {"Cookie": f"sessionid={session.group(1)}; csrftoken={csrf}"}


def web_worker_peak(kind: str, scale: float) -> Result:
    env = stores.ensure(kind, "large", scale)
    key = common.issue_api_key(env)
    with common.serve("gunicorn", env, workers=1) as server:
        headers = _login(server.url)
        small_run = None
        statuses = {}
        for _ in range(3):
            for name, template in pages.PAGES:
                path = template.format(small_run=small_run or "run-0000001")
                extra = {"Authorization": f"Bearer {key}"} if path.startswith("/api/") else headers
                status, _body = common.request("GET", server.url + path, None, extra)
                statuses[status] = statuses.get(status, 0) + 1
        workers = server.worker_pids()
        peaks = [common.peak_rss_mb(pid) for pid in workers]
    note = f"HTTP statuses {statuses}" + ("" if set(statuses) == {200} else " (NOT every page answered 200)")
    return Result("memory", kind, "gunicorn worker peak RSS, page suite x3", "MB", [max(peaks)],
                  checks=[Check("median", "<=", 250.0)], note=note)


ANALYSES = 100
QUEUE = r"""
import json, sys
import django
django.setup()
from builder import analysis as jobs
from runs.models import Run

count = int(sys.argv[1])
goals = sorted(set(Run.objects.values_list("goal_id", flat=True)))
queued = [jobs.queue_goal_analysis(goal, engine="heuristic", source="api").pk for goal in goals]
failed = list(Run.objects.filter(status="failed").order_by("-decision_count", "-started_at")[:count])
while len(queued) < count:
    queued.append(jobs.queue_run_analysis(failed[len(queued) % len(failed)], engine="heuristic", source="api").pk)
print(json.dumps({"queued": queued, "goals": len(goals)}))
"""


def celery_worker_peak(kind: str, scale: float) -> Result:
    """A Celery worker started as `make run` starts it (without beat), 100 heuristic analyses queued through
    the app (a goal analysis per goal, the rest failure analyses of failed runs, the 10,000-decision run
    first), and the most memory the worker's processes held until every analysis had finished."""
    store = stores.ensure(kind, "large", scale)
    with tempfile.TemporaryDirectory() as site:  # its own filesystem broker: an empty queue
        log = Path(site) / "worker.log"
        env = {**os.environ, **store, "FRAMEWORK_VAR_DIR": site, "CELERY_BROKER_URL": "filesystem://",
               "BUILDER_JOB_SLEEP_SECONDS": "0", "BUILDER_AUTO_ANALYZE": "0", "ANTHROPIC_API_KEY": ""}
        with log.open("w") as stderr:
            worker = subprocess.Popen(
                [common.PY, "-m", "celery", "-A", "framework_site", "worker", "--loglevel", "WARNING",
                 "--concurrency", "2", "--without-gossip", "--without-mingle", "--hostname", f"bench-{os.getpid()}@%h"],
                cwd=common.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:
            start = time.perf_counter()
            out = subprocess.run([common.PY, "-c", QUEUE, str(ANALYSES)], cwd=common.ROOT, env=env, check=True,
                                 capture_output=True, text=True)
            queued = json.loads(out.stdout.strip().splitlines()[-1])
            states, peak = _wait_for_analyses(kind, queued["queued"], worker, log)
            seconds = time.perf_counter() - start
            rss_peaks = [common.peak_rss_mb(pid) for pid in [worker.pid, *common.descendants(worker.pid)]]
        finally:
            # Every analysis has finished and the figures are read: nothing is left that a warm shutdown
            # (several seconds here) would save.
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    note = (f"{ANALYSES} heuristic analyses ({queued['goals']} goal, {ANALYSES - queued['goals']} failed-run) in "
            f"{seconds:.1f} s, --concurrency 2; statuses {states}; figure: highest total PSS of the worker and its "
            f"{len(rss_peaks) - 1} pool processes, sampled every 0.1 s, and never below one process's peak RSS "
            f"(VmHWM: {' / '.join(f'{mb:.0f}' for mb in rss_peaks)} MB)")
    if states.get("succeeded") != ANALYSES:
        note += " (NOT all succeeded)"
    return Result("memory", kind, "Celery worker peak RSS, 100 analyses", "MB", [max(peak, *rss_peaks)],
                  checks=[Check("median", "<=", 300.0)], note=note)


def _wait_for_analyses(kind: str, ids: list[int], worker: subprocess.Popen, log: Path,
                       timeout: float = 600) -> tuple[dict, float]:
    """Poll the store until every queued analysis has finished, sampling the worker's memory meanwhile:
    (the analyses' statuses counted, the highest total PSS of the worker's processes in MB)."""
    conn = common.raw_connection(kind, stores.database("large"))
    placeholders = ", ".join(["%s" if kind == "postgres" else "?"] * len(ids))
    deadline = time.monotonic() + timeout
    peak = 0.0
    try:
        while True:
            try:
                peak = max(peak, sum(common.pss_mb(pid) for pid in [worker.pid, *common.descendants(worker.pid)]))
            except (OSError, RuntimeError):
                pass  # a pool process came or went between the listing and the read: the next sample counts
            rows = conn.execute(f"SELECT status, COUNT(*) FROM builder_analysis WHERE id IN ({placeholders}) "
                                "GROUP BY status", ids).fetchall()
            if kind == "postgres":
                conn.rollback()  # a fresh snapshot for the next poll
            states = dict(rows)
            if not states.get("queued") and not states.get("running"):
                return states, peak
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"analyses unfinished ({states}); worker: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    finally:
        conn.close()


AGENT = r"""
import json, os, random, sys, time
sys.path.insert(0, os.getcwd())
from framework.runtime.core import Runtime
from bench import data
from bench.common import free_port, rss_mb, peak_rss_mb

events, spool = int(sys.argv[1]), sys.argv[2]
runtime = Runtime(f"http://127.0.0.1:{free_port()}", api_key="down", spool_dir=spool, flush_timeout=2.0)
rng = random.Random(1)
per_run = 100
runtime.start_run("warm-up", "warm-up"); data.agent_step(runtime, rng, 0); runtime.end_run(success=True)
before = rss_mb(os.getpid())
start = time.perf_counter()
for _ in range(events // (2 * per_run)):
    runtime.start_run("offline", "dashboard down")
    for step in range(per_run):
        data.agent_step(runtime, rng, step)
    runtime.end_run(success=True)
elapsed = time.perf_counter() - start
runtime.transport.close()
print(json.dumps({"before": before, "peak": peak_rss_mb(os.getpid()), "seconds": elapsed,
                  "stats": runtime.transport.stats}))
"""


def agent_growth(scale: float) -> Result:
    events = max(2_000, round(100_000 * scale))
    with tempfile.TemporaryDirectory() as spool:
        out = subprocess.run([common.PY, "-c", AGENT, str(events), spool], cwd=common.ROOT, check=True,
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(common.ROOT)})
    report = json.loads(out.stdout.strip().splitlines()[-1])
    growth = report["peak"] - report["before"]
    stats = report["stats"]
    note = (f"{events:,} events in {report['seconds']:.1f} s, runs of 100 decisions; spooled {stats['spooled']:,}, "
            f"dropped {stats['dropped']}")
    if stats["spooled"] < events:
        note += " (NOT all spooled)"
    return Result("memory", "-", "agent RSS growth, dashboard down", "MB", [growth],
                  checks=[Check("median", "<=", 50.0)], note=note)


def run(kind: str, scale: float) -> list[Result]:
    with common.phase(f"web worker over the page suite ({kind})"):
        results = [web_worker_peak(kind, scale)]
    with common.phase(f"Celery worker over {ANALYSES} analyses ({kind})"):
        results.append(celery_worker_peak(kind, scale))
    if kind == "sqlite":  # the agent never touches a database: measure it once
        with common.phase("agent with its dashboard down"):
            results.append(agent_growth(scale))
    return results


if __name__ == "__main__":
    print(agent_growth(float(sys.argv[1])).as_dict())
