import json
from contextlib import nullcontext

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from framework_site.urls import urlpatterns as project_urlpatterns
from runs import ingest, rawsql

from .common import FLOOR_TABLE


@csrf_exempt
@login_not_required
def noop(request):
    """Parse the JSON body and answer a small JSON object: the cost of the stack, no work."""
    body = json.loads(request.body or b"null")
    return JsonResponse({"ok": True, "type": type(body).__name__}, status=201)


def _floor_insert() -> str:
    """The floor's statement. On PostgreSQL its commit waits for the disk, or not, as the dashboard's
    one-event decisions do (`API_ONE_EVENT_ASYNC_COMMIT`, runs/ingest.py), in the same way."""
    if connection.vendor == "postgresql" and settings.API_ONE_EVENT_ASYNC_COMMIT:
        return (f"WITH unsynced AS ({ingest.NOT_WAITING_FOR_THE_DISK}) "
                f"INSERT INTO {FLOOR_TABLE} (body) SELECT %s FROM unsynced")
    return f"INSERT INTO {FLOOR_TABLE} (body) VALUES (%s)"


@csrf_exempt
@login_not_required
def floor(request):
    """Parse the JSON body and store it with one INSERT, committed as our one-event decisions are (on
    SQLite in a write transaction queued as ours are; on PostgreSQL waiting for the disk or not, as they
    do): the least any one-event request costs in this server and database."""
    body = json.loads(request.body or b"null")
    with rawsql.immediate_transaction(connection) if connection.vendor == "sqlite" else nullcontext():
        with rawsql.cursor(connection, _floor_insert(), [json.dumps(body)]):
            pass
    return JsonResponse({"ok": True, "type": type(body).__name__}, status=201)


@csrf_exempt
@login_not_required
def commit_setting(request):
    """Whether this server's one-event decisions wait for the disk at their commit: the events bench checks
    that the rows it labels "commits waiting for the disk" were measured so."""
    return JsonResponse({"one_event_async_commit": settings.API_ONE_EVENT_ASYNC_COMMIT})


urlpatterns = [path("bench/noop", noop), path("bench/floor", floor), path("bench/commit-setting", commit_setting),
               *project_urlpatterns]
