"""Bytes on the wire at a test endpoint, counted inside its TLS layer (HTTP as sent).

The endpoint (tests/servers/wsman_endpoint) serves HTTPS through the ``ssl.SSLContext`` it is
given; a context whose ``sslsocket_class`` counts what it reads and writes sees every HTTP
byte of every request and answer (headers and SOAP bodies, after decryption), without
touching the endpoint's code.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any


class ByteCounter:
    def __init__(self) -> None:
        self.received = 0  # from the client: requests
        self.sent = 0  # to the client: answers
        self._lock = threading.Lock()

    def add(self, received: int = 0, sent: int = 0) -> None:
        with self._lock:
            self.received += received
            self.sent += sent

    @property
    def total(self) -> int:
        with self._lock:
            return self.received + self.sent


def count_bytes(context: ssl.SSLContext) -> ByteCounter:
    """Make ``context`` count every byte its server sockets read and write."""
    counter = ByteCounter()

    class CountingSocket(ssl.SSLSocket):
        def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
            n = super().recv_into(buffer, nbytes, flags)
            counter.add(received=n)
            return n

        def send(self, data: Any, flags: int = 0) -> int:
            # Counted before it goes: one send of a large answer may return only after the
            # client has read all of it and moved on, and a count added then would be late.
            size = memoryview(data).nbytes
            counter.add(sent=size)
            n = 0
            try:
                n = super().send(data, flags)
            finally:
                counter.add(sent=n - size)  # what did not go after all
            return n

    context.sslsocket_class = CountingSocket
    return counter
