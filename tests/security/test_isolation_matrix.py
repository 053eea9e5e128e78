"""The isolation matrix (DESIGN.md I6, issue #11): no owner, manager or utility ever sees or
changes another's objects.

Every route of the URL resolver (pages, allauth, admin, the owner API, the utility API, schemas)
has an entry below saying which object it bears and how to reach actor X's one, or why it bears
none; a route without an entry fails `test_every_route_has_an_entry`, so a new route cannot slip
in untested. Admin routes are generated per registered ModelAdmin: each admin model needs an
entry saying how it is scoped.

Seven actors (anonymous, owner A, owner B, manager of utility 1, manager of utility 2, utility
API clients 1 and 2) call every object-bearing route with every method, on each side's object:

- the owner of the object gets through (positive control, so the matrix could fail);
- every other actor gets exactly what a random nonexistent id gets (status and redirect target:
  no existence oracle); for actors of the route's kind that is a 404 (or the admin's own
  "doesn't exist" redirect / 403), the others are sent to sign in or get a 4xx;
- nothing happens: no row of any table changes (row count and md5 of every table but sessions),
  no on-commit callback is queued, no Celery task is published.

Lists never show a foreign object; websocket groups never carry one; ids nested in bodies and
queries (another owner's vehicle, charger, push endpoint; another utility's program, feeder,
enrollment or event) are refused with nothing written.

Two admin gaps this matrix found are closed in chargescape/admin_site.py (Django's history page
and contenttypes' "view on site" told a manager that an operator-only row exists).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest
from django.contrib import admin
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from chargescape import routing
from tests.security.isolation_world import Side, World, http_client

pytestmark = pytest.mark.django_db

METHODS = ("get", "head", "post", "put", "patch", "delete")
ADMIN_METHODS = ("get", "post")  # the admin's views read GET and POST only
MISSING_INT = 2_000_000_000
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


# --- The route table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bears:
    """A route that names one object in its URL.

    family: who may call it ("page" and "owner-api": owners by session; "utility-api": API
    clients by bearer token; "admin": program managers; "operator": superusers only).
    kind: the object (see `object_kwargs`). ok: the method the object's owner uses in the
    positive control, with `body` (a dict, or a function of the side)."""

    family: str
    kind: str
    ok: str = "get"
    body: Any = None


@dataclass(frozen=True)
class Lists:
    """A route that shows the caller's own rows (a list, a dashboard, a download): foreign
    markers never appear. `positive`: the owning actor's response shows one of their markers."""

    family: str
    positive: bool = True
    kwargs: Callable[[], dict] | None = None
    nothing: int = 200  # what an actor with no rows of this kind gets


@dataclass(frozen=True)
class NoObject:
    """A route bearing no object of anybody's, and why. `login`: anonymous is sent to sign in."""

    why: str
    login: bool = False


ALLAUTH = "allauth flow: acts on the signed-in user or the session only"
OWN_ONLY = "acts on the signed-in user only (no object id)"


def _this_month() -> dict:
    from django.utils import timezone

    return {"month": f"{timezone.now():%Y-%m}"}


def _preferences(side: Side) -> dict:
    return {
        "weekly_schedule": [{"weekday": 0, "departure": "07:00", "target_soc_pct": 80}],
        "min_soc_pct": 20,
        "max_soc_pct": 90,
    }


