"""On a terminal, ``farmsync rotate`` shows rich progress bars per phase (the piped run's plain
event lines, free of escape codes, are checked in test_rotate)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence

from rich.console import Console

from farmsync.cli.reporters import RichReporter
from farmsync.orchestration.events import Event, Phase, Status
from tests.cli.clikit import ANSI, CLI, LocalFarm


def run_in_pty(
    argv: Sequence[str], env: Mapping[str, str], timeout: float = 60, cols: int = 160
) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on a ``cols``x40 pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    process = subprocess.Popen(
        list(argv), stdin=slave, stdout=slave, stderr=slave, env=dict(env), close_fds=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{argv} still running after {timeout}s")
            ready, _, _ = select.select([master], [], [], remaining)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end of the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            os.kill(process.pid, 9)
            process.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_rotate_on_a_terminal_shows_progress_per_phase(local_farm: LocalFarm) -> None:
    env = local_farm.env(TERM="xterm-256color")

    code, screen = run_in_pty([*CLI, "rotate", "-i", str(local_farm.inventory)], env)

    assert code == 0, screen
    assert ANSI.search(screen), "no escape codes: rich did not see a terminal"
    text = ANSI.sub("", screen)
    for phase in ("connect", "read", "stage", "arm", "commit", "verify"):
        # "commit    ━━━━━━━━ 3/3 0:00:00": the phase, its bar, hosts done of hosts.
        assert re.search(rf"\b{phase}\s+\S+\s+3/3\b", text), (phase, text)
    # The plain one-line-per-event log is for pipes, not terminals.
    assert "[commit] web1: ok" not in text
    assert len(set(local_farm.fingerprints().values())) == 1


def test_failures_on_a_terminal_print_node_text_literally() -> None:
    """Hosts, paths and node messages are data, not rich markup: a path like ``/srv/[/etc]``
    used to raise MarkupError from inside the rollout's progress callback."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    detail = "web[1] stage: permission-denied /srv/[/etc]/[bold]web.config: denied"
    with RichReporter(console) as reporter:
        reporter.event(Event(Phase.STAGE, Status.START, total=1))
        reporter.event(Event(Phase.STAGE, Status.FAILED, "web[1]", detail))

    assert f"stage web[1]: {detail}" in ANSI.sub("", out.getvalue())
