"""Websocket routes of both ASGI processes, collected from the apps that own them."""

from django.urls import URLPattern

from vehicles.routing import websocket_urlpatterns as vehicle_websocket_urlpatterns

# Owner live updates (vehicle state; plans and notifications join later).
owner_websocket_urlpatterns: list[URLPattern] = [*vehicle_websocket_urlpatterns]
# Chargers' OCPP sockets — filled by the OCPP issue.
ocpp_websocket_urlpatterns: list[URLPattern] = []
