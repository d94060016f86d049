"""A hello-world view (the benchmark's ceiling). Health endpoints: ``callbroker.ops.health``."""

from django.http import HttpResponse

from callbroker.ops.health import healthz  # noqa: F401 - kept importable from here


def hello(request):
    return HttpResponse("Hello, world", content_type="text/plain")
