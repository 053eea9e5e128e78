from django.urls import path

from accounts import views
from accounts.notifications import views as notification_views

app_name = "accounts"
urlpatterns = [
    path("", views.account, name="account"),
    path("delete/", views.delete_account, name="account-delete"),
    path("notifications/", notification_views.notification_list, name="notification-list"),
    path(
        "notifications/read/",
        notification_views.notification_read_all,
        name="notification-read-all",
    ),
    path(
        "notifications/settings/",
        notification_views.preferences,
        name="notification-preferences",
    ),
    path(
        "notifications/<int:notification_id>/",
        notification_views.notification_open,
        name="notification-open",
    ),
    path(
        "notifications/<int:notification_id>/read/",
        notification_views.notification_read,
        name="notification-read",
    ),
    path("push/key/", notification_views.push_key, name="push-key"),
    path("push/subscribe/", notification_views.push_subscribe, name="push-subscribe"),
    path("push/unsubscribe/", notification_views.push_unsubscribe, name="push-unsubscribe"),
]
