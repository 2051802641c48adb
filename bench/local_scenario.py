"""``local-N``: N hosts with ``ansible_connection: local``, one root web.config each.

No network, so what is measured is the engine itself: the bounded pool, the journal, the
vault, the survey and plan of N nodes. The thread peak shows the engine keeps at most
``forks`` workers whatever N is (no thread per node).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.checks import add_run_metrics, disk_fingerprints
from bench.farm import BenchFarm, HostVars, NodeLedger, rotate
from bench.measure import PhaseClock, ThreadSampler, current_rss_mib, peak_rss_mib
from bench.report import ScenarioResult

FORKS = 50

# Targets for 1000 hosts on a 2-core machine (bench/README.md has the numbers measured).
# Wall time: measured 5.5 s (2026-11-22). 20 s leaves room for a machine shared with other
# work, and a phase gone per-node serial or quadratic (an fsync per host per step, a
# thread per node) blows far past it. Scales linearly for N above 1000.
WALL_S_PER_1000 = 20.0
# Commit window (first release -> last acknowledged): measured ~390 ms. The local release
# does its rename in the releasing thread, so this is 1000 back-to-back commits; 2 s
# catches a release that started doing per-node work it should have done at arm time.
COMMIT_WINDOW_MS_PER_1000 = 2000.0
# Peak RSS: the process peak (interpreter, imports and the vault's scrypt included),
# measured ~80 MiB. 256 MiB leaves room for allocator noise but not for the engine keeping
# more than ~150 KiB per node (for instance whole file contents kept for every phase).
PEAK_RSS_MIB = 256.0
# Threads: the pool's workers plus the main thread, and a little slack for Python's own.
THREAD_SLACK = 4


def run_local(count: int, forks: int = FORKS) -> ScenarioResult:
    out = ScenarioResult(
        f"local-{count}",
        f"rotate {count} local hosts, forks={forks}",
    )
    with tempfile.TemporaryDirectory(prefix="farmsync-bench-local-") as tmp:
        root = Path(tmp)
        hosts: dict[str, HostVars] = {}
        configs: dict[str, Path] = {}
        for index in range(count):
            name = f"local{index + 1:04d}"
            config = root / "nodes" / name / "web.config"
            configs[name] = config
            hosts[name] = {
                "_group": "web",
                "ansible_connection": "local",
                "farmsync_root_configs": [str(config)],
            }
        farm = BenchFarm.write(root, "benchlocal", hosts, configs)
        ledger = NodeLedger()
        clock = PhaseClock()
        ctx = farm.context(forks=forks, reporter=clock, factory=ledger)
        rss_before = current_rss_mib()
        with ThreadSampler() as threads:
            result, wall = rotate(ctx)
        scale = max(count, 1000) / 1000
        out.add("wall", round(wall, 2), "s", "<", WALL_S_PER_1000 * scale)
        out.add(
            "commit window", result.commit_window_ms, "ms", "<", COMMIT_WINDOW_MS_PER_1000 * scale
        )
        out.add("rss before run", round(rss_before, 1), "MiB")
        out.add("peak rss", round(peak_rss_mib(), 1), "MiB", "<", PEAK_RSS_MIB)
        out.add("threads peak (all)", threads.peak, "", "<=", forks + 1 + THREAD_SLACK)
        out.add("pool workers peak", threads.workers_peak, "", "<=", forks)
        add_run_metrics(out, result, disk_fingerprints(configs), ledger, clock)
    return out
