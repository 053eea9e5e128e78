"""Owner API for the signed-in user's own profile."""

import zoneinfo

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.models import User


class ProfileOutput(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["email", "time_zone", "service_zip"]
        read_only_fields = fields


class ProfileApi(APIView):
    @extend_schema_serializer(component_name="ProfileInput")
    class InputSerializer(serializers.Serializer):
        time_zone = serializers.ChoiceField(choices=sorted(zoneinfo.available_timezones()))
        service_zip = serializers.RegexField(
            r"^\d{5}(-\d{4})?$",
            allow_blank=True,
            error_messages={"invalid": "Enter a US ZIP code like 94107."},
        )

    @extend_schema(responses=ProfileOutput)
    def get(self, request: Request) -> Response:
        return Response(ProfileOutput(request.user).data)

    @extend_schema(request=InputSerializer, responses=ProfileOutput)
    def put(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.update_profile(user=request.user, **data.validated_data)
        return Response(ProfileOutput(user).data)
