"""The WSGI application gunicorn and granian serve.

Once Django and the URLconf (with the API) are loaded, `gc.freeze()` takes those long-lived objects out of
the collector's sight: an ingestion batch allocates tens of thousands of objects, which set off a full
collection every few requests, and each one walked the ~250,000 objects of the loaded app again (about
half the time of a batch).
"""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "framework_site.settings")
application = get_wsgi_application()

from django.urls import get_resolver  # noqa: E402 - needs the settings configured above

get_resolver().url_patterns  # import the URLconf now rather than on the first request, so it is frozen too
gc.freeze()
