from django.urls import path

from vehicles import api

urlpatterns = [
    path("vehicles", api.VehicleListApi.as_view(), name="vehicle-list"),
    path("vehicles/link", api.LinkStartApi.as_view(), name="vehicle-link-start"),
    path("vehicles/<uuid:vehicle_id>", api.VehicleDetailApi.as_view(), name="vehicle-detail"),
    path(
        "vehicles/<uuid:vehicle_id>/readings",
        api.VehicleReadingListApi.as_view(),
        name="vehicle-readings",
    ),
    path(
        "vehicles/<uuid:vehicle_id>/preferences",
        api.PreferenceApi.as_view(),
        name="vehicle-preferences",
    ),
    path(
        "vehicles/<uuid:vehicle_id>/unlink", api.VehicleUnlinkApi.as_view(), name="vehicle-unlink"
    ),
]
