"""The log scanner (tests/privacy_logs.py) and the redaction filter (chargescape.logging).

Sample records are built by hand and handed to the scanner and the filter directly: nothing here
goes through a real logger, so the session-wide check does not see these deliberate secrets.
"""

import logging
import secrets
import sys

import pytest
from django.conf import settings
from oauthlib.common import generate_token

from chargescape.logging import RedactingFilter, find_sensitive, redact
from tests.privacy_logs import CapturingHandler, failing, redaction_installed, scan_record

VIN = "1HGCM82633A004352"
EMAIL = "alice.owner+ev@example.com"


def record(msg, *args, name="vehicles.services", exc_info=None) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, "/app/x.py", 12, msg, args or None, exc_info)


def kinds(text: str) -> list[str]:
    return [f.kind for f in find_sensitive(text)]


@pytest.mark.parametrize(
    "text",
    [
        f"token refreshed: {secrets.token_urlsafe(32)}",  # vehicle cloud access/refresh tokens
        f"client secret {secrets.token_urlsafe(40)}",  # utility API client secret
        f"issued {generate_token()}",  # django-oauth-toolkit (oauthlib) access token
        f"charger key {secrets.token_hex(20)}",  # charger authorization key
        "Authorization: Bearer abc.DEF-123_456",
        "POST /oauth/token refresh_token=r3fr35h-t0k3n&grant_type=refresh_token",
        '{"access_token": "Zx9-short8"}',
        "Authorization: vapid t=eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJodHRwczovL3B1c2gi"
        "fQ.sig, k=BP",
        f"webhook secret whsec_{secrets.token_urlsafe(32)}",
        "GET https://connect.example/callback?code=AbCdEf123456&state=x",
        "issued xxwbGAxHdHyAAWmCtXXRimLVeudJhZ",  # an oauthlib token without a digit (~1 in 200)
    ],
    # Fixed ids: the random tokens must not make xdist workers collect different test names.
    ids=[
        "cloud-token",
        "client-secret",
        "oauthlib-token",
        "charger-key",
        "bearer",
        "refresh-token",
        "access-token-json",
        "vapid-jwt",
        "webhook-secret",
        "oauth-code",
        "letters-only-token",
    ],
)
def test_scanner_finds_tokens(text):
    """Every credential format our code, our simulators and our libraries mint is caught."""
    assert "token" in kinds(text), text


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (f"linked vehicle {VIN}", "vin"),
        (f"vin={VIN.lower().upper()} model=Ioniq 5", "vin"),
        (f"sent statement to {EMAIL}", "email"),
        ("login failed for Bob@Example.CO.UK", "email"),
        ("at 37.7749,-122.4194", "coordinates"),
        ("location (40.712, -74.006)", "coordinates"),
        ("home_lat=37.775", "coordinates"),
        ('{"latitude": 51.5007, "longitude": -0.1246}', "coordinates"),
    ],
)
def test_scanner_finds_personal_data(text, kind):
    assert kind in kinds(text), text


@pytest.mark.parametrize(
    "text",
    [
        "replan vehicle 3f2b8c1e-9a4d-4e55-8d1b-0c5e2f6a7b90 (trigger plugged_in)",
        "command 9f86d081884c7d659a2feaa0c55ad015 sent",  # uuid hex ids are not secrets
        "HTTP Request: GET http://127.0.0.1:8090/v2.0/vehicles/abc/battery 200 OK",
        "slot 2026-11-26T17:15:00+00:00 power 7.2 kW soc 55.5 %",
        "charge limit set to 0.800",
        "prices 0.110, 0.450 USD/kWh",  # prices with 3 decimals: not a place
        "OCPP BootNotification from CP-0042 (model Wallbox Pulsar)",
        "status code=404 token=missing",
        "enrolled in program code=peak-saver",
        "vehicles.control.tasks.execute_command succeeded in 0.031s",
        "ABCDEFGHJKLMNPRST is all letters",  # 17 letters, no digit: not a VIN
        "12345678901234567 is a number",  # 17 digits, no letter
        "deleted-42@invalid",  # the pseudonym of a deleted account is no address
        "[redacted:token] [redacted:email]",
        "ocpp.v201.call.TransactionEventRequestPayload",  # CamelCase names are not tokens
        "ChargingStationMaxProfileNotSupportedError raised",
    ],
)
def test_scanner_leaves_harmless_lines_alone(text):
    assert find_sensitive(text) == [], text


def test_redact_replaces_each_value_and_keeps_the_rest():
    token = secrets.token_urlsafe(32)
    text = f"owner {EMAIL} linked {VIN} with {token} at 37.7749,-122.4194 ok"
    clean = redact(text)
    for secret in (EMAIL, VIN, token, "37.7749"):
        assert secret not in clean
    assert clean == (
        "owner [redacted:email] linked [redacted:vin] with [redacted:token] at "
        "[redacted:coordinates] ok"
    )


