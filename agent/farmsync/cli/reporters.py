"""Progress display: rich on a terminal, a line per event elsewhere, silence for --json."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from farmsync.cli.printable import markup, printable
from farmsync.orchestration.events import Event, Status

if TYPE_CHECKING:  # rich's progress machinery loads only when a terminal shows it
    from rich.console import Console
    from rich.progress import TaskID


class PlainReporter:
    """One line per host event on stderr: what a scheduler's log wants. With ``timestamps``
    (stderr is not a terminal: cron, systemd, a pipe) each line starts with the UTC time."""

    def __init__(self, stream: TextIO | None = None, *, timestamps: bool = False):
        self.stream = stream or sys.stderr
        self.timestamps = timestamps

    def _print(self, text: str) -> None:
        if self.timestamps:
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            text = f"{now} {text}"
        print(text, file=self.stream, flush=True)

    def event(self, event: Event) -> None:
        if event.status is Status.START:
            self._print(f"[{event.phase.value}] {event.total} host(s)")
            return
        host = printable(event.host or "-")
        detail = f" {printable(event.detail)}" if event.detail else ""
        self._print(f"[{event.phase.value}] {host}: {event.status.value}{detail}")


class RichReporter:
    """A progress bar per phase, failures printed above it as they happen."""

    def __init__(self, console: Console):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def event(self, event: Event) -> None:
        phase = event.phase.value
        if event.status is Status.START:
            self.tasks[phase] = self.progress.add_task(phase, total=event.total or 0)
            return
        if event.status is Status.FAILED:
            # Host names, paths and node messages are data: neither markup nor terminal controls.
            self.progress.console.print(
                f"[red]✗[/red] {phase} {markup(event.host or '-')}: {markup(event.detail)}",
                markup=True,
                highlight=False,
            )
        if event.status is Status.WARNING:
            self.progress.console.print(
                f"[yellow]![/yellow] {phase} {markup(event.host or '-')}: {markup(event.detail)}",
                markup=True,
                highlight=False,
            )
        if event.status in (Status.OK, Status.FAILED, Status.SKIPPED) and phase in self.tasks:
            self.progress.advance(self.tasks[phase])


class QuietReporter:
    def event(self, event: Event) -> None:
        return None
