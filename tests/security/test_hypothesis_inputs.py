"""Hypothesis on every serializer and form of our apps (issue #11).

`test_every_serializer_and_form_has_a_property_test` imports every module of accounts, vehicles,
programs and chargescape, walks the subclasses of DRF's BaseSerializer and Django's BaseForm, and
fails naming any class missing from CASES below: a new serializer or form needs its entry here.

For each class, `test_arbitrary_input` feeds generated data: per field, values shaped like the
field (choices, ranges, dates, patterns — so valid inputs are reached) mixed with chaos (text with
NUL and lone surrogates, huge and negative integers, NaN and infinities, None, lists, nested
dicts), plus unknown keys. Properties:

- `is_valid()` never raises; when it returns False every error message is a string;
- where the class feeds a write (its `save`: the service call its view makes, or the ModelForm's
  save), valid input is stored consistently or refused with a validation error (a 4xx for the
  view) — never an IntegrityError, DataError or any other exception (a 5xx), and the row that
  results passes the model's own validation.

Form data is what a browser can send: strings, several values per key (None: key left out).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import QueryDict
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import serializers
from rest_framework.exceptions import APIException

from accounts.models import User
from tests.factories import UserFactory, VehicleFactory
from tests.programs.factories import GridEventFactory, UtilityFactory

OUR_APPS = ("accounts", "vehicles", "programs", "chargescape")
MAX_EXAMPLES = 60

# --- Discovery ----------------------------------------------------------------------------------


def _our_modules() -> Iterator[str]:
    for app in OUR_APPS:
        package = importlib.import_module(app)
        for module in pkgutil.walk_packages(package.__path__, f"{app}."):
            name = module.name
            if ".migrations" in name or name.endswith("__main__"):
                continue
            yield name


def _subclasses(base: type) -> Iterator[type]:
    for sub in base.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def discovered_classes() -> dict[str, type]:
    """Every serializer and form class defined in our apps, by dotted name."""
    for name in _our_modules():
        importlib.import_module(name)
    found: dict[str, type] = {}
    for base in (serializers.BaseSerializer, forms.BaseForm):
        for cls in _subclasses(base):
            if cls.__module__.split(".")[0] in OUR_APPS:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


# --- Strategies --------------------------------------------------------------------------------

WEIRD_TEXT = [
    "",
    " ",
    "0",
    "-1",
    "100",
    "101",
    "1e400",
    "-1e400",
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "9" * 40,
    "\x00",
    "a\x00b",
    "\ud800",
    "x" * 5000,
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01",
    "2026-02-30",
    "25:00",
    "07:00",
    "true",
    "on",
    "null",
    "[]",
    "{}",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "../../etc/passwd",
]
# A form body is bytes decoded with errors="replace": a lone surrogate cannot arrive in one
# (JSON's "\ud800" escape can, so serializers get them).
FORM_WEIRD_TEXT = [text for text in WEIRD_TEXT if not re.search("[\ud800-\udfff]", text)]
HUGE_INTS = st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**30, 10**400])
CHAOS_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=60),
    st.sampled_from(WEIRD_TEXT),
)
CHAOS = st.recursive(
    CHAOS_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=12), children, max_size=4),
    ),
    max_leaves=12,
)
NOW = datetime.now(UTC)
NEAR_DATETIMES = st.datetimes(
    min_value=(NOW - timedelta(days=400)).replace(tzinfo=None),
    max_value=(NOW + timedelta(days=800)).replace(tzinfo=None),
    timezones=st.just(UTC),
)


def _numbers(minimum: Any, maximum: Any, *, integer: bool, strict: bool) -> st.SearchStrategy:
    """In range when `strict`; else a little past both ends too."""
    slack = 0 if strict else 5
    low = int(minimum) - slack if minimum is not None else -1000
    high = int(maximum) + slack if maximum is not None else 10_000
    if integer:
        return st.integers(low, high)
    return (
        st.floats(min_value=float(minimum or low), max_value=high)
        if strict
        else st.floats(low, high)
    )


def drf_values(field: serializers.Field, hints: list[Any], strict: bool) -> st.SearchStrategy:
    """Values shaped like a DRF field. `strict`: only well-formed ones (to reach valid input);
    otherwise mixed with chaos and the world's ids and codes."""
    shaped: st.SearchStrategy
    if isinstance(field, serializers.ListSerializer):
        shaped = st.lists(drf_values(field.child, hints, strict), min_size=int(strict), max_size=7)
    elif isinstance(field, serializers.BaseSerializer):
        shaped = drf_payloads(field, hints, strict)
    elif isinstance(field, serializers.ListField):
        shaped = st.lists(drf_values(field.child, hints, strict), max_size=6)
    elif isinstance(field, serializers.ChoiceField):
        shaped = st.sampled_from(list(field.choices) or [""])
    elif isinstance(field, serializers.BooleanField):
        shaped = st.booleans()
    elif isinstance(field, serializers.IntegerField):
        shaped = _numbers(field.min_value, field.max_value, integer=True, strict=strict)
    elif isinstance(field, serializers.FloatField | serializers.DecimalField):
        shaped = _numbers(field.min_value, field.max_value, integer=False, strict=strict)
    elif isinstance(field, serializers.DateTimeField):
        shaped = NEAR_DATETIMES.map(datetime.isoformat)
    elif isinstance(field, serializers.TimeField):
        shaped = st.times().map(lambda t: t.strftime("%H:%M"))
    elif isinstance(field, serializers.DateField):
        shaped = NEAR_DATETIMES.map(lambda d: d.date().isoformat())
    elif isinstance(field, serializers.RegexField):
        pattern = field.validators[-1].regex.pattern
        shaped = st.from_regex(pattern, fullmatch=True)
    elif isinstance(field, serializers.CharField):
        size = field.max_length or 40
        shaped = st.one_of(st.text(max_size=size if strict else size + 2), st.sampled_from(hints))
    else:
        shaped = CHAOS
    if strict:
        return st.one_of(shaped, st.none()) if field.allow_null else shaped
    return st.one_of(shaped, shaped, CHAOS, st.sampled_from(hints))


