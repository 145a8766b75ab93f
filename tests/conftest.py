"""Project-wide fixtures. The SDK tests under tests/sdk/ run without Django too (`-p no:django`)."""

import os
import socket
from urllib.parse import urlparse

import pytest

DATABASE_URL = os.environ.get("DATABASE_URL", "")
BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


ON_POSTGRES = DATABASE_URL.startswith(("postgres://", "postgresql://"))
ON_REDIS = BROKER_URL.startswith("redis://") and _reachable(BROKER_URL, 6379)


def pytest_collection_modifyitems(config, items):
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://... (CI does)")
    skip_redis = pytest.mark.skip(reason="needs Redis: set CELERY_BROKER_URL=redis://... (CI does)")
    for item in items:
        if "postgres" in item.keywords and not ON_POSTGRES:
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not ON_REDIS:
            item.add_marker(skip_redis)


@pytest.fixture(autouse=True)
def _no_refused_authentication_limit():
    """Tests send made-up keys by the dozen from one address: the per-address limit on refused
    authentications (runs.ratelimit) is off unless a test turns it on (tests/reliability/test_rate_limit.py,
    with the `settings` fixture, which is set up after this and undone before)."""
    from django.test import override_settings

    with override_settings(API_AUTH_FAILURES_PER_MINUTE=0):
        yield


@pytest.fixture
def api_key(db):
    from runs.models import ApiKey

    _key, raw = ApiKey.issue("test agent", scopes=["ingest", "read", "review"])
    return raw


@pytest.fixture
def api_client(client, api_key):
    """Django test client sending the API key; use api_client.post(url, data, content_type=...)."""
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
    return client


@pytest.fixture
def user(db, django_user_model):
    return django_user_model.objects.create_user(username="engineer", password="correct horse battery")


@pytest.fixture
def logged_in_client(client, user):
    client.force_login(user)
    return client
