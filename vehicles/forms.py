"""The preferences form: one row per weekday, big touch targets, times in the owner's zone."""

from datetime import datetime, time

from django import forms
from django.utils import timezone

from vehicles.models import ChargingPreference
from vehicles.preferences import WEEKDAYS
from vehicles.validation import preference_errors

PERCENT = {"min_value": 0, "max_value": 100}


class PreferenceForm(forms.Form):
    min_soc_pct = forms.IntegerField(
        label="Minimum charge (%)",
        help_text="Charged right away on plug-in, never used for grid events.",
        **PERCENT,
    )
    max_soc_pct = forms.IntegerField(label="Maximum charge (%)", **PERCENT)
    override_departure_at = forms.DateTimeField(
        label="One-off departure",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="For example tomorrow at 06:30, instead of the usual time.",
    )
    override_target_soc_pct = forms.IntegerField(
        label="Charge for the one-off (%)", required=False, **PERCENT
    )
    v2g_consent = forms.BooleanField(
        label="Allow vehicle-to-grid (sending energy back at peaks)", required=False
    )
    v2g_min_soc_pct = forms.IntegerField(label="Never discharge below (%)", **PERCENT)

    def __init__(self, *args, instance: ChargingPreference, **kwargs):  # type: ignore[no-untyped-def]
        initial = {
            "min_soc_pct": instance.min_soc_pct,
            "max_soc_pct": instance.max_soc_pct,
            "override_departure_at": instance.override_departure_at,
            "override_target_soc_pct": instance.override_target_soc_pct,
            "v2g_consent": instance.v2g_consent,
            "v2g_min_soc_pct": instance.v2g_min_soc_pct,
        }
        for day in range(len(WEEKDAYS)):
            entry = instance.weekly_schedule.get(str(day), {})
            initial[f"departure_{day}"] = entry.get("departure")
            initial[f"target_{day}"] = entry.get("target_soc_pct")
        super().__init__(*args, initial=initial, **kwargs)
        for day, name in enumerate(WEEKDAYS):
            self.fields[f"departure_{day}"] = forms.TimeField(
                label=f"{name} departure",
                required=False,
                widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            )
            self.fields[f"target_{day}"] = forms.IntegerField(
                label=f"{name} target (%)", required=False, **PERCENT
            )
        self.instance = instance

    def weekday_rows(self):  # type: ignore[no-untyped-def]
        return [
            (name, self[f"departure_{day}"], self[f"target_{day}"])
            for day, name in enumerate(WEEKDAYS)
        ]

    def clean(self):  # type: ignore[no-untyped-def]
        data = super().clean()
        if self.errors:
            return data
        schedule = {}
        for day, name in enumerate(WEEKDAYS):
            departure: time | None = data.get(f"departure_{day}")
            target = data.get(f"target_{day}")
            if (departure is None) != (target is None):
                self.add_error(
                    f"target_{day}", f"{name}: give both a time and a target, or neither."
                )
                continue
            if departure is not None:
                schedule[str(day)] = {
                    "departure": departure.strftime("%H:%M"),
                    "target_soc_pct": target,
                }
        if not schedule and not self.errors:
            # The model refuses an empty schedule (ChargingPreference.full_clean): say so here
            # instead of failing in the service.
            self.add_error(None, "Set a departure time and target for at least one day.")
        override_at: datetime | None = data.get("override_departure_at")
        if (override_at is None) != (data.get("override_target_soc_pct") is None):
            self.add_error("override_target_soc_pct", "Give both the one-off time and its charge.")
        elif override_at is not None and override_at <= timezone.now():
            self.add_error("override_departure_at", "Choose a time in the future.")
        data["weekly_schedule"] = schedule
        for field, messages in preference_errors(data).items():
            for message in messages:
                self.add_error(field, message)
        return data

    def preference_values(self) -> dict:
        data = self.cleaned_data
        values = {
            name: data[name]
            for name in (
                "min_soc_pct",
                "max_soc_pct",
                "override_departure_at",
                "override_target_soc_pct",
                "v2g_consent",
                "v2g_min_soc_pct",
                "weekly_schedule",
            )
        }
        # A running boost's target is not on this form: keep it within the new floor and
        # ceiling (as the Charge now button does), so the stored preference stays consistent.
        boost = self.instance.boost_to_soc_pct
        if boost is not None:
            values["boost_to_soc_pct"] = min(
                max(boost, values["min_soc_pct"]), values["max_soc_pct"]
            )
        return values


class PauseForm(forms.Form):
    """Pause smart charging until the end of a day (the car then charges as soon as plugged)."""

    until = forms.DateField(
        label="Pause smart charging until", widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean_until(self):  # type: ignore[no-untyped-def]
        until = self.cleaned_data["until"]
        today = timezone.localdate()
        if until < today:
            raise forms.ValidationError("Choose today or a later day.")
        if (until - today).days > 30:
            raise forms.ValidationError("Pause for 30 days at most; you can pause again later.")
        return until
