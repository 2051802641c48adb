"""WinrmNode against the WS-Man test endpoint over real HTTPS, with the Python agent in
place of PowerShell: phases, one shell per run, stdin chunking, the armed commit, secrets."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from farmsync.errors import NodeError, NodeErrorKind
from farmsync.inventory.model import DEFAULT_WINRM_MAX_ENVELOPE_KB, Host
from farmsync.nodes import agent_session, psagent
from farmsync.nodes.contract import (
    CommitItem,
    FileStatus,
    StageItem,
    backup_path,
    sha256_hex,
    staging_path,
)
from farmsync.nodes.winrm import WinrmNode
from farmsync.nodes.winrm_shell import SEND_CHUNK, build_protocol, send_chunk
from tests.servers.wsman_endpoint import ACTIONS, WsmanEndpoint

VALIDATION_KEY = "A1" * 64
DECRYPTION_KEY = "B2" * 32
RUN = "20240101T000000Z-abcd"


def web_config(keys: bool = False, padding: int = 0) -> bytes:
    key = (
        f'<machineKey validationKey="{VALIDATION_KEY}" decryptionKey="{DECRYPTION_KEY}" '
        'validation="HMACSHA256" decryption="AES" />'
        if keys
        else ""
    )
    filler = "".join(f'<add key="k{i}" value="{i:08d}" />' for i in range(padding // 32))
    return (
        '<?xml version="1.0" encoding="utf-8"?>\r\n<configuration><system.web>'
        f"{key}</system.web><appSettings>{filler}</appSettings></configuration>\r\n"
    ).encode()


@pytest.fixture
def node_dir(wsman_server: WsmanEndpoint) -> Path:
    assert wsman_server.working_directory is not None
    return Path(wsman_server.working_directory)


def connected(host: Host) -> WinrmNode:
    node = WinrmNode(host)
    node.connect()
    return node


def stage_and_commit(node: WinrmNode, path: Path, new: bytes) -> None:
    live = sha256_hex(path.read_bytes())
    node.stage([StageItem(str(path), new, live)], RUN)
    node.commit([CommitItem(str(path), live, sha256_hex(new))], RUN)


def test_full_rotation_uses_one_shell_and_one_command_for_the_run(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    site = node_dir / "web.config"
    app = node_dir / "app" / "web.config"
    app.parent.mkdir()
    old_site, old_app = web_config(), web_config(padding=2000)
    site.write_bytes(old_site)
    app.write_bytes(old_app)
    paths = [str(site), str(app)]
    new = {str(site): web_config(keys=True), str(app): web_config(keys=True, padding=2000)}

    with WinrmNode(wsman_host(wsman_server)) as node:
        states = node.read(paths)
        assert {p: s.content for p, s in states.items()} == {str(site): old_site, str(app): old_app}
        node.stage([StageItem(p, new[p], states[p].sha256 or "") for p in paths], RUN)
        assert Path(staging_path(str(site), RUN)).read_bytes() == new[str(site)]
        armed = node.arm_commit(
            [CommitItem(p, states[p].sha256 or "", sha256_hex(new[p])) for p in paths], RUN
        )
        armed.release()
        armed.wait(10)
        verify = node.read(paths)
        node.cleanup(paths, RUN)
        assert node.list_backups(paths) == {str(site): [RUN], str(app): [RUN]}
        node.rollback(paths, RUN)
        assert node.round_trips == 7

    assert {p: s.content for p, s in verify.items()} == new
    assert Path(backup_path(str(site), RUN)).read_bytes() == old_site  # byte-identical
    assert Path(backup_path(str(app), RUN)).read_bytes() == old_app
    assert site.read_bytes() == old_site and app.read_bytes() == old_app  # rolled back
    assert not Path(staging_path(str(site), RUN)).exists()
    assert wsman_server.requests["Create"] == 1  # one shell for the whole run...
    assert wsman_server.requests["Command"] == 1  # ...and one agent for every phase
    assert wsman_server.requests["Delete"] == 1
    assert wsman_server.open_shells == 0
    assert wsman_server.running_processes() == 0


def test_large_config_travels_on_stdin_in_chunks_never_on_the_command_line(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    target = node_dir / "web.config"
    target.write_bytes(web_config())
    new = web_config(keys=True, padding=700_000)
    assert len(new) > 700_000

    with WinrmNode(wsman_host(wsman_server)) as node:
        node.stage([StageItem(str(target), new, sha256_hex(target.read_bytes()))], RUN)
        stage_sends = list(wsman_server.send_sizes)
        node.read([str(target)])
        chunk = node.shell.send_chunk

    assert Path(staging_path(str(target), RUN)).read_bytes() == new
    assert chunk == send_chunk(DEFAULT_WINRM_MAX_ENVELOPE_KB)
    assert len(stage_sends) >= 3  # the request line went in several Send messages
    assert max(stage_sends) <= chunk
    assert sum(stage_sends) == len(
        psagent.request_line(
            "stage",
            psagent.stage_args([StageItem(str(target), new, sha256_hex(web_config()))], RUN),
        )
    )
    lines = [c.command_line for c in wsman_server.commands]
    assert lines == [psagent.command_line()] == node.sent_commands  # one agent, two requests
    for line in lines:
        assert len(line) < 8191
        assert str(node_dir) not in line and "web.config" not in line


def test_key_material_never_reaches_a_command_line_or_environment(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    target = node_dir / "web.config"
    target.write_bytes(web_config())
    with WinrmNode(wsman_host(wsman_server)) as node:
        stage_and_commit(node, target, web_config(keys=True))
        node.read([str(target)])
    assert VALIDATION_KEY in target.read_text()  # the keys did travel, on stdin

    assert len(wsman_server.commands) == 1
    for record in wsman_server.commands:
        seen = record.command_line + " ".join(
            f"{k}={v}" for k, v in record.shell_environment.items()
        )
        for secret in (VALIDATION_KEY, DECRYPTION_KEY, wsman_server.password, "machineKey"):
            assert secret.lower() not in seen.lower()
    assert all(VALIDATION_KEY not in line for line in node.sent_commands)


def test_armed_commit_is_released_by_exactly_one_send(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    target = node_dir / "web.config"
    old, new = web_config(), web_config(keys=True)
    target.write_bytes(old)
    with WinrmNode(wsman_host(wsman_server)) as node:
        node.stage([StageItem(str(target), new, sha256_hex(old))], RUN)
        armed = node.arm_commit([CommitItem(str(target), sha256_hex(old), sha256_hex(new))], RUN)
        assert target.read_bytes() == old  # armed, not committed
        assert wsman_server.running_processes() == 1  # the agent waits on stdin
        before = wsman_server.requests.copy()
        armed.release()
        after = wsman_server.requests.copy()
        armed.wait(10)

    assert after - before == {"Send": 1}  # no Command, no Receive: one message to the node
    assert target.read_bytes() == new
    assert Path(backup_path(str(target), RUN)).read_bytes() == old


def test_armed_commit_abort_and_wait_timeout_leave_the_live_file(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    target = node_dir / "web.config"
    old, new = web_config(), web_config(keys=True)
    target.write_bytes(old)
    items = [CommitItem(str(target), sha256_hex(old), sha256_hex(new))]
    with WinrmNode(wsman_host(wsman_server)) as node:
        node.stage([StageItem(str(target), new, sha256_hex(old))], RUN)
        node.arm_commit(items, RUN).abort()
        assert target.read_bytes() == old

        never_released = node.arm_commit(items, RUN)
        with pytest.raises(NodeError) as err:
            never_released.wait(1.0)  # the agent waits for the word: bounded by our deadline
        assert err.value.kind is NodeErrorKind.TIMEOUT
        assert wsman_server.running_processes() == 0  # terminated on timeout
        assert node.read([str(target)])[str(target)].content == old  # the shell still serves
    assert not Path(backup_path(str(target), RUN)).exists()


def test_changed_live_file_is_refused_at_stage_and_at_arm(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    target = node_dir / "web.config"
    old, new = web_config(), web_config(keys=True)
    target.write_bytes(old)
    with WinrmNode(wsman_host(wsman_server)) as node:
        with pytest.raises(NodeError) as at_stage:
            node.stage([StageItem(str(target), new, sha256_hex(b"something else"))], RUN)
        assert at_stage.value.kind is NodeErrorKind.CHANGED
        assert not Path(staging_path(str(target), RUN)).exists()

        node.stage([StageItem(str(target), new, sha256_hex(old))], RUN)
        target.write_bytes(old + b"<!-- edited by hand -->")
        with pytest.raises(NodeError) as at_arm:
            node.arm_commit([CommitItem(str(target), sha256_hex(old), sha256_hex(new))], RUN)
        assert at_arm.value.kind is NodeErrorKind.CHANGED
        assert at_arm.value.phase == "commit"
    assert target.read_bytes() == old + b"<!-- edited by hand -->"


def test_missing_and_unreadable_files_are_reported_per_path(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    with WinrmNode(wsman_host(wsman_server)) as node:
        states = node.read([str(node_dir / "absent.config"), str(node_dir)])
    assert states[str(node_dir / "absent.config")].status is FileStatus.MISSING
    assert states[str(node_dir)].status is FileStatus.ERROR
    assert states[str(node_dir)].error_kind is NodeErrorKind.IS_DIRECTORY


# --- transport security and faults ------------------------------------------------------------


def test_certificate_from_an_untrusted_ca_is_a_tls_error(
    make_wsman_server: Callable[..., WsmanEndpoint], wsman_host: Callable[..., Host]
) -> None:
    server = make_wsman_server(untrusted=True)
    with pytest.raises(NodeError) as err:
        connected(wsman_host(server))
    assert err.value.kind is NodeErrorKind.TLS
    assert "not trusted" in err.value.detail
    assert server.requests["Create"] == 0


def test_disabled_validation_connects_with_a_warning(
    make_wsman_server: Callable[..., WsmanEndpoint],
    wsman_host: Callable[..., Host],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_wsman_server(untrusted=True)
    node = connected(wsman_host(server, cert_validation=False, ca_trust_path=None))
    node.close()
    assert server.requests["Create"] == 1
    assert "validation is disabled" in caplog.text


def test_wrong_password_is_an_auth_error_without_the_password(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host]
) -> None:
    with pytest.raises(NodeError) as err:
        connected(wsman_host(wsman_server, password="wrong-password-123"))
    assert err.value.kind is NodeErrorKind.AUTH
    assert "wrong-password-123" not in str(err.value)
    assert wsman_server.requests["unauthorized"] >= 1


def test_basic_over_plain_http_is_refused_unless_allowed(
    make_wsman_server: Callable[..., WsmanEndpoint],
    wsman_host: Callable[..., Host],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_wsman_server(tls=False)
    with pytest.raises(NodeError) as err:
        connected(wsman_host(server))
    assert err.value.kind is NodeErrorKind.TLS
    assert "plain HTTP" in err.value.detail
    assert sum(server.requests.values()) == 0  # refused before sending the password

    with WinrmNode(wsman_host(server, allow_insecure_basic=True)) as node:
        assert node.list_backups([]) == {}
    assert "travels in clear" in caplog.text


def test_unreachable_port(wsman_host: Callable[..., Host], wsman_server: WsmanEndpoint) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(NodeError) as err:
        connected(wsman_host(wsman_server, port=closed_port))
    assert err.value.kind is NodeErrorKind.UNREACHABLE


def test_http_500_is_a_clear_error(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    node = connected(wsman_host(wsman_server))
    wsman_server.http_error(500, action="Command")
    with pytest.raises(NodeError) as err:
        node.read([str(node_dir / "web.config")])
    node.close()
    assert err.value.kind is NodeErrorKind.PROTOCOL
    assert "HTTP 500" in err.value.detail
    assert err.value.phase == "read"


def test_slow_answer_beyond_the_host_timeout_is_a_timeout(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    # Connecting must fit in the timeout even on a loaded machine; the answer comes far later.
    node = connected(wsman_host(wsman_server, timeout=3.0))
    wsman_server.delay(10.0, action="Receive")
    with pytest.raises(NodeError) as err:
        node.read([str(node_dir / "web.config")])
    node.close()
    assert err.value.kind is NodeErrorKind.TIMEOUT


def test_dropped_connection_is_connection_lost(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    node = connected(wsman_host(wsman_server))
    wsman_server.drop(action="Receive")
    with pytest.raises(NodeError) as err:
        node.read([str(node_dir / "web.config")])
    node.close()
    assert err.value.kind is NodeErrorKind.CONNECTION_LOST


def test_shell_quota_is_retried_then_reported(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host]
) -> None:
    wsman_server.quota("shells", count=1)
    connected(wsman_host(wsman_server)).close()  # one retry, then a shell
    assert wsman_server.requests["Create"] == 2

    wsman_server.quota("shells", count=100)
    with pytest.raises(NodeError) as err:
        connected(wsman_host(wsman_server, timeout=2.0))
    assert err.value.kind is NodeErrorKind.QUOTA
    assert "concurrent shells" in err.value.detail


def test_operations_quota_gets_a_fresh_shell(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    with WinrmNode(wsman_host(wsman_server)) as node:
        wsman_server.quota("operations", count=1)
        assert node.list_backups([str(node_dir / "web.config")]) == {
            str(node_dir / "web.config"): []
        }
        wsman_server.quota("operations", count=2)
        node.session.drop()  # the next request starts a fresh agent: a Command
        with pytest.raises(NodeError) as err:
            node.list_backups([])
    assert err.value.kind is NodeErrorKind.QUOTA
    assert wsman_server.requests["Create"] == 3


def test_no_pywinrm_exception_escapes_for_bad_settings(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host]
) -> None:
    for overrides in (
        {"transport": "certificate"},  # no client certificate configured
        {"transport": "carrier-pigeon"},
        {"user": None},
    ):
        with pytest.raises(NodeError):
            connected(wsman_host(wsman_server, **overrides))


def test_env_references_in_paths_expand_on_the_node(
    wsman_server: WsmanEndpoint,
    wsman_host: Callable[..., Host],
    node_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (node_dir / "web.config").write_bytes(web_config())
    # The endpoint runs in this process: its agents inherit this environment, like %windir%.
    monkeypatch.setenv("FARMSYNC_TEST_NODE_DIR", str(node_dir))
    with WinrmNode(wsman_host(wsman_server)) as node:
        path = "%FARMSYNC_TEST_NODE_DIR%/web.config"
        assert node.read([path])[path].content == web_config()


def test_ntlm_over_https(
    make_wsman_server: Callable[..., WsmanEndpoint], wsman_host: Callable[..., Host]
) -> None:
    server = make_wsman_server(ntlm=True)
    target = Path(server.working_directory or "") / "web.config"
    target.write_bytes(web_config())
    with WinrmNode(wsman_host(server, transport="ntlm")) as node:
        assert node.read([str(target)])[str(target)].content == web_config()
    with pytest.raises(NodeError) as err:
        connected(wsman_host(server, transport="ntlm", password="wrong"))
    assert err.value.kind is NodeErrorKind.AUTH


def test_http_session_never_reads_or_writes_the_process_environment(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host]
) -> None:
    # requests would otherwise set and delete os.environ["no_proxy"] around each request,
    # which races between nodes served in parallel.
    protocol = build_protocol(wsman_host(wsman_server))
    session = protocol.transport.session
    assert session is not None
    assert session.trust_env is False and session.proxies == {}
    node = WinrmNode(wsman_host(wsman_server))
    with node:
        before = dict(os.environ)
        node.read(["/nonexistent/web.config"])
        assert dict(os.environ) == before


def test_ntlm_over_plain_http_encrypts_every_message(
    make_wsman_server: Callable[..., WsmanEndpoint], wsman_host: Callable[..., Host]
) -> None:
    # Port 5985 the Windows way: HTTP, the SOAP bodies sealed with NTLM session keys.
    server = make_wsman_server(tls=False, ntlm=True)
    target = Path(server.working_directory or "") / "web.config"
    target.write_bytes(web_config(keys=True))
    with WinrmNode(wsman_host(server, transport="ntlm", scheme="http")) as node:
        assert node.read([str(target)])[str(target)].content == web_config(keys=True)
    assert server.requests["sealed"] >= 4  # Create, Command, Send, Receive..., Delete
    assert server.requests["sealed"] == sum(
        n for action, n in server.requests.items() if action in ACTIONS.values()
    )


def test_commands_stream_stdin_without_console_mode_or_cmd_exe(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    with WinrmNode(wsman_host(wsman_server)) as node:
        node.list_backups([str(node_dir / "web.config")])
    (record,) = wsman_server.commands
    assert record.skip_cmd_shell is True and record.console_mode_stdin is False


def test_a_short_receive_timeout_is_not_left_on_later_requests(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    node = connected(wsman_host(wsman_server))  # host timeout 10 s: operation timeout 5 s
    try:
        command = node.shell.start(psagent.command_line(), "read")
        assert command.receive(time.monotonic() + 1.0) is None  # the agent waits for stdin
        command.send(psagent.request_line("read", psagent.read_args([])), end=True)
        command.collect(time.monotonic() + 10)
        command.terminate()
    finally:
        node.close()
    timeouts = wsman_server.operation_timeouts
    receives = [t for action, t in timeouts if action == "Receive"]
    assert receives[0] == 1.0  # bounded by the caller's deadline...
    after = timeouts[[a for a, _ in timeouts].index("Receive") + 1 :]
    assert after and all(t == 5.0 for a, t in after if a != "Receive")  # ...and only that one


def test_ssl_transport_is_basic_over_https_and_connects(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    # `ansible_winrm_transport: ssl` passes the inventory check, so it must connect too.
    with WinrmNode(wsman_host(wsman_server, transport="ssl")) as node:
        assert node.list_backups([str(node_dir / "web.config")]) == {
            str(node_dir / "web.config"): []
        }
    assert wsman_server.requests["Create"] == 1


def test_a_connection_failure_while_the_session_is_built_is_a_node_error(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host]
) -> None:
    # NTLM over plain HTTP makes its first request (the encryption handshake) while the
    # session is built: a refused connection there is a NodeError, not a requests exception.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    host = wsman_host(wsman_server, transport="ntlm", scheme="http", port=closed_port)
    with pytest.raises(NodeError) as err:
        connected(host)
    assert err.value.kind is NodeErrorKind.UNREACHABLE
    assert err.value.phase == "connect"


def test_credssp_is_warned_about(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(NodeError):  # no CredSSP on this endpoint (or no requests-credssp)
        connected(wsman_host(wsman_server, transport="credssp", timeout=3.0))
    assert "CredSSP delegates the login's credential" in caplog.text


def test_a_request_to_an_agent_that_ended_is_connection_lost_and_a_read_is_retried(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    target = node_dir / "web.config"
    old, new = web_config(), web_config(keys=True)
    target.write_bytes(old)
    with WinrmNode(wsman_host(wsman_server)) as node:
        assert node.read([str(target)])[str(target)].content == old
        assert wsman_server.kill_agents() == 1  # the agent dies between two requests

        # Read-only: answered by a fresh agent, after the first found the old one gone.
        assert node.read([str(target)])[str(target)].content == old
        assert wsman_server.spawned == 2

        assert wsman_server.kill_agents() == 1
        with pytest.raises(NodeError) as err:  # not idempotent: never sent twice
            node.stage([StageItem(str(target), new, sha256_hex(old))], RUN)
        assert err.value.kind is NodeErrorKind.CONNECTION_LOST
        assert err.value.detail == agent_session.AGENT_ENDED
        assert not Path(staging_path(str(target), RUN)).exists()
        assert wsman_server.spawned == 2

        node.stage([StageItem(str(target), new, sha256_hex(old))], RUN)  # a fresh agent
        assert wsman_server.spawned == 3
    assert wsman_server.running_processes() == 0


def test_stage_and_arm_is_one_exchange_and_the_release_answers_the_verify(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    target = node_dir / "web.config"
    old, new = web_config(), web_config(keys=True)
    target.write_bytes(old)
    older = Path(backup_path(str(target), "20200101T000000Z-old"))
    older.write_bytes(old)
    with WinrmNode(wsman_host(wsman_server)) as node:
        before = wsman_server.requests.copy()
        armed = node.stage_and_arm(
            [StageItem(str(target), new, sha256_hex(old))],
            [CommitItem(str(target), sha256_hex(old), sha256_hex(new))],
            RUN,
            keep_backups=1,
        )
        staged = wsman_server.requests.copy()
        assert staged - before == {"Command": 1, "Send": 1, "Receive": 1}
        assert target.read_bytes() == old  # armed
        armed.release()
        states = armed.wait(10)
        assert wsman_server.requests - staged == {"Send": 1, "Receive": 1}
    assert states is not None and armed.cleaned_up
    state = states[str(target)]
    assert state.sha256 == sha256_hex(new) and state.content is None
    assert state.mtime == os.stat(target).st_mtime
    assert target.read_bytes() == new
    assert Path(backup_path(str(target), RUN)).read_bytes() == old
    assert not older.exists()  # pruned past keep_backups in the same exchange
    assert not Path(staging_path(str(target), RUN)).exists()


def _stage_commit_both_roots(node: WinrmNode, roots: list[Path]) -> None:
    """A rotation's stage+arm and release of both .NET 4 root web.configs of one node."""
    old = {p: p.read_bytes() for p in roots}
    new = {p: old[p].replace(b"<system.web>", b"<system.web><machineKey />") for p in roots}
    armed = node.stage_and_arm(
        [StageItem(str(p), new[p], sha256_hex(old[p])) for p in roots],
        [CommitItem(str(p), sha256_hex(old[p]), sha256_hex(new[p])) for p in roots],
        RUN,
    )
    armed.release()
    armed.wait(30)
    assert all(p.read_bytes() == new[p] for p in roots)