def drf_payloads(
    serializer: serializers.BaseSerializer, hints: list[Any], strict: bool | None = None
) -> st.SearchStrategy:
    """Objects for a serializer: well-formed ones (every required field, shaped values) and
    mixed ones (any subset of fields, chaos values, read-only and unknown keys, non-objects)."""
    if strict is None:
        return st.one_of(
            drf_payloads(serializer, hints, True), drf_payloads(serializer, hints, False)
        )
    writable = {name: f for name, f in serializer.fields.items() if not f.read_only}
    if strict:
        required = {n: drf_values(f, hints, True) for n, f in writable.items() if f.required}
        optional = {n: drf_values(f, hints, True) for n, f in writable.items() if not f.required}
        return st.fixed_dictionaries(required, optional=optional)
    known = st.fixed_dictionaries(
        {}, optional={n: drf_values(f, hints, False) for n, f in writable.items()}
    )
    read_only = {name: CHAOS for name, f in serializer.fields.items() if f.read_only}
    extra = st.fixed_dictionaries({}, optional=read_only | {"id": CHAOS, "owner": CHAOS})
    return st.one_of(st.builds(lambda a, b: {**b, **a}, known, extra), CHAOS)


def form_values(field: forms.Field, hints: list[str], strict: bool) -> st.SearchStrategy:
    """What a browser could send for a form field: one string, or several."""
    shaped: st.SearchStrategy
    if isinstance(field, forms.ModelChoiceField):
        pks = [str(pk) for pk in field.queryset.values_list("pk", flat=True)]
        shaped = st.sampled_from(pks or ["1"])
    elif isinstance(field, forms.MultipleChoiceField):
        keys = [str(key) for key, _ in field.choices] or [""]
        many = st.lists(st.sampled_from(keys), min_size=int(strict), max_size=3, unique=True)
        return many if strict else st.one_of(many, st.lists(st.text(), max_size=2))
    elif isinstance(field, forms.ChoiceField):
        shaped = st.sampled_from([str(key) for key, _ in field.choices] or [""])
    elif isinstance(field, forms.BooleanField):
        shaped = st.just("on") if strict else st.sampled_from(["on", "true", "false", "0", "1"])
    elif isinstance(field, forms.IntegerField):
        shaped = _numbers(field.min_value, field.max_value, integer=True, strict=strict).map(str)
    elif isinstance(field, forms.FloatField | forms.DecimalField):
        numbers = _numbers(field.min_value, field.max_value, integer=False, strict=strict)
        shaped = numbers.map(lambda x: f"{x:.2f}") if strict else numbers.map(str)
    elif isinstance(field, forms.DateTimeField):
        shaped = NEAR_DATETIMES.map(lambda d: d.strftime("%Y-%m-%dT%H:%M"))
    elif isinstance(field, forms.TimeField):
        shaped = st.times().map(lambda t: t.strftime("%H:%M"))
    elif isinstance(field, forms.DateField):
        shaped = NEAR_DATETIMES.map(lambda d: d.date().isoformat())
    elif isinstance(field, forms.RegexField):
        shaped = st.from_regex(field.regex.pattern, fullmatch=True)
    elif isinstance(field, forms.URLField):
        shaped = st.sampled_from(["https://vtn.example.com/openadr3", "ftp://x", "http://"])
    else:
        size = getattr(field, "max_length", None) or 40
        shaped = st.one_of(
            st.text(
                alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]),
                max_size=size,
            ),
            st.sampled_from(hints),
        )
    if strict:
        return shaped.map(lambda v: [v])
    chaos = st.one_of(
        st.text(max_size=60),  # hypothesis leaves out surrogates unless asked
        st.sampled_from(FORM_WEIRD_TEXT),
        st.integers().map(str),
        HUGE_INTS.map(str),
        st.floats().map(str),
        st.sampled_from(hints),
    )
    one = st.one_of(shaped, shaped, chaos)
    return st.one_of(one.map(lambda v: [v]), st.lists(one, min_size=2, max_size=3))


