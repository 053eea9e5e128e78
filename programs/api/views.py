"""The utility REST API: one view per operation (STYLE.md). Every read and write is limited to
the caller's utility (selectors); GETs need the `read` scope, writes `dispatch`; each client is
rate limited per scope; POSTs honour an `Idempotency-Key` header."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from programs import flexibility
from programs.api import selectors, services
from programs.api.auth import (
    ClientRateThrottle,
    HasScope,
    UtilityOAuth2Authentication,
    caller,
)
from programs.api.serializers import (
    DeliveryOutput,
    ErrorOutput,
    EventOutput,
    EventReportOutput,
    EventSummaryOutput,
    FeederOutput,
    FlexibilityOutput,
    ProgramOutput,
    event_output,
)
from programs.models import GridEvent, Program

# How far ahead a utility may schedule: beyond it the program's monthly and seasonal budgets
# mean nothing yet, and far-off dates are almost always a client bug.
SCHEDULE_AHEAD = timedelta(days=366)
ERRORS = {
    400: OpenApiResponse(ErrorOutput, description="Invalid input (messages per field)."),
    401: OpenApiResponse(ErrorOutput, description="Missing, invalid or expired token."),
    403: OpenApiResponse(ErrorOutput, description="The token lacks the needed scope."),
    404: OpenApiResponse(ErrorOutput, description="Not found (or another utility's)."),
    422: OpenApiResponse(ErrorOutput, description="Idempotency-Key reused for another request."),
    429: OpenApiResponse(ErrorOutput, description="Rate limited: see Retry-After."),
}
IDEMPOTENCY_KEY = OpenApiParameter(
    services.IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Any unique string (a UUID): a retry with the same key gets the first answer.",
)


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: ERRORS[code] for code in (401, 403, 429, *codes)}


class Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 200


class UtilityApi(APIView):
    """Base of every utility API view: OAuth 2 bearer token of the caller's client, the scope of
    the method (reads `read`, writes `dispatch`), its rate limit; POSTs run idempotently."""

    authentication_classes = [UtilityOAuth2Authentication]
    permission_classes = [HasScope]
    throttle_classes = [ClientRateThrottle]

    def run_idempotent(self, request: Request, handler: Any) -> Response:
        return services.idempotent(
            client=caller(request).client,
            key=request.headers.get(services.IDEMPOTENCY_HEADER),
            method=request.method,
            path=request.path,
            body=request.data,
            handler=handler,
        )


def paginated(request: Request, view: APIView, rows: Any, serialize: Any) -> Response:
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(rows, request, view=view)
    return paginator.get_paginated_response([serialize(row) for row in page])


# --- Programs and territory ---------------------------------------------------------------------


class ProgramListApi(UtilityApi):
    pagination_class = Pagination

    @extend_schema(responses={200: ProgramOutput(many=True), **errors(400)})
    def get(self, request: Request) -> Response:
        """The utility's programs with their rules and enrollment counts by status."""
        programs = selectors.list_programs(utility=caller(request).utility)
        return paginated(request, self, programs, lambda p: ProgramOutput(p).data)


class ProgramDetailApi(UtilityApi):
    @extend_schema(responses={200: ProgramOutput, **errors(404)})
    def get(self, request: Request, code: str) -> Response:
        program = selectors.get_program(utility=caller(request).utility, code=code)
        return Response(ProgramOutput(program).data)


class FeederListApi(UtilityApi):
    pagination_class = Pagination

    @extend_schema(responses={200: FeederOutput(many=True), **errors(400)})
    def get(self, request: Request) -> Response:
        """Feeders and regions of the territory, the scopes an event can target."""
        feeders = selectors.list_feeders(utility=caller(request).utility)
        return paginated(request, self, feeders, lambda f: FeederOutput(f).data)


def _flex_row(row: flexibility.FeederFlex) -> dict[str, Any]:
    return {
        "region": row.region,
        "feeder": row.feeder,
        "enrolled_cars": row.enrolled_cars,
        "enrolled_kw": round(row.enrolled_kw, 1),
        "v2g_cars": row.v2g_cars,
        "plugged_in_cars": row.plugged_in_cars,
        "charge_only_kw": [float(kw) for kw in row.curtail_kw],
        "v2g_export_kw": [float(kw) for kw in row.export_kw],
    }


