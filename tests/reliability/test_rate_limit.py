"""Backpressure: each API key gets API_RATE_LIMIT_PER_MINUTE requests; past it the API answers 429 with
Retry-After, and the SDK in URL mode waits as told, spools meanwhile, and delivers every event."""

import json
import time

import pytest

from framework import Runtime
from runs import ratelimit
from runs.models import ApiKey, Run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def stats(client, key):
    return client.get("/api/v1/stats", HTTP_AUTHORIZATION=f"Bearer {key}")


def test_a_key_over_its_limit_gets_429_with_retry_after_and_other_keys_carry_on(client, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    busy, calm = ApiKey.issue("busy")[1], ApiKey.issue("calm")[1]
    assert [stats(client, busy).status_code for _ in range(3)] == [200, 200, 200]
    refused = stats(client, busy)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "3 requests per minute" in refused.json()["detail"] and "API_RATE_LIMIT_PER_MINUTE" in refused.json()["detail"]
    assert client.post("/api/v1/batch", json.dumps({"events": []}), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {busy}").status_code == 429
    assert stats(client, calm).status_code == 200


def test_the_limit_resets_with_the_next_window(client, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 60
    settings.API_RATE_LIMIT_WINDOW_SECONDS = 1  # one request per second
    key = ApiKey.issue("steady")[1]
    time.sleep(1 - time.time() % 1)  # start at the beginning of a window
    assert stats(client, key).status_code == 200
    refused = stats(client, key)
    assert refused.status_code == 429 and refused["Retry-After"] == "1"
    time.sleep(1.05)
    assert stats(client, key).status_code == 200


def test_zero_turns_the_limit_off(client, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 0
    key = ApiKey.issue("unlimited")[1]
    assert {stats(client, key).status_code for _ in range(30)} == {200}


def test_an_unreachable_cache_lets_requests_through_instead_of_refusing_everyone(client, settings, caplog):
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0",
                                   "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}}}
    key = ApiKey.issue("no cache")[1]
    assert [stats(client, key).status_code for _ in range(3)] == [200, 200, 200]
    assert "cache is unavailable" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_the_sdk_slows_down_under_a_low_limit_and_delivers_every_event(live_server, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("FRAMEWORK_SPOOL_DIR", str(tmp_path / "spool"))
    settings.API_RATE_LIMIT_PER_MINUTE = 180
    settings.API_RATE_LIMIT_WINDOW_SECONDS = 1  # three requests per second
    refusals = []
    real_too_many = ratelimit.too_many
    monkeypatch.setattr(ratelimit, "too_many", lambda wait: refusals.append(wait) or real_too_many(wait))
    key = ApiKey.issue("chatty agent")[1]

    runtime = Runtime(live_server.url, api_key=key, flush_timeout=0.2, flush_interval=0.01, batch_size=10,
                      backoff_min=0.05, backoff_max=0.2)
    run_ids, slowest = [], 0.0
    for r in range(3):
        run_ids.append(runtime.start_run("chatty", f"run {r}"))
        for n in range(15):
            started = time.perf_counter()
            decision = runtime.decide(intent=f"step {n}", options=[{"id": "a", "description": "A"}], chosen="a",
                                      reasoning="r")
            runtime.record_outcome(decision, success=n % 4 != 0, tokens_used=n)
            slowest = max(slowest, time.perf_counter() - started)
        runtime.end_run(success=True)
    assert slowest < 0.05  # the agent never waited on the limit
    started = time.monotonic()
    # Flushed (delivered or spooled), then the spool replayed: in that order, as end_run does not wait.
    while not runtime.flush(timeout=1) or runtime.transport.spool.pending():
        assert time.monotonic() - started < 60, runtime.transport.stats
        time.sleep(0.1)
    runtime.transport.close(timeout=5)

    assert refusals, "the limit was never reached: the test proves nothing"
    for run_id in run_ids:
        run = Run.objects.get(run_id=run_id)
        assert (run.decision_count, run.success_count, run.total_tokens, run.status) == (15, 11, sum(range(15)), "completed")
    assert runtime.transport.stats["dropped"] == 0 and runtime.transport.stats["rejected"] == 0


def test_an_address_sending_bad_keys_is_refused_past_its_limit_without_a_key_lookup(client, settings,
                                                                                     django_assert_num_queries):
    settings.API_AUTH_FAILURES_PER_MINUTE = 3
    good = ApiKey.issue("agent")[1]
    assert stats(client, good).status_code == 200  # a key this process has found valid
    never_seen = ApiKey.issue("new agent")[1]
    assert [stats(client, f"fwk_made_up_{n}").status_code for n in range(2)] == [401, 401]
    assert client.get("/api/v1/stats").status_code == 401  # no key at all counts too: the third
    with django_assert_num_queries(0):
        refused = stats(client, "fwk_made_up_again")
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 60
    assert "invalid API key from this address" in refused.json()["detail"]
    assert "API_AUTH_FAILURES_PER_MINUTE" in refused.json()["detail"]
    assert stats(client, never_seen).status_code == 429  # not found valid by this process yet: one more lookup
    assert stats(client, good).status_code == 200  # found valid before: goes on, from the same address
    assert stats(client, "fwk_made_up_elsewhere").status_code == 429
    assert client.get("/api/v1/stats", HTTP_AUTHORIZATION="Bearer fwk_made_up_elsewhere",
                      REMOTE_ADDR="10.0.0.2").status_code == 401  # another address is not refused


def test_refused_authentications_reset_with_the_next_window_and_zero_turns_the_limit_off(client, settings):
    settings.API_AUTH_FAILURES_PER_MINUTE = 60
    settings.API_RATE_LIMIT_WINDOW_SECONDS = 1  # one refused authentication per second
    time.sleep(1 - time.time() % 1)
    assert [stats(client, f"fwk_bad_{n}").status_code for n in range(2)] == [401, 429]
    time.sleep(1.05)
    assert stats(client, "fwk_bad_again").status_code == 401
    settings.API_AUTH_FAILURES_PER_MINUTE = 0
    assert {stats(client, f"fwk_bad_{n}").status_code for n in range(20)} == {401}


def test_behind_a_trusted_proxy_refused_authentications_count_per_client_not_per_proxy(client, settings):
    # Behind a reverse proxy every request comes from the proxy's address: one agent sending a bad key
    # must not lock out another agent whose key this process has not seen yet (after a restart, every key).
    settings.API_AUTH_FAILURES_PER_MINUTE = 3
    settings.API_TRUSTED_PROXIES = ["10.0.0.0/24"]
    new_agent = ApiKey.issue("new agent")[1]

    def via_proxy(key, client_address, sent_by_client=""):
        forwarded = f"{sent_by_client}, {client_address}" if sent_by_client else client_address
        return client.get("/api/v1/stats", HTTP_AUTHORIZATION=f"Bearer {key}", REMOTE_ADDR="10.0.0.5",
                          HTTP_X_FORWARDED_FOR=forwarded).status_code

    assert [via_proxy(f"fwk_bad_{n}", "198.51.100.7") for n in range(4)] == [401, 401, 401, 429]
    assert via_proxy(new_agent, "198.51.100.8") == 200  # another client behind the same proxy
    # What the client itself puts in X-Forwarded-For is left of what the proxy appended: it changes nothing.
    assert via_proxy("fwk_bad_again", "198.51.100.7", sent_by_client="203.0.113.1") == 429
    # Two proxies in a row (both trusted): the client is the first address neither of them is.
    assert via_proxy("fwk_bad_again", "198.51.100.7, 10.0.0.9") == 429
    # A proxy that adds the client's port: each new connection is still the same client.
    assert via_proxy("fwk_bad_again", "198.51.100.7:50123") == 429
    assert via_proxy(new_agent, "[2001:db8::8]:50124") == 200


def test_x_forwarded_for_is_ignored_unless_the_request_comes_from_a_trusted_proxy(client, settings):
    settings.API_AUTH_FAILURES_PER_MINUTE = 3
    settings.API_TRUSTED_PROXIES = ["10.0.0.0/24"]
    # A client that talks to the dashboard directly cannot dodge the limit by making up a new address each time.
    codes = [client.get("/api/v1/stats", HTTP_AUTHORIZATION=f"Bearer fwk_bad_{n}", REMOTE_ADDR="203.0.113.9",
                        HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code for n in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    settings.API_TRUSTED_PROXIES = []  # the default: REMOTE_ADDR is the client, whatever the header says
    assert client.get("/api/v1/stats", HTTP_AUTHORIZATION="Bearer fwk_bad", REMOTE_ADDR="203.0.113.9",
                      HTTP_X_FORWARDED_FOR="192.0.2.200").status_code == 429


def test_a_trusted_proxies_setting_that_is_not_an_address_stops_the_start():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "framework_site.settings",
           "API_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, text=True,
                            capture_output=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode != 0
    assert "API_TRUSTED_PROXIES: 'proxy.internal' is not an IP address or network (CIDR)" in result.stderr
