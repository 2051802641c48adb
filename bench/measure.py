"""What a benchmark run samples besides the RunResult: memory, threads, connect time."""

from __future__ import annotations

import resource
import threading
import time
from types import TracebackType

from farmsync.orchestration.events import Event, Phase, Status

MIB = 1024 * 1024


def peak_rss_mib() -> float:
    """This process's peak resident set since it started (Linux reports ru_maxrss in KiB).

    A process-lifetime peak: it includes the interpreter and every import, so it is an upper
    bound for whatever ran so far.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB


def controller_cpu_s() -> float:
    """CPU seconds this process has used so far (user + system, all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def current_rss_mib() -> float:
    """Resident set right now (from /proc; 0 where there is no /proc)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * resource.getpagesize() / MIB


def join_transport_threads(timeout: float = 10.0) -> None:
    """Wait for the SSH library's threads of earlier runs to end: a closed paramiko Transport
    ends its thread a moment later, and one still ending would count in the next run's peak."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if type(thread).__name__ == "Transport":
            thread.join(max(0.0, deadline - time.monotonic()))


class ThreadSampler:
    """Samples the live threads in a background thread while the block runs.

    ``peak`` is every thread but the sampler's own; ``workers_peak`` counts the engine's pool
    workers (concurrent.futures names them ThreadPoolExecutor-*); ``transports_peak`` the
    threads of the SSH library (one paramiko Transport per open connection).
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0
        self.workers_peak = 0
        self.transports_peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-thread-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            threads = threading.enumerate()
            workers = sum(1 for t in threads if t.name.startswith("ThreadPoolExecutor"))
            transports = sum(1 for t in threads if type(t).__name__ == "Transport")
            self.peak = max(self.peak, len(threads) - 1)
            self.workers_peak = max(self.workers_peak, workers)
            self.transports_peak = max(self.transports_peak, transports)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


class PhaseClock:
    """A Reporter that times the connect phase (RunResult.phase_ms starts after it).

    Events come from worker threads, so the timestamps are taken under a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.connect_start: float | None = None
        self.connect_end: float | None = None

    def event(self, event: Event) -> None:
        now = time.monotonic()
        if event.phase is not Phase.CONNECT:
            return
        with self._lock:
            if event.status is Status.START and self.connect_start is None:
                self.connect_start = now
            elif event.status in (Status.OK, Status.FAILED):
                self.connect_end = now

    @property
    def connect_ms(self) -> float | None:
        if self.connect_start is None or self.connect_end is None:
            return None
        return round((self.connect_end - self.connect_start) * 1000, 3)
