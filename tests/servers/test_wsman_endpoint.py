"""The WS-Man test endpoint speaks the shell protocol the way pywinrm expects it.

Driven with pywinrm's own Protocol over real HTTPS, so a mismatch with what pywinrm sends
or parses shows up here rather than as a mysterious transport failure.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from xml.etree import ElementTree

import pytest
import requests
import xmltodict
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from tests.servers.wsman_endpoint import WsmanEndpoint
from tests.servers.wsman_fixtures import TestCA

# Stands in for the agent: echoes stdin lines to stdout until EOF, then exits 7.
ECHO = (
    "import sys\n"
    "for line in sys.stdin.buffer:\n"
    "    sys.stdout.buffer.write(b'echo:' + line); sys.stdout.flush()\n"
    "sys.stderr.write('bye'); sys.exit(7)\n"
)
AGENT = "powershell.exe -NoProfile -EncodedCommand AAAA"


@pytest.fixture
def endpoint(make_wsman_server: Callable[..., WsmanEndpoint]) -> WsmanEndpoint:
    return make_wsman_server(
        agent_command_line=lambda: AGENT, agent_argv=(sys.executable, "-c", ECHO)
    )


def protocol(endpoint: WsmanEndpoint, ca: TestCA, password: str | None = None) -> Protocol:
    return Protocol(
        endpoint.url,
        transport="basic",
        username=endpoint.username,
        password=endpoint.password if password is None else password,
        ca_trust_path=str(ca.ca_pem),
        operation_timeout_sec=1,
        read_timeout_sec=5,
        proxy=None,
    )


def test_shell_round_trip_with_streams_and_exit_code(
    endpoint: WsmanEndpoint, wsman_ca: TestCA
) -> None:
    p = protocol(endpoint, wsman_ca)
    shell = p.open_shell(env_vars={"FARMSYNC_X": "1"})
    command = p.run_command(shell, AGENT)
    p.send_command_input(shell, command, b"one\r\n")
    p.send_command_input(shell, command, b"two\r\n", end=True)
    stdout, stderr, code = p.get_command_output(shell, command)
    p.cleanup_command(shell, command)  # asserts RelatesTo == MessageID
    p.close_shell(shell)  # likewise

    assert (stdout, stderr, code) == (b"echo:one\r\necho:two\r\n", b"bye", 7)
    assert endpoint.requests["Create"] == 1
    assert endpoint.requests["Command"] == 1
    assert endpoint.requests["Send"] == 2
    assert endpoint.requests["Signal"] == 1
    assert endpoint.requests["Delete"] == 1
    assert endpoint.commands[0].command_line == AGENT
    assert endpoint.commands[0].shell_environment == {"FARMSYNC_X": "1"}
    assert endpoint.send_sizes == [5, 5]
    assert endpoint.open_shells == 0


def test_every_answer_relates_to_the_request_message_id(
    endpoint: WsmanEndpoint, wsman_ca: TestCA
) -> None:
    p = protocol(endpoint, wsman_ca)
    shell = p.open_shell()
    message_id = uuid.uuid4()
    request = {
        "env:Envelope": p.build_wsman_header(
            action="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command",
            resource_uri="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd",
            shell_id=shell,
            message_id=message_id,
        )
    }
    request["env:Envelope"]["env:Body"] = {"rsp:CommandLine": {"rsp:Command": AGENT}}
    answer = ElementTree.fromstring(p.send_message(xmltodict.unparse(request)))
    ns = {"a": "http://schemas.xmlsoap.org/ws/2004/08/addressing"}
    assert answer.findtext(".//a:RelatesTo", namespaces=ns) == f"uuid:{message_id}"
    assert answer.findtext(".//a:Action", namespaces=ns, default="").endswith("/CommandResponse")
    p.close_shell(shell)


def test_receive_with_nothing_ready_times_out_like_windows(
    endpoint: WsmanEndpoint, wsman_ca: TestCA
) -> None:
    p = protocol(endpoint, wsman_ca)
    shell = p.open_shell()
    command = p.run_command(shell, AGENT)
    with pytest.raises(WinRMOperationTimeoutError):  # WSManFault 2150858793, which pywinrm maps
        p.get_command_output_raw(shell, command)
    p.send_command_input(shell, command, b"", end=True)
    assert p.get_command_output(shell, command)[2] == 7
    p.close_shell(shell)


def test_other_command_lines_fail_like_cmd_exe(endpoint: WsmanEndpoint, wsman_ca: TestCA) -> None:
    p = protocol(endpoint, wsman_ca)
    shell = p.open_shell()
    command = p.run_command(shell, "whoami", ["/all"])
    stdout, stderr, code = p.get_command_output(shell, command)
    assert (stdout, code) == (b"", 1)
    assert b"'whoami' is not recognized" in stderr
    too_long = p.run_command(shell, AGENT + " " + "x" * 8200)
    assert p.get_command_output(shell, too_long) == (b"", b"The command line is too long.\r\n", 1)
    assert [c.command_line for c in endpoint.commands] == ["whoami /all", AGENT + " " + "x" * 8200]
    p.close_shell(shell)


def test_delete_ends_the_shell_and_its_processes(endpoint: WsmanEndpoint, wsman_ca: TestCA) -> None:
    p = protocol(endpoint, wsman_ca)
    shell = p.open_shell()
    p.run_command(shell, AGENT)
    assert endpoint.running_processes() == 1
    p.close_shell(shell, close_session=False)
    assert endpoint.running_processes() == 0
    with pytest.raises(WSManFaultError) as fault:
        p.run_command(shell, AGENT)
    assert fault.value.wsman_fault_code == 2150858843
    assert fault.value.fault_subcode == "w:InvalidSelectors"


def test_wrong_password_gets_401(endpoint: WsmanEndpoint, wsman_ca: TestCA) -> None:
    with pytest.raises(InvalidCredentialsError):
        protocol(endpoint, wsman_ca, password="not-the-password").open_shell()
    assert endpoint.requests["unauthorized"] == 1
    assert endpoint.requests["Create"] == 0


def test_shell_quota_fault(
    make_wsman_server: Callable[..., WsmanEndpoint], wsman_ca: TestCA
) -> None:
    endpoint = make_wsman_server(max_shells_per_user=1)
    p = protocol(endpoint, wsman_ca)
    p.open_shell()
    with pytest.raises(WSManFaultError) as fault:
        p.open_shell()
    assert fault.value.wsman_fault_code == 2150859173
    assert fault.value.fault_subcode == "w:QuotaLimit"
    assert "maximum number of 1 concurrent shells" in fault.value.reason


def test_injected_faults(endpoint: WsmanEndpoint, wsman_ca: TestCA) -> None:
    p = protocol(endpoint, wsman_ca)
    endpoint.http_error(500, action="Create")
    with pytest.raises(WinRMTransportError) as http:
        p.open_shell()
    assert http.value.code == 500

    endpoint.drop(action="Create")
    with pytest.raises(requests.exceptions.ConnectionError):
        p.open_shell()

    endpoint.quota("operations")
    shell = p.open_shell()
    with pytest.raises(WSManFaultError) as quota:
        p.run_command(shell, AGENT)
    assert quota.value.wsman_fault_code == 2150859174
    assert p.run_command(shell, AGENT)  # the fault was for one request only
    assert endpoint.requests["Create"] == 3


def test_oversized_envelope_gets_413(endpoint: WsmanEndpoint, wsman_ca: TestCA) -> None:
    p = protocol(endpoint, wsman_ca)
    shell = p.open_shell()
    command = p.run_command(shell, AGENT)
    with pytest.raises(WinRMTransportError) as http:
        p.send_command_input(shell, command, b"x" * endpoint.max_envelope_size)
    assert http.value.code == 413
    p.close_shell(shell)


def test_plain_http_variant(make_wsman_server: Callable[..., WsmanEndpoint]) -> None:
    endpoint = make_wsman_server(tls=False)
    assert endpoint.url.startswith("http://127.0.0.1:")
    p = Protocol(
        endpoint.url,
        transport="basic",
        username=endpoint.username,
        password=endpoint.password,
        operation_timeout_sec=1,
        read_timeout_sec=5,
        ca_trust_path=None,  # type: ignore[arg-type]
        proxy=None,
    )
    p.close_shell(p.open_shell())
    assert endpoint.requests["Delete"] == 1


def test_ntlm_authentication_with_pyspnego_acceptor(
    make_wsman_server: Callable[..., WsmanEndpoint], wsman_ca: TestCA
) -> None:
    endpoint = make_wsman_server(
        ntlm=True, agent_command_line=lambda: AGENT, agent_argv=(sys.executable, "-c", ECHO)
    )

    def ntlm(password: str) -> Protocol:
        return Protocol(
            endpoint.url,
            transport="ntlm",
            username=endpoint.username,
            password=password,
            ca_trust_path=str(wsman_ca.ca_pem),
            operation_timeout_sec=1,
            read_timeout_sec=5,
            proxy=None,
        )

    p = ntlm(endpoint.password)
    shell = p.open_shell()
    command = p.run_command(shell, AGENT)
    p.send_command_input(shell, command, b"hi\n", end=True)
    assert p.get_command_output(shell, command) == (b"echo:hi\n", b"bye", 7)
    p.close_shell(shell)

    with pytest.raises(InvalidCredentialsError):
        ntlm("wrong").open_shell()
