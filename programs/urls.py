from django.urls import path

from programs import views

app_name = "programs"
urlpatterns = [
    path("programs/", views.program_list, name="program-list"),
    path("programs/join/<slug:code>/", views.join, name="program-join"),
    path("programs/<slug:code>/", views.program_detail, name="program-detail"),
    path(
        "programs/enrollments/<int:enrollment_id>/leave/",
        views.unenroll,
        name="enrollment-leave",
    ),
    path(
        "programs/events/<int:participation_id>/opt-out/",
        views.opt_out,
        name="participation-opt-out",
    ),
    path("earnings/", views.earnings, name="earnings"),
    path("webhooks/payouts/", views.payout_webhook, name="payout-webhook"),
    path("plans/<uuid:vehicle_id>/", views.vehicle_plan, name="vehicle-plan"),
]