def querydict(values: dict[str, Any]) -> QueryDict:
    """Form data as the request parser builds it; a list is several values for one key."""
    data = QueryDict(mutable=True)
    for key, value in values.items():
        data.setlist(key, value if isinstance(value, list) else [value])
    return data


def form_payloads(form: forms.BaseForm, hints: list[str]) -> st.SearchStrategy:
    """QueryDicts for a form: well-formed ones (required fields present, shaped values) and
    mixed ones (any subset, chaos, several values per key, unknown keys)."""

    fields = form.fields.items()
    strict = st.fixed_dictionaries(
        {n: form_values(f, hints, True) for n, f in fields if f.required},
        optional={n: form_values(f, hints, True) for n, f in fields if not f.required},
    )
    mixed = st.fixed_dictionaries(
        {},
        optional={n: form_values(f, hints, False) for n, f in fields}
        | {"id": form_values(forms.CharField(), hints, False), "owner": st.just(["1"])},
    )
    return st.one_of(strict, mixed).map(querydict)


# --- The world the classes work in ---------------------------------------------------------------


@dataclass
class World:
    owner: User
    vehicle: Any
    utility: Any
    program: Any
    api_client: Any
    event: Any
    charger: Any
    pairing_code: str
    owned_charger: Any

    @property
    def hints(self) -> list[Any]:
        return [
            self.vehicle.pk,
            str(self.vehicle.pk),
            self.program.code,
            self.program.pk,
            self.charger.charge_point_id,
            self.pairing_code,
            *self.program.utility.feeders.values_list("code", flat=True),
            "Loop",
            self.owner.email,
            "correct-horse-battery-9",  # tests.conftest.DEFAULT_PASSWORD
        ]

    def fresh_owner(self) -> User:
        return User.objects.get(pk=self.owner.pk)

    def preference(self) -> Any:
        from vehicles.models import ChargingPreference

        return ChargingPreference.objects.get(vehicle=self.vehicle)


