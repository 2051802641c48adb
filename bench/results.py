"""``--save``: the run as ``bench/results/<date>.json``, a markdown table and a PNG plot.

The plot is drawn by ``bench/plot.py`` in the comparison venv (matplotlib is no farmsync
dependency), from the JSON just written; without comparison results there is nothing to plot.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import compare_env
from bench.report import Metric, ScenarioResult

RESULTS = Path(__file__).resolve().parent / "results"
PLOT_SCRIPT = Path(__file__).resolve().parent / "plot.py"


def machine_facts() -> dict[str, Any]:
    """What the numbers came from: CPU model and count, memory."""
    model = platform.processor() or ""
    memory_gib: float | None = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model
            )
        with open("/proc/meminfo") as f:
            kib = next(int(ln.split()[1]) for ln in f if ln.startswith("MemTotal"))
            memory_gib = round(kib / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return {"cpus": os.cpu_count(), "cpu": model, "memory GiB": memory_gib}


def _cell(metric: Metric) -> str:
    value = "-" if metric.value is None else f"{metric.value:g}"
    text = f"{value} {metric.unit}".rstrip()
    if metric.is_target:
        verdict = "ok" if metric.ok else "**missed**"
        kind = f"{metric.goal} goal" if metric.goal else "target"
        text += f" ({kind} {metric.target_text()}: {verdict})"
    return text


def markdown(document: dict[str, Any], results: Sequence[ScenarioResult]) -> str:
    machine = document["machine"]
    lines = [
        f"# farmsync bench, {document['date']}",
        "",
        f"{machine['cpus']} CPU(s) ({machine['cpu']}), {machine['memory GiB']} GiB, "
        f"Python {machine['python']}, {machine['platform']}; load average "
        f"{machine['load average before']} before, {machine['load average after']} after; "
        f"{document['seconds']} s in all.",
        "",
        "| scenario | metric | value |",
        "|---|---|---|",
    ]
    for result in results:
        if result.error is not None:
            lines.append(f"| {result.scenario} | error | {result.error} |")
        for metric in result.metrics:
            lines.append(f"| {result.scenario} | {metric.name} | {_cell(metric)} |")
    notes = [f"- {r.scenario}: {note}" for r in results for note in r.notes]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def save(document: dict[str, Any], results: Sequence[ScenarioResult]) -> list[Path]:
    """Write the JSON and the markdown; the PNG too when there are comparisons to plot."""
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / str(document["date"])
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    md_path = stem.with_suffix(".md")
    md_path.write_text(markdown(document, results))
    written = [json_path, md_path]
    if any(r.scenario.startswith(("ansible-", "pyinfra-", "farmsync-")) for r in results):
        png = stem.with_suffix(".png")
        done = subprocess.run(
            [compare_env.tool("python"), str(PLOT_SCRIPT), str(json_path), str(png)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            written.append(png)
        else:
            print(f"plot failed: {done.stderr.strip()[-300:]}", file=sys.stderr)
    return written
