"""Websocket routes of both ASGI processes, collected from the apps that own them."""

from django.urls import URLPattern

from vehicles.chargers.routing import websocket_urlpatterns as charger_websocket_urlpatterns
from vehicles.routing import websocket_urlpatterns as vehicle_websocket_urlpatterns

# Owner live updates (vehicle state; plans and notifications join later).
owner_websocket_urlpatterns: list[URLPattern] = [*vehicle_websocket_urlpatterns]
# Chargers' OCPP sockets at /ocpp/<charge_point_id>, served by the OCPP process only.
ocpp_websocket_urlpatterns: list[URLPattern] = [*charger_websocket_urlpatterns]