def test_filter_redacts_args_and_exception_text_on_a_copy():
    """The filter hands its handler a redacted copy; the original record is untouched."""
    try:
        raise ValueError(f"refresh failed for {EMAIL}")
    except ValueError:
        original = record("link %s of %s", VIN, EMAIL, exc_info=sys.exc_info())
    clean = RedactingFilter().filter(original)
    assert isinstance(clean, logging.LogRecord)
    assert clean is not original
    text = logging.Formatter().format(clean)
    assert VIN not in text
    assert EMAIL not in text
    assert "link [redacted:vin] of [redacted:email]" in text
    assert "ValueError: refresh failed for [redacted:email]" in text
    assert original.getMessage() == f"link {VIN} of {EMAIL}"


def test_filter_passes_clean_records_through_unchanged():
    clean = record("replanned %d vehicles", 12)
    assert RedactingFilter().filter(clean) is True


def test_every_configured_handler_redacts(capsys):
    """settings.LOGGING puts the filter on every handler; a record through it comes out clean."""
    handlers = settings.LOGGING["handlers"]
    assert handlers
    assert all("redact" in h.get("filters", []) for h in handlers.values())
    root_console = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    configured = [h for h in root_console if any(isinstance(f, RedactingFilter) for f in h.filters)]
    assert configured, "the console handler of the root logger has no RedactingFilter"
    stream = configured[0]
    previous = stream.setStream(sys.stderr)
    try:
        stream.handle(record("token %s for %s", secrets.token_urlsafe(32), EMAIL, name="httpx"))
    finally:
        stream.setStream(previous)
    err = capsys.readouterr().err
    assert "token [redacted:token] for [redacted:email]" in err
    assert "@example.com" not in err


def test_scan_reports_first_party_source_and_third_party_only_when_unfiltered():
    """Our own loggers must not log the raw value at all; a library's log is fine once redacted."""
    ours = scan_record(record("linked %s", VIN, name="vehicles.services"))
    assert [(f.kind, f.what) for f in ours] == [("source", "vin")]
    assert VIN not in ours[0].text  # the report never repeats the secret
    library = scan_record(
        record("HTTP Request: POST https://x/?access_token=Ab12Cd34Ef", name="httpx")
    )
    # The filter covers it, so nothing would be written: noted, never failing.
    assert [(f.kind, f.what) for f in library] == [("filtered", "token")]
    assert failing(library) == []
    unfiltered = scan_record(
        record("HTTP Request: POST https://x/?access_token=Ab12Cd34Ef", name="httpx"),
        redaction_on=False,
    )
    assert [(f.kind, f.what) for f in unfiltered] == [("leak", "token")]
    assert scan_record(record("replanned %d vehicles", 3, name="programs.tasks")) == []


def test_the_session_knows_the_settings_redact():
    assert redaction_installed()


def test_capturing_handler_reaches_loggers_that_do_not_propagate():
    handler = CapturingHandler()
    lonely = logging.getLogger("tests.privacy.lonely")
    lonely.propagate = False
    try:
        handler.attach()
        assert handler in lonely.handlers
        assert handler in logging.getLogger().handlers
        handler.handle(record("mail to %s", EMAIL, name="tests.privacy.lonely"))
        assert [f.what for f in handler.findings] == ["email"]
    finally:
        handler.detach()
        lonely.propagate = True
    assert handler not in lonely.handlers
    assert handler not in logging.getLogger().handlers


@pytest.fixture
def pytester(pytester, monkeypatch):
    """A pytest run in a temporary directory that can import this project's tests package."""
    monkeypatch.setenv("PYTHONPATH", str(settings.BASE_DIR))
    return pytester


def test_session_check_fails_a_run_that_logs_a_vin(pytester):
    """End to end: a pytest run whose code logs a VIN fails, names the logger, writes the report."""
    pytester.makeconftest('pytest_plugins = ["tests.privacy_logs"]')
    pytester.makepyfile(
        test_leak=f"""
        import logging

        def test_logs_a_vin():
            logging.getLogger("vehicles.leaky").warning("linked %s", "{VIN}")

        def test_quiet_logger_too():
            quiet = logging.getLogger("programs.quiet")
            quiet.propagate = False
            quiet.warning("owner {EMAIL}")
        """
    )
    report = pytester.path / "findings.jsonl"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:django", f"--privacy-logs-report={report}"
    )
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*privacy-logs: sensitive data in the logs*", "*vehicles.leaky*"])
    assert VIN not in result.stdout.str()
    assert EMAIL not in result.stdout.str()
    lines = report.read_text().splitlines()
    assert any('"vehicles.leaky"' in line and '"vin"' in line for line in lines)
    assert any('"programs.quiet"' in line and '"email"' in line for line in lines)


def test_session_check_passes_a_clean_run(pytester):
    pytester.makeconftest('pytest_plugins = ["tests.privacy_logs"]')
    pytester.makepyfile(
        test_clean="""
        import logging

        def test_logs_nothing_sensitive():
            logging.getLogger("vehicles.calm").warning("replanned %d vehicles", 4)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:django")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*privacy-logs: * log records scanned, nothing sensitive*"])
