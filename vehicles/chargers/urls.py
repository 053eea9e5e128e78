"""Owner pages, included under /vehicles/chargers/ (namespace vehicles:chargers)."""

from django.urls import path

from vehicles.chargers import views

app_name = "chargers"
urlpatterns = [
    path("claim/", views.charger_claim, name="charger-claim"),
    path("<int:charger_id>/", views.charger_detail, name="charger-detail"),
]
