"""Owner notifications: stored first (the notification centre), then delivered per channel —
live over the owner's websocket, web push (VAPID), email — honouring the owner's per-kind and
per-channel preferences, quiet hours and a digest instead of a flood.

Vehicles and programs call `accounts.notifications.services.notify` / `notify_many` (one line at
the point where the thing happened); everything else here is delivery. See docs/notifications.md.
"""