@pytest.fixture
def world(db, settings) -> World:
    from programs.api import services as api_services
    from tests.programs.test_utility_api import territory
    from vehicles.chargers import services as charger_services

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    owner = UserFactory(service_zip="60601")
    vehicle = VehicleFactory(owner=owner)
    # A boost is running: the page's form does not show its target, yet must keep it valid.
    vehicle.preference.boost_until = timezone.now() + timedelta(hours=2)
    vehicle.preference.boost_to_soc_pct = 80
    vehicle.preference.save()
    utility = UtilityFactory(name="Lakeshore Electric", slug="lakeshore")
    program = territory(utility)
    api_client, _ = api_services.create_api_client(
        utility=utility, name="Grid ops", scopes=["read", "dispatch"]
    )
    provisioned = charger_services.provision_charger(
        charge_point_id="HYP-0001", v2g_capable=True, max_power_kw=11
    )
    mine = charger_services.provision_charger(
        charge_point_id="HYP-0002", v2g_capable=False, max_power_kw=7
    )
    charger_services.claim_charger(
        owner=owner, charge_point_id="HYP-0002", pairing_code=mine.pairing_code
    )
    return World(
        owner=owner,
        vehicle=vehicle,
        utility=utility,
        program=program,
        api_client=api_client,
        # Large enough that dispatching asks for the program code (DispatchForm).
        event=GridEventFactory(program=program, target_kw=settings.EVENT_CONFIRM_ABOVE_KW + 1),
        charger=provisioned.charger,
        pairing_code=provisioned.pairing_code,
        owned_charger=mine.charger,
    )


# --- What each class is built with, and the write its valid data feeds --------------------------


@dataclass
class Case:
    build: Callable[[World, Any], Any]
    save: Callable[[World, Any], None] | None = None
    # Well-formed inputs where fields depend on each other (floor ≤ target ≤ ceiling, start
    # before end, rules of the program): field-by-field generation would rarely reach them.
    strict: Callable[[World], st.SearchStrategy] | None = None


def serializer(cls_path: str, **context: Callable[[World], Any]) -> Callable[[World, Any], Any]:
    def build(world: World, data: Any) -> Any:
        cls = discovered_classes_cached()[cls_path]
        return cls(data=data, context={k: make(world) for k, make in context.items()})

    return build


def form(cls_path: str, **kwargs: Callable[[World], Any]) -> Callable[[World, Any], Any]:
    def build(world: World, data: Any) -> Any:
        cls = discovered_classes_cached()[cls_path]
        return cls(data, **{k: make(world) for k, make in kwargs.items()})

    return build


_CLASSES: dict[str, type] = {}


def discovered_classes_cached() -> dict[str, type]:
    if not _CLASSES:
        _CLASSES.update(discovered_classes())
    return _CLASSES


def check_preference_row(world: World) -> None:
    """The stored preference passes the model's validation and the cross-field rules."""
    from vehicles.validation import preference_errors

    preference = world.preference()
    preference.full_clean()
    values = {
        "min_soc_pct": preference.min_soc_pct,
        "max_soc_pct": preference.max_soc_pct,
        "v2g_consent": preference.v2g_consent,
        "v2g_min_soc_pct": preference.v2g_min_soc_pct,
        "weekly_schedule": preference.weekly_schedule,
        "override_target_soc_pct": preference.override_target_soc_pct,
        "boost_to_soc_pct": preference.boost_to_soc_pct,
    }
    assert preference_errors(values) == {}


def save_preference_api(world: World, data: Any) -> None:
    from vehicles import services

    services.update_preference(vehicle=world.vehicle, **data.validated_data)
    check_preference_row(world)


def save_preference_form(world: World, data: Any) -> None:
    from vehicles import services

    services.update_preference(vehicle=world.vehicle, **data.preference_values())
    check_preference_row(world)


def save_pause(world: World, data: Any) -> None:
    from vehicles import services

    until = datetime.combine(data.cleaned_data["until"], time.max).replace(
        tzinfo=timezone.get_current_timezone()
    )
    services.update_preference(vehicle=world.vehicle, pause_until=until)
    check_preference_row(world)


def save_profile_form(world: World, data: Any) -> None:
    data.save()
    world.fresh_owner().full_clean(exclude=["password"])


def save_profile_api(world: World, data: Any) -> None:
    from accounts import services

    services.update_profile(user=world.fresh_owner(), **data.validated_data)
    stored = world.fresh_owner()
    assert (stored.time_zone, stored.service_zip) == (
        data.validated_data["time_zone"],
        data.validated_data["service_zip"],
    )


def save_notification_preferences(world: World, data: Any) -> None:
    from accounts.notifications import services

    services.update_preferences(
        owner=world.owner,
        channels=data.channels(),
        quiet_hours=data.cleaned_data["quiet_hours"],
        quiet_start=data.cleaned_data["quiet_start"],
        quiet_end=data.cleaned_data["quiet_end"],
    )


