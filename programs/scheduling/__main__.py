"""Command line: `python -m programs.scheduling solve PROBLEM.json [--phase PHASE]`.

PHASE is optimal (the planner, default), fast (event phase one) or reference (the single LP).

Prints the plan JSON of docs/planning.md on stdout; no Django needed. `-` reads stdin.
"""

from __future__ import annotations

import argparse
import json
import sys

from programs.scheduling.jsonio import plan_to_json, problem_from_json
from programs.scheduling.planner import plan_fleet, respond_to_events
from programs.scheduling.reference import reference_plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m programs.scheduling")
    commands = parser.add_subparsers(dest="command", required=True)
    solve = commands.add_parser("solve", help="plan a problem and print the plan JSON")
    solve.add_argument("problem", help="problem JSON file, or - for stdin")
    solve.add_argument(
        "--phase",
        choices=("optimal", "fast", "reference"),
        default="optimal",
        help="optimal: the planner; fast: event phase one; reference: the single exact LP",
    )
    solve.add_argument("--indent", type=int, default=None)
    args = parser.parse_args(argv)
    if args.problem == "-":
        data = json.load(sys.stdin)
    else:
        with open(args.problem, encoding="utf-8") as fh:
            data = json.load(fh)
    try:
        problem = problem_from_json(data)
    except (KeyError, ValueError, TypeError) as exc:
        print(f"invalid problem: {exc}", file=sys.stderr)
        return 2
    if args.phase == "fast":
        plan = respond_to_events(problem)
    elif args.phase == "reference":
        plan = reference_plan(problem)
    else:
        plan = plan_fleet(problem)
    json.dump(plan_to_json(problem, plan), sys.stdout, indent=args.indent)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
