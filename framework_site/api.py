"""The one NinjaAPI instance: /api/v1/, OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs."""

from django.http import HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from builder.api import router as builder_router
from runs.api import router as runs_router
from runs.auth import ApiKeyAuth
from runs.ratelimit import failed_authentication

api = NinjaAPI(
    title="Framework dashboard API",
    version="1",
    urls_namespace="api",
    auth=ApiKeyAuth("read"),
    description="Agents report runs, decisions, outcomes and problems; tools read runs and Builder answers. "
    "Authenticate with `Authorization: Bearer <key>` (create one with `python manage.py create_api_key NAME`).",
)


def _error(request: HttpRequest, status: int, detail: str, errors: list | None = None):
    return api.create_response(request, {"detail": detail, "errors": errors or []}, status=status)


@api.exception_handler(ValidationError)
def on_validation_error(request, exc: ValidationError):
    errors = [
        {"loc": [str(part) for part in err.get("loc", [])], "msg": err.get("msg", "invalid")} for err in exc.errors
    ]
    summary = "; ".join(f"{'.'.join(e['loc'][1:] or e['loc'])}: {e['msg']}" for e in errors[:5])
    return _error(request, 422, f"Invalid input: {summary}", errors)


@api.exception_handler(AuthenticationError)
def on_auth_error(request, exc):
    failed_authentication(request)
    return _error(request, 401, "Missing or invalid API key: send 'Authorization: Bearer <key>'.")


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    return _error(request, exc.status_code, str(exc))


api.add_router("/", runs_router)
api.add_router("/", builder_router)