def save_claim(world: World, data: Any) -> None:
    from vehicles.chargers import services
    from vehicles.chargers.models import Charger

    values = getattr(data, "validated_data", None) or data.cleaned_data
    services.claim_charger(owner=world.owner, **values)
    assert Charger.objects.get(charge_point_id=values["charge_point_id"]).owner_id == world.owner.pk


def save_pairing(world: World, data: Any) -> None:
    from vehicles.chargers import services

    services.pair_vehicle(charger=world.owned_charger, vehicle=data.cleaned_data["vehicle"])


def save_enrollment(world: World, data: Any) -> None:
    from programs import enrollments

    enrollments.enroll(
        vehicle=data.cleaned_data["vehicle"],
        program=world.program,
        terms_version=data.cleaned_data["terms_version"],
        actor=world.owner,
        source=data.cleaned_data["source"] or "app",
    )


def save_api_event(world: World, data: Any) -> None:
    from programs.api import services

    event = services.create_event(client=world.api_client, **data.validated_data)
    event.full_clean()
    assert event.program.utility_id == world.utility.pk
    assert event.starts_at < event.ends_at


def save_api_cancel(world: World, data: Any) -> None:
    from programs.api import services

    services.cancel_event(client=world.api_client, event=world.event, **data.validated_data)


def save_admin_event(world: World, data: Any) -> None:
    from programs import events

    values = data.cleaned_data
    event = events.create_event(
        program=values["program"],
        kind=values["kind"],
        starts_at=values["starts_at"],
        ends_at=values["ends_at"],
        target_kw=values["target_kw"],
        feeder=values["feeder"],
        region=values["region"],
        actor=world.owner,
    )
    event.full_clean()
    assert event.starts_at < event.ends_at


def save_provision(world: World, data: Any) -> None:
    from vehicles.chargers import services

    services.provision_charger(**data.cleaned_data).charger.full_clean(
        exclude=["authorization_key_hash", "pairing_code_hash", "owner"]
    )


def save_model_form(world: World, data: Any) -> None:
    data.save().full_clean()


def _programs(world: World) -> Any:
    from programs.models import Program

    return Program.objects.filter(utility=world.utility)


def _feeders(world: World) -> Any:
    return world.utility.feeders.all()


def _vehicles(world: World) -> Any:
    from vehicles.models import Vehicle

    return Vehicle.objects.filter(owner=world.owner)


def _notification_preference(world: World) -> Any:
    from accounts.notifications import selectors

    return selectors.preference_for(owner=world.owner)


def _in_minutes(draw: Any, low: int, high: int) -> datetime:
    return timezone.now() + timedelta(minutes=draw(st.integers(low, high)))


@st.composite
def preference_values(draw: Any, *, form: bool) -> dict[str, Any]:
    """A consistent preference, as the API (form=False) or the page (form=True) sends it."""
    floor = draw(st.integers(0, 100))
    ceiling = draw(st.integers(max(floor, 1), 100))
    days = draw(st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True))
    data: dict[str, Any] = {"min_soc_pct": floor, "max_soc_pct": ceiling}
    schedule = [
        {
            "weekday": day,
            "departure": draw(st.times()).strftime("%H:%M"),
            "target_soc_pct": draw(st.integers(floor, ceiling)),
        }
        for day in days
    ]
    stamp = (lambda d: d.strftime("%Y-%m-%dT%H:%M")) if form else datetime.isoformat
    if draw(st.booleans()):
        data["override_departure_at"] = stamp(_in_minutes(draw, 5, 60 * 24 * 300))
        data["override_target_soc_pct"] = draw(st.integers(floor, ceiling))
    v2g = draw(st.booleans())
    data["v2g_consent"] = v2g
    data["v2g_min_soc_pct"] = draw(st.integers(floor, 100)) if v2g else draw(st.integers(0, 100))
    if form:
        for entry in schedule:
            data[f"departure_{entry['weekday']}"] = entry["departure"]
            data[f"target_{entry['weekday']}"] = entry["target_soc_pct"]
        if not v2g:
            del data["v2g_consent"]  # an unticked checkbox is not sent
        return {key: str(value) for key, value in data.items()}
    data["weekly_schedule"] = schedule
    if draw(st.booleans()):
        data["boost_until"] = _in_minutes(draw, -60, 700).isoformat()
        data["boost_to_soc_pct"] = draw(st.integers(floor, ceiling))
    if draw(st.booleans()):
        data["pause_until"] = _in_minutes(draw, -60, 60 * 24 * 31).isoformat()
    return data


