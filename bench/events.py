"""2. Per-event ingestion: one event per request, as a plain HTTP client without the SDK reports it,
against a no-op JSON endpoint in the same server (bench/urls.py). Target: >= 60 % of the no-op's req/s,
for each event such a client reports: per step a decision (its outcome inline, as a client that knows it
reports it) and an outcome alone (PUT .../outcome, for a decision stored before); per run its start, a
problem and its end (the production server only).

Also measured, without a target: the floor of any one-event request, an endpoint that stores the body with
one committed INSERT into a one-index table (bench/urls.py), committed as the dashboard commits one-event
decisions, to tell what the database's commit costs per request from what our own work costs; and on
PostgreSQL both again with each commit waiting for the disk (API_ONE_EVENT_ASYNC_COMMIT=0)."""


import json
from collections.abc import Callable

from . import common, data
from .common import Check, Result

DB_NAME = "bench_framework"
CLIENTS = 4


def _plan(scale: float) -> tuple[int, int]:
    # Five repetitions: one repetition of the no-op lasts under a second and moved by up to 25 % between
    # repetitions here, so the median of three could move a ratio near its target across it.
    return max(40, round(1500 * scale)), (5 if scale >= 0.5 else 2)


def _call(server, headers: dict, method: str, path: str, body: dict) -> Callable:
    """A client's call: `method` `body` to `path`, which must answer 201."""
    def call(conn):
        status, reply = common.request(method, server.url + path, body, headers, conn)
        if status != 201:
            raise RuntimeError(f"{method} {path} refused: {status} {reply[:300]!r}")
        return status
    return call


def _outcomes_inline(events: list[dict]) -> list[dict]:
    """A run's events with each decision's outcome inline in its body, as a client that already knows it
    sends the decision, and no outcome events."""
    outcomes = {e["decision_id"]: e["body"] for e in events if e["type"] == "outcome"}
    return [{**e, "body": {**e["body"], "outcome": outcomes[e["decision_id"]]}} if e["type"] == "decision" else e
            for e in events if e["type"] != "outcome"]


def _decision_requests(server, key: str, per_client: int, seed: int) -> list[list]:
    """Per client: start a run, then report `per_client` decisions (outcome inline), one request each."""
    headers = {"Authorization": f"Bearer {key}"}
    jobs = []
    for events in data.sdk_runs(CLIENTS, per_client, seed=seed):
        run_id = events[0]["run_id"]
        common.request("POST", server.url + "/api/v1/runs", events[0]["body"], headers)
        jobs.append([_call(server, headers, "POST", f"/api/v1/runs/{run_id}/decisions", event["body"])
                     for event in _outcomes_inline(events) if event["type"] == "decision"])
    return jobs


def _outcome_requests(server, key: str, per_client: int, seed: int) -> list[list]:
    """Per client: a run whose decisions are stored beforehand (in the SDK's batches, untimed, without
    outcomes), then each decision's outcome reported alone, one request each, as a client does once it
    knows how the decision turned out (PUT .../outcome)."""
    headers = {"Authorization": f"Bearer {key}"}
    jobs = []
    for events in data.sdk_runs(CLIENTS, per_client, seed=seed):
        run_id = events[0]["run_id"]
        for batch in data.batches([e for e in events if e["type"] in ("run_start", "decision")]):
            status, reply = common.request("POST", server.url + "/api/v1/batch", {"events": batch}, headers)
            if status != 207 or json.loads(reply)["errors"]:
                raise RuntimeError(f"decisions refused: {status} {reply[:300]!r}")
        jobs.append([_call(server, headers, "PUT", f"/api/v1/runs/{run_id}/decisions/{event['decision_id']}/outcome",
                           event["body"]) for event in events if event["type"] == "outcome"])
    return jobs


RUN_DECISIONS = 2  # decisions (with outcomes) in each run of the run start / run end rows


def _run_requests(server, key: str, per_client: int, seed: int) -> tuple[list, list, Callable[[], None], list]:
    """Per client, `per_client` runs as the SDK reports them (`RUN_DECISIONS` decisions with outcomes
    each): their starts, one per request; a problem for each, one per request; what stores their
    decisions (in batches, untimed); then their ends, one per request (each folds its run's decisions
    into the pattern groups)."""
    headers = {"Authorization": f"Bearer {key}"}
    runs = data.sdk_runs(CLIENTS * per_client, RUN_DECISIONS, seed=seed)

    def jobs(kind: str, path: str) -> list[list]:
        return [[_call(server, headers, "POST", path.format(run_id=event["run_id"]), event["body"])
                 for run in runs[client::CLIENTS] for event in run if event["type"] == kind] for client in range(CLIENTS)]

    def store_decisions() -> None:
        for batch in data.batches([e for run in runs for e in run if e["type"] in ("decision", "outcome")]):
            status, reply = common.request("POST", server.url + "/api/v1/batch", {"events": batch}, headers)
            if status != 207 or json.loads(reply)["errors"]:
                raise RuntimeError(f"decisions refused: {status} {reply[:300]!r}")
    problems = [[_call(server, headers, "POST", f"/api/v1/runs/{run[0]['run_id']}/problems", {
        "id": "prob_0", "severity": "high", "description": "Tool call timed out after 3 retries",
        "decision_id": "dec_0", "root_cause": "upstream rate limit"}) for run in runs[client::CLIENTS]]
        for client in range(CLIENTS)]
    return (jobs("run_start", "/api/v1/runs"), problems, store_decisions,
            jobs("run_end", "/api/v1/runs/{run_id}/end"))


