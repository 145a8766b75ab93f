"""Settings for the dashboard. Every knob is an environment variable with a default that runs on one
machine with nothing installed: SQLite (WAL) under var/, the embedded filesystem broker, no API key."""

import ipaddress
import os
import secrets
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FRAMEWORK_VAR_DIR", BASE_DIR / "var"))
(VAR_DIR / "static").mkdir(parents=True, exist_ok=True)


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    if env_bool("DJANGO_PRODUCTION", False):
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_PRODUCTION is on (50+ random "
                                   "characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))').")
    # A development key that survives restarts without anyone having to set one.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "ninja",
    "runs",
    "builder",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "framework_site.middleware.SecurityHeadersMiddleware",
    "framework_site.middleware.BodySizeLimitMiddleware",
    "runs.ratelimit.ApiRateLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
]

ROOT_URLCONF = "framework_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

WSGI_APPLICATION = "framework_site.wsgi.application"

# --- database ---------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # writers queued as below
        DATABASES["default"]["ENGINE"] = "framework_site.sqlite_backend"
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"].setdefault("TEST", {})["NAME"] = env_str("DATABASE_TEST_NAME", "test_framework")
        # Django's cursors bind parameters client-side and never prepare; this only lets the ingest hot
        # path prepare its own few statements (runs/rawsql.py). psycopg's default (None) forbids that; a
        # pooler in transaction mode that cannot keep prepared statements needs DB_PREPARED_STATEMENTS=0.
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
            2**31 - 1 if env_bool("DB_PREPARED_STATEMENTS", True) else None)