@st.composite
def event_values(draw: Any, world: World, *, form: bool) -> dict[str, Any]:
    """An event within the program's usual rules (notice, duration), as the utility API
    (form=False) or the admin page (form=True) sends it."""
    # After the notice, spread over ten months (a month allows only so many events), lasting
    # up to the longest the program allows: mostly accepted, so the write is exercised.
    program = world.program
    starts = _in_minutes(draw, program.notice_minutes + 5, 60 * 24 * 300)
    ends = starts + timedelta(minutes=draw(st.integers(15, program.max_event_minutes)))
    feeders = list(world.utility.feeders.all())
    data: dict[str, Any] = {
        "kind": draw(st.sampled_from(["import_cap"] * 3 + ["export_request"])),
        "target_kw": draw(st.floats(0.1, 5_000)),
    }
    where = draw(st.sampled_from(["all", "region", "feeder"]))
    if form:
        data |= {
            "program": world.program.pk,
            "starts_at": starts.strftime("%Y-%m-%dT%H:%M"),
            "ends_at": ends.strftime("%Y-%m-%dT%H:%M"),
        }
        if where == "region":
            data["region"] = draw(st.sampled_from([f.region for f in feeders]))
        elif where == "feeder":
            data["feeder"] = draw(st.sampled_from([f.pk for f in feeders]))
        return {key: str(value) for key, value in data.items()}
    data |= {
        "program": world.program.code,
        "starts_at": starts.isoformat(),
        "ends_at": ends.isoformat(),
        "dispatch": draw(st.booleans()),
        "external_id": draw(st.text(max_size=20)),
    }
    if where == "region":
        data["region"] = draw(st.sampled_from([f.region for f in feeders]))
    elif where == "feeder":
        data["feeder"] = draw(st.sampled_from([f.code for f in feeders]))
    return data


def claim_values(world: World) -> st.SearchStrategy:
    """The label's id with its code (as printed, or lower case with spaces), or a wrong code."""
    code = world.pairing_code
    return st.fixed_dictionaries(
        {
            "charge_point_id": st.just(world.charger.charge_point_id),
            "pairing_code": st.sampled_from([code, f" {code.lower()} ", "WRONG-CODE1"]),
        }
    )


def vtn_link_values(world: World) -> st.SearchStrategy:
    """A VTN link as a manager fills it in: the utility's own program, URLs, credentials."""
    words = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=30)
    return st.fixed_dictionaries(
        {
            "utility": st.just(str(world.utility.pk)),
            "name": words,
            "base_url": st.sampled_from(
                ["https://vtn.example.com/openadr3", "http://127.0.0.1:8092/"]
            ),
            "token_url": st.just("https://vtn.example.com/oauth/token"),
            "client_id": words,
            "client_secret": words,
            "ven_name": words,
            "vtn_program_name": words,
            "program": st.just(str(world.program.pk)),
        },
        optional={"enabled": st.just("on")},
    )


def pause_values(world: World) -> st.SearchStrategy:
    today = timezone.localdate()
    return st.integers(-2, 35).map(lambda n: {"until": (today + timedelta(days=n)).isoformat()})


def output(path: str) -> Case:
    """An output shape: never fed by clients, but `is_valid` must still hold up."""
    return Case(build=serializer(path))


