"""The Account page's notification settings: a push and an email switch per kind, quiet hours."""

from __future__ import annotations

from typing import Any

from django import forms

from accounts.notifications.kinds import SPECS, Kind
from accounts.notifications.models import NotificationPreference


class PreferenceForm(forms.Form):
    quiet_hours = forms.BooleanField(
        required=False,
        label="Quiet hours",
        help_text="No push notifications at night, except when your departure charge is at risk.",
    )
    quiet_start = forms.TimeField(label="From", widget=forms.TimeInput(attrs={"type": "time"}))
    quiet_end = forms.TimeField(label="Until", widget=forms.TimeInput(attrs={"type": "time"}))

    def __init__(self, *args: Any, preference: NotificationPreference, **kwargs: Any) -> None:
        initial = {
            "quiet_hours": preference.quiet_hours,
            "quiet_start": preference.quiet_start,
            "quiet_end": preference.quiet_end,
        }
        for kind in SPECS:
            for channel in ("push", "email"):
                initial[f"{kind}__{channel}"] = preference.wants(kind, channel)
        super().__init__(*args, initial=initial, **kwargs)
        for kind in SPECS:
            for channel in ("push", "email"):
                self.fields[f"{kind}__{channel}"] = forms.BooleanField(
                    required=False, label=f"{Kind(kind).label}: {channel}"
                )

    def rows(self) -> list[dict[str, Any]]:
        """One table row per kind: its label, description and the two switches."""
        return [
            {
                "kind": kind,
                "label": Kind(kind).label,
                "description": spec.description,
                "urgent": spec.urgent,
                "push": self[f"{kind}__push"],
                "email": self[f"{kind}__email"],
            }
            for kind, spec in SPECS.items()
        ]

    def channels(self) -> dict[str, dict[str, bool]]:
        data = self.cleaned_data
        return {
            kind: {"push": data[f"{kind}__push"], "email": data[f"{kind}__email"]} for kind in SPECS
        }
