"""Metrics every rotate scenario reports, whatever the transport."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tests.orchestration.farmkit import file_key

from bench.farm import NodeLedger
from bench.measure import PhaseClock
from bench.report import ScenarioResult
from farmsync.orchestration.result import Outcome, RunResult

# A rotation is read, stage, arm(+release), verify read, cleanup: five round trips per node.
# Eight leaves room for a recycle and one retry, and still catches a per-file or per-step leak.
MAX_ROUND_TRIPS = 8


def disk_fingerprints(configs: Mapping[str, Path]) -> dict[str, str]:
    """The key each host's web.config holds, read from disk."""
    return {host: file_key(path).fingerprint() for host, path in configs.items()}


def add_run_metrics(
    out: ScenarioResult,
    result: RunResult,
    fingerprints: Mapping[str, str],
    ledger: NodeLedger,
    clock: PhaseClock,
) -> None:
    """Outcome, the farm's files on one key, phase times, round trips per node.

    ``fingerprints``: the key each host's file holds after the run, read from the node's own
    storage (the disk, or a simulated node's memory), never from the result.
    """
    hosts = len(fingerprints)
    changed = sum(1 for h in result.hosts if h.status == "changed")
    out.add("hosts changed", changed, "", "==", hosts)
    if result.outcome is not Outcome.CHANGED:
        # Host errors are farmsync's own descriptions: safe to show, never file contents.
        failed = [f"{h.host}: {h.error}" for h in result.hosts if h.error][:3]
        out.notes.append(
            f"outcome {result.outcome.value}: " + "; ".join([*result.messages[:3], *failed])
        )
    on_target = sum(1 for fp in fingerprints.values() if fp == result.target_fingerprint)
    out.add("files on the new key", on_target, "", "==", hosts)
    out.add("phase connect", clock.connect_ms, "ms")
    for phase, ms in result.phase_ms.items():
        out.add(f"phase {phase}", ms, "ms")
    out.add("release span", result.release_span_ms, "ms")
    trips = ledger.round_trips()
    out.add("round trips/node max", max(trips.values(), default=None), "", "<=", MAX_ROUND_TRIPS)
    out.add("round trips/node min", min(trips.values(), default=None))
