from django.urls import path

from accounts import api

urlpatterns = [
    path("me", api.ProfileApi.as_view(), name="profile"),
]
