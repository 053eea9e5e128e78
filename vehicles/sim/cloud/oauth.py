"""Smartcar Connect on the simulator: the consent page and the token endpoint.

`GET /oauth/authorize` takes the query `AuthClient.get_auth_url` builds (response_type, client_id,
redirect_uri, scope, state, mode, approval_prompt, single_select, single_select_vin, make, user)
and shows the demo account's cars. The owner ticks 1–3 and approves (redirect with `code` and
`state`) or denies (`error=access_denied`). `POST /oauth/token` speaks the grant types
`AuthClient.exchange_code` and `exchange_refresh_token` send, with HTTP Basic client credentials.

The page is plain HTML with one hashed `<style>` block and no script, so a strict CSP holds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from . import errors
from .grants import ALL_SCOPES
from .world import World

SCOPE_LABELS = {
    "read_vehicle_info": "Make, model and year",
    "read_vin": "VIN",
    "read_battery": "Battery level and range",
    "read_charge": "Charging status and charge limit",
    "control_charge": "Start or stop charging, set the charge limit",
    "read_location": "Location",
    "read_odometer": "Odometer",
}

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:#f4f6f8;color:#1b1f23}
main{max-width:28rem;margin:0 auto;padding:1.25rem}
h1{font-size:1.35rem;margin:.5rem 0 1rem}
.card{background:#fff;border-radius:12px;padding:1rem;margin:0 0 1rem;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
.car{display:flex;align-items:center;gap:.75rem;padding:.75rem 0;min-height:3rem;
border-top:1px solid #e6e9ec}
.car:first-of-type{border-top:0}
.car input{width:1.5rem;height:1.5rem;flex:none}
.car small{display:block;color:#57606a}
ul{margin:.25rem 0 0;padding-left:1.2rem}
.error{background:#fff1f0;color:#a40e26;border-radius:8px;padding:.75rem;margin:0 0 1rem}
.actions{display:flex;gap:.75rem}
button{flex:1;min-height:3rem;font-size:1rem;border-radius:10px;border:1px solid #8c959f;
background:#fff;color:#1b1f23}
button.primary{background:#0b6bcb;border-color:#0b6bcb;color:#fff;font-weight:600}
.muted{color:#57606a;font-size:.9rem}
""".strip()
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass
class Page:
    status: int
    html: str | None = None
    location: str | None = None
    json: dict | None = None
    headers: dict[str, str] | None = None


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _error_page(status: int, message: str) -> Page:
    body = f"<h1>Can't connect</h1><p class=error>{html.escape(message)}</p>"
    return Page(status, _document("SimCar Connect", body))


def _with_query(uri: str, params: dict[str, str]) -> str:
    return uri + ("&" if urlsplit(uri).query else "?") + urlencode(params)


def authorize(world: World, query: dict[str, str]) -> Page:
    """Render the consent page for a Connect URL, or explain (400) what is wrong with it."""
    if query.get("client_id") != world.client_id:
        return _error_page(400, "Unknown client_id: this application is not registered.")
    redirect_uri = query.get("redirect_uri") or (
        world.redirect_uris[0] if len(world.redirect_uris) == 1 else ""
    )
    if not redirect_uri or urlsplit(redirect_uri).scheme not in ("http", "https"):
        return _error_page(400, "A valid redirect_uri is required.")
    if world.redirect_uris and redirect_uri not in world.redirect_uris:
        return _error_page(400, "redirect_uri is not registered for this application.")
    state = query.get("state")
    if query.get("response_type") != "code":
        params = {"error": "invalid_request", "error_description": "response_type must be code"}
        return Page(302, location=_with_query(redirect_uri, _with_state(params, state)))
    scopes = [s for s in query.get("scope", "").split() if s in ALL_SCOPES] or list(ALL_SCOPES)
    cars = world.cars
    if vin := query.get("single_select_vin"):
        cars = [c for c in cars if c.vin == vin]
        if not cars:
            params = {"error": "vehicle_incompatible", "error_description": "No such vehicle."}
            return Page(302, location=_with_query(redirect_uri, _with_state(params, state)))
    consent_id = world.new_consent(
        {
            "redirect_uri": redirect_uri,
            "state": state,
            "scopes": scopes,
            "vehicle_ids": [c.vehicle_id for c in cars],
            "max": 1 if query.get("single_select") == "true" else world.max_selection,
        }
    )
    return Page(200, _consent_html(world, consent_id, world.peek_consent(consent_id) or {}))


def _with_state(params: dict[str, str], state: str | None) -> dict[str, str]:
    return {**params, "state": state} if state is not None else params