# Decisions in each run of the whole-runs row: the issue's large store holds 1,000,000 over 100,000 runs.
WHOLE_RUN_DECISIONS = 10


def _whole_run_requests(server, key: str, per_client: int, seed: int) -> list[list]:
    """Per client, about `per_client` requests: whole runs of `WHOLE_RUN_DECISIONS` decisions, each event in
    a request of its own and in the order a plain HTTP client sends them: the run's start, each decision
    with its outcome inline, the run's end."""
    headers = {"Authorization": f"Bearer {key}"}
    runs = data.sdk_runs(CLIENTS * max(1, per_client // (WHOLE_RUN_DECISIONS + 2)), WHOLE_RUN_DECISIONS, seed=seed)
    paths = {"run_start": "/api/v1/runs", "decision": "/api/v1/runs/{run_id}/decisions",
             "run_end": "/api/v1/runs/{run_id}/end"}
    return [[_call(server, headers, "POST", paths[event["type"]].format(run_id=event["run_id"]), event["body"])
             for run in runs[client::CLIENTS] for event in _outcomes_inline(run)] for client in range(CLIENTS)]


def _plain_requests(server, path: str, per_client: int, seed: int) -> list[list]:
    """The same decision bodies, POSTed to one of the bench's own endpoints (no key)."""
    jobs = []
    for events in data.sdk_runs(CLIENTS, per_client, seed=seed):
        calls = []
        for event in (e for e in events if e["type"] == "decision"):
            def call(conn, body=event["body"]):
                status, _ = common.request("POST", server.url + path, body, None, conn)
                return status
            calls.append(call)
        jobs.append(calls)
    return jobs


def _floor_table(kind: str, name: str = DB_NAME) -> None:
    conn = common.raw_connection(kind, name)
    key = "BIGSERIAL PRIMARY KEY" if kind == "postgres" else "INTEGER PRIMARY KEY AUTOINCREMENT"
    conn.execute(f"CREATE TABLE {common.FLOOR_TABLE} (id {key}, body TEXT NOT NULL)")
    conn.commit()
    conn.close()


# The dashboard's one-event decisions, and the floor with them, committed waiting for the disk: what
# turning API_ONE_EVENT_ASYNC_COMMIT off costs (README, "The API").
WAITING_FOR_THE_DISK = {"API_ONE_EVENT_ASYNC_COMMIT": "0"}


def _timed_rounds(server, key: str, per_client: int, reps: int, seed: int, *,
                  events: tuple[str, ...] = ("decision", "outcome")) -> dict[str, list[float]]:
    """Requests per second of the no-op, the floor and each of `events` one per request (decision,
    outcome; start with problem, end and whole runs), `reps` times each in turn: {name: one value per
    repetition}."""
    rates: dict[str, list[float]] = {name: [] for name in ("noop", "floor", *events)}

    def timed(name: str, jobs: list[list]) -> None:
        seconds, statuses = common.run_clients(jobs, server.url)
        assert statuses == {201: sum(len(calls) for calls in jobs)}, (name, statuses)
        rates[name].append(sum(statuses.values()) / seconds)
    for rep in range(reps):
        for path, name in (("/bench/noop", "noop"), ("/bench/floor", "floor")):
            timed(name, _plain_requests(server, path, per_client, seed=rep))
        if "decision" in events:
            timed("decision", _decision_requests(server, key, per_client, seed=seed + rep))
        if "outcome" in events:
            timed("outcome", _outcome_requests(server, key, per_client, seed=seed + 50 + rep))
        if "start" in events:
            starts, problems, store_decisions, ends = _run_requests(server, key, per_client, seed=seed + 70 + rep)
            timed("start", starts)
            timed("problem", problems)
            store_decisions()
            timed("end", ends)
        if "run" in events:
            timed("run", _whole_run_requests(server, key, per_client, seed=seed + 90 + rep))
    return rates


def run(kind: str, scale: float) -> list[Result]:
    requests, reps = _plan(scale)
    per_client = requests // CLIENTS
    env = common.fresh_database(kind, DB_NAME)
    key = common.issue_api_key(env)
    _floor_table(kind)
    results = []
    for server_kind in common.SERVERS:
        with common.serve(server_kind, env) as server:
            rates = _timed_rounds(server, key, per_client, reps, seed=100 + 10 * len(server_kind),
                                  events=("decision", "outcome", *(("start", "problem", "end", "run") if
                                                                   server_kind == common.PRODUCTION_SERVER else ())))
        api, noop, floor, alone = rates["decision"], rates["noop"], rates["floor"], rates["outcome"]
        results.append(Result("events", kind, f"POST decision, {server_kind}", "req/s", api,
                              baseline="no-op JSON", baseline_values=noop,
                              checks=common.server_checks(server_kind, [Check("ratio", ">=", 0.60)]),
                              note=common.server_note(server_kind, f"{per_client * CLIENTS} requests per repetition, "
                                                                   f"{CLIENTS} keep-alive clients")))
        results.append(Result("events", kind, f"PUT outcome (alone), {server_kind}", "req/s", alone,
                              baseline="no-op JSON", baseline_values=noop,
                              checks=common.server_checks(server_kind, [Check("ratio", ">=", 0.60)]),
                              note=common.server_note(server_kind, "each decision's outcome in a request of its own, "
                                                                   "the decisions stored before (untimed)")))
        if "start" in rates:  # the production server's only: what the targets are for
            for name, label, what in (("start", "POST run start", "each run's start"),
                                      ("problem", "POST problem", "a problem of each run"),
                                      ("end", "POST run end", f"each run's end ({RUN_DECISIONS} decisions each, "
                                                              "stored before, untimed)")):
                results.append(Result("events", kind, f"{label}, {server_kind}", "req/s", rates[name],
                                      baseline="no-op JSON", baseline_values=noop,
                                      checks=[Check("ratio", ">=", 0.60)],
                                      note=f"{what} in a request of its own, {per_client * CLIENTS} runs"))
            results.append(Result("events", kind, f"whole runs, every event a request, {server_kind}", "req/s",
                                  rates["run"], baseline="no-op JSON", baseline_values=noop,
                                  note=f"no target: runs of {WHOLE_RUN_DECISIONS} decisions as a plain HTTP client "
                                       "reports them, each event in a request of its own: the start, each decision "
                                       "with its outcome inline, the end"))
        results.append(Result("events", kind, f"one INSERT per request (floor), {server_kind}", "req/s", floor,
                              baseline="no-op JSON", baseline_values=noop,
                              note="no target: the floor of any one-event request, committed as ours are"
                              if server_kind == common.PRODUCTION_SERVER else ""))
        results.append(Result("events", kind, f"no-op JSON endpoint, {server_kind}", "req/s", noop))
        if server_kind == common.PRODUCTION_SERVER:  # the share of the floor ours reaches, as a ratio
            results.append(Result("events", kind, f"per-event against the floor, {server_kind}", "req/s", api,
                                  baseline="the floor", baseline_values=floor,
                                  note="no target: the same decisions against one bare INSERT per request"))
    if kind == "postgres":
        results += _waiting_for_the_disk(env, key, per_client, reps)
    return results


def _waiting_for_the_disk(env: dict[str, str], key: str, per_client: int, reps: int) -> list[Result]:
    """The production server's decision and floor rows again, with each one-event commit waiting for the
    disk (API_ONE_EVENT_ASYNC_COMMIT=0): no target, what that durability costs (README, "The API")."""
    server_kind = common.PRODUCTION_SERVER
    with common.serve(server_kind, {**env, **WAITING_FOR_THE_DISK}) as server:
        if json.loads(common.request("GET", server.url + "/bench/commit-setting")[1])["one_event_async_commit"]:
            # the setting did not reach the server: these rows would say what is not so
            raise RuntimeError("the server's one-event decisions do not wait for the disk: "
                               "API_ONE_EVENT_ASYNC_COMMIT=0 did not reach it")
        rates = _timed_rounds(server, key, per_client, max(2, reps - 2), seed=300, events=("decision",))
    api, noop, floor = rates["decision"], rates["noop"], rates["floor"]
    note = ("no target: API_ONE_EVENT_ASYNC_COMMIT=0, each one-event commit waits for its WAL to reach the "
            "disk (the floor's too); what that costs against the default above")
    return [Result("events", "postgres", f"POST decision, {server_kind}, commits waiting for the disk", "req/s",
                   api, baseline="no-op JSON", baseline_values=noop, note=note),
            Result("events", "postgres", f"floor, {server_kind}, commits waiting for the disk", "req/s",
                   floor, baseline="no-op JSON", baseline_values=noop)]
