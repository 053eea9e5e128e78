"""Owner API routes, meant for /api/v1/chargers/ (include in chargescape.urls' api_v1 list)."""

from django.urls import path

from vehicles.chargers import api

urlpatterns = [
    path("", api.ChargerListApi.as_view(), name="charger-list"),
    path("claim", api.ChargerClaimApi.as_view(), name="charger-claim"),
    path("<int:charger_id>", api.ChargerDetailApi.as_view(), name="charger-detail"),
]
