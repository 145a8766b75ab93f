"""A per-key rate limit on the API: at most API_RATE_LIMIT_PER_MINUTE requests per key, counted in fixed
windows in the Django cache; over it, 429 with Retry-After (the SDK waits that long and loses nothing).

Requests are counted by a hash of the bearer token, before authentication, so the limit costs no database
query and a flood of made-up keys is limited too. The counter lives in the default cache: local memory
(per process: with N web processes a key may make up to N times the limit) unless CACHE_URL points at
Redis, where all processes share it. If the cache is unreachable the request is let through: a limiter
that fails closed would turn a Redis outage into an ingestion outage.
"""

import functools
import hashlib
import ipaddress
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.http import JsonResponse

from .auth import found_valid

logger = logging.getLogger(__name__)
API_PREFIX = "/api/"


def _allowance(per_minute: int) -> tuple[int, int]:
    """(`per_minute` as allowed per window, window length in seconds); 0 allowed means no limit."""
    window = settings.API_RATE_LIMIT_WINDOW_SECONDS
    return (math.ceil(per_minute * window / 60) if per_minute else 0), window


def _reset_in(now: float, window: int) -> float:
    """Seconds until the fixed window holding `now` ends."""
    return max((int(now // window) + 1) * window - now, 0.001)


def hit(token: str, *, now: float | None = None) -> float | None:
    """Count one request for `token`; None when allowed, else the seconds until the window resets."""
    allowed, window = _allowance(settings.API_RATE_LIMIT_PER_MINUTE)
    if not allowed:
        return None
    now = time.time() if now is None else now
    key = f"ratelimit:{hashlib.sha256(token.encode()).hexdigest()[:32]}:{int(now // window)}"
    if (count := _count(key, window)) is None or count <= allowed:
        return None
    return _reset_in(now, window)


def _count(key: str, window: int) -> int | None:
    """Count one more in `key` (a fixed window); None when the cache is down."""
    try:
        cache.add(key, 0, timeout=window * 2)
        return cache.incr(key)
    except Exception as exc:  # the cache is down: let requests through rather than refuse every agent
        logger.warning("Rate limit not applied, the cache is unavailable: %s", exc)
        return None


def _failures_key(request, now: float, window: int) -> str:
    return f"authfail:{_address(request)}:{int(now // window)}"


def failed_authentication(request) -> None:
    """Count a request refused for a missing or invalid API key against the address it came from."""
    allowed, window = _allowance(settings.API_AUTH_FAILURES_PER_MINUTE)
    if allowed and request.path.startswith(API_PREFIX):
        _count(_failures_key(request, time.time(), window), window)


def refused_address(request) -> float | None:
    """Seconds until the window resets while the request's address is past its refused authentications."""
    allowed, window = _allowance(settings.API_AUTH_FAILURES_PER_MINUTE)
    if not allowed:
        return None
    now = time.time()
    try:
        count = cache.get(_failures_key(request, now, window), 0)
    except Exception:  # noqa: BLE001 - the cache is down: `hit` says so
        return None
    return _reset_in(now, window) if count >= allowed else None


def _address(request) -> str:
    """The client's address: REMOTE_ADDR, or, when that is one of API_TRUSTED_PROXIES, the rightmost
    X-Forwarded-For address that is not a trusted proxy (each proxy appends the address it got the request
    from, so everything left of that is what the client itself sent, and may be made up)."""
    address = request.META.get("REMOTE_ADDR") or "-"
    trusted = _trusted(tuple(settings.API_TRUSTED_PROXIES))
    if not trusted or not _within(address, trusted):
        return address
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        if (hop := _without_port(hop.strip()[:64])) and not _within(hop, trusted):
            return hop
        address = hop or address
    return address


def _without_port(hop: str) -> str:
    """`203.0.113.5:4711` and `[2001:db8::1]:4711` (proxies that add the client's port) as the bare address:
    else each new connection of one client would count as another client."""
    if hop.startswith("["):
        return hop[1:].split("]", 1)[0]
    return hop.split(":", 1)[0] if hop.count(":") == 1 else hop


@functools.lru_cache(maxsize=8)
def _trusted(networks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(network) for network in networks)


def _within(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


class ApiRateLimitMiddleware:
    """Per key (`hit`), and per address for requests with a key this process has not found valid: each key
    counts its own requests, so a client making keys up would never reach a limit, and each made-up key
    costs a lookup. Past API_AUTH_FAILURES_PER_MINUTE refused authentications from one address, its
    requests with a missing key, or a key this process has not found valid yet, get 429 at once; keys it
    has found valid go on (an agent behind the same proxy as the one sending bad keys)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(API_PREFIX):
            header = request.META.get("HTTP_AUTHORIZATION", "")
            token = header[7:].strip() if header[:7].lower() == "bearer " else ""
            if not found_valid(token) and (wait := refused_address(request)) is not None:
                return too_many(wait, by_address=True)
            if token and (wait := hit(token)) is not None:
                return too_many(wait)
        return self.get_response(request)


def too_many(wait: float, *, by_address: bool = False) -> JsonResponse:
    seconds = max(1, math.ceil(wait))
    if by_address:
        detail = (f"Too many requests with a missing or invalid API key from this address (more than "
                  f"{settings.API_AUTH_FAILURES_PER_MINUTE} per minute, API_AUTH_FAILURES_PER_MINUTE); "
                  f"retry after {seconds} s with a valid key.")
    else:
        detail = (f"Rate limit exceeded: this API key may make {settings.API_RATE_LIMIT_PER_MINUTE} requests per "
                  f"minute (API_RATE_LIMIT_PER_MINUTE); retry after {seconds} s.")
    response = JsonResponse({"detail": detail, "errors": []}, status=429)
    response["Retry-After"] = str(seconds)
    return response
