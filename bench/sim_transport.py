"""An in-process transport for thousands of simulated nodes: in-memory files, injected latency.

Bench-only (never production code): it exists so ``sim-N`` can measure the orchestration
itself (pool, journal, vault, survey, plan, barrier) at sizes no machine here can host as real
servers. Each :class:`SimNode` meets the :class:`NodeOperations` contract over its own
in-memory disk, with the semantics the real agents have: staging beside the target, hash
checks at stage and arm, a byte-identical backup, an atomic replace that keeps the staged
file's mtime (as rename(2) does), rollback behind its fence (staging file removed first, the
original never overwritten by anything else), cleanup keeping the newest backups by run id.
A simulated node proves no identity (``identity()`` is None): each is its own node.

Latency: every round trip blocks the calling thread for one round-trip time (``rtt``, plus or
minus ``jitter``, uniformly), as a blocking client over a real network does; ``connect``
costs ``connect_rtts`` of them (TCP, key exchange, authentication). ``release`` does not block:
the word leaves at once, the commit happens on the node half a round trip later and its
acknowledgement arrives half a round trip after that, delivered by one network thread for
all nodes (a heap of timed deliveries), never a thread per node.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import Host
from farmsync.nodes.contract import (
    DEFAULT_BACKUP_RETENTION,
    ArmedCommit,
    CommitItem,
    FileState,
    FileStatus,
    NodeOperations,
    StageItem,
    backup_path,
    backups_newest_first,
    sha256_hex,
    staging_path,
)

RTT_S = 0.050
JITTER_S = 0.010
CONNECT_RTTS = 3


@dataclass
class SimFile:
    content: bytes = field(repr=False)
    mtime_ns: int  # kept by a rename, as on a real file system
    ctime_ns: int  # the last change of the entry itself: a rename sets it

    @property
    def sha256(self) -> str:
        return sha256_hex(self.content)


class SimDisk:
    """One node's files, path -> file; a lock per disk (calls on one node may overlap)."""

    def __init__(self) -> None:
        self.files: dict[str, SimFile] = {}
        self.lock = threading.Lock()

    def write(self, path: str, content: bytes) -> None:
        now = time.time_ns()
        self.files[path] = SimFile(content, now, now)

    def rename(self, source: str, target: str) -> None:
        moved = self.files.pop(source)
        moved.ctime_ns = time.time_ns()
        self.files[target] = moved

    def copy(self, source: str, target: str) -> None:
        self.write(target, self.files[source].content)


