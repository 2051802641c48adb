"""``farmsync lab``: a local farm of real nodes to rotate and prove.

Each lab node is a real OpenSSH sshd (:class:`farmsync.lab.sshd.SshdNode`) plus a real
ASP.NET runtime (:class:`farmsync.lab.aspnet.AspNetNode`, Mono System.Web) whose root
web.config lives in the node's own MONO_CFG_DIR. ``up`` gives every node its own random key
(as a fresh farm would have) and writes an ordinary inventory for farmsync; ``down`` stops
every process it started, by pid, from any process, using the state file.

State directory layout::

    <state_dir>/lab.json          every node and every pid started (read by down/status)
    <state_dir>/ssh/              the lab's client key and host key (shared by the nodes)
    <state_dir>/nodeN/            AspNetNode directory (etc/mono, app, logs, run, bin/restart)
    <state_dir>/nodeN/sshd/       that node's sshd config, log and known_hosts

Nothing here prints: every method returns data for the CLI to render.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from farmsync.errors import FarmsyncError
from farmsync.fsutil import atomic_write_private
from farmsync.keys.generate import generate_key
from farmsync.lab.aspnet import (
    DEFAULT_READY_TIMEOUT,
    AspNetNode,
    HostBuild,
    LabError,
    build_host,
    pid_alive,
    pid_cmdline,
    require_mono,
    terminate,
)
from farmsync.lab.sshd import SshdError, SshdKeys, SshdNode, descendants
from farmsync.webconfig.editor import apply_machine_key
from farmsync.webconfig.parser import inspect_config

STATE_FILE = "lab.json"
STATE_FORMAT = 1
LAB_GROUP = "lab"
MAX_NODES = 32  # as the CLI allows


def _already_up(status: LabStatus, state_dir: Path) -> str:
    """A lab that is (partly) running: which nodes are down, and the commands that fix it."""
    fix = f"farmsync lab down --dir {state_dir} && farmsync lab up --dir {state_dir}"
    down = [node for node in status.nodes if not node.up]
    if not down:
        return f"a lab is already running in {state_dir}; run farmsync lab down first"
    reasons = []
    for node in down:
        why = [
            what
            for what, ok in (
                ("sshd not running", node.sshd_alive),
                ("ASP.NET not running", node.aspnet_alive),
                ("HTTP not answering", node.http_reachable or not node.aspnet_alive),
            )
            if not ok
        ]
        reasons.append(f"{node.name} ({', '.join(why)})")
    return (
        f"the lab in {state_dir} is half up: {len(down)} of {len(status.nodes)} node(s) down: "
        + "; ".join(reasons)
        + f". To start it afresh: {fix}"
    )


def lab_farm_name(state_dir: Path) -> str:
    """Each lab its own farm (own vault, journal and lock): ``lab-<dir name>-<hash of path>``.

    Two ``lab up --dir X`` used to share one farm called ``lab``, hence one vault and lock."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", state_dir.name).strip("-_")[:40] or "dir"
    digest = hashlib.sha256(str(state_dir.absolute()).encode()).hexdigest()[:6]
    return f"lab-{digest}" if base.lower() == "lab" else f"lab-{base}-{digest}"


@dataclass(frozen=True)
class NodeStatus:
    """One lab node as ``status`` sees it. No key material: the key is a fingerprint."""

    name: str
    http_url: str
    aspnet_pid: int | None
    aspnet_alive: bool
    http_reachable: bool
    ssh_address: str
    ssh_port: int
    sshd_pid: int | None
    sshd_alive: bool
    root_web_config: str
    key_fingerprint: str | None  # "mk-..." of the root web.config's machineKey

    @property
    def up(self) -> bool:
        return self.aspnet_alive and self.http_reachable and self.sshd_alive

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "up": self.up}


@dataclass(frozen=True)
class LabStatus:
    state_dir: str
    inventory_path: str | None
    nodes: tuple[NodeStatus, ...]

    @property
    def running(self) -> bool:
        """Every node's processes are alive and its HTTP endpoint answers."""
        return bool(self.nodes) and all(node.up for node in self.nodes)

    @property
    def any_alive(self) -> bool:
        return any(node.aspnet_alive or node.sshd_alive for node in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state_dir": self.state_dir,
            "inventory_path": self.inventory_path,
            "running": self.running,
            "nodes": [node.to_dict() for node in self.nodes],
        }


