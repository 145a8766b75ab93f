"""The two stores the page benchmarks compare: `large` (100,000 runs / 1,000,000 decisions at scale 1) and
`small` (1,000 runs), each with one 10,000-decision run and two 1,000-decision runs to compare.

Built with bulk inserts (COPY on PostgreSQL); reused by later pieces of the same `python -m bench` run.
"""

import json
import os
import subprocess

from . import common, data

BIG_RUN, COMPARE_A, COMPARE_B = "big-run", "compare-a", "compare-b"
USER, PASSWORD = "bench", "bench-password-123"


def sizes(scale: float) -> dict[str, dict[str, int]]:
    return {
        "large": {"runs": max(200, round(100_000 * scale)), "decisions": 10},
        "small": {"runs": max(50, round(1_000 * min(1.0, scale * 10))), "decisions": 10},
        "extra": {"big": max(200, round(10_000 * min(1.0, scale * 10))),
                  "compare": max(100, round(1_000 * min(1.0, scale * 10)))},
    }


def database(which: str) -> str:
    return f"bench_framework_{which}"


def marker(kind: str, which: str):
    """The file that records which scale the store was built at (the database itself may be gone)."""
    return common.VAR / f"store-{kind}-{common.db_name(database(which))}.json"


def ensure(kind: str, which: str, scale: float) -> dict[str, str]:
    """The store's environment, building it first unless this scale's store is already there."""
    name = database(which)
    wanted = {"scale": scale, "sizes": sizes(scale)}
    built = marker(kind, which)
    if built.exists() and json.loads(built.read_text()) == wanted and _present(kind, name):
        return common.db_env(kind, name)
    built.unlink(missing_ok=True)
    with common.phase(f"build {which} store ({kind})"):
        env = common.fresh_database(kind, name)
        size = sizes(scale)
        conn = common.raw_connection(kind, name)
        builder = data.StoreBuilder(conn, kind)
        with data.bulk_load(conn, kind):
            builder.runs(size[which]["runs"], size[which]["decisions"], goals=10)
            extra = size["extra"]
            builder.one_run(BIG_RUN, data.goal_name(1), extra["big"], status="failed")
            builder.one_run(COMPARE_A, data.goal_name(2), extra["compare"])
            builder.one_run(COMPARE_B, data.goal_name(2), extra["compare"], status="failed",
                            diverge_at=extra["compare"] // 2)
        conn.close()
        after_bulk_load(env, user=True)
    built.write_text(json.dumps(wanted))
    return env


def after_bulk_load(env: dict[str, str], *, user: bool = False) -> None:
    """What the app keeps alongside the rows it writes, filled in for rows that went in by raw SQL: the
    per-goal rollups (and the bench's login, when asked). Every bulk-loaded store passes through here."""
    code = ("import django; django.setup(); from django.contrib.auth.models import User; "
            + (f"User.objects.create_user({USER!r}, password={PASSWORD!r}); " if user else "")
            + "from runs import rollups; rollups.rebuild()")
    subprocess.run([common.PY, "-c", code], cwd=common.ROOT, env={**os.environ, **env}, check=True)


def _present(kind: str, name: str) -> bool:
    try:
        conn = common.raw_connection(kind, name)
    except Exception:  # noqa: BLE001 - any failure means: build it again
        return False
    try:
        return conn.execute("SELECT COUNT(*) FROM runs_run WHERE run_id = 'big-run'").fetchone()[0] == 1
    except Exception:  # noqa: BLE001
        return False
    finally:
        conn.close()
