"""Websocket routes of both ASGI processes, collected from the apps that own them."""

from django.urls import URLPattern

# Owner live updates (vehicle state, plans, notifications) — filled by the vehicles and
# notifications issues. Chargers' OCPP sockets — filled by the OCPP issue.
owner_websocket_urlpatterns: list[URLPattern] = []
ocpp_websocket_urlpatterns: list[URLPattern] = []
