import json
from contextlib import nullcontext

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from framework_site.urls import urlpatterns as project_urlpatterns
from runs import rawsql

from .common import FLOOR_TABLE


@csrf_exempt
@login_not_required
def noop(request):
    """Parse the JSON body and answer a small JSON object: the cost of the stack, no work."""
    body = json.loads(request.body or b"null")
    return JsonResponse({"ok": True, "type": type(body).__name__}, status=201)


@csrf_exempt
@login_not_required
def floor(request):
    """Parse the JSON body and store it with one INSERT, committed (on SQLite in a write transaction queued
    as ours are): the least any durable one-event request costs in this server and database."""
    body = json.loads(request.body or b"null")
    with rawsql.immediate_transaction(connection) if connection.vendor == "sqlite" else nullcontext():
        with rawsql.cursor(connection, f"INSERT INTO {FLOOR_TABLE} (body) VALUES (%s)", [json.dumps(body)]):
            pass
    return JsonResponse({"ok": True, "type": type(body).__name__}, status=201)


@csrf_exempt
@login_not_required
def commit_setting(request):
    """PostgreSQL's synchronous_commit as this server's connection has it: the events bench checks that the
    rows it labels "commits not waiting for the disk" were measured so."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return JsonResponse({"synchronous_commit": cursor.fetchone()[0]})


urlpatterns = [path("bench/noop", noop), path("bench/floor", floor), path("bench/commit-setting", commit_setting),
               *project_urlpatterns]
