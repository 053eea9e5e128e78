from django.urls import path

from programs import earnings_views, views

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
    path("earnings/", earnings_views.earnings_page, name="earnings"),
    path("earnings/cash-out/", earnings_views.cash_out, name="earnings-cash-out"),
    path("earnings/ledger.csv", earnings_views.ledger_csv, name="earnings-csv"),
    path(
        "earnings/statements/<str:month>/", earnings_views.statement_page, name="statement-detail"
    ),
    path("webhooks/payouts/", views.payout_webhook, name="payout-webhook"),
    path("plans/<uuid:vehicle_id>/", views.vehicle_plan, name="vehicle-plan"),
]
