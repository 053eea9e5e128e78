"""manage.py simulate_chargers --count N --ocpp 1.6|2.0.1|2.1 --url ws://127.0.0.1:8001/ocpp

Runs N simulated chargers (vehicles.sim.chargers) in real time against an OCPP endpoint until
Ctrl-C. Each gets the id <prefix>-<version>-<n>; it is provisioned on first use, and given a fresh
authorization key on every start (the simulator must know its key, which is stored only hashed).
"""

import asyncio
import contextlib

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from vehicles.chargers import services
from vehicles.chargers.models import Charger
from vehicles.sim.chargers import Battery, SimulatedCharger


class Command(BaseCommand):
    help = "Run simulated OCPP chargers (with a car plugged in) against the OCPP endpoint."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=1)
        parser.add_argument("--ocpp", choices=["1.6", "2.0.1", "2.1"], default="2.1")
        parser.add_argument("--url", default=f"ws://{settings.BIND_HOST}:{settings.OCPP_PORT}/ocpp")
        parser.add_argument("--prefix", default="SIM")
        parser.add_argument("--meter-every", type=float, default=60.0, help="seconds")

    def handle(self, *args: object, **options: object) -> None:
        count = max(1, min(int(options["count"]), 5000))  # bounded: one process, one loop
        version = str(options["ocpp"])
        sims = []
        for index in range(1, count + 1):
            cp_id = f"{options['prefix']}-{version.replace('.', '')}-{index:04d}"
            charger = Charger.objects.filter(charge_point_id=cp_id).first()
            if charger is None:
                charger = services.provision_charger(
                    charge_point_id=cp_id, v2g_capable=version == "2.1"
                ).charger
            key = services.rotate_authorization_key(charger=charger)
            battery = Battery(soc_pct=30 + (index * 7) % 50)
            sims.append(
                SimulatedCharger(
                    charge_point_id=cp_id,
                    authorization_key=key,
                    version=version,
                    url=str(options["url"]),
                    battery=battery,
                    v2g=charger.v2g_capable,
                )
            )
        self.stdout.write(f"{count} simulated OCPP {version} chargers → {options['url']}")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(self._run(sims, float(options["meter_every"])))

    async def _run(self, sims: list[SimulatedCharger], meter_every_s: float) -> None:
        await asyncio.gather(*(sim.run(meter_every_s=meter_every_s) for sim in sims))
