"""Run the whole ChargeScape stack in the foreground: `make run` calls this.

Migrates, seeds the demo accounts, then runs the web process, the OCPP process, Celery workers
(the `control` queue on a worker of its own), beat and — for the demo — the simulators of the
external parties under honcho, with prefixed logs. Ctrl-C stops
every child; chargescape.embedded then stops the embedded servers it started.
"""

import logging
import os
import shlex
import socket
import sys
import threading
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from honcho.manager import Manager

from chargescape.management.commands.seed_demo import DEMO_CHARGER_PREFIX, OWNER_EMAIL
from programs.demo import OWNER_CARS

logger = logging.getLogger(__name__)

# Largest websocket message each server accepts; a bigger one is closed with 1009 as soon as its
# header announces the length, before the payload is buffered (uvicorn's --ws-max-size, default
# 16 MiB). Owner pages send only `{"notifications_after": <id>}`: 64 KiB is generous. OCPP frames
# are larger (a charging profile with its periods, a NotifyReport page) but stay well under
# 256 KiB; with the consumer's 64-frame inbox that bounds a charger's backlog at 16 MiB.
WEB_WS_MAX_SIZE = 64 * 1024
OCPP_WS_MAX_SIZE = 256 * 1024


def simulators(host: str, web_port: int, ocpp_port: int) -> dict[str, list[str]]:
    """The demo's external parties, speaking their real protocols on loopback."""
    python = sys.executable
    smartcar = settings.VEHICLE_PROVIDERS["smartcar"]
    cloud_port = urlsplit(settings.SMARTCAR_SIM_ORIGIN).port or 8090
    return {
        "cloud": [
            python,
            "-m",
            "vehicles.sim.cloud",
            "--host",
            host,
            "--port",
            str(cloud_port),
            "--cars",
            str(OWNER_CARS + settings.DEMO_FLEET_SIZE),  # the demo owner's, then the fleet's
            "--client-id",
            smartcar["CLIENT_ID"],
            "--client-secret",
            smartcar["CLIENT_SECRET"],
            "--management-token",
            smartcar["MANAGEMENT_TOKEN"],
            "--redirect-uri",
            smartcar["REDIRECT_URI"],
            "--webhook-url",
            f"http://{host}:{web_port}/vehicles/webhooks/smartcar/",
            # Linked demo cars stay linked across restarts (grants and tokens kept).
            "--state-file",
            str(settings.LOCAL_DIR / "sim-cloud.pickle"),
        ],
        # The demo owner's garage charger (seed_demo provisions and claims it).
        "chargers": [
            python,
            "manage.py",
            "simulate_chargers",
            "--count",
            "1",
            "--ocpp",
            "2.1",
            "--prefix",
            DEMO_CHARGER_PREFIX,
            "--url",
            f"ws://{host}:{ocpp_port}/ocpp",
        ],
        # The utility's OpenADR 3 VTN with a demo program and evening event (programs.sim.vtn).
        "vtn": [
            python,
            "-m",
            "programs.sim.vtn",
            "--host",
            host,
            "--port",
            str(urlsplit(settings.OPENADR_SIM_ORIGIN).port or 8092),
            "--ven",
            ":".join(settings.OPENADR_SIM_CLIENTS["ven"]),
            "--bl",
            ":".join(settings.OPENADR_SIM_CLIENTS["bl"]),
            "--timezone",
            "America/Los_Angeles",
            "--demo",
        ],
    }


def processes(host: str, web_port: int, ocpp_port: int) -> dict[str, list[str]]:
    """The commands of every process, by name (also how to run them under any supervisor)."""
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "chargescape"]
    return {
        "web": [
            python,
            "-m",
            "uvicorn",
            "chargescape.asgi:application",
            "--host",
            host,
            "--port",
            str(web_port),
            "--no-server-header",
            "--ws-max-size",
            str(WEB_WS_MAX_SIZE),
        ],
        "ocpp": [
            python,
            "-m",
            "uvicorn",
            "chargescape.asgi:ocpp_application",
            "--host",
            host,
            "--port",
            str(ocpp_port),
            "--no-server-header",
            "--ws-max-size",
            str(OCPP_WS_MAX_SIZE),
        ],
        "worker": [
            *celery,
            "worker",
            "-Q",
            "commands,default,bulk",
            "-c",
            "2",
            "-n",
            "worker@%h",
            "--loglevel",
            "INFO",
        ],
        "control": [
            *celery,
            "worker",
            "-Q",
            "control",
            "-c",
            "1",
            "-n",
            "control@%h",
            "--loglevel",
            "INFO",
        ],
        "beat": [
            *celery,
            "beat",
            "-s",
            settings.CELERY_BEAT_SCHEDULE_FILENAME,
            "--loglevel",
            "INFO",
        ],
    }


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.3)
        return probe.connect_ex((host, port)) == 0


