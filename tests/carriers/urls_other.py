"""A URL map for ``test_carrier_handler``: the fallback path served by another view."""

from django.http import HttpResponse
from django.urls import path


def other(request):
    return HttpResponse("other map", content_type="text/plain")


urlpatterns = [path("carriers/twilio/fallback", other, name="other-fallback")]
