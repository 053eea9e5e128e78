from django.urls import path

from vehicles.consumers import OwnerLiveConsumer

websocket_urlpatterns = [
    path("ws/live/", OwnerLiveConsumer.as_asgi()),
]
