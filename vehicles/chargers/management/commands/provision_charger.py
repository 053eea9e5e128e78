"""manage.py provision_charger <charge_point_id>: what an installer configures, shown once."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from vehicles.chargers import services


class Command(BaseCommand):
    help = "Create a charger with a fresh authorization key and pairing code (shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("charge_point_id")
        parser.add_argument("--max-power-kw", type=float, default=11.0)
        parser.add_argument("--v2g", action="store_true", help="The charger can discharge.")
        parser.add_argument("--name", default="")

    def handle(self, *args: object, **options: object) -> None:
        try:
            provisioned = services.provision_charger(
                charge_point_id=options["charge_point_id"],
                max_power_kw=options["max_power_kw"],
                v2g_capable=options["v2g"],
                name=options["name"],
            )
        except (services.ChargerError, ValidationError) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"charge point id:    {provisioned.charger.charge_point_id}\n"
            f"authorization key:  {provisioned.authorization_key}\n"
            f"pairing code:       {provisioned.pairing_code}\n"
            "Shown once: only hashes are stored.\n"
        )
