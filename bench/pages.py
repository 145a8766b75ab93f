"""4. Pages and API answers at scale: server time (median, p95) of each request, logged in, on the large
store against the same request on the small store. Targets: <= 2x the small store's time, and
<= 100 ms median on PostgreSQL at full scale.

Requests go through Django's test client in a process configured for the store, so the figure is the
server's time (middleware, views, queries, templates) without a network or a client in the way.
"""

import json
import os
import subprocess
import sys
import time

from . import common, stores
from .common import Check, Result

PAGES = [  # (name, path); a page is skipped when its URL does not resolve (not built yet)
    ("goals overview", "/"),
    ("runs list", "/runs/"),
    ("runs list, goal+status", "/runs/?goal_id=goal-00&status=failed"),
    ("runs list, text search", "/runs/?q=Budget+exceeded"),
    ("run detail, small run", "/runs/{small_run}/"),
    ("run detail, 10k decisions", f"/runs/{stores.BIG_RUN}/"),
    ("compare two 1k runs", f"/runs/compare/?a={stores.COMPARE_A}&b={stores.COMPARE_B}"),
    ("goal page", "/goals/goal-00/"),
    ("API patterns", "/api/v1/goals/goal-00/patterns"),
    ("API suggest", "/api/v1/goals/goal-00/improvements"),
    ("API failure analysis", f"/api/v1/runs/{stores.BIG_RUN}/failure-analysis"),
]


ROUNDS = 3  # the stores are timed in alternation, so that a slower minute of the machine lands on both


def _reps(scale: float) -> int:
    """Requests per page and round."""
    return 5 if scale >= 0.5 else 2


def measure(reps: int) -> dict[str, list[float]]:
    """In a process set up for one store, as the production server's processes are (framework_site/wsgi.py,
    its gc.freeze() of the loaded app included): each page's server times in ms (after one warm-up request)."""
    import framework_site.wsgi  # noqa: F401 - Django set up as the served application is
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import Resolver404, resolve

    from runs.models import ApiKey, Run

    client = Client()
    client.force_login(User.objects.get(username=stores.USER))
    _key, raw = ApiKey.issue("bench pages", scopes=["read"])
    small_run = Run.objects.filter(decision_count=10).order_by("pk").values_list("run_id", flat=True).first()
    timings = {}
    for name, template in PAGES:
        path = template.format(small_run=small_run)
        try:
            resolve(path.split("?")[0])
        except Resolver404:
            continue
        headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"} if path.startswith("/api/") else {}
        response = client.get(path, **headers)
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}: {response.content[:300]!r}")
        values = []
        for _ in range(reps):
            start = time.perf_counter()
            client.get(path, **headers)
            values.append((time.perf_counter() - start) * 1000)
        timings[name] = values
    return timings


def _measure_store(kind: str, which: str, scale: float) -> dict[str, list[float]]:
    env = stores.ensure(kind, which, scale)
    out = subprocess.run([common.PY, "-m", "bench.pages", str(_reps(scale))], cwd=common.ROOT,
                         env={**os.environ, **env}, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def run(kind: str, scale: float) -> list[Result]:
    stores.ensure(kind, "small", scale)
    stores.ensure(kind, "large", scale)
    small: dict[str, list[float]] = {}
    large: dict[str, list[float]] = {}
    for _ in range(ROUNDS):
        for which, timings in (("small", small), ("large", large)):
            for name, values in _measure_store(kind, which, scale).items():
                timings.setdefault(name, []).extend(values)
    size = stores.sizes(scale)
    results = []
    for name, values in large.items():
        checks = [Check("ratio", "<=", 2.0)]
        if kind == "postgres":
            checks.append(Check("median", "<=", 100.0))
        results.append(Result("pages", kind, name, "ms", values, baseline=f"{size['small']['runs']:,} runs",
                              baseline_values=small.get(name, []), checks=checks,
                              note=f"p95 {p95(values):.1f} ms (small store p95 {p95(small[name]):.1f} ms)"))
    if not any(name in large for name, _ in PAGES[:8]):
        results.append(Result("pages", kind, "HTML pages", "ms", [], note="pages not built yet: not measured"))
    results[0].note += (f"; large store {size['large']['runs']:,} runs / "
                        f"{size['large']['runs'] * size['large']['decisions']:,} decisions")
    return results


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
