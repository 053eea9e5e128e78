"""OCPP websocket routes, served by the OCPP process (chargescape.asgi.ocpp_application)."""

from django.urls import re_path

from vehicles.chargers.consumers import OcppConsumer

websocket_urlpatterns = [
    # ws(s)://<host>/ocpp/<charge_point_id>; the id alphabet matches models.CHARGE_POINT_ID_RE.
    re_path(r"^ocpp/(?P<charge_point_id>[A-Za-z0-9._-]{1,48})/?$", OcppConsumer.as_asgi()),
]
