"""What the charger side tells the rest of the platform (DESIGN.md §3: signals, never imports).

Sent by vehicles.chargers.services after the transaction commits, with the charger as `sender`'s
instance argument; nothing here knows who listens. Today vehicles.receivers turns meter values
into live news of the paired car on the owner's pages. Planning still replans from the car's own
telemetry (plug-in, unplug, SoC); session and 2.1 charging-needs signals have no listener yet.
"""

from django.dispatch import Signal

# charger=Charger, session=ChargingSession
charger_session_started = Signal()
# charger=Charger, session=ChargingSession
charger_session_ended = Signal()
# charger=Charger, session=ChargingSession | None, reading=MeterValue
charger_meter_values = Signal()
# charger=Charger, session=ChargingSession, needs=dict (2.1 chargingNeeds as sent, camelCase)
charger_ev_charging_needs = Signal()
# charger=Charger, online=bool
charger_presence_changed = Signal()
# charger=Charger, connector=Connector
charger_status_changed = Signal()