class Command(BaseCommand):
    help = "Migrate, seed demo data and run web, OCPP, workers and beat together (make run)."

    def seed_fleet(self, host: str, cloud_port: int) -> None:
        """Once the simulated cloud answers: link and enroll the demo fleet, schedule tonight's
        event (programs.demo). A failure here leaves the demo without a fleet, nothing else."""
        from accounts.models import User
        from programs import demo

        for _ in range(120):
            if port_in_use(host, cloud_port):
                break
            time.sleep(0.5)
        try:
            linked = demo.seed_fleet(count=settings.DEMO_FLEET_SIZE)
            event = demo.schedule_evening_event()
            self.stdout.write(
                f"demo fleet: {linked} cars linked now"
                + (f"; grid event scheduled {event.starts_at:%Y-%m-%d %H:%M} UTC" if event else "")
            )
            demo.seed_demo_earnings(owner=User.objects.get(email=OWNER_EMAIL))
        except Exception:  # the demo must still start; say what went wrong
            logger.exception("demo fleet: seeding failed")
        finally:
            connections.close_all()

    def handle(self, *args: object, **options: object) -> None:
        host, web_port, ocpp_port = settings.BIND_HOST, settings.WEB_PORT, settings.OCPP_PORT
        ports = {"web": web_port, "OCPP": ocpp_port}
        if settings.RUN_SIMULATORS:
            ports["simulated cloud"] = urlsplit(settings.SMARTCAR_SIM_ORIGIN).port or 8090
            ports["simulated VTN"] = urlsplit(settings.OPENADR_SIM_ORIGIN).port or 8092
        for name, port in ports.items():
            if port_in_use(host, port):
                raise CommandError(
                    f"Port {port} for the {name} process is taken (another `make run`?). "
                    "Stop it, or choose other ports (README, Configuration)."
                )
        settings.LOCAL_DIR.mkdir(exist_ok=True)
        call_command("migrate", interactive=False, verbosity=1)
        call_command("seed_demo")
        connections.close_all()  # honcho forks; children must not share our sockets

        self.stdout.write(
            self.style.SUCCESS(
                f"\nChargeScape is starting:\n"
                f"  open   http://{host}:{web_port}/            (owner app; admin at /admin/)\n"
                f"  OCPP   ws://{host}:{ocpp_port}/ocpp/<charge_point_id>\n"
                f"  API    http://{host}:{web_port}/api/docs/\n"
                + (
                    f"  demo   simulated vehicle cloud at {settings.SMARTCAR_SIM_ORIGIN} "
                    "(link a car from the Vehicles tab)\n"
                    if settings.RUN_SIMULATORS
                    else ""
                )
                + "  mail   printed below by the web process (console backend)\n"
                "Press Ctrl-C to stop everything.\n"
            )
        )
        if settings.RUN_SIMULATORS and settings.DEMO_FLEET_SIZE:
            cloud_port = urlsplit(settings.SMARTCAR_SIM_ORIGIN).port or 8090
            threading.Thread(
                target=self.seed_fleet, args=(host, cloud_port), name="demo-fleet", daemon=True
            ).start()
        manager = Manager()
        commands = processes(host, web_port, ocpp_port)
        if settings.RUN_SIMULATORS:
            commands |= simulators(host, web_port, ocpp_port)
        for name, command in commands.items():
            # honcho's env replaces the environment, so the ASGI servers get all of it plus a
            # bounded connection pool (settings.DB_POOL_MAX).
            env = {**os.environ, "DJANGO_DB_POOL_MAX": "8"} if name in ("web", "ocpp") else None
            manager.add_process(name, shlex.join(command), cwd=str(settings.BASE_DIR), env=env)
        manager.loop()
        # Ctrl-C (130) or SIGTERM (143) is a requested stop, not a failure.
        sys.exit(0 if manager.returncode in (None, 130, 143) else manager.returncode)
