"""WSGI entry point used by ``callbroker serve`` (gunicorn).

Two Django handlers share one URL configuration: carrier webhooks (``/carriers/…``) go through
``settings.CARRIER_MIDDLEWARE`` only (limits, CallSid log context, metrics), everything else (admin,
health, metrics) through the full ``settings.MIDDLEWARE``. The carrier views are CSRF-exempt and use no
session, user or message, so the answers are the same either way; the short stack is just cheaper on
the path that carries the load (docs/benchmarks.md). For the same reason the carrier handler keeps the
URL match of each fixed carrier path it has resolved (Django's resolver walks the patterns every time).
"""

import os

from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import setting_changed
from django.core.wsgi import get_wsgi_application
from django.urls import ResolverMatch

from callbroker.ops.logging import CARRIER_PATH_PREFIX

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callbroker.settings")
site = get_wsgi_application()  # sets Django up


class CarrierHandler(WSGIHandler):
    """A WSGI handler whose middleware chain is ``settings.CARRIER_MIDDLEWARE``.

    Its answers carry ``Content-Length`` (the full chain's ``CommonMiddleware`` sets it elsewhere):
    without it the server sends a TwiML answer chunked, in one more write.
    """

    def __init__(self) -> None:
        # Carrier path -> its URL match: at most one entry per parameterless pattern of the URL map.
        self._exact: dict[str, ResolverMatch] = {}
        super().__init__()

    def get_response(self, request):
        response = super().get_response(request)
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        return response

    def resolve_request(self, request):
        """The carrier URLs are fixed paths (no parameters): each one's match is worked out once and kept."""
        if hasattr(request, "urlconf"):  # a middleware chose another URL map: Django's way
            return super().resolve_request(request)
        path = request.path_info
        match = self._exact.get(path)
        if match is None:
            match = super().resolve_request(request)
            if not match.args and not match.kwargs and match.route == path.lstrip("/"):
                self._exact = {**self._exact, path: match}  # a new dict: no thread sees it half-made
            return match
        request.resolver_match = match
        return match

    def load_middleware(self, is_async: bool = False) -> None:
        from django.conf import settings

        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.CARRIER_MIDDLEWARE  # read once, here, at start-up
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


carriers = CarrierHandler()


def _forget_matches(*, setting: str, **kwargs) -> None:
    if setting == "ROOT_URLCONF":  # tests: the kept matches belong to the URL map they were made with
        carriers._exact = {}


setting_changed.connect(_forget_matches)


def application(environ, start_response):
    if environ.get("PATH_INFO", "").startswith(CARRIER_PATH_PREFIX):
        return carriers(environ, start_response)
    return site(environ, start_response)


# Load the ZIP table, the holiday calendars and the network before gunicorn forks its workers
# (--preload): one copy shared by all workers, and no worker pays the loading time on its first call.
from callbroker.core.geo import ZipDirectory  # noqa: E402
from callbroker.network.snapshot import preload  # noqa: E402

ZipDirectory.default()
preload()
