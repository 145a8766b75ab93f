"""Servers the URL-mode tests can stop and start again: a WSGI app on a fixed port in a thread."""

import json
import socket
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class ServerThread:
    """Serves ``app`` on 127.0.0.1:``port`` until stop(); start() again reuses the same port."""

    def __init__(self, app, *, port: int = 0, on_thread_start=None):
        self.app = app
        self.port = port
        self.on_thread_start = on_thread_start
        self.httpd: WSGIServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServerThread":
        self.httpd = make_server("127.0.0.1", self.port, self.app, handler_class=_QuietHandler)
        self.port = self.httpd.server_port
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _serve(self) -> None:
        if self.on_thread_start is not None:
            self.on_thread_start()
        self.httpd.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)
            self.httpd = None


class FakeDashboard:
    """A stand-in for POST /api/v1/batch that records events and answers what a test scripts."""

    def __init__(self):
        self.events: list[dict] = []
        self.requests: list[float] = []  # monotonic time of each batch request
        self.script: list[tuple[int, dict, dict]] = []  # (status, headers, body) to answer next, in order
        self.reject: set[str] = set()  # decision ids answered with a per-event 422

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        self.requests.append(time.monotonic())
        if self.script:
            status, headers, answer = self.script.pop(0)
        else:
            successes, errors = [], []
            for index, event in enumerate(body["events"]):
                if event["type"] == "decision" and event.get("decision_id") in self.reject:
                    errors.append({"index": index, "status": 422, "detail": "Invalid decision: intent: too long"})
                else:
                    self.events.append(event)
                    successes.append({"index": index, "status": 201})
            status, headers, answer = 207, {}, {"successes": successes, "errors": errors}
        start_response(f"{status} X", [("Content-Type", "application/json"), *headers.items()])
        return [json.dumps(answer).encode()]


class Gate:
    """Wraps a dashboard app: every POST /batch waits until open() — a dashboard slow to store events."""

    def __init__(self, app):
        self.app = app
        self.opened = threading.Event()

    def open(self) -> None:
        self.opened.set()

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"].endswith("/batch"):
            self.opened.wait(60)
        return self.app(environ, start_response)


@pytest.fixture
def spool_root(tmp_path, monkeypatch):
    root = tmp_path / "spool"
    monkeypatch.setenv("FRAMEWORK_SPOOL_DIR", str(root))
    return root


@pytest.fixture
def fake_dashboard():
    fake = FakeDashboard()
    server = ServerThread(fake).start()
    fake.url = server.url
    fake.server = server
    yield fake
    server.stop()


@pytest.fixture
def slow_dashboard():
    """A FakeDashboard that holds every batch until ``slow_dashboard.gate.open()``."""
    fake = FakeDashboard()
    fake.gate = Gate(fake)
    server = ServerThread(fake.gate).start()
    fake.url, fake.server = server.url, server
    yield fake
    fake.gate.open()
    server.stop()


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(100)
    yield listener.getsockname()[1]
    listener.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def django_server() -> ServerThread:
    """The real Django app in a thread we can stop; shares the test database connection when it is in memory."""
    from django.core.wsgi import get_wsgi_application
    from django.db import connections

    shared = {c.alias: c for c in connections.all() if c.vendor == "sqlite" and c.is_in_memory_db()}
    for connection in shared.values():
        connection.inc_thread_sharing()

    def use_shared_connections():
        for alias, connection in shared.items():
            connections[alias] = connection

    return ServerThread(get_wsgi_application(), on_thread_start=use_shared_connections)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


@pytest.fixture
def api_key_raw(transactional_db):
    from runs.models import ApiKey

    return ApiKey.issue("url mode agent", scopes=["ingest", "read"])[1]


@pytest.fixture
def dashboard(transactional_db):
    """The real Django app on a port of its own, which a test may stop and start again."""
    from django.db import connections

    server = django_server()
    server.start()
    yield server
    server.stop()
    for connection in connections.all():
        if connection.vendor == "sqlite" and connection.is_in_memory_db():
            connection.dec_thread_sharing()