def test_both_real_sized_root_configs_go_in_one_send(
    wsman_server: WsmanEndpoint, wsman_host: Callable[..., Host], node_dir: Path
) -> None:
    # .NET 4's root web.config is about 40 KB; a node has one per bitness. Their stage_commit
    # request (the script, then both contents base64 inside base64 JSON) is ~190 KB: one
    # Send under the default 500 KB envelope, where 96 KiB Sends would take three.
    roots = [node_dir / "Framework" / "web.config", node_dir / "Framework64" / "web.config"]
    for root in roots:
        root.parent.mkdir()
        root.write_bytes(web_config(padding=42_000))
    with WinrmNode(wsman_host(wsman_server)) as node:
        node.read([str(p) for p in roots])
        before = list(wsman_server.send_sizes)
        _stage_commit_both_roots(node, roots)
        sends = wsman_server.send_sizes[len(before) :]
    assert len(sends) == 2  # the request line, then the release word
    assert sends[0] > 2 * SEND_CHUNK
    assert not node.warnings


def test_a_node_with_a_smaller_envelope_gets_smaller_sends_and_a_warning(
    make_wsman_server: Callable[..., WsmanEndpoint], wsman_host: Callable[..., Host]
) -> None:
    # A node still at WinRM 2.0's MaxEnvelopeSizekb of 150: the first, larger Send is refused
    # whole (HTTP 413) and sent again in 96 KiB pieces; the run goes on and says so once.
    server = make_wsman_server(max_envelope_size=150 * 1024)
    assert server.working_directory is not None
    roots = [Path(server.working_directory) / f"v{n}" / "web.config" for n in (1, 2)]
    for root in roots:
        root.parent.mkdir()
        root.write_bytes(web_config(padding=42_000))
    with WinrmNode(wsman_host(server)) as node:
        _stage_commit_both_roots(node, roots)
        assert node.shell.send_chunk == SEND_CHUNK
        (warning,) = node.warnings
        assert "HTTP 413" in warning and "farmsync_winrm_max_envelope_kb = 500" in warning
        node.read([str(p) for p in roots])  # later requests go straight in small Sends
    assert max(server.send_sizes) <= SEND_CHUNK
    assert node.warnings == [warning]


def test_an_envelope_set_in_the_inventory_sizes_the_sends(
    make_wsman_server: Callable[..., WsmanEndpoint], wsman_host: Callable[..., Host]
) -> None:
    server = make_wsman_server(max_envelope_size=150 * 1024)
    assert server.working_directory is not None
    roots = [Path(server.working_directory) / "web.config"]
    roots[0].write_bytes(web_config(padding=42_000))
    with WinrmNode(wsman_host(server, max_envelope_kb=150)) as node:
        _stage_commit_both_roots(node, roots)
        assert not node.warnings  # sized right from the first Send
    assert max(server.send_sizes) <= send_chunk(150) < 150 * 1024 * 3 // 4
