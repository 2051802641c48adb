"""An sshd ``Subsystem sftp`` that runs the real sftp-server behind a proxy, to fault the
SFTP commit at an exact point (tests only; plain stdlib, run by sshd as the node's process).

Usage (sshd_config): ``Subsystem sftp PYTHON sftp_proxy.py CONTROL_DIR``

Every instance appends its sftp-server's pid to ``CONTROL_DIR/pids``, and one line per OPEN
(``open PATH``) and extended request (``NAME LAST-ARGUMENT``) to ``CONTROL_DIR/requests``.
One instance, the first to see a release (a ``hardlink@openssh.com`` request onto a
``.bak`` name) while ``CONTROL_DIR/mode`` exists, claims that file and acts on it; every
other instance is a plain pipe. Modes (any other, e.g. ``none``: a plain pipe):

``drop``  kill sftp-server and exit at the release, forwarding none of it (the channel dropped
          between stage and release);
``mid``   forward the release up to and including the first ``posix-rename``, pass on its
          answers, then kill sftp-server and exit (dropped in the middle of the release);
``hold``  hold the release until ``CONTROL_DIR/go`` exists (the channel stalls: no answer
          arrives), then forward it and write each answer's status code, one line per
          request, to ``CONTROL_DIR/late`` once the rename is answered (the late commit,
          however it went; one file).
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
OPEN, EXTENDED, STATUS = 3, 200, 101


def read_packet(stream: BinaryIO) -> bytes | None:
    head = stream.read(4)
    if len(head) < 4:
        return None
    (length,) = struct.unpack(">I", head)
    body = stream.read(length)
    return head + body if len(body) == length else None


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    (n,) = struct.unpack(">I", data[at : at + 4])
    return data[at + 4 : at + 4 + n], at + 4 + n


def describe(packet: bytes) -> tuple[int, int, bytes, bytes]:
    """(type, request id, extended name, last string) of a request."""
    kind, rid = packet[4], int(struct.unpack(">I", packet[5:9])[0])
    if kind != EXTENDED:
        return kind, rid, b"", b""
    name, at = _string(packet, 9)
    last = b""
    while at < len(packet):
        last, at = _string(packet, at)
    return kind, rid, name, last


def main() -> None:
    control = Path(sys.argv[1])
    # Outlive the session that started us (a held release runs after its channel closed).
    for number in (signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(number, signal.SIG_IGN)
    child = subprocess.Popen(
        [SFTP_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    assert child.stdin is not None and child.stdout is not None
    with (control / "pids").open("a") as f:
        f.write(f"{child.pid}\n")
    out = sys.stdout.buffer
    to_child = child.stdin
    release_ids: list[int] = []
    answered: dict[int, int] = {}
    seen = threading.Condition()

    def answers() -> None:
        assert child.stdout is not None
        while (packet := read_packet(child.stdout)) is not None:
            rid = struct.unpack(">I", packet[5:9])[0]
            if packet[4] == STATUS and rid in release_ids:
                code = struct.unpack(">I", packet[9:13])[0]
                with (control / "late.part").open("a") as f:
                    f.write(f"{code}\n")
            with contextlib.suppress(OSError):  # the client may be gone (hold)
                out.write(packet)
                out.flush()
            with seen:
                answered[rid] = packet[4]
                seen.notify_all()

    threading.Thread(target=answers, daemon=True).start()
    mode: str | None = None
    stdin = sys.stdin.buffer
    log = (control / "requests").open("a", buffering=1)
    while (packet := read_packet(stdin)) is not None:
        kind, rid, name, last = describe(packet)
        if kind == EXTENDED:
            log.write(f"{name.decode()} {last.decode(errors='replace')}\n")
        elif kind == OPEN:
            log.write(f"open {_string(packet, 9)[0].decode(errors='replace')}\n")
        releasing = name == b"hardlink@openssh.com" and last.endswith(b".bak")
        if releasing and mode is None:
            claimed = control / f"mode.{os.getpid()}"
            with contextlib.suppress(OSError):
                (control / "mode").rename(claimed)
                mode = claimed.read_text().strip()
        if mode == "drop" and releasing:
            child.kill()
            os._exit(1)
        if mode == "hold" and (releasing or release_ids):
            release_ids.append(rid)
            while not (control / "go").exists():
                time.sleep(0.05)
        elif mode == "mid" and releasing:
            release_ids.append(rid)
        to_child.write(packet)
        to_child.flush()
        if name == b"posix-rename@openssh.com" and release_ids:
            with seen:
                seen.wait_for(lambda rid=rid: rid in answered, timeout=30)
            if mode == "mid":
                child.send_signal(signal.SIGKILL)
                os._exit(1)
            # hold: the late release ran (one file per test); say how it went
            (control / "late.part").replace(control / "late")
    to_child.close()
    child.wait()


if __name__ == "__main__":
    main()