ROUTES: dict[str, Bears | Lists | NoObject] = {
    # chargescape
    "home": Lists("page"),
    "healthz": NoObject("public health check"),
    "manifest": NoObject("public PWA manifest"),
    "service-worker": NoObject("public service worker"),
    "offline": NoObject("public offline page"),
    "favicon.ico": NoObject("public redirect to a static file"),
    # allauth
    "account_login": NoObject(ALLAUTH),
    "account_logout": NoObject(ALLAUTH),
    "account_inactive": NoObject(ALLAUTH),
    "account_signup": NoObject(ALLAUTH),
    "account_reauthenticate": NoObject(ALLAUTH),
    "account_request_reauthentication_code": NoObject(ALLAUTH),
    "account_confirm_reauthentication_code": NoObject(ALLAUTH),
    "account_email": NoObject(ALLAUTH),
    "account_email_verification_sent": NoObject(ALLAUTH),
    "account_change_password": NoObject(ALLAUTH),
    "account_set_password": NoObject(ALLAUTH),
    "account_reset_password": NoObject(ALLAUTH),
    "account_confirm_login_code": NoObject(ALLAUTH),
    "account_confirm_email": NoObject("allauth: the signed key is the capability"),
    "account_reset_password_from_key_done": NoObject(ALLAUTH),
    "account_reset_password_from_key": NoObject("allauth: the signed key is the capability"),
    "account_reset_password_done": NoObject(ALLAUTH),
    "account_request_login_code": NoObject(ALLAUTH),
    "mfa_index": NoObject(ALLAUTH),
    "mfa_authenticate": NoObject(ALLAUTH),
    "mfa_reauthenticate": NoObject(ALLAUTH),
    "mfa_activate_totp": NoObject(ALLAUTH),
    "mfa_deactivate_totp": NoObject(ALLAUTH),
    "mfa_view_recovery_codes": NoObject(ALLAUTH),
    "mfa_generate_recovery_codes": NoObject(ALLAUTH),
    "mfa_download_recovery_codes": NoObject(ALLAUTH),
    "mfa_list_webauthn": NoObject(ALLAUTH),
    "mfa_add_webauthn": NoObject(ALLAUTH),
    "mfa_reauthenticate_webauthn": NoObject(ALLAUTH),
    "mfa_remove_webauthn": Bears("page", "authenticator", "get"),
    "mfa_edit_webauthn": Bears("page", "authenticator", "get"),
    "mfa_login_webauthn": NoObject(ALLAUTH),
    # accounts
    "accounts:account": Lists("page"),
    "accounts:account-delete": NoObject(OWN_ONLY, login=True),  # added by issue #11's privacy part
    "accounts:notification-list": Lists("page"),
    "accounts:notification-read-all": NoObject(OWN_ONLY, login=True),
    "accounts:notification-preferences": NoObject(OWN_ONLY, login=True),
    "accounts:notification-open": Bears("page", "notification", "get"),
    "accounts:notification-read": Bears("page", "notification", "post"),
    "accounts:push-key": NoObject("the server's public VAPID key", login=True),
    "accounts:push-subscribe": NoObject(OWN_ONLY + "; see test_nested_references", login=True),
    "accounts:push-unsubscribe": NoObject(OWN_ONLY + "; see test_nested_references", login=True),
    # vehicles
    "vehicles:vehicle-list": Lists("page"),
    "vehicles:link-brands": NoObject("brand picker", login=True),
    "vehicles:link-start": NoObject(OWN_ONLY, login=True),
    "vehicles:link-callback": NoObject("OAuth callback bound to the session's state", login=True),
    "vehicles:provider-webhook": NoObject("webhook authenticated by the provider's HMAC"),
    "vehicles:chargers:charger-claim": NoObject(
        OWN_ONLY + "; pairing code is the capability, see test_nested_references", login=True
    ),
    "vehicles:chargers:charger-detail": Bears(
        "page", "charger", "post", body=lambda side: {"vehicle": str(side.vehicle.pk)}
    ),
    "vehicles:vehicle-detail": Bears("page", "vehicle", "get"),
    "vehicles:vehicle-activity": Bears("page", "vehicle", "get"),
    "vehicles:vehicle-unlink": Bears("page", "vehicle", "post"),
    "vehicles:vehicle-set-home": Bears("page", "vehicle", "post"),
    "vehicles:vehicle-action": Bears("page", "vehicle", "post", body={"action": "boost"}),
    # programs (owner pages)
    "programs:program-list": Lists("page"),
    "programs:program-join": NoObject("open programs are public offers", login=True),
    "programs:program-detail": NoObject(
        "open programs are public offers; enrolling another's car: test_nested_references",
        login=True,
    ),
    "programs:enrollment-leave": Bears("page", "enrollment", "post"),
    "programs:participation-opt-out": Bears(
        "page", "participation", "post", body={"choice": "full"}
    ),
    "programs:earnings": Lists("page"),
    "programs:earnings-cash-out": NoObject(OWN_ONLY, login=True),
    "programs:earnings-csv": Lists("page"),
    "programs:statement-detail": Lists("page", kwargs=_this_month, nothing=404),
    "programs:payout-webhook": NoObject("webhook authenticated by the payout provider's HMAC"),
    "programs:vehicle-plan": Bears("page", "vehicle", "get"),
    # owner API
    "api:profile": Lists("owner-api"),
    "api:vehicle-list": Lists("owner-api"),
    "api:vehicle-link-start": NoObject(OWN_ONLY),
    "api:vehicle-detail": Bears("owner-api", "vehicle", "get"),
    "api:vehicle-readings": Bears("owner-api", "vehicle", "get"),
    "api:vehicle-preferences": Bears("owner-api", "vehicle", "put", body=_preferences),
    "api:vehicle-unlink": Bears("owner-api", "vehicle", "post"),
    "api:charger-list": Lists("owner-api"),
    "api:charger-claim": NoObject(OWN_ONLY + "; see test_nested_references"),
    "api:charger-detail": Bears("owner-api", "charger", "get"),
    # utility API
    "utility-api:token": NoObject("OAuth token endpoint: client credentials are the identity"),
    "utility-api:program-list": Lists("utility-api"),
    "utility-api:program-detail": Bears("utility-api", "program", "get"),
    "utility-api:feeder-list": Lists("utility-api"),
    "utility-api:flexibility": Lists("utility-api"),
    "utility-api:event-list": Lists("utility-api"),
    "utility-api:event-detail": Bears("utility-api", "event", "get"),
    "utility-api:event-dispatch": Bears("utility-api", "draft_event", "post"),
    "utility-api:event-cancel": Bears("utility-api", "event", "post", body={"reason": "test"}),
    "utility-api:event-delivery": Bears("utility-api", "event", "get"),
    "utility-api:event-report": Bears("utility-api", "event", "get"),
    "utility-api:report-list": Lists("utility-api"),
    "utility-api:schema": NoObject("public OpenAPI schema"),
    "utility-api:docs": NoObject("public API docs"),
    "api-schema": NoObject("public OpenAPI schema"),
    "api-docs": NoObject("public API docs"),
    # admin site (per-model routes are generated from ADMIN_MODELS)
    "admin:index": Lists("admin", positive=False),
    "admin:login": NoObject("routes to allauth's sign-in"),
    "admin:logout": NoObject("the admin's own session"),
    "admin:password_change": NoObject("the admin's own password"),
    "admin:password_change_done": NoObject("the admin's own password"),
    "admin:autocomplete": NoObject("no ModelAdmin declares autocomplete_fields"),
    "admin:jsi18n": NoObject("translations"),
    "admin:view_on_site": NoObject(
        "contenttypes' shortcut, to be removed: see test_view_on_site_is_no_oracle"
    ),
    "admin:app_list": NoObject("an app's model list, no rows"),
    "admin/(?P<url>.*)$": NoObject("the admin's catch-all (404 or a redirect to add a slash)"),
    "admin:auth_user_password_change": Bears("operator", "owner", "get"),
    "admin:chargers_charger_provision": NoObject("operators provision new chargers"),
    "admin:programs_flexibility": Lists("admin"),
    "admin:programs_gridevent_preview": Bears("admin", "draft_event", "get"),
    "admin:programs_gridevent_dispatch": Bears("admin", "draft_event", "get"),
    "admin:programs_gridevent_live": Bears("admin", "event", "get"),
    "admin:programs_gridevent_live_fragment": Bears("admin", "event", "get"),
    "admin:programs_gridevent_cancel": Bears("admin", "event", "get"),
    "admin:programs_gridevent_delivery": Bears("admin", "event", "get"),
    "admin:programs_gridevent_settlement": Bears("admin", "event", "get"),
    "admin:programs_gridevent_settlement_csv": Bears("admin", "event", "get"),
    # Nothing is settled in the world: these show no rows of anybody's (and never foreign ones).
    "admin:programs_settlement_monthly": Lists("admin", positive=False),
    "admin:programs_settlement_monthly_csv": Lists("admin", positive=False),
}


