"""What the vehicles app tells higher layers (programs subscribes; vehicles never imports it).

Sent after the reading that shows the change is committed. Keyword arguments: `vehicle_id`
(UUID) and `reading_id` (int).
"""

from django.dispatch import Signal

vehicle_plugged_in = Signal()
vehicle_unplugged = Signal()
vehicle_soc_changed = Signal()
preference_changed = Signal()  # vehicle_id only: departure, target, floor, pause or boost changed
# A command's effect never showed in telemetry and it will not be sent again; also `command_id`
# (int) and `code` (the diagnosis code). Programs replans the car.
command_not_confirmed = Signal()
