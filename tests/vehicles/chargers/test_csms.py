"""The slimmed `ocpp` ChargePoint (vehicles.chargers.csms.CsmsBase) keeps the library's contract."""

import asyncio

import pytest
from ocpp.v16 import ChargePoint as ChargePoint16

from vehicles.chargers.csms import CSMS_BY_SUBPROTOCOL


@pytest.mark.parametrize("subprotocol", sorted(CSMS_BY_SUBPROTOCOL))
def test_csms_has_every_attribute_the_library_constructor_sets(subprotocol):
    """CsmsBase skips ChargePoint.__init__ to save memory: each attribute the library's own
    constructor sets must still be there (a library upgrade adding one fails here), and the
    route map binds the same handlers the library would."""

    async def build():
        library = ChargePoint16("cp", connection=None)
        ours = CSMS_BY_SUBPROTOCOL[subprotocol]("cp", connection=None)
        return library, ours

    library, ours = asyncio.run(build())
    for name in vars(library):
        assert hasattr(ours, name), name
    hooks = ours.route_map["BootNotification"]
    assert hooks["_on_action"] == ours.on_boot_notification
    assert hooks["_skip_schema_validation"] is True
    assert "Heartbeat" in ours.handled_actions
