"""Each car's charging plan: one stored version per replan (DESIGN.md §7)."""

from django.db import models

from vehicles.models import Vehicle


class ChargingPlan(models.Model):
    """One version of a car's plan: power per 15-minute slot from `start`, with the SoC path and
    the reason for every slot (DESIGN.md §7). The newest version of a car is its plan."""

    vehicle = models.ForeignKey(Vehicle, on_delete=models.CASCADE, related_name="plans")
    version = models.PositiveIntegerField()
    trigger = models.CharField(max_length=32, help_text="What caused this replan.")
    start = models.DateTimeField(help_text="UTC start of slot 0.")
    slot_minutes = models.PositiveSmallIntegerField(default=15)
    power_kw = models.JSONField(help_text="kW per slot; positive charges, negative discharges.")
    soc = models.JSONField(help_text="SoC fraction at the start of each slot, and at the end.")
    reasons = models.JSONField(help_text="programs.scheduling.Reason code per slot.")
    import_price = models.JSONField(help_text="Price per kWh per slot the plan was made with.")
    departure_at = models.DateTimeField(null=True, blank=True)
    departure_slot = models.PositiveIntegerField()
    target_soc_pct = models.PositiveSmallIntegerField()
    min_soc_pct = models.PositiveSmallIntegerField()
    shortfall_kwh = models.FloatField(default=0)
    cost = models.FloatField(help_text="Energy cost of the plan in the tariff's currency.")
    why = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["vehicle", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["vehicle", "version"], name="programs_chargingplan_one_version"
            )
        ]

    def __str__(self) -> str:
        return f"Plan v{self.version} of {self.vehicle_id}"
