"""Prices per 15-minute slot from a tariff: time-of-use periods by season and weekday, or a price
feed with its history. Called by planning (programs.services) and by earnings.

Owners in a utility's territory (their service ZIP on one of its feeders) pay its default tariff;
anyone else is planned on `settings.DEFAULT_TARIFF`, the same shape as a TOU tariff's fields.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, time, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction

from programs.models import Feeder, Tariff, TariffPrice
from vehicles.models import Vehicle

SLOT = timedelta(minutes=15)


@dataclass(frozen=True)
class Period:
    start: time
    end: time  # 00:00 as an end means midnight
    price: float
    months: frozenset[int]  # empty: every month
    weekdays: frozenset[int]  # empty: every day; 0 is Monday

    def covers(self, local: datetime) -> bool:
        if self.months and local.month not in self.months:
            return False
        if self.weekdays and local.weekday() not in self.weekdays:
            return False
        moment = local.time()
        if self.end <= self.start:  # wraps midnight, e.g. 21:00-07:00
            return moment >= self.start or moment < self.end
        return self.start <= moment < self.end


@dataclass(frozen=True)
class PriceSchedule:
    """A tariff reduced to what pricing needs; `key` groups cars that share one price curve."""

    key: str
    currency: str
    default_price: float
    export_price: float
    periods: tuple[Period, ...]
    tariff_id: int | None = None
    is_feed: bool = False

    def import_prices(self, *, start: datetime, slots: int, time_zone: str) -> np.ndarray:
        """Import price per slot from `start`, periods read in local time (DST-correct)."""
        zone = zoneinfo.ZoneInfo(time_zone)
        prices = np.full(slots, self.default_price)
        if self.periods:
            for index in range(slots):
                local = (start + index * SLOT).astimezone(zone)
                for period in self.periods:
                    if period.covers(local):
                        prices[index] = period.price
                        break
        if self.is_feed and self.tariff_id is not None:
            _overlay_feed(prices, tariff_id=self.tariff_id, start=start, slots=slots)
        return prices

    def export_prices(self, *, slots: int) -> np.ndarray:
        return np.full(slots, self.export_price)


def parse_periods(raw: list[dict]) -> tuple[Period, ...]:
    """Periods from their JSON form; raises ValueError (with the period's number) when malformed."""
    periods = []
    for number, item in enumerate(raw, start=1):
        try:
            start, end = time.fromisoformat(item["start"]), time.fromisoformat(item["end"])
            price = float(item["price"])
            months = frozenset(int(m) for m in item.get("months", []))
            weekdays = frozenset(int(d) for d in item.get("weekdays", []))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"Period {number}: needs start, end (HH:MM) and price.") from error
        if not months <= set(range(1, 13)):
            raise ValueError(f"Period {number}: months are 1-12.")
        if not weekdays <= set(range(7)):
            raise ValueError(f"Period {number}: weekdays are 0 (Monday) to 6 (Sunday).")
        if start == end:
            raise ValueError(f"Period {number}: start and end are the same time.")
        periods.append(Period(start, end, price, months, weekdays))
    return tuple(periods)


def schedule_for(tariff: Tariff | None) -> PriceSchedule:
    if tariff is None:
        fallback = settings.DEFAULT_TARIFF
        return PriceSchedule(
            key="default",
            currency=fallback["currency"],
            default_price=float(fallback["default_price"]),
            export_price=float(fallback["export_price"]),
            periods=parse_periods(fallback["periods"]),
        )
    return PriceSchedule(
        key=f"tariff:{tariff.pk}",
        currency=tariff.currency,
        default_price=float(tariff.default_price),
        export_price=float(tariff.export_price),
        periods=parse_periods(tariff.periods),
        tariff_id=tariff.pk,
        is_feed=tariff.kind == Tariff.Kind.PRICE_FEED,
    )


def tariff_for_zip(service_zip: str) -> Tariff | None:
    """The default tariff of the utility whose territory holds this ZIP code, if any."""
    if not service_zip:
        return None
    feeder = (
        Feeder.objects.filter(zip_codes__contains=[service_zip]).select_related("utility").first()
    )
    if feeder is None:
        return None
    return Tariff.objects.filter(utility=feeder.utility, is_default=True).first()


def _overlay_feed(prices: np.ndarray, *, tariff_id: int, start: datetime, slots: int) -> None:
    """Price-feed prices in force over the window: the last price published at or before each
    slot wins; slots before the first published price keep the periods' price."""
    end = start + slots * SLOT
    before = (
        TariffPrice.objects.filter(tariff_id=tariff_id, start__lte=start)
        .order_by("-start")
        .values_list("start", "price")
        .first()
    )
    rows = list(
        TariffPrice.objects.filter(tariff_id=tariff_id, start__gt=start, start__lt=end)
        .order_by("start")
        .values_list("start", "price")
    )
    if before is not None:
        rows.insert(0, (start, before[1]))
    for index, (begins, price) in enumerate(rows):
        first = max(0, int((begins - start) / SLOT))
        last = slots
        if index + 1 < len(rows):
            last = int((rows[index + 1][0] - start) / SLOT)
        prices[first:last] = float(price)


def replan_territory(*, tariff: Tariff, trigger: str = "new_prices") -> int:
    """Replan every plugged-in car whose owner pays `tariff` (its utility's default tariff, by
    service ZIP), in batches on the `bulk` queue after commit. Returns the cars asked for."""
    from programs.tasks import fan_out, replan_vehicles  # tasks import services, which import us

    if not tariff.is_default:
        return 0
    feeders = tariff.utility.feeders.values_list("zip_codes", flat=True)
    zips = [zip_code for codes in feeders for zip_code in codes]
    ids = list(
        Vehicle.objects.filter(
            owner__service_zip__in=zips, link_state=Vehicle.LinkState.LINKED
        ).values_list("pk", flat=True)
    )
    fan_out(replan_vehicles, ids, trigger)
    return len(ids)


def publish_prices(
    *, tariff: Tariff, prices: list[tuple[datetime, float, float | None]], source: str
) -> int:
    """New prices of a price-feed tariff (a utility's feed, an OpenADR PRICE event): stored (a
    price already published for a start is replaced), then the cars that pay it are replanned.
    Returns the number of prices stored."""
    with transaction.atomic():
        for start, price, export_price in prices:
            TariffPrice.objects.update_or_create(
                tariff=tariff,
                start=start,
                defaults={"price": price, "export_price": export_price, "source": source[:40]},
            )
        replan_territory(tariff=tariff)
    return len(prices)
