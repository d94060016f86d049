"""WSGI entry point used by ``callbroker serve`` (gunicorn)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callbroker.settings")
application = get_wsgi_application()

# Load the ZIP table before gunicorn forks its workers (--preload): one copy shared by all workers,
# and no worker pays the loading time on its first call.
from callbroker.core.geo import ZipDirectory  # noqa: E402

ZipDirectory.default()
