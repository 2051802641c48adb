"""Progress display: rich on a terminal, a line per event elsewhere, silence for --json."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from farmsync.orchestration.events import Event, Status


class PlainReporter:
    """One line per host event on stderr: what a scheduler's log wants."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr

    def event(self, event: Event) -> None:
        if event.status is Status.START:
            print(f"[{event.phase.value}] {event.total} host(s)", file=self.stream, flush=True)
            return
        host = event.host or "-"
        detail = f" {event.detail}" if event.detail else ""
        print(
            f"[{event.phase.value}] {host}: {event.status.value}{detail}",
            file=self.stream,
            flush=True,
        )


class RichReporter:
    """A progress bar per phase, failures printed above it as they happen."""

    def __init__(self, console: Console):
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
            # Host names, paths and node messages are data: never let rich read them as markup.
            self.progress.console.print(
                f"[red]✗[/red] {phase} {escape(event.host or '-')}: {escape(event.detail)}",
                markup=True,
                highlight=False,
            )
        if event.status is Status.WARNING:
            self.progress.console.print(
                f"[yellow]![/yellow] {phase} {escape(event.host or '-')}: {escape(event.detail)}",
                markup=True,
                highlight=False,
            )
        if event.status in (Status.OK, Status.FAILED, Status.SKIPPED) and phase in self.tasks:
            self.progress.advance(self.tasks[phase])


class QuietReporter:
    def event(self, event: Event) -> None:
        return None
