"""Output shapes of the utility API (inputs are nested in their views, STYLE.md)."""

from rest_framework import serializers

from programs.models import Feeder, GridEvent, Program


class EnrollmentCountsOutput(serializers.Serializer):
    active = serializers.IntegerField(source="active_count")
    pending = serializers.IntegerField(source="pending_count")
    suspended = serializers.IntegerField(source="suspended_count")
    ended = serializers.IntegerField(source="ended_count")


class ProgramOutput(serializers.ModelSerializer):
    enrollments = EnrollmentCountsOutput(source="*")

    class Meta:
        model = Program
        fields = [
            "code",
            "name",
            "kind",
            "status",
            "summary",
            "max_events_per_month",
            "max_events_per_season",
            "max_event_minutes",
            "notice_minutes",
            "opt_outs_per_month",
            "requires_v2g",
            "enrollments",
        ]


class FeederOutput(serializers.ModelSerializer):
    class Meta:
        model = Feeder
        fields = ["code", "region", "zip_codes", "max_import_kw"]


class EventOutput(serializers.ModelSerializer):
    program = serializers.SlugRelatedField(slug_field="code", read_only=True)
    feeder = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    participants = serializers.IntegerField(source="participant_count", read_only=True)
    opted_out = serializers.IntegerField(source="opted_out_count", read_only=True)

    class Meta:
        model = GridEvent
        fields = [
            "id",
            "program",
            "kind",
            "status",
            "starts_at",
            "ends_at",
            "target_kw",
            "region",
            "feeder",
            "source",
            "external_id",
            "notified_at",
            "cancel_reason",
            "participants",
            "opted_out",
            "created_at",
            "updated_at",
        ]


def event_output(event: GridEvent) -> dict:
    """An event as answered, counts included even on a freshly created row."""
    if not hasattr(event, "participant_count"):
        event.participant_count = event.participations.count()
        event.opted_out_count = event.participations.filter(
            opted_out_at__isnull=False, keep_soc_pct=None
        ).count()
    return EventOutput(event).data


class LiveSlotOutput(serializers.Serializer):
    start = serializers.DateTimeField()
    committed_kw = serializers.FloatField(
        help_text="What the participants' plans promise: import for a cap, export for a request."
    )
    measured_kw = serializers.FloatField(
        allow_null=True,
        help_text="Measured import (cap) or export (request) of the participants; null before "
        "the slot starts.",
    )


class DeliveryOutput(serializers.Serializer):
    event = serializers.IntegerField()
    status = serializers.CharField()
    requested_kw = serializers.FloatField()
    participants = serializers.IntegerField()
    opted_out = serializers.IntegerField()
    slots = LiveSlotOutput(many=True)


class ReportSlotOutput(serializers.Serializer):
    start = serializers.DateTimeField()
    baseline_kw = serializers.FloatField(help_text="What the participants would have drawn.")
    measured_kw = serializers.FloatField(
        allow_null=True, help_text="What they drew (negative: exported); null without data."
    )
    delivered_kw = serializers.FloatField(
        allow_null=True, help_text="Baseline minus measured, per car, summed; null without data."
    )


class TotalsOutput(serializers.Serializer):
    delivered_kwh = serializers.FloatField()
    missing_slots = serializers.IntegerField(help_text="Participant slots without a measurement.")
    settled = serializers.BooleanField()
    settled_at = serializers.DateTimeField(allow_null=True)
    incentives_cents = serializers.IntegerField(help_text="Owed by the utility to its owners.")
    opt_out_fees_cents = serializers.IntegerField()


class EventSummaryOutput(serializers.Serializer):
    event = EventOutput()
    totals = TotalsOutput()


class EventReportOutput(EventSummaryOutput):
    slots = ReportSlotOutput(many=True)


class FlexRowOutput(serializers.Serializer):
    region = serializers.CharField()
    feeder = serializers.CharField(help_text="Blank on a region's subtotal and the total.")
    enrolled_cars = serializers.IntegerField()
    enrolled_kw = serializers.FloatField()
    v2g_cars = serializers.IntegerField()
    plugged_in_cars = serializers.IntegerField()
    charge_only_kw = serializers.ListField(
        child=serializers.FloatField(), help_text="kW that could be curtailed, per slot."
    )
    v2g_export_kw = serializers.ListField(
        child=serializers.FloatField(), help_text="kW V2G cars could export, per slot."
    )


class FlexibilityOutput(serializers.Serializer):
    generated_at = serializers.DateTimeField()
    slot_minutes = serializers.IntegerField()
    slot_starts = serializers.ListField(child=serializers.DateTimeField())
    total = FlexRowOutput()
    regions = FlexRowOutput(many=True)
    feeders = FlexRowOutput(many=True)


class ErrorBody(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.JSONField(), required=False, help_text="400 only: messages per field."
    )


class ErrorOutput(serializers.Serializer):
    error = ErrorBody()
