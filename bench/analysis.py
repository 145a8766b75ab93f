"""5. find_patterns + suggest_improvements for a goal of 10,000 runs: BuilderQuery(URL) through the API
against BuilderQuery(path) computing them from the original's files. Target: >= 20x faster, same answers."""

import os
import subprocess
import tempfile
import time
from pathlib import Path

from framework.builder.query import BuilderQuery

from . import common, data
from .common import Check, Result

DB_NAME = "bench_framework_analysis"
GOAL = "analysis-goal"


def _both(query) -> tuple[float, tuple]:
    start = time.perf_counter()
    patterns = query.find_patterns(GOAL)
    suggestions = query.suggest_improvements(GOAL)
    return time.perf_counter() - start, (patterns.to_dict() if patterns else None, suggestions)


def run(kind: str, scale: float) -> list[Result]:
    count = max(100, round(10_000 * scale))
    reps = 3
    runs = list(data.framework_runs(count, 10, GOAL))
    env = common.fresh_database(kind, DB_NAME)
    conn = common.raw_connection(kind, DB_NAME)
    if kind == "sqlite":
        conn.execute("BEGIN")
    run_rows, decision_rows = data.rows_from_framework(runs)
    data.insert_rows(conn, kind, "run", run_rows)
    data.insert_rows(conn, kind, "decision", decision_rows)
    data.reset_sequences(conn, kind)
    conn.commit() if kind == "postgres" else conn.execute("COMMIT")
    conn.close()
    # Rows went in by raw SQL: fill the rollups ingestion would have kept (what the API's answer reads).
    subprocess.run([common.PY, "manage.py", "rebuild_rollups"], cwd=common.ROOT, env={**os.environ, **env},
                   check=True, capture_output=True)
    key = common.issue_api_key(env)
    local_times, api_times = [], []
    with tempfile.TemporaryDirectory() as tmp, common.serve("granian", env, workers=1) as server:
        data.write_original_files(Path(tmp), runs)
        local = BuilderQuery(tmp)
        remote = BuilderQuery(server.url, api_key=key)
        expected = None
        for _ in range(reps):
            seconds, answer = _both(local)
            local_times.append(seconds)
            expected = answer
            seconds, answer = _both(remote)
            api_times.append(seconds)
            if answer != expected:
                raise RuntimeError(f"the API's answer differs from local mode's:\n{answer}\n!=\n{expected}")
    speedup = [local / api for local, api in zip(local_times, api_times)]
    note = f"goal of {count:,} runs x 10 decisions; answers identical in every repetition"
    return [
        Result("analysis", kind, "patterns+suggest, API speed-up", "x faster", speedup,
               checks=[Check("median", ">=", 20.0)], note=note),
        Result("analysis", kind, "patterns+suggest via API", "s", api_times, baseline="local files",
               baseline_values=local_times),
        Result("analysis", kind, "patterns+suggest from files (original)", "s", local_times),
    ]
