"""Owner REST API for vehicles: list, detail, readings, preferences, link start, unlink.

Every queryset is the caller's own: other owners' vehicles answer 404 (selectors).
"""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from vehicles import oem, selectors, services
from vehicles.models import ChargingPreference, Vehicle, VehicleReading
from vehicles.preferences import next_departure
from vehicles.validation import preference_errors
from vehicles.views import start_link


class ReadingOutput(serializers.ModelSerializer):
    stale = serializers.SerializerMethodField()

    class Meta:
        model = VehicleReading
        fields = [
            "recorded_at",
            "source",
            "soc_pct",
            "range_km",
            "plugged_in",
            "charging_state",
            "power_kw",
            "charge_limit_pct",
            "at_home",
            "stale",
        ]

    def get_stale(self, reading: VehicleReading) -> bool:
        return reading.is_stale()


class VehicleOutput(serializers.ModelSerializer):
    vin = serializers.CharField(source="masked_vin")
    name = serializers.CharField(source="display_name")
    latest = ReadingOutput(allow_null=True)

    class Meta:
        model = Vehicle
        fields = [
            "id",
            "name",
            "make",
            "model",
            "year",
            "vin",
            "battery_kwh",
            "max_ac_kw",
            "v2g_capable",
            "link_state",
            "latest",
        ]


class VehicleListApi(APIView):
    @extend_schema(responses=VehicleOutput(many=True))
    def get(self, request: Request) -> Response:
        vehicles = selectors.list_vehicles_for_owner(owner=request.user)
        return Response(VehicleOutput(vehicles, many=True).data)


class VehicleDetailApi(APIView):
    @extend_schema(responses=VehicleOutput)
    def get(self, request: Request, vehicle_id: str) -> Response:
        vehicle = selectors.get_owned_vehicle(owner=request.user, vehicle_id=vehicle_id)
        return Response(VehicleOutput(vehicle).data)


