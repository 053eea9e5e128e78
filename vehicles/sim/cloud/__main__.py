"""`python -m vehicles.sim.cloud`: run the simulated vehicle cloud in the foreground.

Started by `make run` for the demo; prints its URL and the SDK settings, then serves until
interrupted. Defaults suit the demo: simulated time runs at real speed and the routine's plug-ins,
charging changes and SoC steps are POSTed to `--webhook-url` as signed webhooks.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

import uvicorn

from .app import CloudApp
from .world import World


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m vehicles.sim.cloud", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--cars", type=int, default=3, help="cars on the demo account")
    parser.add_argument("--client-id", default=env("SIM_SMARTCAR_CLIENT_ID", "sim-client-id"))
    parser.add_argument("--client-secret", default=env("SIM_SMARTCAR_CLIENT_SECRET"))
    parser.add_argument("--management-token", default=env("SIM_SMARTCAR_MANAGEMENT_TOKEN"))
    parser.add_argument("--webhook-url", default=env("SIM_SMARTCAR_WEBHOOK_URL"))
    parser.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        help="registered redirect URI (repeatable); none registered accepts any http(s) URI",
    )
    parser.add_argument("--seed", type=int, default=1, help="same seed, same cars and routine")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="simulated seconds per real second (60 = an hour a minute; 0 = frozen)",
    )
    parser.add_argument("--timezone", default="America/Los_Angeles", help="the owner's zone")
    parser.add_argument("--start", help="ISO 8601 simulated start time (default: now)")
    parser.add_argument("--no-routine", action="store_true", help="cars stay where they are")
    parser.add_argument(
        "--no-auto-webhooks", action="store_true", help="only send webhooks when asked (/_sim/)"
    )
    parser.add_argument(
        "--state-file",
        help="keep cars, grants and tokens here across restarts (loaded if present, saved on exit)",
    )
    args = parser.parse_args(argv)
    if not args.client_secret or not args.management_token:
        parser.error(
            "--client-secret and --management-token are required "
            "(or SIM_SMARTCAR_CLIENT_SECRET / SIM_SMARTCAR_MANAGEMENT_TOKEN)"
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = datetime.fromisoformat(args.start).astimezone(UTC) if args.start else None
    state_file = Path(args.state_file) if args.state_file else None
    if state_file is not None and state_file.exists():
        world = World.load(state_file, resume_at=datetime.now(UTC) if args.time_scale else None)
        world.webhook_url, world.redirect_uris = args.webhook_url, tuple(args.redirect_uri)
        print(f"Resumed the simulated cloud from {state_file}", flush=True)
    else:
        world = new_world(args, start)
    # uvicorn shuts down gracefully, then re-raises the signal to the handler it found: make that
    # an exit we can run `finally` on, so the world is saved on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        serve(world, args)
    finally:
        if state_file is not None:
            world.save(state_file)


def new_world(args: argparse.Namespace, start: datetime | None) -> World:
    return World(
        cars=args.cars,
        seed=args.seed,
        client_id=args.client_id,
        client_secret=args.client_secret,
        management_token=args.management_token,
        webhook_url=args.webhook_url,
        redirect_uris=tuple(args.redirect_uri),
        start=start,
        time_scale=args.time_scale,
        timezone=args.timezone,
        routine=not args.no_routine,
        auto_webhooks=bool(args.webhook_url) and not args.no_auto_webhooks,
    )


def serve(world: World, args: argparse.Namespace) -> None:
    """Serve until interrupted (uvicorn handles SIGINT/SIGTERM and returns)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    url = f"http://{args.host}:{sock.getsockname()[1]}"
    print(f"Simulated vehicle cloud (Smartcar-compatible) on {url}", flush=True)
    print(f"  SMARTCAR_API_ORIGIN={url}", flush=True)
    print(f"  SMARTCAR_AUTH_ORIGIN={url}/oauth/token", flush=True)
    print(f"  SMARTCAR_CONNECT_ORIGIN={url}", flush=True)
    print(f"  controls: {url}/_sim/state (Authorization: Bearer <management token>)", flush=True)
    for car in world.cars:
        m = car.model
        print(f"  {car.vin}  {m.year} {m.make} {m.model}  {car.soc_pct:.0f} %", flush=True)
    app = CloudApp(world, tick_s=2.0 if args.time_scale > 0 else 0.0)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