class SimNetwork:
    """The simulated farm: a disk per host, the latency model and the delivery thread."""

    def __init__(
        self,
        rtt: float = RTT_S,
        jitter: float = JITTER_S,
        connect_rtts: int = CONNECT_RTTS,
        seed: int = 9,
    ):
        self.rtt = rtt
        self.jitter = jitter
        self.connect_rtts = connect_rtts
        self.disks: dict[str, SimDisk] = {}
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._deliver, name="sim-network", daemon=True)
        self.nodes_made = 0

    # --- life cycle ---------------------------------------------------------------------
    def __enter__(self) -> SimNetwork:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join()

    # --- the farm -----------------------------------------------------------------------
    def disk(self, host: str) -> SimDisk:
        return self.disks.setdefault(host, SimDisk())

    def factory(self, host: Host) -> NodeOperations:
        """A NodeFactory for FarmContext: every host of the inventory is a simulated node."""
        self.nodes_made += 1
        return SimNode(host.name, self)

    # --- latency ------------------------------------------------------------------------
    def delay(self) -> float:
        with self._random_lock:
            spread = self._random.uniform(-self.jitter, self.jitter)
        return max(0.0, self.rtt + spread)

    def after(self, seconds: float, action: Callable[[], None]) -> None:
        """Run ``action`` on the network thread ``seconds`` from now."""
        with self._wake:
            heapq.heappush(self._queue, (time.monotonic() + seconds, next(self._sequence), action))
            self._wake.notify()

    def _deliver(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (
                    not self._queue or self._queue[0][0] > time.monotonic()
                ):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._wake.wait(wait)
                if self._stopped:
                    return
                _, _, action = heapq.heappop(self._queue)
            action()


class SimArmedCommit(ArmedCommit):
    """Checked at arm time; released with no wait; committed on the node half an RTT later."""

    def __init__(self, node: SimNode, items: Sequence[CommitItem], run_id: str):
        self._node = node
        self._items = list(items)
        self._run_id = run_id
        self._state = "armed"
        self._acked = threading.Event()
        self._error: NodeError | None = None

    def release(self) -> None:
        if self._state != "armed":
            raise RuntimeError(f"commit is {self._state}, cannot release")
        self._state = "released"
        half = self._node.network.delay() / 2
        network = self._node.network

        def on_node() -> None:
            try:
                self._node.commit_now(self._items, self._run_id)
            except NodeError as exc:
                self._error = exc
            network.after(half, self._acked.set)

        network.after(half, on_node)

    def wait(self, timeout: float) -> None:
        if self._state != "released":
            raise RuntimeError(f"commit is {self._state}, nothing to wait for")
        if not self._acked.wait(timeout):
            raise NodeError(self._node.host_name, NodeErrorKind.TIMEOUT, "no commit answer")
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        if self._state == "armed":
            self._state = "aborted"


class SimNode(NodeOperations):
    """One simulated node: the contract over a SimDisk, each call one (delayed) round trip."""

    def __init__(self, host_name: str, network: SimNetwork):
        super().__init__(host_name)
        self.network = network
        self.disk = network.disk(host_name)
        self.connected = False

    def _trip(self) -> None:
        self.round_trips += 1
        time.sleep(self.network.delay())

    def _changed(self, path: str, what: str) -> NodeError:
        return NodeError(self.host_name, NodeErrorKind.CHANGED, what, phase="commit", path=path)

    # --- life cycle ---------------------------------------------------------------------
    def connect(self) -> None:
        # Not an operation, so not counted in round_trips (as with the real transports).
        time.sleep(sum(self.network.delay() for _ in range(self.network.connect_rtts)))
        self.connected = True

    def close(self) -> None:
        self.connected = False

    # --- the phases ---------------------------------------------------------------------
    def read(self, paths: Sequence[str]) -> dict[str, FileState]:
        self._trip()
        states: dict[str, FileState] = {}
        with self.disk.lock:
            for path in paths:
                found = self.disk.files.get(path)
                if found is None:
                    states[path] = FileState(path, FileStatus.MISSING)
                else:
                    states[path] = FileState(
                        path, FileStatus.OK, found.content, found.sha256, found.mtime_ns / 1e9
                    )
        return states

    def stage(self, items: Sequence[StageItem], run_id: str) -> None:
        self._trip()
        with self.disk.lock:
            for item in items:
                live = self.disk.files.get(item.path)
                if live is None or live.sha256 != item.expected_sha256:
                    raise NodeError(
                        self.host_name,
                        NodeErrorKind.CHANGED,
                        "file changed since it was read",
                        phase="stage",
                        path=item.path,
                    )
            for item in items:
                self.disk.write(staging_path(item.path, run_id), item.new_content)

    def _check(self, items: Sequence[CommitItem], run_id: str) -> None:
        for item in items:
            live = self.disk.files.get(item.path)
            if live is None or live.sha256 != item.expected_sha256:
                raise self._changed(item.path, "file changed since it was read")
            staged = self.disk.files.get(staging_path(item.path, run_id))
            if staged is None or staged.sha256 != item.staged_sha256:
                raise self._changed(item.path, "staged file missing or changed")

    def arm_commit(self, items: Sequence[CommitItem], run_id: str) -> ArmedCommit:
        self._trip()
        with self.disk.lock:
            self._check(items, run_id)
        return SimArmedCommit(self, items, run_id)

    def commit_now(self, items: Sequence[CommitItem], run_id: str) -> None:
        """What the node does when the release arrives: re-check, back up, replace.

        A run's backup is never replaced (BACKUP_EXISTS), as on every real transport."""
        with self.disk.lock:
            self._check(items, run_id)
            for item in items:
                if backup_path(item.path, run_id) in self.disk.files:
                    raise NodeError(
                        self.host_name,
                        NodeErrorKind.BACKUP_EXISTS,
                        "this run's backup already exists; it was not replaced",
                        phase="commit",
                        path=item.path,
                    )
            for item in items:
                self.disk.copy(item.path, backup_path(item.path, run_id))
                self.disk.rename(staging_path(item.path, run_id), item.path)

    def rollback(
        self, paths: Sequence[str], run_id: str, expected: Mapping[str, str] | None = None
    ) -> None:
        self._trip()
        expected = expected or {}
        with self.disk.lock:
            for path in paths:
                # The fence first: a released, unacknowledged commit finds nothing to land.
                self.disk.files.pop(staging_path(path, run_id), None)
                want = expected.get(path)
                live = self.disk.files.get(path)
                if want is not None and live is not None and live.sha256 == want:
                    continue
                backup = self.disk.files.get(backup_path(path, run_id))
                if backup is None:
                    continue
                if want is not None and backup.sha256 != want:
                    raise NodeError(
                        self.host_name,
                        NodeErrorKind.VERIFY,
                        "neither the live file nor this run's backup holds the original",
                        phase="rollback",
                        path=path,
                    )
                self.disk.copy(backup_path(path, run_id), path)

    def cleanup(
        self, paths: Sequence[str], run_id: str, keep_backups: int = DEFAULT_BACKUP_RETENTION
    ) -> None:
        self._trip()
        with self.disk.lock:
            for path in paths:
                self.disk.files.pop(staging_path(path, run_id), None)
                for old in self._backups(path)[keep_backups:]:
                    if old != run_id:  # this run's own backup always stays
                        self.disk.files.pop(backup_path(path, old), None)

    def _backups(self, path: str) -> list[str]:
        """Run ids with a backup of ``path``, newest first (by run id, as the contract says)."""
        prefix, suffix = path + ".farmsync-", ".bak"
        return backups_newest_first(
            name[len(prefix) : -len(suffix)]
            for name in self.disk.files
            if name.startswith(prefix) and name.endswith(suffix)
        )

    def list_backups(self, paths: Sequence[str]) -> dict[str, list[str]]:
        self._trip()
        with self.disk.lock:
            return {path: self._backups(path) for path in paths}

    def recycle(self) -> None:
        self._trip()
