"""Where one farmsync rotation's time goes: ``python bench/profile.py [N]`` (default 20).

Starts N real sshd nodes, rotates them once with the CLI (warm-up), then once more under
py-spy (from the comparison venv, sampling idle threads too, so the numbers are wall time).
Prints the largest farmsync steps and imports: for the main thread, where the run's wall time
goes; for the worker threads, summed, what they wait on. The run profiled is
``python -m farmsync.cli.main rotate --json``, exactly what the comparison scenarios time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from tests.orchestration.farmkit import PASSPHRASE  # noqa: E402

from bench import compare_env  # noqa: E402
from bench.ssh_scenario import start_nodes, write_ssh_farm  # noqa: E402
from farmsync.lab.sshd import SshdKeys, SshdNode  # noqa: E402

RATE = 250  # samples per second
TOP = 16


def _frames(line: str) -> tuple[str, list[str], int]:
    """(thread, frames root first, count) of one py-spy raw line; a frame is
    "function (file)", its line number dropped so one function is one entry."""
    stack, _, count = line.rpartition(" ")
    thread, _, frames = stack.partition(";")
    return thread, [f.rpartition(":")[0] + ")" for f in frames.split(";") if f], int(count)


def summarise(raw: Path, main_thread: bool) -> tuple[int, Counter[str]]:
    """Samples of the main thread (or of the pool's workers), inclusive per function: each
    function counted once per stack it is on."""
    total = 0
    inclusive: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        thread, frames, count = _frames(line)
        if main_thread != ("MainThread" in thread):
            continue
        if not main_thread and "ThreadPoolExecutor" not in thread:
            continue  # paramiko's own Transport threads: always reading their socket
        total += count
        for frame in set(frames):
            inclusive[frame] += count
    return total, inclusive


def _print(title: str, total: int, counts: Counter[str]) -> None:
    """The biggest farmsync functions and imports below the trunk (the frames every sample
    shares, such as click's and the command's own, say nothing)."""
    print(f"\n{title} ({total} samples at {RATE}/s = {total / RATE:.2f} s)")
    shown = 0
    for frame, n in counts.most_common():
        if n > 0.9 * total or not ("farmsync/" in frame or frame.startswith("_find_and_load ")):
            continue
        print(f"  {100 * n / max(total, 1):5.1f}%  {frame}")
        shown += 1
        if shown == TOP:
            break


def main(count: int) -> None:
    py_spy = compare_env.tool("py-spy")
    started: list[SshdNode] = []
    with tempfile.TemporaryDirectory(prefix="farmsync-bench-profile-") as tmp:
        root = Path(tmp)
        try:
            start_nodes(root, SshdKeys.generate(root / "keys"), count, started)
            farm = write_ssh_farm(root, "benchprofile", started)
            env = {
                **os.environ,
                "FARMSYNC_STATE_DIR": str(farm.state_root),
                "FARMSYNC_VAULT_PASSPHRASE": PASSPHRASE,
            }
            rotate = [sys.executable, "-m", "farmsync.cli.main", "rotate", "--json"]
            rotate += ["--forks", str(count), "-i", str(farm.inventory_path)]
            subprocess.run(rotate, env=env, capture_output=True, check=True)  # warm-up
            raw = root / "wall.txt"
            argv = [py_spy, "record", "-r", str(RATE), "--threads", "--idle", "-f", "raw"]
            subprocess.run(
                [*argv, "-o", str(raw), "--", *rotate], env=env, capture_output=True, check=True
            )
            _print("main thread: wall time by step", *summarise(raw, main_thread=True))
            _print("pool workers: time by step, summed", *summarise(raw, main_thread=False))
        finally:
            for node in started:
                node.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
