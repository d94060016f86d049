"""Liveness and a hello-world view (the benchmark's ceiling)."""

from django.http import HttpResponse


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


def hello(request):
    return HttpResponse("Hello, world", content_type="text/plain")
