"""Plot wall time against farm size for the three tools, from a saved bench JSON.

Run by ``bench/results.py`` with the comparison venv's Python (matplotlib lives there, not in
farmsync's environment): ``python bench/plot.py RESULTS.json OUT.png``. Standalone on purpose:
it imports nothing from farmsync or the bench.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib  # type: ignore[import-not-found]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found]
from matplotlib.ticker import FuncFormatter, LogLocator  # type: ignore[import-not-found]

TOOLS = (("farmsync", "#1b7837"), ("pyinfra", "#2166ac"), ("ansible", "#b2182b"))
# Label offsets in points: at each N the fastest tool's label goes below its point, and one
# within 25% of it above, so close medians (farmsync's, pyinfra's) do not print over each other.
BELOW, BESIDE, ABOVE = (6, -12), (6, -4), (6, 5)


def label_offset(document: dict[str, Any], tool: str, size: int) -> tuple[int, int]:
    medians = {
        name: median for name, _ in TOOLS for n, median, _, _ in series(document, name) if n == size
    }
    if len(medians) < 2:
        return BESIDE
    lowest = min(medians.values())
    if medians[tool] == lowest:
        return BELOW
    return ABOVE if medians[tool] <= 1.25 * lowest else BESIDE


def _metric(scenario: dict[str, Any], name: str) -> float | None:
    for metric in scenario["metrics"]:
        if metric["name"] == name:
            value = metric["value"]
            return float(value) if value is not None else None
    return None


def series(document: dict[str, Any], tool: str) -> list[tuple[int, float, float, float]]:
    """(N, median, min, max) of wall seconds for one tool's comparison scenarios."""
    points = []
    for scenario in document["scenarios"]:
        name = scenario["scenario"]
        prefix, _, size = name.rpartition("-")
        if prefix != tool or not size.isdigit():
            continue
        median = _metric(scenario, "wall median")
        low, high = _metric(scenario, "wall min"), _metric(scenario, "wall max")
        if median is not None and low is not None and high is not None:
            points.append((int(size), median, low, high))
    return sorted(points)


def in_process(document: dict[str, Any]) -> list[tuple[int, float]]:
    """farmsync's in-process ssh-N rotations (no interpreter start) that changed the farm:
    the best run's wall."""
    points = []
    for scenario in document["scenarios"]:
        prefix, _, size = scenario["scenario"].rpartition("-")
        if prefix != "ssh" or not size.isdigit() or not scenario["ok"]:
            continue
        walls = [
            m["value"]
            for m in scenario["metrics"]
            if m["name"].startswith("run ") and m["name"].endswith(" wall") and m["value"]
        ]
        if walls:
            points.append((int(size), float(min(walls))))
    return sorted(points)


def failed_in_process(document: dict[str, Any]) -> list[int]:
    return sorted(
        int(s["scenario"].rpartition("-")[2])
        for s in document["scenarios"]
        if s["scenario"].startswith("ssh-") and not s["ok"]
    )


def load_range(document: dict[str, Any]) -> tuple[float, float]:
    """Lowest and highest 1-minute load average seen before/after any scenario."""
    machine = document["machine"]
    loads = [machine["load average before"], machine["load average after"]]
    for scenario in document["scenarios"]:
        loads += [
            m["value"]
            for m in scenario["metrics"]
            if m["name"].startswith("load average") and m["value"] is not None
        ]
    return min(loads), max(loads)


def main(source: str, target: str) -> None:
    with open(source) as f:
        document = json.load(f)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for tool, colour in TOOLS:
        points = series(document, tool)
        if not points:
            continue
        sizes = [p[0] for p in points]
        medians = [p[1] for p in points]
        below = [p[1] - p[2] for p in points]
        above = [p[3] - p[1] for p in points]
        ax.errorbar(
            sizes,
            medians,
            yerr=[below, above],
            marker="o",
            capsize=4,
            color=colour,
            label=f"{tool} (CLI, median, min-max)",
        )
        for size, median in zip(sizes, medians, strict=True):
            ax.annotate(
                f"{median:.1f} s",
                (size, median),
                textcoords="offset points",
                xytext=label_offset(document, tool, size),
                fontsize=8,
                color=colour,
            )
    extra = [p for p in in_process(document) if p[0] > 0]
    if extra:
        ax.plot(
            [p[0] for p in extra],
            [p[1] for p in extra],
            linestyle="--",
            marker="s",
            color="#5aae61",
            label="farmsync in process (ssh-N, best run)",
        )
    machine = document["machine"]
    low, high = load_range(document)
    ax.set_title(
        f"One key into N sshd nodes' web.config, read back ({document['date']})\n"
        f"{machine['cpus']} CPUs ({machine.get('cpu', '')}), shared: load average "
        f"{low:.1f}-{high:.1f}",
        fontsize=10,
    )
    failed = failed_in_process(document)
    if failed:
        ax.text(
            0.99,
            0.02,
            "not plotted (did not complete): " + ", ".join(f"ssh-{n}" for n in failed),
            transform=ax.transAxes,
            ha="right",
            fontsize=8,
            color="#555555",
        )
    ax.set_xlabel("nodes (N)")
    ax.set_ylabel("wall time (s)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted(
        {p[0] for tool, _ in TOOLS for p in series(document, tool)} | {p[0] for p in extra}
    )
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(target)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
