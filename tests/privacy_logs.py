"""pytest plugin: the logs of the whole test session never carry secrets or personal data.

Registered from tests/conftest.py. For the whole session (in every xdist worker) a handler on the
root logger — and on every logger that does not propagate, re-checked before each test — sees
every record that any code emits, renders it like a handler would (message with its arguments,
exception text, stack) and scans it with chargescape.logging.find_sensitive for tokens, VINs,
email addresses and precise coordinates. Records are scanned as they come and only findings are
kept, so a long run stays flat in memory.

Two kinds of finding fail the session, each printed with its logger, level and source line:
- *leak*: the text our handlers would still write after the settings' RedactingFilter — a gap in
  the filter, whoever logged it;
- *source*: one of our own loggers (accounts, vehicles, programs, chargescape) logged the raw
  value; the filter hides it, but the log call itself must change (defence in depth).

`--privacy-logs-report=PATH` (or PRIVACY_LOGS_REPORT=PATH) writes the findings as JSON lines;
`--privacy-logs-level=DEBUG` (or PRIVACY_LOGS_LEVEL) lowers the root logger for the session, to
see what a verbose deployment would print; `--privacy-logs=off` (or PRIVACY_LOGS=off) switches
the check off while debugging something else.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass

import pytest

from chargescape.logging import find_sensitive, redact, render

FIRST_PARTY = ("accounts", "vehicles", "programs", "chargescape", "tests")
# Records the scanner must not judge: pytest's own machinery.
IGNORED_LOGGERS = ("_pytest", "pytest")
MAX_REPORTED = 200  # kept per kind and session; the first ones say enough


@dataclass(frozen=True)
class LogFinding:
    kind: str  # leak | source (both fail the session) | filtered (a library's, redacted: kept)
    what: str  # token | vin | email | coordinates
    logger: str
    level: str
    where: str
    text: str
    test: str

    def line(self) -> str:
        return (
            f"[{self.kind}:{self.what}] {self.logger} {self.level} at {self.where} "
            f"(during {self.test or 'setup'}): {self.text}"
        )


def _first_party(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in FIRST_PARTY)


def redaction_installed() -> bool:
    """Whether every handler that writes the root logger's records redacts them (settings)."""
    from chargescape.logging import RedactingFilter

    writers = [
        h
        for h in logging.getLogger().handlers
        if not type(h).__module__.startswith(("_pytest", __name__))
    ]
    return all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in writers)


def scan_record(
    record: logging.LogRecord, *, test: str = "", redaction_on: bool = True
) -> list[LogFinding]:
    """The findings in one record (what the privacy check fails on). Without the settings'
    redaction on the handlers, whatever a library logs is a leak too."""
    if record.name.startswith(IGNORED_LOGGERS):
        return []
    raw = render(record)
    raw_findings = find_sensitive(raw)
    if not raw_findings:
        return []
    where = f"{record.pathname}:{record.lineno}"
    out = [
        LogFinding("leak", f.kind, record.name, record.levelname, where, redact(raw)[:500], test)
        for f in find_sensitive(redact(raw))
    ]
    shown = redact(raw)[:500]  # the report itself must not spread the secret further
    kind = "source" if _first_party(record.name) else "filtered" if redaction_on else "leak"
    out += [
        LogFinding(kind, k, record.name, record.levelname, where, shown, test)
        for k in sorted({f.kind for f in raw_findings})
    ]
    return out


def failing(findings: list[LogFinding]) -> list[LogFinding]:
    return [f for f in findings if f.kind in ("leak", "source")]


