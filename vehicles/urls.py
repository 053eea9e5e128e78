from django.urls import path

from vehicles import views

app_name = "vehicles"
urlpatterns = [
    path("", views.vehicle_list, name="vehicle-list"),
]
