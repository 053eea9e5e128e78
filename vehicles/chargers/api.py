"""Owner API: the signed-in owner's chargers (I6: others' are 404), and claiming one."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chargescape import ratelimit
from vehicles.chargers import selectors, services
from vehicles.chargers.models import CHARGE_POINT_ID_RE
from vehicles.chargers.views import CLAIM_LIMIT, CLAIM_WINDOW_S


class ChargerOutput(serializers.Serializer):
    id = serializers.IntegerField(source="charger.pk")
    charge_point_id = serializers.CharField(source="charger.charge_point_id")
    name = serializers.CharField(source="charger.name")
    protocol = serializers.CharField(source="charger.protocol")
    v2g_capable = serializers.BooleanField(source="charger.v2g_capable")
    max_power_kw = serializers.DecimalField(
        source="charger.max_power_kw", max_digits=6, decimal_places=2
    )
    online = serializers.BooleanField()
    status = serializers.CharField()
    power_kw = serializers.DecimalField(max_digits=8, decimal_places=3, allow_null=True)
    session_energy_kwh = serializers.FloatField(allow_null=True)
    soc_pct = serializers.DecimalField(max_digits=5, decimal_places=1, allow_null=True)


class ChargerListApi(APIView):
    @extend_schema(responses=ChargerOutput(many=True))
    def get(self, request: Request) -> Response:
        cards = selectors.list_charger_cards_for_owner(owner=request.user)
        return Response(ChargerOutput(cards, many=True).data)


class ChargerDetailApi(APIView):
    @extend_schema(responses=ChargerOutput)
    def get(self, request: Request, charger_id: int) -> Response:
        card = selectors.get_owned_charger_card(owner=request.user, charger_id=charger_id)
        return Response(ChargerOutput(card).data)


class ChargerClaimApi(APIView):
    class InputSerializer(serializers.Serializer):
        charge_point_id = serializers.RegexField(CHARGE_POINT_ID_RE, max_length=48)
        pairing_code = serializers.CharField(max_length=20)

    @extend_schema(request=InputSerializer, responses={201: ChargerOutput})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if not ratelimit.allow(
            scope="charger-claim",
            ident=str(request.user.pk),
            limit=CLAIM_LIMIT,
            window_seconds=CLAIM_WINDOW_S,
        ):
            return Response({"detail": "Too many attempts."}, status=429)
        try:
            charger = services.claim_charger(owner=request.user, **data.validated_data)
        except services.ChargerError as error:
            raise ValidationError({"pairing_code": [str(error)]}) from None
        card = selectors.get_owned_charger_card(owner=request.user, charger_id=charger.pk)
        return Response(ChargerOutput(card).data, status=status.HTTP_201_CREATED)