def _consent_html(world: World, consent_id: str, consent: dict, error: str = "") -> str:
    maximum = consent["max"]
    kind = "radio" if maximum == 1 else "checkbox"
    rows = []
    for car in world.cars:
        if car.vehicle_id not in consent["vehicle_ids"]:
            continue
        m = car.model
        rows.append(
            f'<label class=car><input type={kind} name=vehicle value="{car.vehicle_id}">'
            f"<span>{html.escape(f'{m.year} {m.make.title()} {m.model}')}"
            f"<small>VIN …{html.escape(car.vin[-6:])} · {m.battery_kwh:g} kWh</small></span>"
            "</label>"
        )
    scopes = "".join(f"<li>{html.escape(SCOPE_LABELS[s])}</li>" for s in consent["scopes"])
    pick = "Choose a car" if maximum == 1 else f"Choose up to {maximum} cars"
    notice = f"<p class=error role=alert>{html.escape(error)}</p>" if error else ""
    body = (
        "<h1>Connect your car to ChargeScape</h1>"
        f"{notice}"
        "<form method=post action=/oauth/authorize>"
        f'<input type=hidden name=consent value="{html.escape(consent_id)}">'
        f"<div class=card><strong>{pick}</strong>{''.join(rows)}</div>"
        f"<div class=card><strong>ChargeScape will be able to see and do:</strong>"
        f"<ul>{scopes}</ul></div>"
        "<div class=actions>"
        "<button type=submit name=action value=deny>Deny</button>"
        "<button class=primary type=submit name=action value=approve>Allow</button>"
        "</div></form>"
        "<p class=muted>Simulated vehicle cloud — no real car or account is involved.</p>"
    )
    return _document("SimCar Connect", body)


def decide(world: World, form: dict[str, list[str]]) -> Page:
    """The owner's answer: approve with 1–3 cars (code), or deny (access_denied)."""
    consent_id = (form.get("consent") or [""])[0]
    consent = world.peek_consent(consent_id)
    if consent is None:
        return _error_page(400, "This consent page has expired. Start linking again.")
    redirect_uri, state = consent["redirect_uri"], consent["state"]
    action = (form.get("action") or [""])[0]
    if action == "deny":
        world.take_consent(consent_id)
        params = {
            "error": "access_denied",
            "error_description": "User denied access to the requested scope of permissions.",
        }
        return Page(303, location=_with_query(redirect_uri, _with_state(params, state)))
    if action != "approve":
        return _error_page(400, "Choose Allow or Deny.")
    chosen = list(dict.fromkeys(form.get("vehicle", [])))
    if any(v not in consent["vehicle_ids"] for v in chosen):
        return _error_page(400, "That car is not on this account.")
    if not 1 <= len(chosen) <= consent["max"]:
        maximum = consent["max"]
        message = "Choose one car." if maximum == 1 else f"Choose between 1 and {maximum} cars."
        return Page(400, _consent_html(world, consent_id, consent, message))
    world.take_consent(consent_id)
    ordered = [c.vehicle_id for c in world.cars if c.vehicle_id in chosen]
    code = world.issue_code(
        client_id=world.client_id,
        vehicle_ids=ordered,
        scopes=consent["scopes"],
        redirect_uri=redirect_uri,
    )
    return Page(303, location=_with_query(redirect_uri, _with_state({"code": code}, state)))


def _client_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(authorization.removeprefix("Basic ").strip()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def token(world: World, authorization: str | None, form: dict[str, list[str]]) -> Page:
    """POST /oauth/token: authorization_code and refresh_token grants; OAuth errors as JSON."""
    credentials = _client_credentials(authorization)
    if (
        credentials is None
        or credentials[0] != world.client_id
        or not hmac.compare_digest(credentials[1], world.client_secret)
    ):
        raise errors.OAuthError(401, "invalid_client", "Invalid client id or secret.")
    grant_type = (form.get("grant_type") or [""])[0]
    if grant_type == "authorization_code":
        code = (form.get("code") or [""])[0]
        redirect_uri = (form.get("redirect_uri") or [None])[0]
        return Page(200, json=world.exchange_code(code, redirect_uri))
    if grant_type == "refresh_token":
        return Page(200, json=world.refresh((form.get("refresh_token") or [""])[0]))
    raise errors.OAuthError(400, "unsupported_grant_type", "grant_type is not supported.")


def token_endpoint_name(form: dict[str, list[str]]) -> str:
    grant_type = (form.get("grant_type") or [""])[0]
    if grant_type == "refresh_token":
        return "auth.exchange_refresh_token"
    if grant_type == "authorization_code":
        return "auth.exchange_code"
    return "auth.token"
