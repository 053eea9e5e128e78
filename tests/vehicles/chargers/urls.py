"""The site's URLs with the chargers' routes where they will be included (vehicles:chargers and
the api namespace), so these tests do not depend on when the includes land in the real URLconfs."""

from django.urls import include, path

import vehicles.urls
from chargescape import urls as site

_vehicles = [*vehicles.urls.urlpatterns, path("chargers/", include("vehicles.chargers.urls"))]
_api = [*site.api_v1, path("chargers/", include("vehicles.chargers.api_urls"))]

urlpatterns = [
    path("vehicles/", include((_vehicles, "vehicles"))),
    path("api/v1/", include((_api, "api"), namespace="api")),
    *[p for p in site.urlpatterns if getattr(p, "namespace", None) not in {"vehicles", "api"}],
]
