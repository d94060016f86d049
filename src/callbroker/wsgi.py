"""WSGI entry point used by ``callbroker serve`` (gunicorn)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callbroker.settings")
application = get_wsgi_application()