CASES: dict[str, Case] = {
    # Owner API inputs.
    "accounts.api.ProfileApi.InputSerializer": Case(
        build=serializer("accounts.api.ProfileApi.InputSerializer"), save=save_profile_api
    ),
    "vehicles.api.PreferenceApi.InputSerializer": Case(
        build=serializer("vehicles.api.PreferenceApi.InputSerializer"),
        save=save_preference_api,
        strict=lambda world: preference_values(form=False),
    ),
    "vehicles.api.WeekdaySerializer": Case(build=serializer("vehicles.api.WeekdaySerializer")),
    "vehicles.api.VehicleReadingListApi.FilterSerializer": Case(
        build=serializer("vehicles.api.VehicleReadingListApi.FilterSerializer")
    ),
    "vehicles.api.LinkStartApi.InputSerializer": Case(
        build=serializer("vehicles.api.LinkStartApi.InputSerializer")
    ),
    "vehicles.chargers.api.ChargerClaimApi.InputSerializer": Case(
        build=serializer("vehicles.chargers.api.ChargerClaimApi.InputSerializer"),
        save=save_claim,
        strict=claim_values,
    ),
    # Utility API inputs.
    "programs.api.views.EventListCreateApi.InputSerializer": Case(
        build=serializer(
            "programs.api.views.EventListCreateApi.InputSerializer", utility=lambda w: w.utility
        ),
        save=save_api_event,
        strict=lambda world: event_values(world, form=False),
    ),
    "programs.api.views.EventListCreateApi.FilterSerializer": Case(
        build=serializer("programs.api.views.EventListCreateApi.FilterSerializer")
    ),
    "programs.api.views.FlexibilityApi.FilterSerializer": Case(
        build=serializer("programs.api.views.FlexibilityApi.FilterSerializer")
    ),
    "programs.api.views.EventCancelApi.InputSerializer": Case(
        build=serializer("programs.api.views.EventCancelApi.InputSerializer"),
        save=save_api_cancel,
    ),
    # Output shapes.
    **{
        path: output(path)
        for path in [
            "accounts.api.ProfileOutput",
            "vehicles.api.ReadingOutput",
            "vehicles.api.VehicleOutput",
            "vehicles.api.PreferenceOutput",
            "vehicles.chargers.api.ChargerOutput",
            "programs.api.serializers.ProgramOutput",
            "programs.api.serializers.FeederOutput",
            "programs.api.serializers.EventOutput",
            "programs.api.serializers.EnrollmentCountsOutput",
            "programs.api.serializers.LiveSlotOutput",
            "programs.api.serializers.DeliveryOutput",
            "programs.api.serializers.ReportSlotOutput",
            "programs.api.serializers.TotalsOutput",
            "programs.api.serializers.EventSummaryOutput",
            "programs.api.serializers.EventReportOutput",
            "programs.api.serializers.FlexRowOutput",
            "programs.api.serializers.FlexibilityOutput",
            "programs.api.serializers.ErrorBody",
            "programs.api.serializers.ErrorOutput",
        ]
    },
    # Owner pages.
    "accounts.forms.ProfileForm": Case(
        build=form("accounts.forms.ProfileForm", instance=lambda w: w.fresh_owner()),
        save=save_profile_form,
    ),
    "accounts.notifications.forms.PreferenceForm": Case(
        build=form(
            "accounts.notifications.forms.PreferenceForm", preference=_notification_preference
        ),
        save=save_notification_preferences,
    ),
    "vehicles.forms.PreferenceForm": Case(
        build=form("vehicles.forms.PreferenceForm", instance=lambda w: w.preference()),
        save=save_preference_form,
        strict=lambda world: preference_values(form=True),
    ),
    "vehicles.forms.PauseForm": Case(
        build=form("vehicles.forms.PauseForm"), save=save_pause, strict=pause_values
    ),
    "vehicles.chargers.forms.ClaimChargerForm": Case(
        build=form("vehicles.chargers.forms.ClaimChargerForm"), save=save_claim, strict=claim_values
    ),
    "vehicles.chargers.forms.PairVehicleForm": Case(
        build=form("vehicles.chargers.forms.PairVehicleForm", owner=lambda w: w.owner),
        save=save_pairing,
    ),
    "programs.forms.EnrollForm": Case(
        build=form("programs.forms.EnrollForm", vehicles=_vehicles), save=save_enrollment
    ),
    "programs.forms.OptOutForm": Case(build=form("programs.forms.OptOutForm")),
    "accounts.views.DeleteAccountForm": Case(
        build=form("accounts.views.DeleteAccountForm", user=lambda w: w.fresh_owner())
    ),
    # Admin.
    "vehicles.chargers.admin.ProvisionForm": Case(
        build=form("vehicles.chargers.admin.ProvisionForm"), save=save_provision
    ),
    "programs.admin_views.EventForm": Case(
        build=form("programs.admin_views.EventForm", programs=_programs, feeders=_feeders),
        save=save_admin_event,
        strict=lambda world: event_values(world, form=True),
    ),
    "programs.admin_views.DispatchForm": Case(
        build=form("programs.admin_views.DispatchForm", event=lambda w: w.event)
    ),
    "programs.admin_views.CancelForm": Case(build=form("programs.admin_views.CancelForm")),
    "programs.admin.ReasonForm": Case(build=form("programs.admin.ReasonForm")),
    "programs.api.admin.ApiClientForm": Case(build=form("programs.api.admin.ApiClientForm")),
    "programs.openadr.admin.VtnLinkForm": Case(
        build=form("programs.openadr.admin.VtnLinkForm"),
        save=save_model_form,
        strict=vtn_link_values,
    ),
}


