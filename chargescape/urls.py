"""URL map of the web process. The OCPP process serves only chargescape.asgi's OCPP routes."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from chargescape import views

api_v1 = [
    path("", include("accounts.api_urls")),
    path("", include("vehicles.api_urls")),
    path("chargers/", include("vehicles.chargers.api_urls")),
]

# allauth renders its rate-limit answers through this (a page with Retry-After).
handler429 = views.too_many_requests

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("manifest.webmanifest", views.manifest, name="manifest"),
    path("sw.js", views.service_worker, name="service-worker"),
    path("offline/", views.offline, name="offline"),
    path("favicon.ico", views.favicon),
    path("accounts/", include("allauth.urls")),
    path("account/", include("accounts.urls")),
    path("vehicles/", include("vehicles.urls")),
    path("", include("programs.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/utility/", include("programs.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", views.SwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
