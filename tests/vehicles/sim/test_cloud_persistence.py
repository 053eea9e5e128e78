"""`make run` restarts keep the simulated cloud's cars, grants and tokens (--state-file)."""

from datetime import timedelta

from tests.vehicles.sim.conftest import link
from vehicles.sim.cloud.world import World


def test_saved_world_keeps_grants_tokens_and_cars(cloud, tmp_path):
    """A token issued before the restart still reads the same car after it; the clock resumes
    where asked and the car lives through the gap."""
    access, vehicle_ids = link(cloud, 1)
    car = cloud.car(next(c.vin for c in cloud.cars if c.vehicle_id == vehicle_ids[0]))
    cloud.set_state(car.vin, soc_pct=41.0, plugged=True, charging=True)
    path = tmp_path / "sim-cloud.pickle"
    cloud.world.save(path)
    saved_at = cloud.world.now()

    restored = World.load(path, resume_at=saved_at + timedelta(hours=1))
    grant = restored.authenticate(f"Bearer {access.access_token}")
    assert vehicle_ids[0] in grant.vehicle_ids
    restored.sync()
    after = restored.snapshot(restored.car_by_id(vehicle_ids[0]))
    assert after.soc_pct > 41.0  # charged through the hour the simulator was down
    assert restored.now() >= saved_at + timedelta(hours=1)