def test_every_serializer_and_form_has_a_property_test():
    """A serializer or form added to our apps without an entry in CASES fails here."""
    missing = sorted(set(discovered_classes_cached()) - set(CASES))
    assert not missing, (
        f"Add a Hypothesis case to tests/security/test_hypothesis_inputs.py for: {missing}"
    )
    stale = sorted(set(CASES) - set(discovered_classes_cached()))
    assert not stale, f"CASES names classes that no longer exist: {stale}"


def error_strings(errors: Any) -> Iterator[Any]:
    if isinstance(errors, dict):
        for value in errors.values():
            yield from error_strings(value)
    elif isinstance(errors, list):
        for value in errors:
            yield from error_strings(value)
    else:
        yield errors


# Refusals a view turns into a 4xx: the property allows these from a write, nothing else.
def is_refusal(error: BaseException) -> bool:
    from vehicles.chargers.services import ChargerError

    if isinstance(error, DjangoValidationError | ChargerError):
        return True
    return isinstance(error, APIException) and error.status_code < 500


# Classes whose well-formed inputs must reach a stored write within the examples.
MUST_STORE = {
    "accounts.api.ProfileApi.InputSerializer",
    "accounts.forms.ProfileForm",
    "accounts.notifications.forms.PreferenceForm",
    "vehicles.api.PreferenceApi.InputSerializer",
    "vehicles.forms.PreferenceForm",
    "vehicles.forms.PauseForm",
    "programs.api.views.EventListCreateApi.InputSerializer",
    "programs.api.views.EventCancelApi.InputSerializer",
    "programs.admin_views.EventForm",
    "vehicles.chargers.admin.ProvisionForm",
    "vehicles.chargers.api.ChargerClaimApi.InputSerializer",
    "vehicles.chargers.forms.ClaimChargerForm",
    "programs.openadr.admin.VtnLinkForm",
}


@pytest.mark.parametrize("path", sorted(CASES))
def test_arbitrary_input(path: str, world: World) -> None:
    """is_valid() never raises and answers string messages; valid data is stored consistently or
    refused with a validation error, never an exception that would be a 5xx."""
    case = CASES[path]
    is_form = issubclass(discovered_classes_cached()[path], forms.BaseForm)
    empty = case.build(world, None if is_form else {})
    hints = [str(hint) for hint in world.hints] if is_form else world.hints
    payloads = form_payloads(empty, hints) if is_form else drf_payloads(empty, hints)
    if case.strict is not None:
        strict = case.strict(world)
        payloads = st.one_of(strict.map(querydict) if is_form else strict, payloads)
    outcomes = {"valid": 0, "invalid": 0, "saved": 0, "refused": 0}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=payloads)
    def check(data: Any) -> None:
        instance = case.build(world, data)
        if not instance.is_valid():
            outcomes["invalid"] += 1
            messages = list(error_strings(dict(instance.errors)))
            assert messages, "invalid without a message"
            assert all(isinstance(message, str) and message for message in messages), messages
            return
        outcomes["valid"] += 1
        if case.save is None:
            return
        try:
            with transaction.atomic():  # a refused write leaves nothing behind
                case.save(world, instance)
        except Exception as error:
            if not is_refusal(error):
                raise
            outcomes["refused"] += 1
        else:
            outcomes["saved"] += 1

    check()
    assert outcomes["invalid"] > 0, "chaos never produced an invalid input: the strategy is broken"
    if path in MUST_STORE:  # the property is not vacuous: valid input did reach the write
        assert outcomes["saved"] > 0, outcomes
