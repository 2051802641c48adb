"""The tools the comparison scenarios time, each doing the same job on the same farm.

The job: one key generated on the controller, written into every node's root web.config, read
back and checked. Each tool runs as its own program (interpreter start-up counts alike):

- farmsync: ``python -m farmsync.cli.main rotate -i INVENTORY --json``, the state dir and the
  vault passphrase in the environment, as an operator runs it;
- Ansible (ansible-core): ``ansible.builtin.replace`` (backup on), ``slurp``, ``assert``, with
  ``pipelining = True``, ``forks = N``, no fact gathering, host keys verified against a
  known_hosts file made here, ``/usr/bin/python3`` on the nodes;
- pyinfra (v3): ``files.replace`` (sed, backup on) plus a check that reads the file back over
  its SFTP connection (``host.get_file``) and asserts, ``--parallel N``, host keys verified
  (``ssh_known_hosts_file``, ``ssh_strict_host_key_checking: yes``).

- floor: ``bench/floor_job.py``, the least a Python SSH tool can do for the job (paramiko:
  connect, SFTP read, write, ``posix-rename``, read back; no backup, no second phase): not a
  tool anyone should use, the measure of what farmsync adds on top of what paramiko spends.

Ansible, pyinfra and the floor write the key the bench generated (``secrets``, the same sizes
farmsync uses); it reaches them in a 0600 file or the environment, never on a command line.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from tests.orchestration.farmkit import PASSPHRASE

from bench import compare_env
from bench.farm import BenchFarm
from farmsync.keys.machinekey import MachineKey
from farmsync.lab.sshd import SshdNode

# The regex both Ansible and pyinfra replace: the two key attributes, which farmsync and the
# bench's own configs keep side by side on one line (sed works line by line).
KEY_PATTERN = 'validationKey="[0-9A-Fa-f]*" decryptionKey="[0-9A-Fa-f]*"'
TOOL_TIMEOUT_S = 600.0


@dataclass
class CompareFarm:
    """N running sshd nodes, their web.configs and farmsync's inventory for them."""

    root: Path
    nodes: dict[str, SshdNode]  # host name -> node
    farm: BenchFarm

    @property
    def configs(self) -> dict[str, Path]:
        return self.farm.configs

    def known_hosts(self) -> Path:
        """One known_hosts file naming every node (Ansible and pyinfra read one file)."""
        path = self.root / "known_hosts"
        path.write_text("".join(n.known_hosts_line() + "\n" for n in self.nodes.values()))
        return path


@dataclass
class ToolRun:
    """One timed run: wall seconds, whether the tool said it succeeded, the key it wrote."""

    wall: float
    ok: bool
    fingerprint: str | None  # the key the files must hold now
    detail: str = ""  # why not ok: exit code and the tool's last line
    phase_ms: dict[str, float] = field(default_factory=dict)  # farmsync's own, from --json


def _new_key() -> MachineKey:
    # The sizes farmsync generates for HMACSHA256/AES: 64-byte validation, 32-byte decryption.
    return MachineKey(secrets.token_hex(64).upper(), secrets.token_hex(32).upper())


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return f"exit {done.returncode}: {lines[-1][:200] if lines else '(no output)'}"


def _timed(
    argv: list[str], env: dict[str, str], cwd: Path
) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    done = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return time.monotonic() - start, done


class Tool(ABC):
    name: str

    def __init__(self, farm: CompareFarm):
        self.farm = farm
        self.workdir = farm.root / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)

    def prepare(self) -> None:  # noqa: B027 (an optional hook)
        """Write the tool's files (untimed)."""

    @abstractmethod
    def run(self) -> ToolRun:
        """One timed run of the whole job."""

    def after(self) -> None:  # noqa: B027 (an optional hook)
        """Tidy up between runs (untimed)."""


class FarmsyncCli(Tool):
    name = "farmsync"

    def run(self) -> ToolRun:
        env = {
            **os.environ,
            "FARMSYNC_STATE_DIR": str(self.farm.farm.state_root),
            "FARMSYNC_VAULT_PASSPHRASE": PASSPHRASE,
        }
        argv = [sys.executable, "-m", "farmsync.cli.main", "rotate", "--json"]
        argv += ["--forks", str(len(self.farm.nodes)), "-i", str(self.farm.farm.inventory_path)]
        wall, done = _timed(argv, env, self.workdir)
        try:
            result = json.loads(done.stdout)
        except json.JSONDecodeError:
            return ToolRun(wall, False, None, _tail(done))
        ok = done.returncode == 0 and result.get("outcome") == "changed"
        return ToolRun(
            wall,
            ok,
            result.get("target_fingerprint"),
            "" if ok else _tail(done),
            {k: float(v) for k, v in (result.get("phase_ms") or {}).items()},
        )


ANSIBLE_PLAY = """\
- name: put one machineKey on every node
  hosts: web
  gather_facts: false
  vars:
    wanted: 'validationKey="{{ vkey }}" decryptionKey="{{ dkey }}"'
  tasks:
    - name: write the key
      ansible.builtin.replace:
        path: "{{ web_config }}"
        regexp: '@KEY_PATTERN@'
        replace: "{{ wanted }}"
        backup: true
    - name: read it back
      ansible.builtin.slurp:
        src: "{{ web_config }}"
      register: written
    - name: check it
      ansible.builtin.assert:
        that:
          - wanted in (written.content | b64decode)
        quiet: true
""".replace("@KEY_PATTERN@", KEY_PATTERN)


