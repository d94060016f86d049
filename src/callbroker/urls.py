"""URL map. Carrier URLs are a stable interface: numbers are configured with them."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from callbroker.ops import health, metrics
from callbroker.ops import views as ops_views

admin.site.site_header = "callbroker"
admin.site.site_title = "callbroker admin"
admin.site.index_title = "Pay-per-call network"
admin.site.site_url = None  # no public site: hide "View site"

urlpatterns = [
    # by name: under the path of CALLBROKER_PUBLIC_URL ("/cb/admin/"), not the proxy's /admin/
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("carriers/", include("callbroker.carriers.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("bench/hello", ops_views.hello, name="bench-hello"),
]
