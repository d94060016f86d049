"""URL map. Carrier URLs are a stable interface: numbers are configured with them."""

from django.contrib import admin
from django.urls import include, path

from callbroker.ops import views as ops_views

urlpatterns = [
    path("carriers/", include("callbroker.carriers.urls")),
    path("admin/", admin.site.urls),
    path("healthz", ops_views.healthz, name="healthz"),
    path("bench/hello", ops_views.hello, name="bench-hello"),
]
