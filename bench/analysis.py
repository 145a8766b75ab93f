"""5. find_patterns + suggest_improvements for a goal of 10,000 runs: BuilderQuery(URL) through the API
against BuilderQuery(path) computing them from the original's files. Target: >= 20x faster, same answers."""

import tempfile
import time
from pathlib import Path

from framework.builder.query import BuilderQuery

from . import common, data, stores
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
    with common.phase(f"build analysis store ({kind})"):
        runs = list(data.framework_runs(count, 10, GOAL))
        env = common.fresh_database(kind, DB_NAME)
        conn = common.raw_connection(kind, DB_NAME)
        run_rows, decision_rows = data.rows_from_framework(runs)
        with data.bulk_load(conn, kind):
            data.insert_rows(conn, kind, "run", data.encoded(kind, "run", run_rows))
            data.insert_rows(conn, kind, "decision", data.encoded(kind, "decision", decision_rows))
        conn.close()
        stores.after_bulk_load(env)
        key = common.issue_api_key(env)
    local_times, api_times = [], []
    with tempfile.TemporaryDirectory() as tmp, common.serve("granian", env, workers=1) as server:
        with common.phase("write the original's files"):
            data.write_original_files(Path(tmp), runs)
        local = BuilderQuery(tmp)
        remote = BuilderQuery(server.url, api_key=key)
        for _ in range(reps):
            seconds, expected = _both(local)
            local_times.append(seconds)
            seconds, answer = _both(remote)
            api_times.append(seconds)
            if answer != expected:
                raise RuntimeError(f"the API's answer differs from local mode's:\n{answer}\n!=\n{expected}")
            if expected[0] is None or expected[0]["run_count"] != count:
                raise RuntimeError(f"local mode saw {expected[0] and expected[0]['run_count']} runs, not {count}")
    speedup = [local / api for local, api in zip(local_times, api_times)]
    note = f"goal of {count:,} runs x 10 decisions; answers identical in every repetition"
    return [
        Result("analysis", kind, "patterns+suggest, API speed-up", "x faster", speedup,
               checks=[Check("median", ">=", 20.0)], note=note),
        Result("analysis", kind, "patterns+suggest via API", "s", api_times, baseline="local files",
               baseline_values=local_times),
        Result("analysis", kind, "patterns+suggest from files (original)", "s", local_times),
    ]
