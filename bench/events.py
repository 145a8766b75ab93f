"""2. Per-event ingestion: one event per request, as a plain HTTP client without the SDK reports it,
against a no-op JSON endpoint in the same server (bench/urls.py). Target: >= 60 % of the no-op's req/s,
for each of the two events an agent reports per step: a decision (its outcome inline, as a client that
knows it reports it) and an outcome alone (PUT .../outcome, for a decision stored before).

Also measured, without a target: the floor of any one-event request, an endpoint that stores the body with
one committed INSERT into a one-index table (bench/urls.py), committed as the dashboard commits one-event
decisions, to tell what the database's commit costs per request from what our own work costs; and on
PostgreSQL both again with each commit waiting for the disk (API_ONE_EVENT_ASYNC_COMMIT=0)."""


import json

from . import common, data
from .common import Check, Result

DB_NAME = "bench_framework"
CLIENTS = 4


def _plan(scale: float) -> tuple[int, int]:
    # Five repetitions: one repetition of the no-op lasts under a second and moved by up to 25 % between
    # repetitions here, so the median of three could move a ratio near its target across it.
    return max(40, round(1500 * scale)), (5 if scale >= 0.5 else 2)


def _decision_requests(server, key: str, per_client: int, seed: int) -> list[list]:
    """Per client: start a run, then report `per_client` decisions (outcome inline), one request each."""
    headers = {"Authorization": f"Bearer {key}"}
    jobs = []
    for client, events in enumerate(data.sdk_runs(CLIENTS, per_client, seed=seed)):
        run_id = events[0]["run_id"]
        common.request("POST", server.url + "/api/v1/runs", events[0]["body"], headers)
        decisions = [e for e in events if e["type"] == "decision"]
        outcomes = {e["decision_id"]: e["body"] for e in events if e["type"] == "outcome"}
        calls = []
        for event in decisions:
            body = {**event["body"], "outcome": outcomes[event["decision_id"]]}

            def call(conn, body=body, run_id=run_id):
                status, reply = common.request("POST", f"{server.url}/api/v1/runs/{run_id}/decisions", body,
                                               headers, conn)
                if status != 201:
                    raise RuntimeError(f"decision refused: {status} {reply[:300]!r}")
                return status
            calls.append(call)
        jobs.append(calls)
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
        calls = []
        for event in (e for e in events if e["type"] == "outcome"):
            url = f"{server.url}/api/v1/runs/{run_id}/decisions/{event['decision_id']}/outcome"

            def call(conn, body=event["body"], url=url):
                status, reply = common.request("PUT", url, body, headers, conn)
                if status != 201:
                    raise RuntimeError(f"outcome refused: {status} {reply[:300]!r}")
                return status
            calls.append(call)
        jobs.append(calls)
    return jobs


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
                  outcomes: bool = True) -> tuple[list, list, list, list]:
    """Requests per second of the no-op, the floor, one-event decisions and (with `outcomes`) outcomes
    reported alone, `reps` times each in turn."""
    api, noop, floor, alone = [], [], [], []
    for rep in range(reps):
        for path, values in (("/bench/noop", noop), ("/bench/floor", floor)):
            jobs = _plain_requests(server, path, per_client, seed=rep)
            seconds, statuses = common.run_clients(jobs, server.url)
            assert statuses == {201: per_client * CLIENTS}, statuses
            values.append(per_client * CLIENTS / seconds)
        jobs = _decision_requests(server, key, per_client, seed=seed + rep)
        seconds, statuses = common.run_clients(jobs, server.url)
        api.append(per_client * CLIENTS / seconds)
        if outcomes:
            jobs = _outcome_requests(server, key, per_client, seed=seed + 50 + rep)
            seconds, statuses = common.run_clients(jobs, server.url)
            alone.append(sum(statuses.values()) / seconds)
    return api, noop, floor, alone


def run(kind: str, scale: float) -> list[Result]:
    requests, reps = _plan(scale)
    per_client = requests // CLIENTS
    env = common.fresh_database(kind, DB_NAME)
    key = common.issue_api_key(env)
    _floor_table(kind)
    results = []
    for server_kind in common.SERVERS:
        with common.serve(server_kind, env) as server:
            api, noop, floor, alone = _timed_rounds(server, key, per_client, reps, seed=100 + 10 * len(server_kind))
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
        api, noop, floor, _ = _timed_rounds(server, key, per_client, max(2, reps - 2), seed=300, outcomes=False)
    note = ("no target: API_ONE_EVENT_ASYNC_COMMIT=0, each one-event commit waits for its WAL to reach the "
            "disk (the floor's too); what that costs against the default above")
    return [Result("events", "postgres", f"POST decision, {server_kind}, commits waiting for the disk", "req/s",
                   api, baseline="no-op JSON", baseline_values=noop, note=note),
            Result("events", "postgres", f"floor, {server_kind}, commits waiting for the disk", "req/s",
                   floor, baseline="no-op JSON", baseline_values=noop)]