class FlexibilityApi(UtilityApi):
    @extend_schema_serializer(component_name="FlexibilityFilter")
    class FilterSerializer(serializers.Serializer):
        program = serializers.CharField(required=False, max_length=40)
        region = serializers.CharField(required=False, max_length=60)
        feeder = serializers.CharField(required=False, max_length=60)

    @extend_schema(parameters=[FilterSerializer], responses={200: FlexibilityOutput, **errors(400)})
    def get(self, request: Request) -> Response:
        """kW the enrolled cars could give per 15-minute slot over the next 48 h: curtailed
        charging (charge-only) and V2G export, per feeder, per region and in total."""
        utility = caller(request).utility
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        program = None
        if "program" in data:
            program = Program.objects.filter(utility=utility, code=data["program"]).first()
            if program is None:
                raise serializers.ValidationError({"program": ["No such program."]})
        flex = flexibility.flexibility_for(utility_ids=[utility.pk], program=program)
        flex.feeders = [
            row
            for row in flex.feeders
            if data.get("region", row.region) == row.region
            and data.get("feeder", row.feeder) == row.feeder
        ]
        return Response(
            FlexibilityOutput(
                {
                    "generated_at": flex.now,
                    "slot_minutes": 15,
                    "slot_starts": flex.slot_starts,
                    "total": _flex_row(flex.total()),
                    "regions": [_flex_row(row) for row in flex.by_region()],
                    "feeders": [_flex_row(row) for row in flex.feeders],
                }
            ).data
        )


# --- Events -------------------------------------------------------------------------------------


class EventListCreateApi(UtilityApi):
    pagination_class = Pagination

    @extend_schema_serializer(component_name="EventInput")
    class InputSerializer(serializers.Serializer):
        program = serializers.CharField(max_length=40, help_text="The program's code.")
        kind = serializers.ChoiceField(choices=GridEvent.Kind.choices)
        starts_at = serializers.DateTimeField()
        ends_at = serializers.DateTimeField()
        target_kw = serializers.FloatField(
            min_value=0.1, max_value=1_000_000, help_text="Import cap, or export asked, in kW."
        )
        region = serializers.CharField(max_length=60, required=False, default="", allow_blank=True)
        feeder = serializers.CharField(
            max_length=60,
            required=False,
            allow_null=True,
            default=None,
            help_text="A feeder code; or give a region; neither: the whole program.",
        )
        external_id = serializers.CharField(
            max_length=120,
            required=False,
            default="",
            allow_blank=True,
            help_text="Your own reference for the event.",
        )
        dispatch = serializers.BooleanField(
            default=True, help_text="Tell owners now (false: a draft, dispatched later)."
        )

        def validate(self, data: dict) -> dict:
            utility = self.context["utility"]
            errors: dict[str, list[str]] = {}
            data["program"] = Program.objects.filter(utility=utility, code=data["program"]).first()
            if data["program"] is None:
                errors["program"] = ["No such program."]
            if data["feeder"]:
                data["feeder"] = (
                    selectors.list_feeders(utility=utility).filter(code=data["feeder"]).first()
                )
                if data["feeder"] is None:
                    errors["feeder"] = ["No such feeder."]
            now = timezone.now()
            for name in ("starts_at", "ends_at"):
                if not now - SCHEDULE_AHEAD <= data[name] <= now + SCHEDULE_AHEAD:
                    errors.setdefault(name, []).append("Give a time within a year from now.")
            if errors:
                raise serializers.ValidationError(errors)
            return data

    @extend_schema_serializer(component_name="EventFilter")
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=GridEvent.Status.choices, required=False)
        program = serializers.CharField(required=False, max_length=40)
        since = serializers.DateTimeField(required=False, help_text="Events ending after this.")
        until = serializers.DateTimeField(required=False, help_text="Events starting before.")

    @extend_schema(
        parameters=[FilterSerializer],
        responses={200: EventOutput(many=True), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        """The utility's grid events, newest first (from the admin, this API and OpenADR)."""
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        events = selectors.list_events(utility=caller(request).utility, **filters.validated_data)
        return paginated(request, self, events, event_output)

    @extend_schema(
        request=InputSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: EventOutput, **errors(400, 422)},
    )
    def post(self, request: Request) -> Response:
        """Create a grid event in one of the utility's programs, checked against its rules
        (events per month and season, duration, notice, enrolled kW), and dispatch it."""
        client = caller(request).client

        def handle() -> Response:
            data = self.InputSerializer(data=request.data, context={"utility": client.utility})
            data.is_valid(raise_exception=True)
            event = services.create_event(client=client, **data.validated_data)
            return Response(event_output(event), status=status.HTTP_201_CREATED)

        return self.run_idempotent(request, handle)


class EventDetailApi(UtilityApi):
    @extend_schema(responses={200: EventOutput, **errors(404)})
    def get(self, request: Request, event_id: int) -> Response:
        """One event: its status, window, target and participant counts."""
        event = selectors.get_event(utility=caller(request).utility, event_id=event_id)
        return Response(event_output(event))


class EventDispatchApi(UtilityApi):
    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: EventOutput, **errors(400, 404, 422)},
    )
    def post(self, request: Request, event_id: int) -> Response:
        """Dispatch a draft event (created with `dispatch: false`): owners are told."""
        client = caller(request).client
        event = selectors.get_event(utility=client.utility, event_id=event_id)

        def handle() -> Response:
            dispatched = services.dispatch_event(client=client, event=event)
            return Response(
                event_output(selectors.get_event(utility=client.utility, event_id=dispatched.pk))
            )

        return self.run_idempotent(request, handle)