@dataclass(frozen=True)
class StoppedProcess:
    node: str
    role: str  # "aspnet" | "sshd" | "ssh-session"
    pid: int


class Lab:
    """A lab farm rooted at ``state_dir``. ``inventory_path`` is where ``up`` writes the
    inventory (default ``inventory/lab.yml`` in the current directory)."""

    def __init__(
        self,
        state_dir: Path | str = ".lab",
        *,
        inventory_path: Path | str | None = None,
        cache_dir: Path | None = None,
    ):
        self.state_dir = Path(state_dir).absolute()
        self.inventory_path = Path(inventory_path or "inventory/lab.yml").absolute()
        self.cache_dir = cache_dir
        self.state_path = self.state_dir / STATE_FILE
        # sshd processes this object started: stopped through their SshdNode (which reaps).
        self._sshd_nodes: dict[int, SshdNode] = {}

    # --- state file -------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise LabError(f"{self.state_path}: unreadable lab state ({e})") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise LabError(f"{self.state_path}: not a farmsync lab state file")
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_path)

    # --- up -----------------------------------------------------------------------------
    def up(self, nodes: int = 3, *, timeout: float = DEFAULT_READY_TIMEOUT) -> LabStatus:
        """Start ``nodes`` lab nodes, each on its own random key; write the inventory.

        Raises LabError (after stopping whatever it had started) when anything fails.
        """
        if not 1 <= nodes <= MAX_NODES:
            raise LabError(f"a lab has 1 to {MAX_NODES} nodes, not {nodes}")
        require_mono()
        if self._load_state() is not None:
            status = self.status()
            if status.any_alive:
                raise LabError(_already_up(status, self.state_dir))
            self.down()
        build = build_host(self.cache_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "inventory_path": str(self.inventory_path),
            "nodes": [],
        }
        self._save_state(state)
        try:
            self._start_nodes(nodes, build, state, timeout)
            self._write_inventory(state)
        except BaseException as e:
            try:
                self.down()
            except LabError as cleanup:
                e.add_note(f"and cleaning up failed: {cleanup}")
            for own in self._sshd_nodes.values():  # one started but not yet recorded
                own.stop()
            self._sshd_nodes.clear()
            if isinstance(e, SshdError):
                raise LabError(f"lab sshd: {e}") from None
            raise
        return self.status()

    def _start_nodes(
        self, count: int, build: HostBuild, state: dict[str, Any], timeout: float
    ) -> None:
        ssh_dir = self.state_dir / "ssh"
        shutil.rmtree(ssh_dir, ignore_errors=True)
        keys = SshdKeys.generate(ssh_dir)
        started: list[tuple[AspNetNode, int]] = []
        for i in range(1, count + 1):
            node_dir = self.state_dir / f"node{i}"
            shutil.rmtree(node_dir, ignore_errors=True)
            node = AspNetNode.create(f"node{i}", node_dir, build)
            self._give_own_key(node)
            # Launch every Mono host first and wait for them together: start-up overlaps.
            pid = node.launch()
            entry: dict[str, Any] = {
                "name": node.name,
                "dir": str(node.node_dir),
                "http_url": node.url,
                "aspnet_pids": [pid],
            }
            state["nodes"].append(entry)
            self._save_state(state)
            sshd = SshdNode(node_dir / "sshd", keys=keys, honour_file_modes=False).start()
            if sshd.pid is not None:
                self._sshd_nodes[sshd.pid] = sshd
            entry["sshd"] = {
                "pid": sshd.pid,
                "address": sshd.host,
                "port": sshd.port,
                "user": sshd.user,
                "config": str(sshd.config_path),
                "client_key": str(sshd.client_key_path),
                "known_hosts": str(sshd.known_hosts_path),
            }
            self._save_state(state)
            started.append((node, pid))
        for node, pid in started:
            node.wait_ready(pid, timeout)

    @staticmethod
    def _give_own_key(node: AspNetNode) -> None:
        """A fresh random machineKey in the node's root web.config (as on a new farm)."""
        path = node.root_web_config
        data = apply_machine_key(path.read_bytes(), generate_key(), str(path))
        atomic_write_private(path, data)

    def _write_inventory(self, state: dict[str, Any]) -> None:
        q = json.dumps  # a JSON string is a valid YAML scalar: paths quoted safely
        lines = [
            "# farmsync lab farm, written by `farmsync lab up`; `farmsync lab down` stops it.",
            "# An ordinary Ansible-style inventory: every node is a real sshd on 127.0.0.1 in",
            "# front of a real ASP.NET (Mono System.Web) process whose root web.config is the",
            "# file below. lab_http_url is the node's web site, for the ticket/ViewState probe.",
            "all:",
            "  children:",
            f"    {LAB_GROUP}:",
            "      vars:",
            f"        farmsync_farm: {lab_farm_name(self.state_dir)}",
            "        # No compatibility_mode: Mono's System.Web rejects that machineKey attribute.",
            "        farmsync_policy:",
            "          validation: HMACSHA256",
            "          decryption: AES",
            "      hosts:",
        ]
        for entry in state["nodes"]:
            node = AspNetNode.load(Path(entry["dir"]))
            sshd = entry["sshd"]
            lines += [
                f"        {node.name}:",
                f"          ansible_host: {q(sshd['address'])}",
                f"          ansible_port: {sshd['port']}",
                f"          ansible_user: {q(sshd['user'])}",
                "          ansible_connection: ssh",
                f"          ansible_ssh_private_key_file: {q(sshd['client_key'])}",
                f"          farmsync_known_hosts: {q(sshd['known_hosts'])}",
                "          farmsync_root_configs:",
                f"            - {q(str(node.root_web_config))}",
                "          farmsync_recycle:",
                f"            command: {q(str(node.restart_script))}",
                f"          lab_http_url: {q(node.url)}",
            ]
        self.inventory_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.inventory_path.with_name(f".{self.inventory_path.name}.{os.getpid()}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.inventory_path)

    # --- status -------------------------------------------------------------------------
    def status(self) -> LabStatus:
        """Each node's processes (alive?) and HTTP endpoint (reachable?)."""
        state = self._load_state()
        if state is None:
            return LabStatus(str(self.state_dir), None, ())
        found: list[NodeStatus] = []
        for entry in state.get("nodes", []):
            found.append(self._node_status(entry))
        return LabStatus(str(self.state_dir), state.get("inventory_path"), tuple(found))

    @staticmethod
    def _node_status(entry: dict[str, Any]) -> NodeStatus:
        sshd = entry.get("sshd") or {}
        sshd_pid = int(sshd.get("pid") or 0) or None
        sshd_alive = sshd_pid is not None and _sshd_owns(sshd_pid, str(sshd.get("config")))
        try:
            node: AspNetNode | None = AspNetNode.load(Path(entry["dir"]))
        except (LabError, KeyError):  # its directory is gone: its host is reported down
            node = None
        aspnet_pid = node.pid if node else None
        fingerprint: str | None = None
        if node is not None:
            with contextlib.suppress(OSError, FarmsyncError):
                data = node.root_web_config.read_bytes()
                found = inspect_config(data, str(node.root_web_config)).root_key
                fingerprint = found.key.fingerprint() if found else None
        return NodeStatus(
            name=str(entry.get("name")),
            http_url=node.url if node else str(entry.get("http_url", "")),
            aspnet_pid=aspnet_pid,
            aspnet_alive=aspnet_pid is not None,
            http_reachable=node is not None and aspnet_pid is not None and node.reachable(),
            ssh_address=str(sshd.get("address", "")),
            ssh_port=int(sshd.get("port", 0)),
            sshd_pid=sshd_pid,
            sshd_alive=sshd_alive,
            root_web_config=str(node.root_web_config) if node else "",
            key_fingerprint=fingerprint,
        )

    # --- one node's sshd (fault drills: a node dropping off the network) ------------------
    def stop_sshd(self, name: str) -> list[StoppedProcess]:
        """Stop ``name``'s sshd and its sessions; its ASP.NET process keeps running."""
        entry = self._entry(name)
        return self._stop_sshd(name, entry.get("sshd") or {})

    def start_sshd(self, name: str) -> int:
        """Start ``name``'s sshd again on its old port (the inventory stays valid)."""
        state = self._load_state()
        if state is None:
            raise LabError(f"no lab in {self.state_dir}")
        entry = next((e for e in state["nodes"] if e.get("name") == name), None)
        if entry is None:
            raise LabError(f"no lab node {name!r}")
        info = entry["sshd"]
        keys = SshdKeys.load(self.state_dir / "ssh")
        sshd = SshdNode(Path(entry["dir"]) / "sshd", keys=keys, honour_file_modes=False)
        try:
            sshd.start(port=int(info["port"]))
        except SshdError as exc:
            raise LabError(f"lab sshd: {exc}") from None
        assert sshd.pid is not None
        self._sshd_nodes[sshd.pid] = sshd
        info["pid"] = sshd.pid
        self._save_state(state)
        return sshd.pid

    def _entry(self, name: str) -> dict[str, Any]:
        state = self._load_state()
        for entry in (state or {}).get("nodes", []):
            if entry.get("name") == name:
                return dict(entry)
        raise LabError(f"no lab node {name!r} in {self.state_dir}")

    # --- down ---------------------------------------------------------------------------
    def down(self) -> tuple[StoppedProcess, ...]:
        """Stop every process the lab started, by pid; returns what was stopped.

        Works from any process (reads the state file). A pid is only signalled while its
        command line still shows it is the lab's process. Raises LabError if anything the
        lab started is still alive afterwards.
        """
        state = self._load_state()
        if state is None:
            self._reap_own_sshds()
            return ()
        stopped: list[StoppedProcess] = []
        survivors: list[str] = []
        for entry in state.get("nodes", []):
            name = str(entry.get("name"))
            stopped += self._stop_sshd(name, entry.get("sshd") or {})
            stopped += self._stop_aspnet(name, entry)
            survivors += self._survivors(name, entry)
        self._reap_own_sshds()
        if survivors:
            raise LabError("lab processes still alive after down: " + ", ".join(survivors))
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        return tuple(stopped)

    def _reap_own_sshds(self) -> None:
        """Collect sshds this object started that another process's ``down`` stopped."""
        for pid, own in list(self._sshd_nodes.items()):
            if not pid_alive(pid):
                own.stop()  # reaps the exited child
                del self._sshd_nodes[pid]

    def _stop_sshd(self, name: str, sshd: dict[str, Any]) -> list[StoppedProcess]:
        pid = int(sshd.get("pid") or 0)
        if not pid or not _sshd_owns(pid, str(sshd.get("config"))):
            return []
        stopped = [StoppedProcess(name, "sshd", pid)]
        # Per-connection sshd children and their sessions outlive the listener otherwise.
        sessions = descendants(pid)
        own = self._sshd_nodes.pop(pid, None)
        if own is not None:
            own.stop()
        else:
            terminate(pid)
        for child in sessions:
            if terminate(child, timeout=5):
                stopped.append(StoppedProcess(name, "ssh-session", child))
        return stopped

    @staticmethod
    def _stop_aspnet(name: str, entry: dict[str, Any]) -> list[StoppedProcess]:
        try:
            node = AspNetNode.load(Path(entry["dir"]))
        except (LabError, KeyError):
            return []
        stopped: list[StoppedProcess] = []
        # The current pid (a recycle over SSH replaces it) and every pid recorded at start.
        pids = [p for p in [node.pid, *entry.get("aspnet_pids", [])] if p]
        markers = [str(node.launcher), str(node.app_dir)]
        for pid in dict.fromkeys(int(p) for p in pids):
            if terminate(pid, owns=markers):
                stopped.append(StoppedProcess(name, "aspnet", pid))
        with contextlib.suppress(OSError):
            node.pid_path.unlink()
        return stopped

    @staticmethod
    def _survivors(name: str, entry: dict[str, Any]) -> list[str]:
        left: list[str] = []
        sshd = entry.get("sshd") or {}
        pid = int(sshd.get("pid") or 0)
        if pid and _sshd_owns(pid, str(sshd.get("config"))):
            left.append(f"{name} sshd pid {pid}")
        with contextlib.suppress(LabError, KeyError):
            node = AspNetNode.load(Path(entry["dir"]))
            if node.pid is not None:
                left.append(f"{name} aspnet pid {node.pid}")
        return left


def _sshd_owns(pid: int, config_path: str) -> bool:
    """``pid`` is alive and still the lab's sshd (its command line names its config).

    sshd rewrites its process title ("sshd: /usr/sbin/sshd -D -f CONFIG ... [listener]"),
    so the config path is looked for anywhere in the command line.
    """
    return pid_alive(pid) and config_path in " ".join(pid_cmdline(pid))
