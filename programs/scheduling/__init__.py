"""The pure planning core: when each car charges or discharges, fleet-wide, in 15-minute UTC slots.

numpy arrays in, numpy arrays out; no Django, Celery, Channels or app imports (an import-linter
contract in pyproject.toml enforces it). The Django services build a `Problem`, call `plan_fleet`
(or `respond_to_events` for the fast first answer to a grid event) and store the `Plan`.
Formats and semantics: docs/planning.md. Benchmarks: bench/scheduling.py, docs/benchmarks.md.
"""

from programs.scheduling.jsonio import plan_to_json, problem_from_json
from programs.scheduling.model import (
    Event,
    EventKind,
    Fleet,
    Plan,
    Problem,
    Reason,
    Signals,
    derive,
)
from programs.scheduling.planner import plan_fleet, respond_to_events
from programs.scheduling.reference import reference_plan
from programs.scheduling.why import why_sentence

__all__ = [
    "Event",
    "EventKind",
    "Fleet",
    "Plan",
    "Problem",
    "Reason",
    "Signals",
    "derive",
    "plan_fleet",
    "plan_to_json",
    "problem_from_json",
    "reference_plan",
    "respond_to_events",
    "why_sentence",
]
