"""The project's settings plus a bench-only URLconf with a no-op JSON endpoint (the baseline of the
per-event benchmark). Only the benchmarks point DJANGO_SETTINGS_MODULE here; the product has no no-op."""

from framework_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

if CELERY_BROKER_URL.startswith("filesystem://"):  # noqa: F405
    # The embedded broker's worker looks for messages once a second by default, so 100 short analyses
    # would mostly wait for the next look; a short interval keeps the memory piece's wall time to the work.
    CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "polling_interval": 0.05}  # noqa: F405
