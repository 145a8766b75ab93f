"""The production WSGI entry point (framework_site/wsgi.py), with the bench settings (the no-op endpoint)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from framework_site.wsgi import application  # noqa: E402, F401