class Ansible(Tool):
    name = "ansible"

    def prepare(self) -> None:
        farm, work = self.farm, self.workdir
        first = next(iter(farm.nodes.values()))
        lines = ["[web]"]
        for name, node in farm.nodes.items():
            lines.append(
                f"{name} ansible_host={node.host} ansible_port={node.port} "
                f"web_config={farm.configs[name]}"
            )
        lines += [
            "[web:vars]",
            f"ansible_user={first.user}",
            f"ansible_ssh_private_key_file={first.client_key_path}",
            "ansible_python_interpreter=/usr/bin/python3",
        ]
        (work / "inventory.ini").write_text("\n".join(lines) + "\n")
        self.control_dir = work / "cp"
        self.control_dir.mkdir(exist_ok=True)
        ssh_args = (
            "-C -o ControlMaster=auto -o ControlPersist=60s -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile={farm.known_hosts()} -o StrictHostKeyChecking=yes"
        )
        (work / "ansible.cfg").write_text(
            "[defaults]\n"
            "inventory = inventory.ini\n"
            f"forks = {len(farm.nodes)}\n"
            "host_key_checking = True\n"
            "gathering = explicit\n"
            "retry_files_enabled = False\n"
            "interpreter_python = /usr/bin/python3\n"
            "[ssh_connection]\n"
            "pipelining = True\n"
            f"ssh_args = {ssh_args}\n"
            f"control_path_dir = {self.control_dir}\n"
        )
        (work / "play.yml").write_text(ANSIBLE_PLAY)
        (work / "home").mkdir(exist_ok=True)

    def run(self) -> ToolRun:
        key = _new_key()
        vars_file = self.workdir / "key.json"
        fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"vkey": key.validation_key, "dkey": key.decryption_key}, f)
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(self.workdir / "ansible.cfg"),
            "ANSIBLE_HOME": str(self.workdir / "home"),
            "ANSIBLE_LOCAL_TEMP": str(self.workdir / "home" / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
        }
        argv = [compare_env.tool("ansible-playbook"), "-e", f"@{vars_file}", "play.yml"]
        wall, done = _timed(argv, env, self.workdir)
        ok = done.returncode == 0
        return ToolRun(wall, ok, key.fingerprint(), "" if ok else _tail(done))

    def after(self) -> None:
        # Ansible leaves its ControlPersist masters behind: ask each to exit, so every run
        # starts cold like farmsync's and pyinfra's (untimed).
        procs = [
            subprocess.Popen(
                [
                    "ssh",
                    "-o",
                    f"ControlPath={self.control_dir}/%C",
                    "-O",
                    "exit",
                    "-p",
                    str(node.port),
                    f"{node.user}@{node.host}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for node in self.farm.nodes.values()
        ]
        for proc in procs:
            proc.wait(30)


PYINFRA_DEPLOY = """\
import io
import os

from pyinfra import host
from pyinfra.operations import files, python

VKEY, DKEY = os.environ["BENCH_VKEY"], os.environ["BENCH_DKEY"]
WANTED = f'validationKey="{VKEY}" decryptionKey="{DKEY}"'
PATH = host.data.web_config

files.replace(name="write the key", path=PATH, text=@KEY_PATTERN@, replace=WANTED, backup=True)


def check():
    buffer = io.BytesIO()
    host.get_file(PATH, buffer)
    assert WANTED.encode() in buffer.getvalue(), "the key is not in the file"


python.call(name="check it", function=check)
""".replace("@KEY_PATTERN@", repr(KEY_PATTERN))


class Pyinfra(Tool):
    name = "pyinfra"

    def prepare(self) -> None:
        farm = self.farm
        known_hosts = str(farm.known_hosts())
        hosts = [
            (
                name,
                {
                    "ssh_hostname": node.host,
                    "ssh_port": node.port,
                    "ssh_user": node.user,
                    "ssh_key": str(node.client_key_path),
                    "ssh_known_hosts_file": known_hosts,
                    "ssh_strict_host_key_checking": "yes",
                    "ssh_allow_agent": False,
                    "ssh_look_for_keys": False,
                    "web_config": str(farm.configs[name]),
                },
            )
            for name, node in farm.nodes.items()
        ]
        (self.workdir / "inventory.py").write_text(f"web = {hosts!r}\n")
        (self.workdir / "deploy.py").write_text(PYINFRA_DEPLOY)

    def run(self) -> ToolRun:
        key = _new_key()
        env = {**os.environ, "BENCH_VKEY": key.validation_key, "BENCH_DKEY": key.decryption_key}
        argv = [compare_env.tool("pyinfra"), "-y", "--parallel", str(len(self.farm.nodes))]
        argv += ["inventory.py", "deploy.py"]
        wall, done = _timed(argv, env, self.workdir)
        ok = done.returncode == 0
        return ToolRun(wall, ok, key.fingerprint(), "" if ok else _tail(done))


class Floor(Tool):
    name = "floor"

    def prepare(self) -> None:
        farm = self.farm
        known_hosts = str(farm.known_hosts())
        job = [
            {
                "host": node.host,
                "port": node.port,
                "user": node.user,
                "key": str(node.client_key_path),
                "known_hosts": known_hosts,
                "path": str(farm.configs[name]),
            }
            for name, node in farm.nodes.items()
        ]
        (self.workdir / "job.json").write_text(json.dumps(job))

    def run(self) -> ToolRun:
        key = _new_key()
        env = {**os.environ, "BENCH_VKEY": key.validation_key, "BENCH_DKEY": key.decryption_key}
        argv = [sys.executable, str(Path(__file__).with_name("floor_job.py")), "job.json"]
        wall, done = _timed(argv, env, self.workdir)
        ok = done.returncode == 0
        return ToolRun(wall, ok, key.fingerprint(), "" if ok else _tail(done))


TOOLS: dict[str, type[Tool]] = {t.name: t for t in (FarmsyncCli, Ansible, Pyinfra, Floor)}
