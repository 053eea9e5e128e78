"""URL map of the utility API, mounted at /api/utility/ (chargescape.urls): the versioned
endpoints under v1/, the OAuth token endpoint, and its own OpenAPI schema and docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from chargescape.views import SwaggerView
from programs.api import auth, schema, views

app_name = "utility-api"

v1 = [
    path("oauth/token", auth.TokenApi.as_view(), name="token"),
    path("programs", views.ProgramListApi.as_view(), name="program-list"),
    path("programs/<slug:code>", views.ProgramDetailApi.as_view(), name="program-detail"),
    path("feeders", views.FeederListApi.as_view(), name="feeder-list"),
    path("flexibility", views.FlexibilityApi.as_view(), name="flexibility"),
    path("events", views.EventListCreateApi.as_view(), name="event-list"),
    path("events/<int:event_id>", views.EventDetailApi.as_view(), name="event-detail"),
    path("events/<int:event_id>/dispatch", views.EventDispatchApi.as_view(), name="event-dispatch"),
    path("events/<int:event_id>/cancel", views.EventCancelApi.as_view(), name="event-cancel"),
    path("events/<int:event_id>/delivery", views.EventDeliveryApi.as_view(), name="event-delivery"),
    path("events/<int:event_id>/report", views.EventReportApi.as_view(), name="event-report"),
    path("reports/events", views.EventReportListApi.as_view(), name="report-list"),
]

urlpatterns = [
    path("v1/", include(v1)),
    path(
        "schema/",
        SpectacularAPIView.as_view(custom_settings=schema.SETTINGS),
        name="schema",
    ),
    path("docs/", SwaggerView.as_view(url_name="utility-api:schema"), name="docs"),
]