class CapturingHandler(logging.Handler):
    """Scans each record on arrival and keeps only the findings."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.findings: list[LogFinding] = []
        self.records_seen = 0
        self.counts: dict[str, int] = {}
        self.counts: dict[str, int] = {}  # findings per kind, including those not kept
        self.current_test = ""
        self._lock_findings = threading.Lock()
        self._original_call_handlers = None
        self.redaction_on = True

    def emit(self, record: logging.LogRecord) -> None:
        # A record reaches us through the hook and, once more, through the handler on root or
        # on a non-propagating logger: judge it once.
        if getattr(record, "_privacy_logs_seen", False):
            return
        record._privacy_logs_seen = True  # type: ignore[attr-defined]
        try:
            found = scan_record(record, test=self.current_test, redaction_on=self.redaction_on)
        except Exception:  # the scanner must never break the code under test
            return
        with self._lock_findings:
            self.records_seen += 1
            for finding in found:
                self.counts[finding.kind] = self.counts.get(finding.kind, 0) + 1
                if self.counts[finding.kind] <= MAX_REPORTED:
                    self.findings.append(finding)

    def attach(self) -> None:
        """Root, plus every logger that does not propagate (its records never reach root).

        A logger can also be created, or told to stop propagating, in the middle of a test: the
        class-level hook below sees each record at the logger that handles it, whatever its
        place in the tree, so the handler only records a record once (by identity).
        """
        self.redaction_on = redaction_installed()
        targets = [logging.getLogger()]
        for logger in list(logging.Logger.manager.loggerDict.values()):
            if isinstance(logger, logging.Logger) and not logger.propagate:
                targets.append(logger)
        for logger in targets:
            if self not in logger.handlers:
                logger.addHandler(self)
        if self._original_call_handlers is None:
            original = self._original_call_handlers = logging.Logger.callHandlers
            capturing = self

            def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
                capturing.handle(record)
                original(logger, record)

            logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]

    def detach(self) -> None:
        for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
            if isinstance(logger, logging.Logger) and self in logger.handlers:
                logger.removeHandler(self)
        if self._original_call_handlers is not None:
            logging.Logger.callHandlers = self._original_call_handlers  # type: ignore[method-assign]
            self._original_call_handlers = None


class PrivacyLogsPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.handler = CapturingHandler()
        self.report_path = config.getoption("privacy_logs_report") or os.environ.get(
            "PRIVACY_LOGS_REPORT", ""
        )
        self.findings: list[LogFinding] = []
        self.records_seen = 0
        self.counts: dict[str, int] = {}

    # --- capture ---------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        level = self.config.getoption("privacy_logs_level")
        if level:  # e.g. DEBUG: see what a verbose deployment would print (urllib3 URLs…)
            logging.getLogger().setLevel(level.upper())
        self.handler.attach()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.handler.current_test = item.nodeid
        self.handler.attach()  # loggers created (or made non-propagating) since the last test
        level = self.config.getoption("privacy_logs_level")
        if level:  # Django's test runner may have reconfigured logging meanwhile
            logging.getLogger().setLevel(level.upper())

    # --- collect (workers hand their findings to the controller) --------------------------------
    def _worker_findings(self) -> list[LogFinding]:
        return list(self.handler.findings)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:  # type: ignore[no-untyped-def]
        output = getattr(node, "workeroutput", {}) or {}
        self.findings += [LogFinding(**f) for f in json.loads(output.get("privacy_logs", "[]"))]
        self.records_seen += output.get("privacy_logs_records", 0)
        for kind, n in output.get("privacy_logs_counts", {}).items():
            self.counts[kind] = self.counts.get(kind, 0) + n

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.handler.detach()
        own = self._worker_findings()
        self.records_seen += self.handler.records_seen
        for kind, n in self.handler.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller judges
            workeroutput["privacy_logs"] = json.dumps([asdict(f) for f in own])
            workeroutput["privacy_logs_records"] = self.handler.records_seen
            workeroutput["privacy_logs_counts"] = dict(self.handler.counts)
            return
        self.findings += own
        if self.report_path:
            with open(self.report_path, "w", encoding="utf-8") as out:
                for f in self.findings:
                    out.write(json.dumps(asdict(f)) + "\n")
        if failing(self.findings) and session.exitstatus in (pytest.ExitCode.OK, 0):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:  # type: ignore[no-untyped-def]
        if getattr(self.config, "workeroutput", None) is not None:
            return
        bad = failing(self.findings)
        filtered = self.counts.get("filtered", 0)
        if not bad:
            terminalreporter.write_line(
                f"privacy-logs: {self.records_seen} log records scanned, nothing sensitive "
                f"({filtered} value(s) in library records, removed by the RedactingFilter)."
            )
            return
        terminalreporter.section("privacy-logs: sensitive data in the logs", sep="=", red=True)
        seen: set[tuple[str, str, str, str]] = set()
        for f in bad:
            key = (f.kind, f.what, f.logger, f.where)
            if key in seen:
                continue
            seen.add(key)
            terminalreporter.write_line(f.line(), red=True)
        terminalreporter.write_line(
            f"{len(bad)} finding(s) in {self.records_seen} records; the session fails."
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("privacy-logs")
    group.addoption(
        "--privacy-logs-report",
        default="",
        help="write privacy findings of the logs as JSON lines to this file",
    )
    group.addoption(
        "--privacy-logs-level",
        default=os.environ.get("PRIVACY_LOGS_LEVEL", ""),
        help="lower the root logger to this level for the session (DEBUG shows what a verbose "
        "deployment would print); default: as settings.LOGGING says",
    )
    group.addoption(
        "--privacy-logs",
        default=os.environ.get("PRIVACY_LOGS", "on"),
        choices=["on", "off"],
        help="scan every log record of the session for tokens, VINs, emails, coordinates",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("privacy_logs") == "on":
        config.pluginmanager.register(PrivacyLogsPlugin(config), "privacy-logs-checker")