@dataclass(frozen=True)
class AdminScope:
    """How an admin model is scoped. scope "utility": rows of the manager's utilities only
    (programs.admin.UtilityScoped or an equivalent get_queryset); "superuser": program managers
    hold no permission on it at all (operators only). `row(side)` is one of the side's rows,
    `shown(side)` what its changelist row shows; `manager_views`: a manager opens their own."""

    scope: str
    row: Callable[[Side], Any]
    shown: Callable[[Side], str] | None = None
    manager_views: bool = True


def _first(model_label: str) -> Callable[[Side], Any]:
    def row(side: Side) -> Any:
        from django.apps import apps

        return apps.get_model(model_label).objects.order_by("pk").first()

    return row


ADMIN_MODELS: dict[str, AdminScope] = {
    "programs.utility": AdminScope("utility", lambda s: s.utility, lambda s: s.utility.name),
    "programs.feeder": AdminScope("utility", lambda s: s.feeder, lambda s: s.feeder.code),
    "programs.tariff": AdminScope("utility", lambda s: s.tariff, lambda s: s.tariff.name),
    "programs.program": AdminScope("utility", lambda s: s.program, lambda s: s.program.code),
    "programs.enrollment": AdminScope("utility", lambda s: s.enrollment, lambda s: s.owner.email),
    "programs.gridevent": AdminScope("utility", lambda s: s.event, lambda s: s.program.name),
    "programs.auditentry": AdminScope(
        "utility", lambda s: s.audit_entry, lambda s: s.audit_entry.action
    ),
    # Scoped by utility in their get_queryset, and not granted to the managers' group: operators
    # issue API clients and VTN links.
    "programs.apiclient": AdminScope("utility", lambda s: s.api_client, manager_views=False),
    "programs.vtnlink": AdminScope("utility", lambda s: s.vtn_link, manager_views=False),
    # Owners' and operators' rows: no program manager permission exists on these.
    "auth.group": AdminScope("superuser", _first("auth.Group")),
    "account.emailaddress": AdminScope(
        "superuser", lambda s: s.owner.emailaddress_set.get(primary=True)
    ),
    "mfa.authenticator": AdminScope("superuser", lambda s: s.manager.authenticator_set.first()),
    "oauth2_provider.application": AdminScope("superuser", lambda s: s.api_client.application),
    "oauth2_provider.accesstoken": AdminScope(
        "superuser", lambda s: s.api_client.application.accesstoken_set.first()
    ),
    "oauth2_provider.grant": AdminScope("superuser", _first("oauth2_provider.Grant")),
    "oauth2_provider.idtoken": AdminScope("superuser", _first("oauth2_provider.IDToken")),
    "oauth2_provider.refreshtoken": AdminScope("superuser", _first("oauth2_provider.RefreshToken")),
    "accounts.user": AdminScope("superuser", lambda s: s.owner),
    "vehicles.vehicle": AdminScope("superuser", lambda s: s.vehicle),
    "vehicles.vehiclelink": AdminScope("superuser", lambda s: s.vehicle.link),
    "vehicles.vehiclereading": AdminScope("superuser", lambda s: s.vehicle.readings.first()),
    "vehicles.chargingpreference": AdminScope("superuser", lambda s: s.vehicle.preference),
    "chargers.charger": AdminScope("superuser", lambda s: s.charger),
    "chargers.chargingsession": AdminScope("superuser", _first("chargers.ChargingSession")),
    "control.command": AdminScope("superuser", _first("control.Command")),
    "control.owneralert": AdminScope("superuser", _first("control.OwnerAlert")),
}
ADMIN_PAGES = ("changelist", "add", "history", "delete", "change")

# Websocket routes of both ASGI apps (chargescape.routing), keyed by pattern.
WEBSOCKETS = {
    "ws/live/": "owner live updates: joins only the signed-in user's group owner.<id>",
    "^ocpp/(?P<charge_point_id>[A-Za-z0-9._-]{1,48})/?$": (
        "a charger, authenticated by HTTP Basic with its own key (tests/vehicles/chargers)"
    ),
}


# --- Reading the resolver -------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    key: str  # the route's name with namespaces, or its full pattern when unnamed
    pattern: str


