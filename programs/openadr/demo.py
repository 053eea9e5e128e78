"""The demo's VTN link (`make run`): the utility's simulated VTN (programs.sim.vtn, started by
runstack) with Peak Saver for its capacity limits and Grid Return for export. Idempotent."""

from django.conf import settings

from programs.models import Program, Utility
from programs.openadr.models import VtnLink


def seed_vtn_link(*, utility: Utility) -> VtnLink | None:
    client_id, secret = settings.OPENADR_SIM_CLIENTS["ven"]
    program = Program.objects.filter(utility=utility, code="peak-saver").first()
    if program is None or not secret:
        return None
    link, _ = VtnLink.objects.update_or_create(
        utility=utility,
        name="Golden Gate Power VTN (simulated)",
        defaults={
            "base_url": settings.OPENADR_SIM_ORIGIN,
            "token_url": f"{settings.OPENADR_SIM_ORIGIN}/auth/token",
            "client_id": client_id,
            "client_secret": secret,
            "ven_name": settings.OPENADR_VEN_NAME,
            "program": program,
            "v2g_program": Program.objects.filter(utility=utility, code="grid-return").first(),
        },
    )
    return link