class EventCancelApi(UtilityApi):
    @extend_schema_serializer(component_name="EventCancelInput")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)

    @extend_schema(
        request=InputSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: EventOutput, **errors(400, 404, 422)},
    )
    def post(self, request: Request, event_id: int) -> Response:
        """Call an event off. A running event's cars go back to their own plans at once; a
        cancelled event is answered as it is."""
        client = caller(request).client
        event = selectors.get_event(utility=client.utility, event_id=event_id)

        def handle() -> Response:
            data = self.InputSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            cancelled = services.cancel_event(client=client, event=event, **data.validated_data)
            return Response(
                event_output(selectors.get_event(utility=client.utility, event_id=cancelled.pk))
            )

        return self.run_idempotent(request, handle)


class EventDeliveryApi(UtilityApi):
    @extend_schema(responses={200: DeliveryOutput, **errors(404)})
    def get(self, request: Request, event_id: int) -> Response:
        """Live: per slot, what the participants' plans promise and what they are measured doing."""
        event = selectors.get_event(utility=caller(request).utility, event_id=event_id)
        delivery = flexibility.event_delivery(event=event)
        return Response(
            DeliveryOutput(
                {
                    "event": event.pk,
                    "status": event.status,
                    "requested_kw": event.target_kw,
                    "participants": event.participant_count,
                    "opted_out": event.opted_out_count,
                    "slots": [
                        {"start": start, "committed_kw": committed, "measured_kw": measured}
                        for start, committed, measured in zip(
                            delivery.slot_starts,
                            delivery.committed_kw,
                            delivery.delivered_kw,
                            strict=True,
                        )
                    ],
                }
            ).data
        )


# --- Reports ------------------------------------------------------------------------------------


class EventReportApi(UtilityApi):
    @extend_schema(responses={200: EventReportOutput, **errors(404)})
    def get(self, request: Request, event_id: int) -> Response:
        """One event's delivery per slot and in total, and its settlement."""
        event = selectors.get_event(utility=caller(request).utility, event_id=event_id)
        return Response(
            EventReportOutput(
                {
                    "event": event,
                    "totals": selectors.event_totals(event=event),
                    "slots": selectors.report_slots(event=event, now=timezone.now()),
                }
            ).data
        )


class EventReportListApi(UtilityApi):
    pagination_class = Pagination

    @extend_schema(
        parameters=[EventListCreateApi.FilterSerializer],
        responses={200: EventSummaryOutput(many=True), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        """Delivered kWh and settlement totals of each event, newest first."""
        filters = EventListCreateApi.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        events = selectors.list_events(utility=caller(request).utility, **filters.validated_data)
        return paginated(
            request,
            self,
            events,
            lambda event: (
                EventSummaryOutput(
                    {"event": event, "totals": selectors.event_totals(event=event)}
                ).data
            ),
        )
