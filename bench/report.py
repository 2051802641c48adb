"""Metrics with their targets, and the two ways to show them: a table and JSON."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Metric:
    """One measured number; with ``op`` and ``limit`` it is a target that can be missed.

    With ``goal`` (the issue that sets it, e.g. "issue 9") it is a goal instead: shown and
    saved like a target, but a miss does not fail the run, because it waits on work that has
    not landed yet. Make it a target (drop ``goal``) once that work holds it.
    """

    name: str
    value: float | None
    unit: str = ""
    op: str | None = None
    limit: float | None = None
    goal: str | None = None

    @property
    def is_target(self) -> bool:
        return self.op is not None and self.limit is not None

    @property
    def ok(self) -> bool:
        if self.op is None or self.limit is None:
            return True
        return self.value is not None and _OPS[self.op](self.value, self.limit)

    def target_text(self) -> str:
        return f"{self.op} {_number(self.limit)} {self.unit}".rstrip() if self.is_target else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": self.target_text() or None,
            "goal": self.goal,
            "ok": self.ok,
        }


@dataclass
class ScenarioResult:
    scenario: str
    description: str
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the scenario could not run to the end

    def add(
        self,
        name: str,
        value: float | None,
        unit: str = "",
        op: str | None = None,
        limit: float | None = None,
        goal: str | None = None,
    ) -> None:
        self.metrics.append(Metric(name, value, unit, op, limit, goal))

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missed()

    def missed(self) -> list[Metric]:
        """Targets missed (goals aside)."""
        return [m for m in self.metrics if not m.ok and m.goal is None]

    def goals_missed(self) -> list[Metric]:
        return [m for m in self.metrics if not m.ok and m.goal is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "description": self.description,
            "ok": self.ok,
            "error": self.error,
            "metrics": [m.to_dict() for m in self.metrics],
            "notes": list(self.notes),
        }


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def _mark(metric: Metric) -> str:
    if not metric.is_target:
        return ""
    verdict = "ok" if metric.ok else "MISSED"
    return f"{verdict} ({metric.goal} goal)" if metric.goal else verdict


def render_table(results: Sequence[ScenarioResult]) -> str:
    """A plain-text table: one block per scenario, one row per metric."""
    rows: list[tuple[str, str, str, str, str]] = [("scenario", "metric", "value", "target", "")]
    for result in results:
        first = True
        for metric in result.metrics:
            value = f"{_number(metric.value)} {metric.unit}".rstrip()
            mark = _mark(metric)
            rows.append(
                (result.scenario if first else "", metric.name, value, metric.target_text(), mark)
            )
            first = False
        if result.error is not None:
            rows.append((result.scenario if first else "", "error", result.error, "", "FAILED"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines: list[str] = []
    for index, row in enumerate(rows):
        if index > 0 and row[0]:
            lines.append("  ".join("-" * w for w in widths).rstrip())
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for result in results:
        lines.extend(f"{result.scenario}: {note}" for note in result.notes)
    return "\n".join(lines)
