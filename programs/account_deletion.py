"""What an owner's account deletion releases above accounts (accounts.deletion.account_deleting).

Programs sits on top (programs → vehicles → accounts), so this is the one receiver that can reach
every holder of the owner's devices and money, through the services that own each change:
- vehicles: `vehicles.services.unlink_vehicle` for every car still linked (revokes our access at
  the automaker and wipes the tokens); home geofence, nickname, VIN and precise positions cleared;
- chargers: released (no owner, no usual car, no name) so the next resident can claim them with
  the code on the label;
- enrollments: ended through `programs.enrollments.unenroll` (audited per utility);
- payouts the provider has not been handed yet are returned to the owner's balance through the
  ledger's own transition; those already at the provider finish there (the money is the owner's).
Ledger transactions and entries are never touched. Every step is idempotent.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from accounts.deletion import account_deleting
from accounts.models import User
from programs import enrollments, payouts
from programs.models import Enrollment, Payout
from vehicles import services as vehicle_services
from vehicles.chargers.models import Charger
from vehicles.models import Vehicle, VehicleReading


@receiver(account_deleting, dispatch_uid="programs.account_deletion.release_owner")
def release_owner(sender: object, user: User, actor: Any, **kwargs: object) -> None:
    for vehicle in Vehicle.objects.filter(owner=user).exclude(
        link_state=Vehicle.LinkState.UNLINKED
    ):
        vehicle_services.unlink_vehicle(vehicle=vehicle)
    _forget_vehicle_details(user)
    _release_chargers(user)
    for enrollment in Enrollment.objects.filter(vehicle__owner=user).exclude(
        status=Enrollment.Status.ENDED
    ):
        enrollments.unenroll(enrollment=enrollment, actor=actor)
    for payout in Payout.objects.filter(
        owner=user, status=Payout.Status.PENDING, provider_reference=""
    ):
        payouts.apply_webhook(
            kind="payout.returned", payout_key=payout.key, reason="Account deleted"
        )


@transaction.atomic
def _forget_vehicle_details(user: User) -> None:
    Vehicle.objects.filter(owner=user).update(
        home_latitude=None, home_longitude=None, nickname="", vin="", updated_at=timezone.now()
    )
    VehicleReading.objects.filter(vehicle__owner=user).exclude(
        latitude=None, longitude=None
    ).update(latitude=None, longitude=None)


@transaction.atomic
def _release_chargers(user: User) -> None:
    Charger.objects.filter(owner=user).update(
        owner=None, usual_vehicle=None, name="", claimed_at=None, updated_at=timezone.now()
    )
