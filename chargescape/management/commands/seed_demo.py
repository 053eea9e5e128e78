"""Create the demo accounts (idempotent): an EV owner and an MFA-enabled program manager, and
the demo utility with its feeders, tariff and programs (programs.demo).

Run by `make run` on every start; prints the credentials. Refuses to run with DEBUG off unless
--force, since the demo passwords are public.
"""

from dataclasses import dataclass

from allauth.account.models import EmailAddress
from allauth.mfa.adapter import get_adapter as get_mfa_adapter
from allauth.mfa.models import Authenticator

# allauth's own TOTP/recovery-code constructors (internal modules; pinned allauth version).
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import User
from accounts.roles import make_program_manager
from programs.demo import seed_programs
from vehicles.chargers import services as charger_services
from vehicles.chargers.models import Charger

OWNER_EMAIL = "owner@chargescape.test"
OWNER_PASSWORD = "demo-owner-charge"  # noqa: S105 — printed demo credential, DEBUG only
MANAGER_EMAIL = "manager@chargescape.test"
MANAGER_PASSWORD = "demo-manager-grid"  # noqa: S105 — printed demo credential, DEBUG only
# The simulator names its chargers <prefix>-<version>-<n>: the demo owner's one OCPP 2.1 charger.
DEMO_CHARGER_PREFIX = "DEMO"
DEMO_CHARGER_ID = f"{DEMO_CHARGER_PREFIX}-21-0001"


@dataclass(frozen=True)
class DemoAccounts:
    owner: User
    manager: User
    totp_secret: str
    recovery_codes: list[str]


def _user(email: str, password: str, **fields: object) -> User:
    user, created = User.objects.get_or_create(email=email, defaults=fields)
    if created:
        user.set_password(password)
        user.save(update_fields=["password"])
    EmailAddress.objects.update_or_create(
        user=user, email=email, defaults={"verified": True, "primary": True}
    )
    return user


@transaction.atomic
def seed_demo_accounts() -> DemoAccounts:
    owner = _user(
        OWNER_EMAIL,
        OWNER_PASSWORD,
        first_name="Alex",
        service_zip="94107",
        time_zone="America/Los_Angeles",
    )
    manager = _user(
        MANAGER_EMAIL, MANAGER_PASSWORD, first_name="Morgan", time_zone="America/Los_Angeles"
    )
    make_program_manager(user=manager)
    totp = Authenticator.objects.filter(user=manager, type=Authenticator.Type.TOTP).first()
    if totp is None:
        totp = TOTP.activate(manager, generate_totp_secret()).instance
    secret = get_mfa_adapter().decrypt(totp.data["secret"])
    recovery = Authenticator.objects.filter(
        user=manager, type=Authenticator.Type.RECOVERY_CODES
    ).first()
    codes = (
        RecoveryCodes(recovery) if recovery else RecoveryCodes.activate(manager)
    ).get_unused_codes()
    if not Charger.objects.filter(charge_point_id=DEMO_CHARGER_ID).exists():
        provisioned = charger_services.provision_charger(
            charge_point_id=DEMO_CHARGER_ID,
            max_power_kw=11,
            v2g_capable=True,
            name="Garage charger",
        )
        charger_services.claim_charger(
            owner=owner, charge_point_id=DEMO_CHARGER_ID, pairing_code=provisioned.pairing_code
        )
    seed_programs(manager=manager)
    return DemoAccounts(owner=owner, manager=manager, totp_secret=secret, recovery_codes=codes)


class Command(BaseCommand):
    help = "Create the demo owner and program manager accounts (idempotent)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--force", action="store_true", help="seed even with DEBUG off")

    def handle(self, *args: object, force: bool = False, **options: object) -> None:
        if not settings.DEBUG and not force:
            raise CommandError("Demo accounts have public passwords: run with DEBUG on or --force.")
        accounts = seed_demo_accounts()
        self.stdout.write(
            "Demo accounts:\n"
            f"  EV owner         {OWNER_EMAIL} / {OWNER_PASSWORD}\n"
            f"  Program manager  {MANAGER_EMAIL} / {MANAGER_PASSWORD}\n"
            f"    authenticator app secret (TOTP): {accounts.totp_secret}\n"
            f"    or a recovery code: {', '.join(accounts.recovery_codes[:3])}\n"
        )
