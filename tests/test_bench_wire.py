"""The bench's byte counter (bench/wire.py) sees every HTTP byte a WinRM endpoint serves.

A read of a large file must show the file's bytes (base64 in SOAP, so at least 4/3 of them)
in what the endpoint sent, and a stage of it in what the endpoint received: a counter that
missed bodies, or counted one direction as the other, fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bench.wire import count_bytes

from farmsync.inventory.model import Host
from farmsync.nodes.contract import StageItem, sha256_hex
from farmsync.nodes.winrm import WinrmNode
from tests.servers.wsman_endpoint import WsmanEndpoint
from tests.servers.wsman_fixtures import TestCA

SIZE = 300_000


def test_the_counter_sees_answers_and_requests_in_full(
    wsman_ca: TestCA,
    wsman_host: Callable[..., Host],
    tmp_path: Path,
) -> None:
    context = wsman_ca.server_context()
    counter = count_bytes(context)
    server = WsmanEndpoint("farmsync-wire", "pw-" + os.urandom(8).hex(), ssl_context=context)
    server.start()
    try:
        target = tmp_path / "web.config"
        content = b"<configuration>" + os.urandom(SIZE // 2).hex().encode() + b"</configuration>"
        target.write_bytes(content)
        with WinrmNode(wsman_host(server)) as node:
            before = (counter.received, counter.sent)
            state = node.read([str(target)])[str(target)]
            read_sent = counter.sent - before[1]
            before = (counter.received, counter.sent)
            node.stage(
                [StageItem(str(target), content, sha256_hex(content))], "20261127T000000Z-abcdef"
            )
            stage_received = counter.received - before[0]
        assert state.content == content
        assert read_sent >= len(content) * 4 // 3
        assert stage_received >= len(content) * 4 // 3
        assert counter.total == counter.received + counter.sent
    finally:
        server.stop()