def walk(patterns: list, prefix: str = "", namespace: str | None = None) -> Iterator[Route]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = namespace
            if entry.namespace:
                inner = f"{namespace}:{entry.namespace}" if namespace else entry.namespace
            yield from walk(entry.url_patterns, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            full = prefix + str(entry.pattern)
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
            yield Route(name or full, full)


def all_routes() -> list[Route]:
    return list(walk(get_resolver().url_patterns))


def admin_model_routes() -> dict[str, str]:
    """Route key → "app_label.model_name" of every route a registered ModelAdmin adds by
    default (its five pages and the unnamed `<id>/` redirect to the change page)."""
    keys = {}
    for model in admin.site._registry:
        label = f"{model._meta.app_label}.{model._meta.model_name}"
        info = f"{model._meta.app_label}_{model._meta.model_name}"
        for page in ADMIN_PAGES:
            keys[f"admin:{info}_{page}"] = label
        path = f"admin/{model._meta.app_label}/{model._meta.model_name}/<path:object_id>/"
        keys[path] = label
    return keys


def test_every_route_has_an_entry():
    """A route (named or not, anywhere in the resolver) without an entry fails the suite, and so
    does a registered ModelAdmin without a scoping entry."""
    generated = admin_model_routes()
    unlisted = [r.key for r in all_routes() if r.key not in ROUTES and r.key not in generated]
    assert unlisted == [], f"routes with no isolation entry: {unlisted}"
    models = {f"{m._meta.app_label}.{m._meta.model_name}" for m in admin.site._registry}
    assert sorted(models - set(ADMIN_MODELS)) == [], "admin models with no scoping entry"
    assert sorted(set(ADMIN_MODELS) - models) == [], "scoping entries of unregistered models"
    sockets = [
        str(p.pattern)
        for p in [*routing.owner_websocket_urlpatterns, *routing.ocpp_websocket_urlpatterns]
    ]
    assert sorted(set(sockets) ^ set(WEBSOCKETS)) == [], "websocket routes and entries differ"


def test_no_entry_is_stale():
    """Every entry names a route that exists (entries of routes still on their way excepted)."""
    keys = {r.key for r in all_routes()}
    assert sorted(set(ROUTES) - keys) == []


SAMPLE = {"int": "1", "slug": "x", "str": "x", "path": "x", "uuid": str(uuid.UUID(int=1))}


def test_signed_in_only_routes_send_anonymous_to_sign_in(db):
    """Routes that act on the signed-in user only (no object id) send anonymous callers to sign
    in, for every method, before doing anything (account deletion included, once it exists)."""
    anonymous = http_client()
    wrong = []
    for route in all_routes():
        entry = ROUTES.get(route.key)
        if not (isinstance(entry, NoObject) and entry.login):
            continue
        kwargs = {name: SAMPLE[kind] for kind, name in re.findall(r"<(\w+):(\w+)>", route.pattern)}
        url = reverse(route.key, kwargs=kwargs)
        for method in METHODS:
            response = getattr(anonymous, method)(url)
            if not (response.status_code == 302 and response["Location"].startswith(LOGIN)):
                wrong.append(f"{method.upper()} {route.key}: {response.status_code}")
    assert wrong == []


# --- Actors ---------------------------------------------------------------------------------------


@dataclass
class Actor:
    name: str
    role: str  # anonymous, owner, manager, api
    side: Side | None
    http: Client = field(repr=False)


def actors(world: World) -> list[Actor]:
    return [
        Actor("anonymous", "anonymous", None, http_client()),
        Actor("owner A", "owner", world.a, world.a.owner_http),
        Actor("owner B", "owner", world.b, world.b.owner_http),
        Actor("manager 1", "manager", world.a, world.a.manager_http),
        Actor("manager 2", "manager", world.b, world.b.manager_http),
        Actor("API client 1", "api", world.a, world.a.api_http),
        Actor("API client 2", "api", world.b, world.b.api_http),
    ]


OWNING_ROLE = {"page": "owner", "owner-api": "owner", "utility-api": "api", "admin": "manager"}
SAME_KIND = {
    "page": {"owner", "manager"},  # managers are signed-in users too: to owner pages, strangers
    "owner-api": {"owner", "manager"},
    "utility-api": {"api"},
    "admin": {"manager"},
    "operator": {"manager"},
}


def owns(actor: Actor, family: str, side: Side) -> bool:
    return family in OWNING_ROLE and actor.side is side and actor.role == OWNING_ROLE[family]


# --- Objects and URLs -----------------------------------------------------------------------------


# Object kind → (its URL kwarg, that kwarg for a side's object, a value no object has).
OBJECT_KWARGS: dict[str, tuple[str, Callable[[Side], Any], Callable[[], Any]]] = {
    "vehicle": ("vehicle_id", lambda side: side.vehicle.pk, uuid.uuid4),
    "charger": ("charger_id", lambda side: side.charger.pk, lambda: MISSING_INT),
    "enrollment": ("enrollment_id", lambda side: side.enrollment.pk, lambda: MISSING_INT),
    "participation": ("participation_id", lambda side: side.participation.pk, lambda: MISSING_INT),
    "notification": ("notification_id", lambda side: side.notification.pk, lambda: MISSING_INT),
    "program": ("code", lambda side: side.program.code, lambda: "no-such-program"),
    "event": ("event_id", lambda side: side.event.pk, lambda: MISSING_INT),
    "draft_event": ("event_id", lambda side: side.draft_event.pk, lambda: MISSING_INT),
    "authenticator": ("pk", lambda side: side.webauthn.pk, lambda: MISSING_INT),
    "owner": ("id", lambda side: side.owner.pk, lambda: MISSING_INT),
}


def object_kwargs(kind: str, side: Side | None) -> dict:
    """URL kwargs naming `side`'s object of `kind`, or (side None) one that does not exist."""
    name, of_side, missing = OBJECT_KWARGS[kind]
    return {name: of_side(side) if side else missing()}


@dataclass
class Case:
    """One object-bearing route on one side's object: where it is, where a missing one would
    be, who owns it, and what the owner sends in the positive control."""

    key: str
    family: str
    side: Side
    url: str
    missing: str
    ids: list[str]
    owner: Client
    ok: str
    body: Any
    methods: tuple[str, ...]
    ok_statuses: tuple[int, ...] = (200, 201, 204, 301, 302)
    insider: Callable[[Actor], bool] = lambda actor: False  # neither owner nor stranger
    everyone: bool = True  # False: only actors of the route's kind are tried


def route_cases(world: World) -> Iterator[Case]:
    for key, entry in ROUTES.items():
        if not isinstance(entry, Bears):
            continue
        for side in (world.a, world.b):
            kwargs, missing = object_kwargs(entry.kind, side), object_kwargs(entry.kind, None)
            owner = (
                world.operator
                if entry.family == "operator"
                else next(a.http for a in actors(world) if owns(a, entry.family, side))
            )
            yield Case(
                key=key,
                family=entry.family,
                side=side,
                url=reverse(key, kwargs=kwargs),
                missing=reverse(key, kwargs=missing),
                ids=[str(v) for v in [*kwargs.values(), *missing.values()]],
                owner=owner,
                ok=entry.ok,
                body=entry.body(side) if callable(entry.body) else entry.body,
                methods=ADMIN_METHODS if entry.family in ("admin", "operator") else METHODS,
            )


# Django's history page looks the row up before it checks the model permission, so on a model
# a manager holds no permission on it answers 403 for a row and "doesn't exist" for a missing
# one. test_history_of_operator_only_rows_is_no_oracle carries that gap (see its reason).
HISTORY_ORACLE = "history"


def admin_cases(world: World, *, pages=("change", "delete", "history", "")) -> Iterator[Case]:
    """The change, delete and history pages and the `<id>/` redirect of every registered
    ModelAdmin, on each side's row. Rows no manager may open are the operator's (positive
    control), and every manager is a stranger to them, their own utility's included."""
    for model in admin.site._registry:
        opts = model._meta
        scope = ADMIN_MODELS[f"{opts.app_label}.{opts.model_name}"]
        managed = scope.scope == "utility" and scope.manager_views
        for side in (world.a, world.b) if scope.scope == "utility" else (world.a,):
            row = scope.row(side)
            if row is None:
                continue  # no such row in the world: its changelist is still checked
            missing = uuid.uuid4() if isinstance(row.pk, uuid.UUID) else MISSING_INT
            base = f"/admin/{opts.app_label}/{opts.model_name}"
            for page in pages:
                if page == HISTORY_ORACLE and scope.scope == "superuser" and len(pages) > 1:
                    continue
                suffix = f"{page}/" if page else ""
                insider = (
                    (lambda actor, side=side: actor.side is side and actor.role == "manager")
                    if scope.scope == "utility" and not managed
                    else (lambda actor: False)
                )
                yield Case(
                    key=f"admin:{opts.app_label}_{opts.model_name}_{page or 'redirect'}",
                    family="admin" if managed else "operator",
                    side=side,
                    url=f"{base}/{row.pk}/{suffix}",
                    missing=f"{base}/{missing}/{suffix}",
                    ids=[str(row.pk), str(missing)],
                    owner=side.manager_http if managed else world.operator,
                    ok="get",
                    body={"post": "yes"},  # a forged delete confirmation
                    methods=ADMIN_METHODS,
                    # Nothing is deletable by a manager (programs migration 0003).
                    ok_statuses=(200, 302, 403) if page == "delete" else (200, 302),
                    insider=insider,
                    everyone=page == "change",  # the others meet admin_view's sign-in first
                )


def send(http: Client, method: str, url: str, family: str, body: Any = None) -> Any:
    """One request the way that family's clients send it (JSON to APIs, forms to pages)."""
    if family in ("owner-api", "utility-api"):
        if method in ("get", "head"):
            return getattr(http, method)(url)
        return getattr(http, method)(url, json.dumps(body or {}), content_type="application/json")
    if method == "post":
        return http.post(url, body or {})
    if method in ("get", "head"):
        return getattr(http, method)(url)
    return getattr(http, method)(url, "", content_type="application/x-www-form-urlencoded")


def location(response: Any, ids: list[str]) -> str:
    """Where a redirect points, with the object ids in it blanked (they differ by design)."""
    where = unquote(response.get("Location", ""))
    for value in sorted(ids, key=len, reverse=True):
        where = re.sub(rf"(?<![\w-]){re.escape(value)}(?![\w-])", "<id>", where)
    return where


# --- Running a batch without side effects ---------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.failures.append(message)


def untouched(recorder: Recorder, snapshot, published, label: str, run: Callable) -> None:  # type: ignore[no-untyped-def]
    """Run `run` in a savepoint that is rolled back afterwards, and record a failure when it
    changed any row, queued an on-commit callback or published a Celery task."""
    from django.db import connection

    with transaction.atomic():
        before, sent, queued = snapshot(), len(published), len(connection.run_on_commit)
        run()
        after = snapshot()
        new_callbacks = connection.run_on_commit[queued:]
        transaction.set_rollback(True)
    changed = sorted(t for t in after if after[t] != before.get(t))
    recorder.check(not changed, f"{label}: rows changed in {changed}")
    recorder.check(not new_callbacks, f"{label}: on-commit work queued {new_callbacks}")
    recorder.check(len(published) == sent, f"{label}: tasks published {published[sent:]}")


def as_owner(http: Client, method: str, url: str, family: str, body: Any) -> Any:
    """The owner's own request, in a savepoint rolled back afterwards (the world stays as is)."""
    with transaction.atomic():
        response = send(http, method, url, family, body)
        transaction.set_rollback(True)
    return response


SIGN_IN_PAGES = (LOGIN, ADMIN_LOGIN, "/accounts/reauthenticate/")


def refused(response: Any) -> bool:
    """Sent to sign in, or turned away with a 4xx before any object is looked at."""
    if response.status_code == 302:
        return response["Location"].startswith(SIGN_IN_PAGES)
    return response.status_code in (400, 401, 403, 405)


@pytest.fixture
def fresh_limits():
    """A fresh rate-limit key space per batch: the matrix sends far more requests than a client
    would, and a 429 would hide what the route itself answers."""
    from django.core.cache import cache

    def renew() -> None:
        cache.key_prefix = f"matrix-{uuid.uuid4().hex}"

    return renew


def run_case(  # type: ignore[no-untyped-def]
    case: Case, people: list[Actor], recorder: Recorder, snapshot, published, seen: dict
) -> None:
    """`seen`: the owner's status per method of routes already run on the other side (which
    methods a route takes does not depend on whose object it is), so the owner sends every
    method once per route and only the positive control on the second side."""
    owner_status = dict(seen.get(case.key, {}))
    for method in case.methods:
        if method in owner_status and method != case.ok:
            continue
        response = as_owner(case.owner, method, case.url, case.family, case.body)
        owner_status[method] = response.status_code
        recorder.check(
            response.status_code != 404 and response.status_code < 500,
            f"{method.upper()} {case.key} ({case.side.tag}) as its owner: {response.status_code}",
        )
    seen[case.key] = owner_status
    recorder.check(
        owner_status[case.ok] in case.ok_statuses,
        f"{case.ok.upper()} {case.key} ({case.side.tag}) as its owner: {owner_status[case.ok]}",
    )
    for method in case.methods:
        label = f"{method.upper()} {case.key} ({case.side.tag})"

        def strangers(method: str = method, label: str = label) -> None:
            for actor in people:
                if owns(actor, case.family, case.side) or case.insider(actor):
                    continue
                if not case.everyone and actor.role not in SAME_KIND[case.family]:
                    continue
                foreign = send(actor.http, method, case.url, case.family, case.body)
                absent = send(actor.http, method, case.missing, case.family, case.body)
                recorder.check(
                    (foreign.status_code, location(foreign, case.ids))
                    == (absent.status_code, location(absent, case.ids)),
                    f"{label}: {actor.name} tells foreign ({foreign.status_code} "
                    f"{foreign.get('Location', '')}) from missing ({absent.status_code} "
                    f"{absent.get('Location', '')})",
                )
                if actor.role not in SAME_KIND[case.family]:
                    recorder.check(
                        refused(foreign), f"{label}: {actor.name} got {foreign.status_code}"
                    )
                    continue
                allowed = {404}
                if owner_status[method] == 405:
                    allowed.add(405)  # the route does not take this method at all
                if case.family in ("admin", "operator"):
                    allowed |= {302, 403}  # the admin's "doesn't exist" redirect; no permission
                recorder.check(
                    foreign.status_code in allowed,
                    f"{label}: {actor.name} got {foreign.status_code}",
                )

        untouched(recorder, snapshot, published, label, strangers)


def extend_world(world: World) -> None:
    """What only the matrix needs: a draft event per utility (dispatch, preview), and a passkey
    per owner (allauth's passkey edit and remove pages bear it)."""
    from allauth.mfa.models import Authenticator

    from programs.models import GridEvent
    from tests.programs.factories import GridEventFactory

    for side in (world.a, world.b):
        side.draft_event = GridEventFactory(
            program=side.program, feeder=side.feeder, status=GridEvent.Status.DRAFT, target_kw=1
        )
        side.webauthn = Authenticator.objects.create(
            user=side.owner,
            type=Authenticator.Type.WEBAUTHN,
            data={"name": f"Key {side.tag}", "credential": {}},
        )


# --- The matrix -----------------------------------------------------------------------------------


def test_foreign_objects_answer_like_missing_ones_and_stay_untouched(
    world, snapshot, published, fresh_limits
):
    """Every object-bearing route × every method × every actor who does not own the object:
    exactly what a missing id gets (status and redirect); 404 for actors of the route's kind,
    sign-in/4xx for the others; and no row changed, nothing queued, nothing published. The
    owner gets through (positive control)."""
    extend_world(world)
    people = actors(world)
    recorder, seen = Recorder(), {}
    for case in route_cases(world):
        fresh_limits()
        run_case(case, people, recorder, snapshot, published, seen)
    assert recorder.failures == [], "\n".join(recorder.failures)


def test_admin_rows_of_another_utility_answer_like_missing_ones(
    world, snapshot, published, fresh_limits
):
    """Every registered ModelAdmin's change, delete and history pages and `<id>/` redirect, on a
    row of another utility (or an operator-only row): the same answer as a missing id, never
    the page, nothing changed (a forged delete confirmation included)."""
    people = actors(world)
    recorder, seen = Recorder(), {}
    for case in admin_cases(world):
        fresh_limits()
        run_case(case, people, recorder, snapshot, published, seen)
    assert recorder.failures == [], "\n".join(recorder.failures)


def test_history_of_operator_only_rows_is_no_oracle(world, snapshot, published, fresh_limits):
    """A manager opening the history of a row only operators may see (a user, a vehicle, a
    charger, an OAuth application …) gets what a missing id gets, not a 403 that says it
    exists."""
    people = actors(world)
    recorder, seen = Recorder(), {}
    for case in admin_cases(world, pages=(HISTORY_ORACLE,)):
        if case.family == "operator":
            fresh_limits()
            run_case(case, people, recorder, snapshot, published, seen)
    assert recorder.failures == [], "\n".join(recorder.failures)


def test_view_on_site_is_no_oracle(world):
    """admin:view_on_site (contenttypes' shortcut) checks no model permission: for a row whose
    model has get_absolute_url it answers differently than for a missing id. Any such model
    must answer a manager of another utility like a missing row, and never with a 5xx."""
    from django.contrib.contenttypes.models import ContentType

    for http in (Client(), world.a.owner_http):
        assert refused(http.get("/admin/r/1/1/"))
    rows = [
        row
        for model, scope in ((m, ADMIN_MODELS[m._meta.label_lower]) for m in admin.site._registry)
        if hasattr(model, "get_absolute_url") and (row := scope.row(world.a)) is not None
    ]
    assert rows, "no model with get_absolute_url left: make admin:view_on_site a NoObject"
    world.b.manager_http.raise_request_exception = False
    for row in rows:
        content_type = ContentType.objects.get_for_model(row)
        base = f"/admin/r/{content_type.pk}"
        foreign = world.b.manager_http.get(f"{base}/{row.pk}/")
        missing = world.b.manager_http.get(f"{base}/{MISSING_INT}/")
        assert (foreign.status_code, foreign.get("Location")) == (
            missing.status_code,
            missing.get("Location"),
        ), f"{row._meta.label}: {foreign.status_code} vs {missing.status_code}"


# --- Lists ----------------------------------------------------------------------------------------


def list_cases(world: World) -> Iterator[tuple[str, Lists, str]]:
    """(key, entry, url) of every list route and every admin changelist."""
    for key, entry in ROUTES.items():
        if isinstance(entry, Lists):
            kwargs = entry.kwargs() if entry.kwargs else {}
            yield key, entry, reverse(key, kwargs=kwargs)
    for model in admin.site._registry:
        opts = model._meta
        scope = ADMIN_MODELS[opts.label_lower]
        managed = scope.scope == "utility" and scope.manager_views
        key = f"admin:{opts.app_label}_{opts.model_name}_changelist"
        yield key, Lists("admin" if managed else "operator", positive=managed), reverse(key)


def forbidden(actor: Actor, family: str, world: World) -> list[str]:
    """What must never appear in what `actor` gets from a list of `family`."""
    marks = []
    for side in (world.a, world.b):
        mine = actor.side is side
        if family in ("page", "owner-api"):
            if not (mine and actor.role == "owner"):
                marks += side.owner_markers()
        elif family == "utility-api":
            marks += side.owner_markers()  # a utility's systems never see owners' identities
            if not (mine and actor.role == "api"):
                marks += side.utility_markers()
        elif not (mine and actor.role == "manager"):
            marks += side.owner_markers() + side.utility_markers()
    return marks


def allowed_markers(actor: Actor, family: str) -> list[str]:
    side = actor.side
    if family in ("page", "owner-api"):
        return side.own_markers()
    if family == "utility-api":
        return side.utility_markers()
    return side.owner_markers() + side.utility_markers()


def test_lists_never_show_foreign_objects(world, snapshot, published, fresh_limits):
    """Every list, dashboard and download (owner pages and API, utility API, admin changelists
    and reports), as each actor: nothing of another owner's or utility's appears; each owning
    actor sees their own (positive control); managers get 403 on operator-only changelists;
    reading a list changes nothing. The utility API's event lists hold exactly its own ids."""
    people = actors(world)
    recorder = Recorder()
    for key, entry, url in list_cases(world):
        fresh_limits()
        family = entry.family

        def read(key: str = key, entry: Lists = entry, url: str = url) -> None:
            family = entry.family
            for actor in people:
                response = actor.http.get(url)
                label = f"GET {key} as {actor.name}"
                if actor.role not in SAME_KIND.get(family, set()):
                    recorder.check(refused(response), f"{label}: {response.status_code}")
                    continue
                if family == "operator":
                    recorder.check(response.status_code == 403, f"{label}: {response.status_code}")
                    continue
                owning = actor.role == OWNING_ROLE[family]
                expected = {200} if owning else {200, entry.nothing}
                recorder.check(
                    response.status_code in expected,
                    f"{label}: {response.status_code}",
                )
                body = response.content.decode(errors="replace")
                leaked = [m for m in forbidden(actor, family, world) if m in body]
                recorder.check(not leaked, f"{label} shows {leaked}")
                if entry.positive and owning:
                    shown = [m for m in allowed_markers(actor, family) if m in body]
                    recorder.check(bool(shown), f"{label} shows none of its own rows")

        untouched(recorder, snapshot, published, f"GET {key}", read)
        if family == "operator":
            recorder.check(
                world.operator.get(url).status_code == 200, f"GET {key} as operator: not 200"
            )
    # The utility API's event and report lists carry exactly the caller's own event ids.
    for side in (world.a, world.b):
        for key in ("utility-api:event-list", "utility-api:report-list"):
            rows = side.api_http.get(reverse(key)).json()["results"]
            ids = {row.get("id") or row.get("event", {}).get("id") for row in rows}
            recorder.check(ids == {side.event.pk}, f"{key} as API client {side.tag}: {ids}")
    assert recorder.failures == [], "\n".join(recorder.failures)


# --- Nested references ----------------------------------------------------------------------------


def fields(response: Any) -> dict:
    """The per-field messages of an API error (chargescape's error envelope)."""
    return response.json().get("error", {}).get("fields", {})


def test_ids_nested_in_bodies_and_queries_are_refused(world, snapshot, published, fresh_limits):
    """Another owner's vehicle, charger or push endpoint in a body, another utility's program or
    feeder in an API body or query, another utility's program in an admin form: refused (a
    4xx or a form error naming the field), and nothing written, queued or published."""
    from accounts.notifications import services as notification_services

    a, b = world.a, world.b
    endpoint = "https://push.example/bravo-browser"
    notification_services.subscribe_push(owner=b.owner, endpoint=endpoint, p256dh="k", auth="a")
    recorder = Recorder()
    api_event = {
        "kind": "import_cap",
        "starts_at": (b.event.starts_at).isoformat(),
        "ends_at": (b.event.ends_at).isoformat(),
        "target_kw": 5,
    }

    def attempts() -> None:
        # Owner A joins a program with B's car.
        response = a.owner_http.post(
            reverse("programs:program-detail", args=[a.program.code]),
            {"vehicle": str(b.vehicle.pk), "terms_version": 1, "accept": "on"},
        )
        recorder.check(response.status_code == 400, f"enroll B's car: {response.status_code}")
        # Owner A makes B's car the usual car of A's charger.
        response = a.owner_http.post(
            reverse("vehicles:chargers:charger-detail", args=[a.charger.pk]),
            {"vehicle": str(b.vehicle.pk)},
        )
        recorder.check(response.status_code == 400, f"pair B's car: {response.status_code}")
        # Owner A claims B's charger, even knowing its pairing code.
        claim = {"charge_point_id": b.charger.charge_point_id, "pairing_code": b.pairing_code}
        response = a.owner_http.post(reverse("vehicles:chargers:charger-claim"), claim)
        recorder.check(
            response.status_code in (200, 400) and "No charger" in response.content.decode(),
            f"claim B's charger (page): {response.status_code}",
        )
        response = a.owner_http.post(
            reverse("api:charger-claim"), json.dumps(claim), content_type="application/json"
        )
        recorder.check(
            response.status_code == 400 and "pairing_code" in fields(response),
            f"claim B's charger (API): {response.status_code}",
        )
        # Owner A removes B's push subscription by its endpoint.
        response = a.owner_http.post(
            reverse("accounts:push-unsubscribe"),
            json.dumps({"endpoint": endpoint}),
            content_type="application/json",
        )
        recorder.check(
            response.json().get("removed") == 0, f"unsubscribe B's browser: {response.content}"
        )
        # API client 1 creates an event in utility 2's program, or on utility 2's feeder.
        for body, field_name in (
            ({**api_event, "program": b.program.code}, "program"),
            ({**api_event, "program": a.program.code, "feeder": b.feeder.code}, "feeder"),
        ):
            response = a.api_http.post(
                reverse("utility-api:event-list"),
                json.dumps(body),
                content_type="application/json",
            )
            recorder.check(
                response.status_code == 400 and field_name in fields(response),
                f"API event with utility 2's {field_name}: {response.status_code}",
            )
        # API client 1 asks for utility 2's flexibility and events by code.
        response = a.api_http.get(reverse("utility-api:flexibility"), {"program": b.program.code})
        recorder.check(
            response.status_code == 400 and "program" in fields(response),
            f"flexibility of utility 2's program: {response.status_code}",
        )
        response = a.api_http.get(reverse("utility-api:flexibility"), {"feeder": b.feeder.code})
        recorder.check(
            response.status_code == 200 and response.json()["feeders"] == [],
            f"flexibility of utility 2's feeder: {response.content[:200]}",
        )
        response = a.api_http.get(reverse("utility-api:event-list"), {"program": b.program.code})
        recorder.check(
            response.status_code in (200, 400)
            and (response.status_code == 400 or response.json()["results"] == []),
            f"events of utility 2's program: {response.content[:200]}",
        )
        # Manager 1 creates an event in utility 2's program through the admin form.
        response = a.manager_http.post(
            reverse("admin:programs_gridevent_add"),
            {
                "program": b.program.pk,
                "kind": "import_cap",
                "starts_at": "2030-01-01T18:00",
                "ends_at": "2030-01-01T19:00",
                "target_kw": "5",
            },
        )
        recorder.check(
            response.status_code == 200 and "Select a valid choice" in response.content.decode(),
            f"admin event in utility 2's program: {response.status_code}",
        )
        # Manager 1 runs admin actions with utility 2's ids among the selected rows.
        changelist = reverse("admin:programs_enrollment_changelist")
        a.manager_http.post(
            changelist,
            {
                "action": "suspend_enrollments",
                "apply": "1",
                "reason": "forged",
                "_selected_action": [b.enrollment.pk],
                "index": 0,
            },
        )
        export = a.manager_http.post(
            changelist,
            {
                "action": "export_enrollments_csv",
                "_selected_action": [a.enrollment.pk, b.enrollment.pk],
                "index": 0,
            },
        ).content.decode()
        recorder.check(
            a.owner.email in export and b.owner.email not in export,
            f"enrollment export with utility 2's id: {export[:300]}",
        )
        export = a.manager_http.post(
            reverse("admin:programs_gridevent_changelist"),
            {
                "action": "export_delivery_csv",
                "_selected_action": [a.event.pk, b.event.pk],
                "index": 0,
            },
        ).content.decode()
        recorder.check(
            a.program.code in export and b.program.code not in export,
            f"delivery export with utility 2's event: {export[:300]}",
        )

    untouched(recorder, snapshot, published, "nested references", attempts)
    assert recorder.failures == [], "\n".join(recorder.failures)


# --- Websocket groups -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_live_sockets_carry_only_their_owners_messages(settings):
    """Owners' and a program manager's live sockets (the real Redis channel layer): a reading of
    B's car and a notification of B's reach B's socket only; a replay request on A's socket
    returns A's notifications only; the manager's socket hears nothing of either owner."""
    from asgiref.sync import async_to_sync, sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.utils import timezone

    from accounts.notifications import live
    from chargescape.asgi import application
    from tests.factories import UserFactory
    from tests.security.isolation_world import build_side
    from vehicles import services
    from vehicles.oem.base import VehicleState

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    a = build_side("ALPHA", zip_code="60601", bonus_cents=5100)
    b = build_side("BRAVO", zip_code="10001", bonus_cents=7300)
    manager = UserFactory(email="manager-live@example.com", is_staff=True)
    a.utility.managers.add(manager)

    def cookie(user) -> bytes:  # type: ignore[no-untyped-def]
        http = Client()
        http.force_login(user)
        return f"sessionid={http.cookies['sessionid'].value}".encode()

    headers = {
        name: [(b"origin", b"http://127.0.0.1"), (b"cookie", cookie(user))]
        for name, user in (("a", a.owner), ("b", b.owner), ("manager", manager))
    }
    state = VehicleState(recorded_at=timezone.now(), soc_pct=63.0, plugged_in=True)

    async def scenario() -> None:
        sockets = {
            name: WebsocketCommunicator(application, "/ws/live/", headers=value)
            for name, value in headers.items()
        }
        for socket in sockets.values():
            connected, _ = await socket.connect()
            assert connected
        await sync_to_async(services.record_reading)(vehicle=b.vehicle, state=state, source="poll")
        await sync_to_async(live.publish_many)([b.notification], unread={b.owner.pk: 1})
        got = [await sockets["b"].receive_json_from(timeout=5) for _ in range(2)]
        assert {m.get("vehicle") for m in got} >= {str(b.vehicle.pk)}
        assert any(m.get("notification", {}).get("id") == b.notification.pk for m in got)
        assert await sockets["a"].receive_nothing(timeout=0.5)
        assert await sockets["manager"].receive_nothing(timeout=0.1)
        await sockets["a"].send_json_to({"notifications_after": 0})
        replay = await sockets["a"].receive_json_from(timeout=5)
        assert replay["notification"]["id"] == a.notification.pk
        assert await sockets["a"].receive_nothing(timeout=0.5)
        await sockets["manager"].send_json_to({"notifications_after": 0})
        assert await sockets["manager"].receive_nothing(timeout=0.5)
        for socket in sockets.values():
            await socket.disconnect()

    async_to_sync(scenario)()
