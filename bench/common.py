"""What every benchmark shares: databases, servers, an HTTP load client, timing and result rows.

Each piece runs in a child process (`python -m bench.child`) whose environment picks the database, so
Django is configured once per process, the way a server would be.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
PY = sys.executable
BIN = Path(PY).parent
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
DB_KINDS = ("sqlite", "postgres")


# --- results ----------------------------------------------------------------------------------------


@dataclass
class Check:
    """One target: `what` (ratio | median) compared with `limit` by `op` (>= or <=)."""

    what: str
    op: str
    limit: float

    def holds(self, row: "Result") -> bool | None:
        value = row.ratio if self.what == "ratio" else row.median
        if value is None:
            return None
        return value >= self.limit if self.op == ">=" else value <= self.limit

    def text(self, unit: str) -> str:
        sign = "≥" if self.op == ">=" else "≤"
        return f"{sign}{self.limit:g}×" if self.what == "ratio" else f"{sign}{self.limit:g} {unit}"


@dataclass
class Result:
    piece: str
    db: str
    name: str
    unit: str
    values: list[float]
    baseline: str = ""
    baseline_values: list[float] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline_values) if self.baseline_values else None

    @property
    def ratio(self) -> float | None:
        if self.median is None or not self.baseline_median:
            return None
        return self.median / self.baseline_median

    @property
    def passed(self) -> bool | None:
        verdicts = [check.holds(self) for check in self.checks]
        if not verdicts or any(v is None for v in verdicts):
            return None
        return all(verdicts)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["checks"] = [asdict(c) for c in self.checks]
        data.update(median=self.median, min=min(self.values, default=None), max=max(self.values, default=None),
                    baseline_median=self.baseline_median, ratio=self.ratio, passed=self.passed,
                    target=" & ".join(c.text(self.unit) for c in self.checks))
        return data


def result_from_dict(data: dict) -> Result:
    fields = {k: data[k] for k in ("piece", "db", "name", "unit", "values", "baseline", "baseline_values", "note")}
    return Result(**fields, checks=[Check(**c) for c in data["checks"]])


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(results: list[Result]) -> str:
    header = ["piece", "db", "measurement", "unit", "median", "min", "max", "baseline", "ratio", "target", "pass"]
    rows = []
    for r in results:
        d = r.as_dict()
        verdict = {True: "PASS", False: "FAIL", None: "-"}[r.passed]
        rows.append([r.piece, r.db, r.name, r.unit, _fmt(d["median"]), _fmt(d["min"]), _fmt(d["max"]),
                     f"{_fmt(r.baseline_median)} ({r.baseline})" if r.baseline else "-",
                     f"{r.ratio:.2f}" if r.ratio is not None else "-", d["target"] or "-", verdict])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths)),
             "-|-".join("-" * w for w in widths)]
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    notes = [f"  {r.piece}/{r.db}/{r.name}: {r.note}" for r in results if r.note]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


PHASES: list[tuple[str, float]] = []  # (what, seconds) of this process, in order; the child reports them


@contextmanager
def phase(what: str):
    """Time a phase of the run (a store build, a piece) so the report shows where the wall time goes."""
    start = time.perf_counter()
    try:
        yield
    finally:
        PHASES.append((what, time.perf_counter() - start))


DB_TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "-": "no database"}


def summary(results: list[Result]) -> str:
    """The Markdown table README.md and bench/RESULTS.md show: a row per measurement, a column per
    database, each cell the median with its ratio to the baseline and the verdict."""
    dbs = list(dict.fromkeys(r.db for r in results))
    rows: dict[tuple[str, str], dict[str, Result]] = {}
    for r in results:
        rows.setdefault((r.piece, r.name), {})[r.db] = r
    lines = ["| piece | measurement | " + " | ".join(DB_TITLES.get(db, db) for db in dbs) + " | target |",
             "|---|---|" + "---|" * len(dbs) + "---|"]
    for (piece, name), by_db in rows.items():
        cells = []
        for db in dbs:
            r = by_db.get(db)
            if r is None or r.median is None:
                cells.append("-")
                continue
            extra = [f"{r.ratio:.2f}×" if r.ratio is not None else "", {True: "✓", False: "✗", None: ""}[r.passed]]
            extra = [e for e in extra if e]
            cells.append(f"{_fmt(r.median)} {r.unit}" + (f" ({', '.join(extra)})" if extra else ""))
        target = max(by_db.values(), key=lambda r: len(r.checks)).as_dict()["target"]  # PostgreSQL's may add one
        lines.append(f"| {piece} | {name} | " + " | ".join(cells) + f" | {target or '-'} |")
    return "\n".join(lines)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


# --- databases --------------------------------------------------------------------------------------


def pg_available() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


def db_name(name: str) -> str:
    """`name` with `BENCH_DB_PREFIX` in front, so two checkouts can bench against one PostgreSQL at once."""
    return os.environ.get("BENCH_DB_PREFIX", "") + name


def db_env(kind: str, name: str) -> dict[str, str]:
    """Environment variables that point Django at database `name` of `kind`."""
    env = {"DJANGO_SETTINGS_MODULE": "bench.settings", "FRAMEWORK_VAR_DIR": str(VAR / "site"),
           "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
           # Throughput is what is measured: the per-key rate limit (100 req/s by default) would cap it.
           "API_RATE_LIMIT_PER_MINUTE": "0"}
    if kind == "postgres":
        env["DATABASE_URL"] = f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{db_name(name)}"
        env["SQLITE_PATH"] = ""
    else:
        env["DATABASE_URL"] = ""
        env["SQLITE_PATH"] = str(_sqlite_path(name))
    return env


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql)


def drop_database(kind: str, name: str) -> None:
    if kind == "postgres":
        _pg_admin(f'DROP DATABASE IF EXISTS "{db_name(name)}" WITH (FORCE)')
    else:
        for suffix in ("", "-wal", "-shm", "-writers"):  # -writers: our writers' lock (sqlite_backend)
            Path(f"{_sqlite_path(name)}{suffix}").unlink(missing_ok=True)


TEMPLATE = "bench_framework_template"


def fresh_database(kind: str, name: str) -> dict[str, str]:
    """Drop database `name` and create it again as a copy of a migrated template, made by the first call
    of a `python -m bench` run (which drops it at start and end, so it always has the current migrations)."""
    VAR.mkdir(parents=True, exist_ok=True)
    drop_database(kind, name)
    if not _exists(kind, TEMPLATE):
        with phase(f"migrate template ({kind})"):
            if kind == "postgres":
                _pg_admin(f'CREATE DATABASE "{db_name(TEMPLATE)}"')
            subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                           env={**os.environ, **db_env(kind, TEMPLATE)}, check=True)
    if kind == "postgres":
        _pg_admin(f'CREATE DATABASE "{db_name(name)}" TEMPLATE "{db_name(TEMPLATE)}"')
    else:
        shutil.copyfile(_sqlite_path(TEMPLATE), _sqlite_path(name))
    return db_env(kind, name)


def _sqlite_path(name: str) -> Path:
    return VAR / f"{db_name(name)}.sqlite3"


def _exists(kind: str, name: str) -> bool:
    if kind == "sqlite":
        return _sqlite_path(name).exists()
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres") as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name(name)]).fetchone() is not None


def raw_connection(kind: str, name: str):
    """A plain DB-API connection (psycopg 3 or sqlite3) to the same database, outside Django."""
    if kind == "postgres":
        import psycopg

        return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=db_name(name))
    import sqlite3

    conn = sqlite3.connect(_sqlite_path(name), timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def issue_api_key(env: dict[str, str]) -> str:
    code = ("import django; django.setup(); from runs.models import ApiKey; "
            "print(ApiKey.issue('bench', scopes=['ingest', 'read', 'review'])[1])")
    out = subprocess.run([PY, "-c", code], cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True,
                         text=True)
    return out.stdout.strip().splitlines()[-1]


# --- servers ----------------------------------------------------------------------------------------

SERVERS = ("gunicorn", "granian")
# The issue asks for both servers to be measured and the faster on the work agents send to be the
# documented production server; the ingestion targets are for that server. The other one is measured the
# same way, ratio shown, as the comparison that chose it (README, "Production server").
PRODUCTION_SERVER = "gunicorn"


def server_checks(server_kind: str, checks: list) -> list:
    """`checks` for the production server; none for the server it was compared with."""
    return checks if server_kind == PRODUCTION_SERVER else []


def server_note(server_kind: str, note: str) -> str:
    return note if server_kind == PRODUCTION_SERVER else "the alternative server: compared, no target"


FLOOR_TABLE = "bench_floor"  # the per-event floor's table (bench/urls.py), made by bench/events.py


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    kind: str
    url: str
    port: int
    process: subprocess.Popen

    def worker_pids(self) -> list[int]:
        return _children(self.process.pid)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, their children, ...)."""
    found = _children(pid)
    return found + [grandchild for child in found for grandchild in descendants(child)]


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            found.append(int(entry))
    return found


