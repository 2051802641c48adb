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
from bench.scenarios import Scenario, registry
from farmsync.lab.sshd import SshdError
from farmsync.orchestration.survey import describe_error

EXIT_MISSED = 1
EXIT_INTERRUPTED = 130


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description="farmsync speed and memory targets on real nodes"
    )
    parser.add_argument("--quick", action="store_true", help="small farms, one run each")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run only this scenario (repeatable)"
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


def _document(results: Sequence[ScenarioResult], quick: bool, seconds: float) -> dict[str, object]:
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "quick": quick,
        "seconds": round(seconds, 1),
        "ok": all(r.ok for r in results),
        "scenarios": [r.to_dict() for r in results],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    scenarios = registry(args.quick)
    if args.list:
        for scenario in scenarios:
            print(f"{scenario.name}\t{scenario.description}")
        return 0
    if args.only:
        unknown = set(args.only) - {s.name for s in scenarios}
        if unknown:
            names = ", ".join(s.name for s in scenarios)
            print(
                f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {names}", file=sys.stderr
            )
            return 2
        scenarios = [s for s in scenarios if s.name in args.only]
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    results: list[ScenarioResult] = []
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
    if args.json:
        print(json.dumps(_document(results, args.quick, seconds), indent=2))
    else:
        print(render_table(results))
        print(f"\n{len(results)} scenario(s) in {seconds:.1f} s on {os.cpu_count()} CPU(s)")
    missed = [f"{r.scenario}: {m.name}" for r in results for m in r.missed()]
    missed += [f"{r.scenario}: {r.error}" for r in results if r.error is not None]
    if missed:
        print("targets missed:\n  " + "\n  ".join(missed), file=sys.stderr)
        return EXIT_MISSED
    return 0
