"""The grid-event banner's data for every owner page, computed only when a page shows it."""

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from programs import selectors


def event_notices(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"event_notices": SimpleLazyObject(lambda: _banners(user))}


def _banners(user) -> list[dict[str, object]]:
    return [
        {"participation": p, "earnings_cents": selectors.expected_earnings_cents(p)}
        for p in selectors.event_notices_for(owner=user)
    ]
