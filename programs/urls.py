from django.urls import path

from programs import views

app_name = "programs"
urlpatterns = [
    path("programs/", views.program_list, name="program-list"),
    path("earnings/", views.earnings, name="earnings"),
    path("plans/<uuid:vehicle_id>/", views.vehicle_plan, name="vehicle-plan"),
]
