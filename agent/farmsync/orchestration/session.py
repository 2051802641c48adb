"""One connection per node for the whole run, opened concurrently, closed at the end."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from types import TracebackType

from farmsync.errors import FarmsyncError, describe_error
from farmsync.inventory.model import Host
from farmsync.nodes.connect import node_for
from farmsync.nodes.contract import NodeOperations
from farmsync.orchestration.events import Event, Phase, Reporter, Status
from farmsync.orchestration.pool import TaskResult, run_each
from farmsync.orchestration.survey import as_farmsync_error

NodeFactory = Callable[[Host], NodeOperations]


class FarmSession:
    """Connected nodes of one run. ``failures`` holds the hosts that could not be reached."""

    def __init__(
        self,
        hosts: Sequence[Host],
        *,
        forks: int,
        reporter: Reporter,
        factory: NodeFactory = node_for,
    ):
        self.hosts = {host.name: host for host in hosts}
        self.forks = forks
        self.reporter = reporter
        self.factory = factory
        self.nodes: dict[str, NodeOperations] = {}
        self.failures: dict[str, FarmsyncError] = {}

    def __enter__(self) -> FarmSession:
        self.connect(list(self.hosts))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self, names: Sequence[str]) -> None:
        self.reporter.event(Event(Phase.CONNECT, Status.START, total=len(names)))

        def work(name: str, host: Host) -> NodeOperations:
            node = self.factory(host)
            node.connect()
            return node

        def done(name: str, outcome: TaskResult[NodeOperations]) -> None:
            status = Status.OK if outcome.ok else Status.FAILED
            self.reporter.event(Event(Phase.CONNECT, status, name, describe_error(outcome.error)))

        outcomes = run_each(((n, self.hosts[n]) for n in names), work, self.forks, done)
        for name, outcome in outcomes.items():
            if outcome.value is not None:
                self.nodes[name] = outcome.value
                self.failures.pop(name, None)
            else:
                self.failures[name] = as_farmsync_error(name, outcome.error, Phase.CONNECT)

    def reconnect(self, name: str) -> NodeOperations | None:
        """Drop a broken connection and open a fresh one (used to roll back after a drop)."""
        old = self.nodes.pop(name, None)
        if old is not None:
            _close_quietly(old)
        self.connect([name])
        return self.nodes.get(name)

    def close(self) -> None:
        nodes, self.nodes = self.nodes, {}
        run_each(nodes.items(), lambda _name, node: _close_quietly(node), self.forks)


def _close_quietly(node: NodeOperations) -> None:
    with contextlib.suppress(Exception):  # a dead connection must not mask the run's result
        node.close()
