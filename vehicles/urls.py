from django.urls import include, path

from vehicles import views

app_name = "vehicles"
urlpatterns = [
    path("", views.vehicle_list, name="vehicle-list"),
    path("link/", views.link_brands, name="link-brands"),
    path("link/start/", views.link_start, name="link-start"),
    path("link/callback/", views.link_callback, name="link-callback"),
    path("webhooks/<slug:provider>/", views.provider_webhook, name="provider-webhook"),
    path("chargers/", include("vehicles.chargers.urls")),
    path("<uuid:vehicle_id>/", views.vehicle_detail, name="vehicle-detail"),
    path("<uuid:vehicle_id>/activity/", views.vehicle_activity, name="vehicle-activity"),
    path("<uuid:vehicle_id>/unlink/", views.vehicle_unlink, name="vehicle-unlink"),
    path("<uuid:vehicle_id>/home/", views.vehicle_set_home, name="vehicle-set-home"),
    path("<uuid:vehicle_id>/action/", views.vehicle_quick_action, name="vehicle-action"),
]
