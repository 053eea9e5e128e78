"""What programs decide: utilities and their tariffs, programs and enrollments, grid events,
each car's charging plan, and the money ledger (DESIGN.md §4)."""

from programs.models.ledger import LedgerAccount, LedgerEntry, LedgerTransaction, Payout, Statement
from programs.models.plans import ChargingPlan
from programs.models.programs import (
    AuditEntry,
    Enrollment,
    EnrollmentChange,
    EventParticipation,
    Feeder,
    GridEvent,
    Program,
    ProgramTerms,
    Tariff,
    TariffPrice,
    Utility,
)

__all__ = [
    "AuditEntry",
    "ChargingPlan",
    "Enrollment",
    "EnrollmentChange",
    "EventParticipation",
    "Feeder",
    "GridEvent",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "Payout",
    "Program",
    "ProgramTerms",
    "Statement",
    "Tariff",
    "TariffPrice",
    "Utility",
]

# The utility API's and the OpenADR VEN's rows live beside their code; importing them here
# registers them with the programs app.
from programs.api.models import ApiClient, IdempotencyKey, WebhookDelivery
from programs.openadr.models import VtnEvent, VtnLink, VtnMessage

__all__ += [
    "ApiClient",
    "IdempotencyKey",
    "VtnEvent",
    "VtnLink",
    "VtnMessage",
    "WebhookDelivery",
]
