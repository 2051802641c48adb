"""Stand-ins for the HTTP services a playbook talks to: a load balancer and a webhook.

Both are real HTTP servers on 127.0.0.1 (a port chosen at run time) that record every call.
The load balancer answers ``PUT /drain/<host>`` and ``PUT /undrain/<host>``, and serves
``GET /health/<host>`` by asking the node itself (its real ASP.NET answer) unless the test
told it that host is to fail. Each call is recorded with what ``observe(host)`` said at that
moment (the node's key fingerprint, say), so a test can see what changed between calls.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    action: str  # drain | undrain | health
    host: str
    observed: Any  # observe(host) at the time of the call
    body: Any = None


@dataclass
class LoadBalancer:
    node_urls: Mapping[str, str]
    observe: Callable[[str], Any] = lambda host: None
    failing: set[str] = field(default_factory=set)  # health checks answer 503
    refusing: set[str] = field(default_factory=set)  # drains answer 503
    after: Callable[[Call], Any] = lambda call: None  # a test's fault, right after a call
    calls: list[Call] = field(default_factory=list)
    url: str = ""

    def health_of(self, host: str) -> int:
        if host in self.failing:
            return 503
        parts = urllib.parse.urlsplit(self.node_urls[host])
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=15)
        try:
            conn.request("GET", parts.path or "/")
            return conn.getresponse().status
        except OSError:
            return 502
        finally:
            conn.close()


@dataclass
class Webhook:
    bodies: list[Any] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    url: str = ""


def _handler(lb: LoadBalancer | None, hook: Webhook | None) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _reply(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_PUT(self) -> None:
            body = self._body()
            action, _, host = self.path.strip("/").partition("/")
            if lb is None or action not in ("drain", "undrain") or host not in lb.node_urls:
                self._reply(404, {"error": "unknown"})
                return
            call = Call(action, host, lb.observe(host), json.loads(body or b"null"))
            with lock:
                lb.calls.append(call)
            lb.after(call)
            if action == "drain" and host in lb.refusing:
                self._reply(503, {"host": host, "error": "refused"})
                return
            self._reply(200, {"host": host, "state": action})

        def do_GET(self) -> None:
            action, _, host = self.path.strip("/").partition("/")
            if lb is None or action != "health" or host not in lb.node_urls:
                self._reply(404, {"error": "unknown"})
                return
            status = lb.health_of(host)
            with lock:
                lb.calls.append(Call("health", host, lb.observe(host), status))
            self._reply(status, {"host": host, "status": status})

        def do_POST(self) -> None:
            body = self._body()
            if hook is None or self.path != "/hook":
                self._reply(404, {"error": "unknown"})
                return
            with lock:
                hook.raw.append(body)
                hook.authorization.append(self.headers.get("Authorization"))
                hook.bodies.append(json.loads(body))
            self._reply(202, {"ok": True})

    return Handler


@contextlib.contextmanager
def serve(lb: LoadBalancer | None = None, hook: Webhook | None = None) -> Iterator[str]:
    """Serve the stand-ins on 127.0.0.1 until the block ends; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(lb, hook))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    for standin in (lb, hook):
        if standin is not None:
            standin.url = base
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
