"""The composite schedule a charger computes from its installed profiles (OCPP 1.6 §3.13).

Pure: plain dataclasses in, periods out; the simulated chargers (vehicles.sim.chargers) use it to
decide their power and to answer GetCompositeSchedule. The rules implemented:

- A profile applies at time t when t is inside [validFrom, validTo) and inside its schedule
  (Absolute: from startSchedule; Relative: from the transaction start; Recurring Daily/Weekly:
  from the latest repetition of startSchedule) and before startSchedule + duration.
- Within one purpose the applicable profile with the highest stackLevel wins; when it does not
  apply at t (not started, expired, past its duration), the next lower one does.
- A TxProfile (for the running transaction) overrides any TxDefaultProfile while it applies; an
  EVSE-specific TxDefaultProfile overrides one for the whole charger (EVSE 0).
- ChargePointMaxProfile caps the result. No applicable profile: no limit (None).
- 2.1 CentralSetpoint periods carry a signed setpoint and a dischargeLimit ≤ 0 through.

Limits in amperes are converted with 230 V per phase (3 phases unless the period says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

CHARGER_MAX = "ChargePointMaxProfile"
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
VOLTS_PER_PHASE = 230.0
_RECURRENCE = {"Daily": timedelta(days=1), "Weekly": timedelta(days=7)}


@dataclass(frozen=True)
class Period:
    start_s: int
    limit_w: float | None = None
    setpoint_w: float | None = None
    discharge_limit_w: float | None = None


@dataclass
class Profile:
    profile_id: int
    evse_id: int
    purpose: str  # 1.6 spelling: ChargePointMaxProfile | TxDefaultProfile | TxProfile
    stack_level: int
    periods: list[Period]
    kind: str = "Absolute"
    recurrency: str | None = None
    start_schedule: datetime | None = None
    duration_s: int | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str | None = None


@dataclass(frozen=True)
class Effective:
    """What applies at one instant: a power limit (None: unlimited) and a 2.1 setpoint."""

    limit_w: float | None = None
    setpoint_w: float | None = None
    discharge_limit_w: float | None = None


@dataclass
class Transaction:
    transaction_id: str
    evse_id: int
    started_at: datetime


def amps_to_watts(amps: float, phases: int | None) -> float:
    return amps * VOLTS_PER_PHASE * (phases or 3)


def _schedule_start(profile: Profile, at: datetime, tx: Transaction | None) -> datetime | None:
    if profile.kind == "Relative":
        return tx.started_at if tx is not None else None
    start = profile.start_schedule
    if start is None:
        return None
    if profile.kind == "Recurring" and profile.recurrency in _RECURRENCE and at >= start:
        step = _RECURRENCE[profile.recurrency]
        start = start + step * ((at - start) // step)
    return start


def period_at(profile: Profile, at: datetime, tx: Transaction | None) -> Period | None:
    """The profile's period in force at `at`, or None when the profile does not apply then."""
    if profile.valid_from is not None and at < profile.valid_from:
        return None
    if profile.valid_to is not None and at >= profile.valid_to:
        return None
    start = _schedule_start(profile, at, tx)
    if start is None or at < start:
        return None
    offset = (at - start).total_seconds()
    if profile.duration_s is not None and offset >= profile.duration_s:
        return None
    current = None
    for period in profile.periods:
        if period.start_s <= offset:
            current = period
    return current


def _winner(profiles: list[Profile], at: datetime, tx: Transaction | None) -> Period | None:
    for profile in sorted(profiles, key=lambda p: p.stack_level, reverse=True):
        period = period_at(profile, at, tx)
        if period is not None:
            return period
    return None


def effective_at(
    profiles: list[Profile], at: datetime, evse_id: int, tx: Transaction | None
) -> Effective:
    """What the charger must do on `evse_id` at `at` (tx: the transaction running there)."""
    chosen: Period | None = None
    if tx is not None:
        chosen = _winner(
            [
                p
                for p in profiles
                if p.purpose == TX
                and p.evse_id == evse_id
                and p.transaction_id in (None, tx.transaction_id)
            ],
            at,
            tx,
        )
    if chosen is None:
        defaults = [p for p in profiles if p.purpose == TX_DEFAULT]
        chosen = _winner([p for p in defaults if p.evse_id == evse_id], at, tx) or _winner(
            [p for p in defaults if p.evse_id == 0], at, tx
        )
    cap = _winner([p for p in profiles if p.purpose == CHARGER_MAX], at, tx)
    limit = chosen.limit_w if chosen is not None else None
    if cap is not None and cap.limit_w is not None:
        limit = cap.limit_w if limit is None else min(limit, cap.limit_w)
    if chosen is not None and chosen.setpoint_w is not None:
        return Effective(limit, chosen.setpoint_w, chosen.discharge_limit_w)
    return Effective(limit)


def _breakpoints(profile: Profile, start: datetime, end: datetime, tx: Transaction | None):
    """Instants in [start, end) where the profile may start, stop or change period."""
    for moment in (profile.valid_from, profile.valid_to):
        if moment is not None:
            yield moment
    if profile.kind == "Relative":
        origins = [tx.started_at] if tx is not None else []
    elif profile.start_schedule is None:
        origins = []
    elif profile.kind == "Recurring" and profile.recurrency in _RECURRENCE:
        step = _RECURRENCE[profile.recurrency]
        first = _schedule_start(profile, start, tx) or profile.start_schedule
        origins = []
        while first < end:
            origins.append(first)
            first += step
    else:
        origins = [profile.start_schedule]
    for origin in origins:
        for period in profile.periods:
            yield origin + timedelta(seconds=period.start_s)
        if profile.duration_s is not None:
            yield origin + timedelta(seconds=profile.duration_s)


def next_change(
    profiles: list[Profile], after: datetime, until: datetime, tx: Transaction | None
) -> datetime:
    """The first instant in (after, until] where the effective value may change."""
    moments = [
        moment
        for profile in profiles
        for moment in _breakpoints(profile, after, until, tx)
        if after < moment < until
    ]
    return min(moments, default=until)


@dataclass
class Composite:
    start: datetime
    duration_s: int
    periods: list[tuple[int, Effective]] = field(default_factory=list)


def composite_schedule(
    profiles: list[Profile],
    start: datetime,
    duration_s: int,
    evse_id: int,
    tx: Transaction | None,
    *,
    unlimited_w: float,
) -> Composite:
    """GetCompositeSchedule: periods over [start, start + duration); no limit → `unlimited_w`."""
    end = start + timedelta(seconds=duration_s)
    result = Composite(start=start, duration_s=duration_s)
    moment = start
    while moment < end:
        value = effective_at(profiles, moment, evse_id, tx)
        if value.limit_w is None:
            value = replace(value, limit_w=unlimited_w)
        offset = int((moment - start).total_seconds())
        if not result.periods or result.periods[-1][1] != value:
            result.periods.append((offset, value))
        moment = next_change(profiles, moment, end, tx)
    return result
