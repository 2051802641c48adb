"""``python bench/run.py``: run the scenarios, print a table or JSON; exit 1 on a miss."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType

from bench.report import ScenarioResult, render_table
from bench.results import machine_facts, save
from bench.scenarios import Scenario, registry
from farmsync.errors import describe_error
from farmsync.lab.sshd import SshdError

EXIT_MISSED = 1
EXIT_INTERRUPTED = 130


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description="farmsync speed and memory targets on real nodes"
    )
    parser.add_argument("--quick", action="store_true", help="small farms, one run each")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this scenario, of any set (repeatable)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run the comparisons with Ansible and pyinfra (installs them on first use)",
    )
    parser.add_argument("--scale", action="store_true", help="also run the 100/200-node SSH farms")
    parser.add_argument(
        "--save",
        action="store_true",
        help="write bench/results/<date>.json, .md and .png (the plot needs --compare)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 on a missed goal too, not only a target"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser.parse_args(argv)


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Same path as Ctrl-C: every scenario's finally stops the servers it started.
    raise KeyboardInterrupt


def _run_one(scenario: Scenario) -> ScenarioResult:
    try:
        return scenario.run()
    except SshdError as exc:
        detail = str(exc)  # our own server failing to start, with its log tail
    except Exception as exc:
        # Never an exception's free text: it might quote a web.config.
        detail = describe_error(exc)
    return ScenarioResult(scenario.name, scenario.description, error=detail)


def _document(
    results: Sequence[ScenarioResult], quick: bool, seconds: float, load_before: float
) -> dict[str, object]:
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": {
            **machine_facts(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load average before": round(load_before, 2),
            "load average after": round(os.getloadavg()[0], 2),
        },
        "quick": quick,
        "seconds": round(seconds, 1),
        "ok": all(r.ok for r in results),
        "scenarios": [r.to_dict() for r in results],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    everything = registry(args.quick)
    default = {s.name for s in registry(args.quick, compare=False, scale=False)}
    if args.list:
        for scenario in everything:
            opt_in = "" if scenario.name in default else " [opt-in]"
            print(f"{scenario.name}\t{scenario.description}{opt_in}")
        return 0
    if args.only:
        unknown = set(args.only) - {s.name for s in everything}
        if unknown:
            names = ", ".join(s.name for s in everything)
            print(
                f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {names}", file=sys.stderr
            )
            return 2
        scenarios = [s for s in everything if s.name in args.only]
    else:
        scenarios = registry(args.quick, compare=args.compare, scale=args.scale)
    for scenario in scenarios:
        if scenario.selected is not None:
            scenario.selected()
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    results: list[ScenarioResult] = []
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    try:
        for scenario in scenarios:
            print(f"running {scenario.name}: {scenario.description} ...", file=sys.stderr)
            t0 = time.monotonic()
            results.append(_run_one(scenario))
            print(f"  done in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted: the servers started so far are stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    seconds = time.monotonic() - started
    document = _document(results, args.quick, seconds, load_before)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(render_table(results))
        print(f"\n{len(results)} scenario(s) in {seconds:.1f} s on {os.cpu_count()} CPU(s)")
    if args.save:
        for path in save(document, results):
            print(f"saved {path}", file=sys.stderr)
    missed = [f"{r.scenario}: {m.name}" for r in results for m in r.missed()]
    missed += [f"{r.scenario}: {r.error}" for r in results if r.error is not None]
    goals = [f"{r.scenario}: {m.name} ({m.goal})" for r in results for m in r.goals_missed()]
    if goals:
        print("goals not met yet:\n  " + "\n  ".join(goals), file=sys.stderr)
    if missed:
        print("targets missed:\n  " + "\n  ".join(missed), file=sys.stderr)
    return EXIT_MISSED if missed or (args.strict and goals) else 0