def server_command(kind: str, port: int, workers: int) -> list[str]:
    if kind == "gunicorn":
        return [str(BIN / "gunicorn"), "bench.wsgi:application", "--workers", str(workers), "--worker-class", "sync",
                "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--timeout", "120"]
    return [str(BIN / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--log-level", "warning", "--no-ws", "bench.wsgi:application"]


@contextmanager
def serve(kind: str, env: dict[str, str], *, workers: int = 2):
    """Start `kind` (gunicorn or granian) on a free port; stop it (and only it) afterwards."""
    port = free_port()
    process = subprocess.Popen(server_command(kind, port, workers), cwd=ROOT, env={**os.environ, **env},
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if request("GET", url + "/bench/noop")[0] == 201:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        for _ in range(4 * workers):  # every worker imports and connects before anything is timed
            request("GET", url + "/bench/noop")
        yield Server(kind, url, port, process)
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


# --- HTTP ------------------------------------------------------------------------------------------


def request(method: str, url: str, body: Any = None, headers: dict | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    """One request (on `conn` when given, reusing it while the server keeps it open)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        try:
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            conn.close()  # the server closed a kept-alive connection: once more on a new one
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
        payload = response.read()
        if response.will_close:
            conn.close()
        return response.status, payload
    finally:
        if own:
            conn.close()


def run_clients(jobs: list[list[Callable[[http.client.HTTPConnection], int]]], base_url: str) -> tuple[float, dict]:
    """Run each job list (requests in order) on its own thread and connection; (seconds, status counts)."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(calls):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        local: dict[int, int] = {}
        try:
            for call in calls:
                status = call(conn)
                local[status] = local.get(status, 0) + 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            conn.close()
            with lock:
                for status, count in local.items():
                    statuses[status] = statuses.get(status, 0) + count

    threads = [threading.Thread(target=worker, args=(calls,)) for calls in jobs]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed, statuses


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def pss_mb(pid: int) -> float:
    """Proportional set size of a live process, in MB: pages shared with its parent or siblings (a prefork
    pool's copy-on-write memory) counted once across them, so the PSS of a process tree adds up."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss for {pid}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")
