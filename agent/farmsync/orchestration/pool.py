"""Bounded concurrency for per-node work.

At most ``forks`` calls run at once (Ansible's ``--forks``); each node's result or error is
kept, never raised, so one bad node cannot hide what happened on the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskResult(Generic[R]):
    """What one unit of work gave: its value, or the error it raised (named apart from a
    run's :class:`farmsync.orchestration.result.Outcome`)."""

    value: R | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_each(
    items: Iterable[tuple[K, T]],
    work: Callable[[K, T], R],
    forks: int,
    on_done: Callable[[K, TaskResult[R]], None] | None = None,
) -> dict[K, TaskResult[R]]:
    """Run ``work(key, item)`` for every item with at most ``forks`` in flight."""
    pairs = list(items)
    results: dict[K, TaskResult[R]] = {}
    if not pairs:
        return results

    def call(key: K, item: T) -> tuple[K, TaskResult[R]]:
        try:
            return key, TaskResult(value=work(key, item))
        except Exception as exc:
            return key, TaskResult(error=exc)

    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(pairs)))) as pool:
        futures = [pool.submit(call, key, item) for key, item in pairs]
        for future in as_completed(futures):
            key, outcome = future.result()
            results[key] = outcome
            if on_done is not None:
                on_done(key, outcome)
    # Callers iterate in inventory order, not completion order.
    return {key: results[key] for key, _ in pairs}
