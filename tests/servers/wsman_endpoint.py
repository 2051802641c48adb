"""A WS-Management shell endpoint (the subset of WinRM that pywinrm speaks), for tests.

It answers Create, Command, Send, Receive, Signal and Delete over HTTP(S) with Basic auth,
the way a Windows WinRM service does: ShellId selectors, RelatesTo = the request's
MessageID, base64 streams, CommandState Done with the exit code, w:TimedOut faults
(2150858793) when a Receive has nothing to give within its OperationTimeout, and
w:QuotaLimit faults when the per-user shell or operation quotas are exceeded.

There is no PowerShell here: a Command whose command line is the farmsync agent's
(``psagent.command_line()``) starts ``python -m farmsync.nodes.agent`` instead, with stdin
fed by Send and stdout/stderr returned by Receive. Any other command line fails like
cmd.exe does ("... is not recognized ...", exit 1).

Tests read the counters (requests per action, command lines and shell environments
received) and set fault knobs (HTTP errors, delays, dropped connections, quota faults).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import spnego
import spnego.exceptions
from lxml import etree

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
ACTIONS = {
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create": "Create",
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete": "Delete",
    f"{SHELL_URI}/Command": "Command",
    f"{SHELL_URI}/Send": "Send",
    f"{SHELL_URI}/Receive": "Receive",
    f"{SHELL_URI}/Signal": "Signal",
}
RESPONSE_ACTIONS = {
    "Create": "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
    "Delete": "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
    "Command": f"{SHELL_URI}/CommandResponse",
    "Send": f"{SHELL_URI}/SendResponse",
    "Receive": f"{SHELL_URI}/ReceiveResponse",
    "Signal": f"{SHELL_URI}/SignalResponse",
}
SIGNAL_TERMINATE = f"{SHELL_URI}/signal/terminate"
SIGNAL_CTRL_C = f"{SHELL_URI}/signal/ctrl_c"
STATE_DONE = f"{SHELL_URI}/CommandState/Done"
STATE_RUNNING = f"{SHELL_URI}/CommandState/Running"

# WSManFault codes as a Windows WinRM service sends them.
CODE_TIMED_OUT = 2150858793  # ERROR_WSMAN_OPERATION_TIMEDOUT: Receive had nothing to return
CODE_SHELL_NOT_FOUND = 2150858843  # ERROR_WSMAN_INVALID_SELECTORS / shell not found
CODE_QUOTA_SHELLS = 2150859173  # MaxShellsPerUser exceeded
CODE_QUOTA_OPERATIONS = 2150859174  # MaxConcurrentOperationsPerUser exceeded
CODE_INVALID_PARAMETER = 2150858882  # unknown command id, bad stream...

CMD_LINE_LIMIT = 8191  # cmd.exe's limit on one command line
MUTUAL_TLS_AUTH = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
DEFAULT_MAX_ENVELOPE = 512000  # MaxEnvelopeSizekb = 500, the modern Windows default

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_blank_text=True
)


@dataclass(frozen=True)
class CommandRecord:
    """What the endpoint was asked to run: for assertions on what the transport sent."""

    shell_id: str
    command_id: str
    command_line: str
    shell_environment: dict[str, str]
    skip_cmd_shell: bool
    console_mode_stdin: bool = True


@dataclass
class Fault:
    """One armed fault: applies to the next ``count`` requests matching ``action`` (None: any).

    kinds: ``http`` (answer with HTTP ``status`` and no SOAP body), ``drop`` (close the
    connection without answering), ``delay`` (sleep ``seconds`` then answer normally),
    ``quota-shells`` / ``quota-operations`` (the w:QuotaLimit fault Windows sends),
    ``soap`` (any other WSManFault: ``code``, ``subcode`` and ``message``).
    """

    kind: str
    action: str | None = None
    count: int = 1
    status: int = 500
    seconds: float = 0.0
    code: int = 0
    subcode: str = ""
    message: str = ""


@dataclass
class _Command:
    id: str
    proc: subprocess.Popen[bytes] | None
    cond: threading.Condition = field(default_factory=threading.Condition)
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    open_streams: int = 0
    exit_code: int | None = None
    stdin_closed: bool = False

    def finished(self) -> bool:
        return self.exit_code is not None and self.open_streams == 0


@dataclass
class _Shell:
    id: str
    user: str
    environment: dict[str, str]
    working_directory: str | None
    commands: dict[str, _Command] = field(default_factory=dict)


class SoapFault(Exception):
    def __init__(self, subcode: str, code: int, message: str, status: int = 500):
        super().__init__(message)
        self.subcode = subcode
        self.code = code
        self.message = message
        self.status = status


def _default_agent_command_line() -> str:
    from farmsync.nodes import psagent

    return psagent.command_line()


class WsmanEndpoint:
    """The endpoint's state, counters and fault knobs; serve with :meth:`start`."""

    def __init__(
        self,
        username: str,
        password: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        working_directory: str | None = None,
        agent_command_line: Callable[[], str] = _default_agent_command_line,
        agent_argv: tuple[str, ...] = (sys.executable, "-m", "farmsync.nodes.agent"),
        max_shells_per_user: int = 5,
        max_operations_per_user: int = 15,
        max_envelope_size: int = DEFAULT_MAX_ENVELOPE,
        ntlm: bool = False,
        client_ca: str | None = None,
    ):
        self.username = username
        self.password = password
        self.ssl_context = ssl_context
        self.host = host
        self.working_directory = working_directory
        self.agent_command_line = agent_command_line
        self.agent_argv = agent_argv
        self.max_shells_per_user = max_shells_per_user
        self.max_operations_per_user = max_operations_per_user
        self.max_envelope_size = max_envelope_size
        self.ntlm = ntlm
        # Certificate auth: TLS client certificates signed by this CA, plus the WS-Man
        # "https/mutual" Authorization header pywinrm sends with them.
        self.client_ca = client_ca
        self._ntlm_dir: str | None = None
        self._saved_user_file: str | None = None
        self.machine = "farmsync-test-node"

        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # by short action name, plus "unauthorized"
        self.commands: list[CommandRecord] = []
        self.spawned = 0  # agent processes started (Commands that ran the agent)
        self.send_sizes: list[int] = []  # decoded stdin bytes per Send message
        # (action, w:OperationTimeout in seconds) of every SOAP request, in order.
        self.operation_timeouts: list[tuple[str, float | None]] = []
        self.faults: list[Fault] = []
        self._shells: dict[str, _Shell] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "endpoint not started"
        return int(self._server.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/wsman"

    def start(self) -> None:
        if self.client_ca is not None:
            if self.ssl_context is None:
                raise ValueError("certificate auth needs TLS")
            self.ssl_context.verify_mode = ssl.CERT_OPTIONAL
            self.ssl_context.load_verify_locations(self.client_ca)
        if self.ntlm:
            # pyspnego's NTLM acceptor reads its accounts from the file NTLM_USER_FILE names.
            self._ntlm_dir = tempfile.mkdtemp(prefix="wsman-ntlm-")
            user_file = os.path.join(self._ntlm_dir, "users")
            with open(os.open(user_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:
                fh.write(f":{self.username}:{self.password}\n")
            self._saved_user_file = os.environ.get("NTLM_USER_FILE")
            os.environ["NTLM_USER_FILE"] = user_file
        self._server = _Server((self.host, 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            for command in shell.commands.values():
                _kill(command)
        if self._ntlm_dir is not None:
            if self._saved_user_file is None:
                os.environ.pop("NTLM_USER_FILE", None)
            else:
                os.environ["NTLM_USER_FILE"] = self._saved_user_file
            shutil.rmtree(self._ntlm_dir, ignore_errors=True)
            self._ntlm_dir = None

    # --- fault knobs --------------------------------------------------------------------
    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def http_error(self, status: int = 500, count: int = 1, action: str | None = None) -> None:
        self.add_fault(Fault("http", action, count, status=status))

    def drop(self, count: int = 1, action: str | None = None) -> None:
        self.add_fault(Fault("drop", action, count))

    def delay(self, seconds: float, count: int = 1, action: str | None = None) -> None:
        self.add_fault(Fault("delay", action, count, seconds=seconds))

    def quota(self, kind: str = "shells", count: int = 1) -> None:
        """Make the next ``count`` Creates (shells) or Commands (operations) hit the quota."""
        self.add_fault(Fault(f"quota-{kind}", "Create" if kind == "shells" else "Command", count))

    def soap_fault(
        self, code: int, subcode: str, message: str, action: str | None = None, count: int = 1
    ) -> None:
        """Answer the next ``count`` requests with this WSManFault (HTTP 500, as Windows)."""
        self.add_fault(Fault("soap", action, count, code=code, subcode=subcode, message=message))

    def forget_shells(self) -> None:
        """Lose every shell, as a restarted WinRM service does: a request naming one then
        gets the shell-not-found fault."""
        with self._lock:
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            for command in shell.commands.values():
                _kill(command)

    def kill_agents(self) -> int:
        """SIGKILL every running agent process, as a crash on the node would (their commands
        stay in their shells, Done once reaped); how many were killed."""
        with self._lock:
            procs = [c.proc for s in self._shells.values() for c in s.commands.values() if c.proc]
        killed = 0
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
                killed += 1
        return killed

    def _take_fault(self, action: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.count > 0 and fault.action in (None, action):
                    fault.count -= 1
                    return fault
        return None

    # --- introspection ------------------------------------------------------------------
    @property
    def open_shells(self) -> int:
        with self._lock:
            return len(self._shells)

    def running_processes(self) -> int:
        with self._lock:
            commands = [c for s in self._shells.values() for c in s.commands.values()]
        return sum(1 for c in commands if c.proc is not None and c.proc.poll() is None)

    # --- request handling ---------------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        return hmac.compare_digest(user.encode(), self.username.encode()) and hmac.compare_digest(
            password.encode(), self.password.encode()
        )

    def handle(self, root: etree._Element) -> tuple[int, bytes]:
        """One parsed SOAP request in, (HTTP status, SOAP response) out."""
        header = root.find("s:Header", NS)
        body_el = root.find("s:Body", NS)
        if header is None or body_el is None:
            raise SoapFault("w:InvalidMessageInformationHeader", 2150858817, "No SOAP header.")
        action_uri = _text(header, "a:Action")
        message_id = _text(header, "a:MessageID")
        action = ACTIONS.get(action_uri, "")
        with self._lock:
            timeout = _duration(_text(header, "w:OperationTimeout"))
            self.operation_timeouts.append((action, timeout))
        try:
            if not action:
                raise SoapFault("a:ActionNotSupported", 2150858753, "The action is not supported.")
            out = getattr(self, f"_do_{action.lower()}")(header, body_el)
            return 200, _envelope(RESPONSE_ACTIONS[action], message_id, out)
        except SoapFault as fault:
            return fault.status, _fault_envelope(fault, message_id, self.machine)

    def _shell(self, header: etree._Element) -> _Shell:
        shell_id = ""
        for sel in header.iterfind("w:SelectorSet/w:Selector", NS):
            if sel.get("Name") == "ShellId":
                shell_id = sel.text or ""
        with self._lock:
            shell = self._shells.get(shell_id)
        if shell is None:
            raise SoapFault(
                "w:InvalidSelectors",
                CODE_SHELL_NOT_FOUND,
                f"The request for the Windows Remote Shell with ShellId {shell_id} failed "
                "because the shell was not found on the server. Possible causes are: the "
                "specified ShellId is incorrect or the shell no longer exists on the server.",
            )
        return shell

    @staticmethod
    def _command(shell: _Shell, command_id: str | None) -> _Command:
        command = shell.commands.get(command_id or "")
        if command is None:
            raise SoapFault(
                "w:InvalidParameter",
                CODE_INVALID_PARAMETER,
                "The WS-Management service cannot process the request because the "
                f"CommandId {command_id} is not valid for this shell.",
            )
        return command

    def _do_create(self, header: etree._Element, body: etree._Element) -> etree._Element:
        shell_el = body.find("rsp:Shell", NS)
        env: dict[str, str] = {}
        workdir = None
        if shell_el is not None:
            for var in shell_el.iterfind("rsp:Environment/rsp:Variable", NS):
                env[var.get("Name", "")] = var.text or ""
            workdir = _text(shell_el, "rsp:WorkingDirectory") or None
        with self._lock:
            mine = sum(1 for s in self._shells.values() if s.user == self.username)
            if mine >= self.max_shells_per_user:
                raise _quota_shells(self.max_shells_per_user)
            shell = _Shell(str(uuid.uuid4()).upper(), self.username, env, workdir)
            self._shells[shell.id] = shell
        created = etree.Element(_q("x", "ResourceCreated"), nsmap=NS)
        etree.SubElement(created, _q("a", "Address")).text = self.url
        ref = etree.SubElement(created, _q("a", "ReferenceParameters"))
        etree.SubElement(ref, _q("w", "ResourceURI")).text = f"{SHELL_URI}/cmd"
        selectors = etree.SubElement(ref, _q("w", "SelectorSet"))
        etree.SubElement(selectors, _q("w", "Selector"), Name="ShellId").text = shell.id
        return created

    def _do_delete(self, header: etree._Element, body: etree._Element) -> None:
        shell = self._shell(header)
        with self._lock:
            self._shells.pop(shell.id, None)
        for command in shell.commands.values():
            _kill(command)
        return None

    def _do_command(self, header: etree._Element, body: etree._Element) -> etree._Element:
        shell = self._shell(header)
        line_el = body.find("rsp:CommandLine", NS)
        if line_el is None:
            raise SoapFault("w:InvalidParameter", CODE_INVALID_PARAMETER, "No CommandLine.")
        command_line = _text(line_el, "rsp:Command")
        arguments = _text(line_el, "rsp:Arguments")
        if arguments:
            command_line = f"{command_line} {arguments}"
        options = {
            o.get("Name"): (o.text or "").upper()
            for o in header.iterfind("w:OptionSet/w:Option", NS)
        }
        skip_cmd = options.get("WINRS_SKIP_CMD_SHELL") == "TRUE"
        console_stdin = options.get("WINRS_CONSOLEMODE_STDIN") != "FALSE"
        with self._lock:
            live = sum(len(s.commands) for s in self._shells.values() if s.user == self.username)
            if live >= self.max_operations_per_user:
                raise _quota_operations(self.max_operations_per_user)
            command_id = str(uuid.uuid4()).upper()
            self.commands.append(
                CommandRecord(
                    shell.id,
                    command_id,
                    command_line,
                    dict(shell.environment),
                    skip_cmd,
                    console_stdin,
                )
            )
        command = self._spawn(shell, command_id, command_line, skip_cmd)
        with self._lock:
            shell.commands[command_id] = command
        response = etree.Element(_q("rsp", "CommandResponse"), nsmap=NS)
        etree.SubElement(response, _q("rsp", "CommandId")).text = command_id
        return response

    def _spawn(self, shell: _Shell, command_id: str, line: str, skip_cmd: bool) -> _Command:
        if not skip_cmd and len(line) > CMD_LINE_LIMIT:
            return _failed(command_id, b"The command line is too long.\r\n")
        if line.strip() != self.agent_command_line():
            program = line.strip().split(" ", 1)[0] or line
            return _failed(
                command_id,
                f"'{program}' is not recognized as an internal or external command,\r\n"
                "operable program or batch file.\r\n".encode(),
            )
        env = dict(os.environ)
        env.update(shell.environment)
        with self._lock:
            self.spawned += 1
        proc = subprocess.Popen(
            list(self.agent_argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=shell.working_directory or self.working_directory,
            env=env,
        )
        command = _Command(command_id, proc, open_streams=2)
        for name in ("stdout", "stderr"):
            threading.Thread(target=_pump, args=(command, name), daemon=True).start()
        threading.Thread(target=_reap, args=(command,), daemon=True).start()
        return command

    def _do_send(self, header: etree._Element, body: etree._Element) -> etree._Element:
        shell = self._shell(header)
        for stream in body.iterfind("rsp:Send/rsp:Stream", NS):
            command = self._command(shell, stream.get("CommandId"))
            if stream.get("Name") != "stdin":
                raise SoapFault("w:InvalidParameter", CODE_INVALID_PARAMETER, "Unknown stream.")
            data = base64.b64decode(stream.text or "")
            with self._lock:
                self.send_sizes.append(len(data))
            end = (stream.get("End") or "").lower() == "true"
            _feed(command, data, end)
        return etree.Element(_q("rsp", "SendResponse"), nsmap=NS)

    def _do_receive(self, header: etree._Element, body: etree._Element) -> etree._Element:
        shell = self._shell(header)
        desired = body.find("rsp:Receive/rsp:DesiredStream", NS)
        command = self._command(shell, desired.get("CommandId") if desired is not None else None)
        timeout = _duration(_text(header, "w:OperationTimeout")) or 60.0
        deadline = time.monotonic() + timeout
        with command.cond:
            while not (command.stdout or command.stderr or command.finished()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SoapFault(
                        "w:TimedOut",
                        CODE_TIMED_OUT,
                        "The WS-Management service cannot complete the operation within the "
                        "time specified in OperationTimeout.",
                    )
                command.cond.wait(left)
            out, err = bytes(command.stdout), bytes(command.stderr)
            command.stdout.clear()
            command.stderr.clear()
            done = command.finished()
            exit_code = command.exit_code
        response = etree.Element(_q("rsp", "ReceiveResponse"), nsmap=NS)
        for name, data in (("stdout", out), ("stderr", err)):
            if data:
                el = etree.SubElement(response, _q("rsp", "Stream"), Name=name)
                el.set("CommandId", command.id)
                el.text = base64.b64encode(data).decode("ascii")
            if done:
                el = etree.SubElement(response, _q("rsp", "Stream"), Name=name)
                el.set("CommandId", command.id)
                el.set("End", "true")
        state = etree.SubElement(response, _q("rsp", "CommandState"), CommandId=command.id)
        state.set("State", STATE_DONE if done else STATE_RUNNING)
        if done:
            etree.SubElement(state, _q("rsp", "ExitCode")).text = str(exit_code)
        return response

    def _do_signal(self, header: etree._Element, body: etree._Element) -> etree._Element:
        shell = self._shell(header)
        signal_el = body.find("rsp:Signal", NS)
        if signal_el is None:
            raise SoapFault("w:InvalidParameter", CODE_INVALID_PARAMETER, "No Signal.")
        command = self._command(shell, signal_el.get("CommandId"))
        code = _text(signal_el, "rsp:Code")
        if code == SIGNAL_CTRL_C:
            if command.proc is not None and command.proc.poll() is None:
                command.proc.send_signal(signal.SIGINT)
        elif code == SIGNAL_TERMINATE:
            with self._lock:
                shell.commands.pop(command.id, None)
            _kill(command)
        else:
            raise SoapFault("w:InvalidParameter", CODE_INVALID_PARAMETER, "Unknown signal code.")
        return etree.Element(_q("rsp", "SignalResponse"), nsmap=NS)


# --- the command's process -----------------------------------------------------------------
def _failed(command_id: str, stderr: bytes) -> _Command:
    command = _Command(command_id, None)
    command.stderr += stderr
    command.exit_code = 1
    return command


def _pump(command: _Command, name: str) -> None:
    assert command.proc is not None
    pipe = command.proc.stdout if name == "stdout" else command.proc.stderr
    assert pipe is not None
    while True:
        chunk = pipe.read1(65536)
        with command.cond:
            if not chunk:
                command.open_streams -= 1
                command.cond.notify_all()
                return
            (command.stdout if name == "stdout" else command.stderr).extend(chunk)
            command.cond.notify_all()


def _reap(command: _Command) -> None:
    assert command.proc is not None
    code = command.proc.wait()
    with command.cond:
        command.exit_code = code
        command.cond.notify_all()


def _feed(command: _Command, data: bytes, end: bool) -> None:
    proc = command.proc
    if proc is None or proc.stdin is None or command.stdin_closed:
        return  # Windows drops input for a command that no longer reads it
    try:
        if data:
            proc.stdin.write(data)
            proc.stdin.flush()
        if end:
            command.stdin_closed = True
            proc.stdin.close()
    except (BrokenPipeError, ValueError):
        command.stdin_closed = True


def _kill(command: _Command) -> None:
    proc = command.proc
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    if proc.stdin is not None:
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()


# --- SOAP helpers -------------------------------------------------------------------------
def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def _text(el: etree._Element, path: str) -> str:
    found = el.find(path, NS)
    return (found.text or "").strip() if found is not None else ""


_DURATION = re.compile(r"^PT(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


def _duration(value: str) -> float | None:
    match = _DURATION.match(value)
    if not match or not any(match.groups()):
        return None
    minutes, seconds = match.groups()
    return float(minutes or 0) * 60 + float(seconds or 0)


def _header(action: str, relates_to: str) -> etree._Element:
    header = etree.Element(_q("s", "Header"))
    etree.SubElement(header, _q("a", "Action")).text = action
    etree.SubElement(header, _q("a", "MessageID")).text = f"uuid:{str(uuid.uuid4()).upper()}"
    etree.SubElement(header, _q("a", "To")).text = ANONYMOUS
    etree.SubElement(header, _q("a", "RelatesTo")).text = relates_to
    return header


def _envelope(action: str, relates_to: str, payload: etree._Element | None) -> bytes:
    env = etree.Element(_q("s", "Envelope"), nsmap=NS)
    env.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    env.append(_header(action, relates_to))
    body = etree.SubElement(env, _q("s", "Body"))
    if payload is not None:
        body.append(payload)
    return bytes(etree.tostring(env, xml_declaration=False, encoding="utf-8"))


def _fault_envelope(fault: SoapFault, relates_to: str, machine: str) -> bytes:
    el = etree.Element(_q("s", "Fault"), nsmap=NS)
    code = etree.SubElement(el, _q("s", "Code"))
    etree.SubElement(code, _q("s", "Value")).text = "s:Receiver"
    sub = etree.SubElement(code, _q("s", "Subcode"))
    etree.SubElement(sub, _q("s", "Value")).text = fault.subcode
    reason = etree.SubElement(el, _q("s", "Reason"))
    text = etree.SubElement(reason, _q("s", "Text"))
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    text.text = fault.message
    detail = etree.SubElement(el, _q("s", "Detail"))
    wsman = etree.SubElement(detail, _q("f", "WSManFault"), Code=str(fault.code), Machine=machine)
    etree.SubElement(wsman, _q("f", "Message")).text = fault.message
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, el)


def _quota_shells(limit: int) -> SoapFault:
    return SoapFault(
        "w:QuotaLimit",
        CODE_QUOTA_SHELLS,
        f"The WS-Management service cannot process the request. This user is allowed a "
        f"maximum number of {limit} concurrent shells, which has been exceeded. Close "
        "existing shells or raise the quota for this user.",
    )


def _quota_operations(limit: int) -> SoapFault:
    return SoapFault(
        "w:QuotaLimit",
        CODE_QUOTA_OPERATIONS,
        f"The WS-Management service cannot process the request. This user is allowed a "
        f"maximum number of {limit} concurrent operations, which has been exceeded. Close "
        "existing operations for this user, or raise the quota for this user.",
    )


# --- HTTP(S) ------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Any, endpoint: WsmanEndpoint):
        self.endpoint = endpoint
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, so a client that
        # fails it (untrusted certificate) never holds up the accept loop.
        context = self.endpoint.ssl_context
        if context is not None:
            try:
                request = context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                with contextlib.suppress(OSError):
                    request.close()
                return
        super().finish_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows failures, not access logs

    def do_POST(self) -> None:
        endpoint = self.server.endpoint
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if not self._authenticate(endpoint):
            return
        self._sealed = False
        content_type = self.headers.get("Content-Type") or ""
        if content_type.startswith("multipart/encrypted") and endpoint.ntlm:
            opened = self._unseal(body)
            if opened is None:
                self._answer(400, b"")
                return
            body, self._sealed = opened, True
            with endpoint._lock:
                endpoint.requests["sealed"] += 1
        elif not body and self._ntlm_done:
            # pywinrm's empty POST that sets up message encryption after the handshake.
            self._answer(200, b"")
            return
        try:
            root: etree._Element | None = etree.fromstring(body, _PARSER)
        except etree.XMLSyntaxError:
            root = None
        action = (
            ACTIONS.get(_text(root, "s:Header/a:Action"), "unknown")
            if root is not None
            else "invalid"
        )
        message_id = _text(root, "s:Header/a:MessageID") if root is not None else ""
        with endpoint._lock:
            endpoint.requests[action] += 1
        fault = endpoint._take_fault(action)
        if fault is not None:
            if fault.kind == "drop":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.kind == "http":
                self._answer(fault.status, b"")
                return
            if fault.kind == "delay":
                time.sleep(fault.seconds)
            if fault.kind == "soap":
                soap = SoapFault(fault.subcode, fault.code, fault.message)
                self._answer(soap.status, _fault_envelope(soap, message_id, endpoint.machine))
                return
            if fault.kind.startswith("quota-"):
                soap = (
                    _quota_shells(endpoint.max_shells_per_user)
                    if fault.kind == "quota-shells"
                    else _quota_operations(endpoint.max_operations_per_user)
                )
                self._answer(soap.status, _fault_envelope(soap, message_id, endpoint.machine))
                return
        if len(body) > endpoint.max_envelope_size:
            self._answer(413, b"")  # what Windows answers over MaxEnvelopeSizekb
            return
        if root is None:
            soap = SoapFault(
                "w:SchemaValidationError", 2150858817, "The SOAP XML in the message is invalid."
            )
            self._answer(soap.status, _fault_envelope(soap, "", endpoint.machine))
            return
        status, payload = endpoint.handle(root)
        self._answer(status, payload)

    # NTLM authenticates the connection, not the request: state lives on this handler,
    # which serves every request of one keep-alive connection.
    _ntlm_context: Any = None
    _ntlm_done = False
    _sealed = False  # this request came NTLM-encrypted: so does its answer

    # HTTP with NTLM message encryption ([MS-WSMV] 2.2.9.1.1): the SOAP body travels as
    # multipart/encrypted, sealed with the connection's NTLM session keys.
    BOUNDARY = b"--Encrypted Boundary"
    SEALED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"

    def _unseal(self, body: bytes) -> bytes | None:
        if self._ntlm_context is None or not self._ntlm_done:
            return None
        parts = [p for p in body.split(self.BOUNDARY + b"\r\n") if p]
        if len(parts) != 2:
            return None
        header, payload = parts
        try:
            length = int(header.split(b"Length=")[1].split(b"\r\n")[0])
            payload = payload.removesuffix(self.BOUNDARY + b"--\r\n")
            data = payload.removeprefix(b"\tContent-Type: application/octet-stream\r\n")
            signature_length = struct.unpack("<i", data[:4])[0]
            opened = self._ntlm_context.unwrap(data[4:]).data
        except (IndexError, ValueError, struct.error, spnego.exceptions.SpnegoError):
            return None
        return bytes(opened) if len(opened) == length and signature_length == 16 else None

    def _seal(self, payload: bytes) -> bytes:
        sealed = self._ntlm_context.wrap(payload, encrypt=True).data
        return (
            self.BOUNDARY + b"\r\n"
            b"\tContent-Type: " + self.SEALED_PROTOCOL.encode() + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(payload)).encode()
            + b"\r\n"
            + self.BOUNDARY
            + b"\r\n"
            b"\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", 16)
            + sealed
            + self.BOUNDARY
            + b"--\r\n"
        )

    def _authenticate(self, endpoint: WsmanEndpoint) -> bool:
        header = self.headers.get("Authorization") or ""
        if header == MUTUAL_TLS_AUTH and endpoint.client_ca is not None:
            # The TLS layer verified the client's certificate against client_ca (or sent none).
            getpeercert = getattr(self.connection, "getpeercert", None)
            if getpeercert is not None and getpeercert():
                return True
            self._unauthorized(endpoint)
            return False
        scheme, _, token = header.partition(" ")
        if endpoint.ntlm and scheme in ("Negotiate", "NTLM") and token:
            return self._ntlm_step(endpoint, scheme, token)
        if endpoint.authorized(header) or (endpoint.ntlm and self._ntlm_done and not header):
            return True
        self._unauthorized(endpoint)
        return False

    def _ntlm_step(self, endpoint: WsmanEndpoint, scheme: str, token: str) -> bool:
        if self._ntlm_context is None or self._ntlm_done:
            self._ntlm_context = spnego.server(protocol="ntlm", service="HTTP")
            self._ntlm_done = False
        try:
            answer = self._ntlm_context.step(base64.b64decode(token))
        except (spnego.exceptions.SpnegoError, binascii.Error, ValueError):
            self._ntlm_context = None
            self._unauthorized(endpoint)
            return False
        if self._ntlm_context.complete:
            self._ntlm_done = True
            return True
        challenge = f"{scheme} {base64.b64encode(answer or b'').decode()}"
        self._answer(401, b"", extra={"WWW-Authenticate": challenge})
        return False

    def _unauthorized(self, endpoint: WsmanEndpoint) -> None:
        with endpoint._lock:
            endpoint.requests["unauthorized"] += 1
        offers = ['Basic realm="WSMAN"'] + (["Negotiate"] if endpoint.ntlm else [])
        self.send_response(401)
        for offer in offers:
            self.send_header("WWW-Authenticate", offer)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, status: int, payload: bytes, extra: dict[str, str] | None = None) -> None:
        content_type = "application/soap+xml;charset=UTF-8"
        if self._sealed and payload:
            payload = self._seal(payload)
            content_type = (
                f'multipart/encrypted;protocol="{self.SEALED_PROTOCOL}";'
                'boundary="Encrypted Boundary"'
            )
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Server", "Microsoft-HTTPAPI/2.0")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client went away (e.g. its read timed out)