else:
    DATABASES = {
        "default": {
            # Django's backend, with our writers queued on a file lock (framework_site/sqlite_backend).
            "ENGINE": "framework_site.sqlite_backend",
            "NAME": env_str("SQLITE_PATH", str(VAR_DIR / "db.sqlite3")),
            "OPTIONS": {
                # WAL lets pages read while agents write; IMMEDIATE transactions take the write lock up
                # front, so concurrent writers wait (up to `timeout`) instead of failing with "locked".
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": env_int("SQLITE_TIMEOUT", 30),
            },
            # Kept open across requests, as for PostgreSQL: opening one (and its PRAGMAs) on every
            # request cost more than storing a decision.
            "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60),
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- API ----------------------------------------------------------------------------------------
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
API_MAX_BATCH_EVENTS = env_int("API_MAX_BATCH_EVENTS", 1000, minimum=1)

# --- Celery -------------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),  # kombu's default is ./control in the cwd
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("BUILDER_SOFT_TIME_LIMIT", 240, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("BUILDER_HARD_TIME_LIMIT", 300, minimum=1)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {}

# --- Builder ------------------------------------------------------------------------------------
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL", "")
BUILDER_MODEL = env_str("BUILDER_MODEL", "claude-sonnet-4-5")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- Security and production (reliability/security section) -------------------------------------
# Always on: a Content-Security-Policy that allows only the dashboard's own scripts, styles and requests
# (agent text can never become script), no framing, no MIME sniffing.
CONTENT_SECURITY_POLICY = env_str(
    "DJANGO_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# DJANGO_PRODUCTION=true: HTTPS only (redirect, HSTS, secure cookies), DEBUG refused, DJANGO_SECRET_KEY
# required (see _secret_key). Behind a proxy that terminates TLS, set DJANGO_SECURE_PROXY_SSL_HEADER=true
# so Django trusts its X-Forwarded-Proto header.
PRODUCTION = env_bool("DJANGO_PRODUCTION", False)
if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("DJANGO_DEBUG must be off when DJANGO_PRODUCTION is on.")
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 random characters in production.")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preloading commits the whole domain to HTTPS in browsers' built-in lists: the domain owner's call,
    # not the app's, so it is opt-in and its deploy-check warning is silenced when off.
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Per-key API rate limit (runs/ratelimit.py): 0 turns it off. The window is 60 s; tests shorten it.
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 6000, minimum=0)
API_RATE_LIMIT_WINDOW_SECONDS = env_int("API_RATE_LIMIT_WINDOW_SECONDS", 60, minimum=1)
API_AUTH_FAILURES_PER_MINUTE = env_int("API_AUTH_FAILURES_PER_MINUTE", 60, minimum=0)

# PostgreSQL: a new run, a decision, a decision's first outcome and a new problem, each reported alone
# (POST /api/v1/runs, POST .../decisions, PUT .../decisions/{decision_id}/outcome, POST .../problems), are
# answered once stored and readable, without waiting for their commit to reach the disk
# (synchronous_commit=off for that one transaction). A crash of PostgreSQL itself (not of the dashboard)
# can then lose the last ones answered so, up to 3 x wal_writer_delay (0.6 s by default), never half of
# one; the SDK's batches, and every other write (a run's end too), wait for the disk as before (README,
# "The API"). 0: they wait too.
API_ONE_EVENT_ASYNC_COMMIT = env_bool("API_ONE_EVENT_ASYNC_COMMIT", True)


def _networks(name: str) -> list[str]:
    """A comma-separated list of IP addresses or networks (CIDR), checked here so that a typo stops the
    start instead of silently trusting nothing, or everything."""
    networks = []
    for item in env_list(name, ""):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or network (CIDR)") from None
    return networks


# The reverse proxies in front of the web processes, whose X-Forwarded-For header names the client: the
# per-address limit on refused authentications counts clients, not the proxy (runs/ratelimit.py).
API_TRUSTED_PROXIES = _networks("API_TRUSTED_PROXIES")
# The cache holds the rate-limit counters: per process in memory by default, shared through Redis when
# CACHE_URL=redis://... (use it with more than one web process for an exact limit).
CACHE_URL = env_str("CACHE_URL", "")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
                          "KEY_PREFIX": "fw", "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}
elif CACHE_URL:
    raise ImproperlyConfigured(f"CACHE_URL must be a redis:// URL (or empty for the in-process cache), got {CACHE_URL!r}")
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "framework"}}

# Retention (runs/management/commands/purge_runs.py, run daily by Celery beat): ended runs older than
# RETENTION_DAYS are deleted with their decisions and problems; 0 keeps runs forever.
# RETENTION_DAYS_PER_GOAL overrides it per goal: "calculator=7,web_research=30" (0 = keep that goal).
RETENTION_DAYS = env_int("RETENTION_DAYS", 0, minimum=0)


def _per_goal_days(raw: str) -> dict[str, int]:
    days: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        goal, sep, value = item.rpartition("=")
        if not sep or not goal.strip() or not value.strip().isdigit():
            raise ImproperlyConfigured(f"RETENTION_DAYS_PER_GOAL must look like 'goal=days,goal=days', got {item!r}")
        days[goal.strip()] = int(value)
    return days


RETENTION_DAYS_PER_GOAL = _per_goal_days(env_str("RETENTION_DAYS_PER_GOAL", ""))
RETENTION_PURGE_HOUR = env_int("RETENTION_PURGE_HOUR", 3, minimum=0)
if RETENTION_PURGE_HOUR > 23:
    raise ImproperlyConfigured(f"RETENTION_PURGE_HOUR must be an hour of the day (0-23), got {RETENTION_PURGE_HOUR}")
CELERY_BEAT_SCHEDULE["runs-purge-expired"] = {
    "task": "runs.tasks.purge_expired_runs",
    "schedule": crontab(hour=RETENTION_PURGE_HOUR, minute=17),
}
# A running run with no write for this long joins its goal's pattern groups (runs/rollups.py), so the
# patterns answer groups only the runs active lately at read time, however many were left running.
PATTERN_FOLD_IDLE_MINUTES = env_int("PATTERN_FOLD_IDLE_MINUTES", 10, minimum=1)
CELERY_BEAT_SCHEDULE["runs-fold-idle"] = {
    "task": "runs.tasks.fold_idle_runs",
    "schedule": 60.0 * PATTERN_FOLD_IDLE_MINUTES / 2,
}
# --- end of the security and production section ---------------------------------------------------

# --- Builder jobs (appended by the Builder app) -------------------------------------------------
# A job a worker claimed but never finished is re-queued once its last sign of life is older than the
# hard time limit plus a margin; one still queued after BUILDER_STALE_QUEUED_SECONDS is sent again (its
# message may have been lost). After BUILDER_MAX_ATTEMPTS claims it fails with a message instead.
BUILDER_MAX_ATTEMPTS = env_int("BUILDER_MAX_ATTEMPTS", 3, minimum=1)
BUILDER_STALE_RUNNING_SECONDS = env_int("BUILDER_STALE_RUNNING_SECONDS", CELERY_TASK_TIME_LIMIT + 60, minimum=1)
BUILDER_STALE_QUEUED_SECONDS = env_int("BUILDER_STALE_QUEUED_SECONDS", 120, minimum=1)
BUILDER_SWEEP_INTERVAL_SECONDS = env_int("BUILDER_SWEEP_INTERVAL_SECONDS", 60, minimum=1)
BUILDER_LLM_TIMEOUT_SECONDS = env_float("BUILDER_LLM_TIMEOUT_SECONDS", 60.0)
BUILDER_LLM_MAX_ATTEMPTS = env_int("BUILDER_LLM_MAX_ATTEMPTS", 4, minimum=1)
BUILDER_LLM_BACKOFF_SECONDS = env_float("BUILDER_LLM_BACKOFF_SECONDS", 2.0)
BUILDER_LLM_MAX_WAIT_SECONDS = env_float("BUILDER_LLM_MAX_WAIT_SECONDS", 60.0)
BUILDER_LLM_MALFORMED_RETRIES = env_int("BUILDER_LLM_MALFORMED_RETRIES", 2, minimum=0)
BUILDER_LLM_MAX_OUTPUT_TOKENS = env_int("BUILDER_LLM_MAX_OUTPUT_TOKENS", 4096, minimum=256)
BUILDER_INPUT_TOKEN_BUDGET = env_int("BUILDER_INPUT_TOKEN_BUDGET", 24000, minimum=1000)
BUILDER_AUTO_ANALYZE = env_float("BUILDER_AUTO_ANALYZE", 0.0)
if not 0.0 <= BUILDER_AUTO_ANALYZE <= 1.0:
    raise ImproperlyConfigured(f"BUILDER_AUTO_ANALYZE must be a sampling rate between 0 and 1, got {BUILDER_AUTO_ANALYZE}")
BUILDER_DAILY_TOKEN_BUDGET = env_int("BUILDER_DAILY_TOKEN_BUDGET", 200_000, minimum=0)
# Test hook: make every job sleep this long while running (the worker-killed test needs a slow job).
BUILDER_JOB_SLEEP_SECONDS = env_float("BUILDER_JOB_SLEEP_SECONDS", 0.0)
CELERY_BEAT_SCHEDULE["builder-sweep-analyses"] = {
    "task": "builder.tasks.sweep_analyses",
    "schedule": float(BUILDER_SWEEP_INTERVAL_SECONDS),
}
