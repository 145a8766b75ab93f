"""API key authentication for django-ninja: `Authorization: Bearer <key>`, scoped per operation.

Each scope is its own security scheme in the OpenAPI schema (`IngestKey`, `ReadKey`, `ReviewKey`, each
carrying `x-scope`), so the schema says which scope every operation needs and the access tests derive
their expectations from it: a new operation is covered, and one without a declared scope fails them.
"""

import time
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone
from ninja.errors import AuthenticationError, HttpError
from ninja.security import HttpBearer

from .models import ApiKey, ApiKeyScope

_SCHEMES: dict[str, type] = {}
LAST_USED_EVERY = timedelta(minutes=1)  # how often a key's last_used_at is brought up to date


class ApiKeyAuth(HttpBearer):
    """Accepts an active key that carries `scope`; 401 without a valid key, 403 with the wrong scope."""

    scope = "read"

    def __new__(cls, scope: str = "read", *, checked_in_view: bool = False):
        # ninja names an operation's security scheme after the auth object's class: one class per scope.
        if cls is ApiKeyAuth:
            cls = _scheme_for(scope)
        return super().__new__(cls)

    def __init__(self, scope: str | None = None, *, checked_in_view: bool = False):
        super().__init__()
        self.checked_in_view = checked_in_view
        self.openapi_security_schema.update({
            "x-scope": self.scope,
            "description": f"An API key with the '{self.scope}' scope: `Authorization: Bearer <key>`.",
        })
        if scope is not None and scope != self.scope:
            raise ValueError(f"{type(self).__name__} is for the '{self.scope}' scope, not '{scope}'")

    def authenticate(self, request, token: str) -> "ApiKey | BearerKey | None":
        if self.checked_in_view:
            return BearerKey(token, self.scope)
        return check_key(token, self.scope)


def check_key(token: str, scope: str) -> ApiKey | None:
    """The active key `token` names, if it carries `scope` (403 if it does not); None if there is none."""
    key = ApiKey.authenticate(token)
    if key is None:
        return None
    if not key.allows(scope):
        raise HttpError(403, f"This API key lacks the '{scope}' scope (it has: {', '.join(key.scopes) or 'none'}).")
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_EVERY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    _SEEN[ApiKey._digest(token)] = time.monotonic()  # found valid; its last_used_at is within a minute
    return key


# Digests of the keys this process has checked and found valid (`check_key`) -> when their last_used_at was
# last known to be within a minute. Only a valid key gets in, so it holds no more entries than there are
# keys. The one-event append (`BearerKey`) and the per-address limit (runs.ratelimit) read it.
_SEEN: dict[str, float] = {}


def found_valid(token: str) -> bool:
    """Whether this process has found `token` a valid key before (it may have been revoked since)."""
    return bool(token) and ApiKey._digest(token) in _SEEN


class BearerKey:
    """A bearer token not checked yet: what an operation declared `checked_in_view` gets as `request.auth`.

    One-event ingestion is the hot path of agents that report without the SDK; there the view checks the
    key inside the statement that stores the event (`ingest.append_decision`), one query instead of two,
    once this process has found the key valid (`seen`): a made-up or forged key never gets as far as a
    write. Whatever that statement does not store, the view first checks the key as every other operation
    does (`verified`: 401 or 403 exactly as ninja answers them), then answers from the full path, so a
    client without a valid key learns nothing more than before, whatever its request holds, and a key
    revoked since is refused at once. The statement compares SHA-256 digests, as a unique index would: how
    long a comparison takes could only tell how much of a digest matched, never anything of the key
    (`ApiKey.authenticate` compares in constant time anyway).
    """

    __slots__ = ("token", "scope", "digest")

    def __init__(self, token: str, scope: str):
        self.token, self.scope, self.digest = token, scope, ApiKey._digest(token)

    def seen(self) -> bool:
        """Whether this process has found this key valid before (it may have been revoked since)."""
        return self.digest in _SEEN

    def credentials(self) -> tuple[str, str, str]:
        """(lookup, digest, scope): what the storing statement matches against an active key's row."""
        return ApiKey._lookup(self.token), self.digest, self.scope

    def verified(self) -> ApiKey:
        key = check_key(self.token, self.scope)
        if key is None:
            raise AuthenticationError()
        return key

    def note_use(self) -> None:
        """After the statement matched the key: bring its last_used_at up to date, at most once a minute per
        process (and only when it is older than that, as `check_key` does)."""
        now = time.monotonic()
        if now - _SEEN.get(self.digest, float("-inf")) < LAST_USED_EVERY.total_seconds():
            return
        _SEEN[self.digest] = now
        stale = timezone.now() - LAST_USED_EVERY
        ApiKey.objects.filter(Q(last_used_at=None) | Q(last_used_at__lt=stale), lookup=ApiKey._lookup(self.token)).update(
            last_used_at=timezone.now())


def _scheme_for(scope: str) -> type:
    if scope not in ApiKeyScope.values:
        raise ValueError(f"unknown API key scope {scope!r}; expected one of {ApiKeyScope.values}")
    if scope not in _SCHEMES:
        _SCHEMES[scope] = type(f"{scope.title()}Key", (ApiKeyAuth,), {"scope": scope, "__module__": __name__})
    return _SCHEMES[scope]


ingest_auth = ApiKeyAuth("ingest")
ingest_auth_in_view = ApiKeyAuth("ingest", checked_in_view=True)  # see BearerKey
read_auth = ApiKeyAuth("read")
review_auth = ApiKeyAuth("review")