class VehicleReadingListApi(APIView):
    @extend_schema_serializer(component_name="ReadingFilter")
    class FilterSerializer(serializers.Serializer):
        hours = serializers.IntegerField(min_value=1, max_value=24 * 30, default=24)

    @extend_schema(parameters=[FilterSerializer], responses=ReadingOutput(many=True))
    def get(self, request: Request, vehicle_id: str) -> Response:
        vehicle = selectors.get_owned_vehicle(owner=request.user, vehicle_id=vehicle_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        since = timezone.now() - timedelta(hours=filters.validated_data["hours"])
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(
            selectors.readings_since(vehicle=vehicle, since=since), request, view=self
        )
        return paginator.get_paginated_response(ReadingOutput(page, many=True).data)


class WeekdaySerializer(serializers.Serializer):
    weekday = serializers.IntegerField(min_value=0, max_value=6, help_text="0 = Monday")
    departure = serializers.TimeField(format="%H:%M", help_text="Local time, HH:MM")
    target_soc_pct = serializers.IntegerField(min_value=0, max_value=100)


class PreferenceOutput(serializers.ModelSerializer):
    weekly_schedule = serializers.SerializerMethodField()
    next_departure = serializers.SerializerMethodField()

    class Meta:
        model = ChargingPreference
        fields = [
            "weekly_schedule",
            "override_departure_at",
            "override_target_soc_pct",
            "min_soc_pct",
            "max_soc_pct",
            "pause_until",
            "boost_until",
            "boost_to_soc_pct",
            "v2g_consent",
            "v2g_min_soc_pct",
            "next_departure",
        ]

    @extend_schema(responses=WeekdaySerializer(many=True))
    def get_weekly_schedule(self, preference: ChargingPreference) -> list[dict]:
        return [
            {"weekday": int(day), **entry}
            for day, entry in sorted(preference.weekly_schedule.items())
        ]

    def get_next_departure(self, preference: ChargingPreference) -> dict | None:
        departure = next_departure(
            schedule=preference.weekly_schedule,
            override_at=preference.override_departure_at,
            override_target_soc_pct=preference.override_target_soc_pct,
            time_zone=preference.vehicle.owner.time_zone,
            now=timezone.now(),
        )
        if departure is None:
            return None
        return {"at": departure.at.isoformat(), "target_soc_pct": departure.target_soc_pct}


class PreferenceApi(APIView):
    @extend_schema_serializer(component_name="PreferenceInput")
    class InputSerializer(serializers.Serializer):
        # At least one day: the model refuses an empty schedule (ChargingPreference.full_clean).
        weekly_schedule = WeekdaySerializer(many=True, max_length=7, allow_empty=False)
        # PUT replaces the whole preference: a field left out is cleared (default None), as
        # v2g_consent falls back to its default, so the stored row is exactly what was
        # validated together — never a new ceiling below an older one-off or boost target.
        override_departure_at = serializers.DateTimeField(allow_null=True, default=None)
        override_target_soc_pct = serializers.IntegerField(
            min_value=0, max_value=100, allow_null=True, default=None
        )
        min_soc_pct = serializers.IntegerField(min_value=0, max_value=100)
        max_soc_pct = serializers.IntegerField(min_value=1, max_value=100)
        pause_until = serializers.DateTimeField(allow_null=True, default=None)
        boost_until = serializers.DateTimeField(allow_null=True, default=None)
        boost_to_soc_pct = serializers.IntegerField(
            min_value=0, max_value=100, allow_null=True, default=None
        )
        v2g_consent = serializers.BooleanField(default=False)
        v2g_min_soc_pct = serializers.IntegerField(min_value=0, max_value=100, default=40)

        # How far ahead owners may set times, as on the pages: a one-off departure within a
        # year; a boost ends by itself within 12 h (vehicles.views.BOOST_MAX_HOURS); a pause
        # lasts at most 30 days to the end of a day. Five minutes of slack for clients' clocks.
        OVERRIDE_AHEAD = timedelta(days=366)
        BOOST_AHEAD = timedelta(hours=12, minutes=5)
        PAUSE_AHEAD = timedelta(days=31, minutes=5)

        def validate_boost_until(self, value):  # type: ignore[no-untyped-def]
            if value is not None and value > timezone.now() + self.BOOST_AHEAD:
                raise serializers.ValidationError("A boost lasts 12 hours at most.")
            return value

        def validate_pause_until(self, value):  # type: ignore[no-untyped-def]
            if value is not None and value > timezone.now() + self.PAUSE_AHEAD:
                raise serializers.ValidationError("Pause for 30 days at most.")
            return value

        def validate(self, data: dict) -> dict:
            days = [entry["weekday"] for entry in data["weekly_schedule"]]
            if len(days) != len(set(days)):
                raise serializers.ValidationError({"weekly_schedule": ["Each weekday once."]})
            data["weekly_schedule"] = {
                str(entry["weekday"]): {
                    "departure": entry["departure"].strftime("%H:%M"),
                    "target_soc_pct": entry["target_soc_pct"],
                }
                for entry in data["weekly_schedule"]
            }
            errors = preference_errors(data)
            for day in range(7):  # the form names weekday fields target_<day>
                if f"target_{day}" in errors:
                    errors.setdefault("weekly_schedule", []).extend(errors.pop(f"target_{day}"))
            if (data.get("override_departure_at") is None) != (
                data.get("override_target_soc_pct") is None
            ):
                errors.setdefault("override_target_soc_pct", []).append(
                    "Give both the one-off time and its charge."
                )
            override_at, now = data.get("override_departure_at"), timezone.now()
            if override_at is not None and override_at <= now:
                errors.setdefault("override_departure_at", []).append(
                    "Choose a time in the future."
                )
            elif override_at is not None and override_at > now + self.OVERRIDE_AHEAD:
                errors.setdefault("override_departure_at", []).append(
                    "Choose a time within a year from now."
                )
            if errors:
                raise serializers.ValidationError(errors)
            return data

    @extend_schema(responses=PreferenceOutput)
    def get(self, request: Request, vehicle_id: str) -> Response:
        vehicle = selectors.get_owned_vehicle(owner=request.user, vehicle_id=vehicle_id)
        return Response(PreferenceOutput(selectors.preference_for(vehicle=vehicle)).data)

    @extend_schema(request=InputSerializer, responses=PreferenceOutput)
    def put(self, request: Request, vehicle_id: str) -> Response:
        vehicle = selectors.get_owned_vehicle(owner=request.user, vehicle_id=vehicle_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        preference = services.update_preference(vehicle=vehicle, **data.validated_data)
        return Response(PreferenceOutput(preference).data)


class LinkStartApi(APIView):
    @extend_schema_serializer(component_name="LinkStartInput")
    class InputSerializer(serializers.Serializer):
        provider = serializers.ChoiceField(choices=[])
        brand = serializers.CharField(required=False, max_length=40)

        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            self.fields["provider"].choices = list(oem.providers())

    @extend_schema(
        request=InputSerializer,
        responses=inline_serializer("LinkStart", {"authorize_url": serializers.URLField()}),
    )
    def post(self, request: Request) -> Response:
        """Begin linking: open `authorize_url`; the automaker then returns to the callback page."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        url = start_link(
            request,
            provider=data.validated_data["provider"],
            brand=data.validated_data.get("brand"),
        )
        return Response({"authorize_url": url}, status=status.HTTP_201_CREATED)


class VehicleUnlinkApi(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, vehicle_id: str) -> Response:
        vehicle = selectors.get_owned_vehicle(owner=request.user, vehicle_id=vehicle_id)
        services.unlink_vehicle(vehicle=vehicle)
        return Response(status=status.HTTP_204_NO_CONTENT)
