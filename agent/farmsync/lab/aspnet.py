"""Real ASP.NET (Mono System.Web) nodes for the lab.

Each :class:`AspNetNode` is one ``mono FarmsyncLabHost.exe`` process serving the lab
application (``assets/app``) on 127.0.0.1. Mono reads its configuration directory from
``MONO_CFG_DIR``; every node gets its own copy of ``/etc/mono`` there, so its root web.config
(``<MONO_CFG_DIR>/mono/4.5/web.config``) and the machineKey in it are the node's own.

Mono does not reload the root web.config, so a node is "recycled" by restarting its process:
``python -m farmsync.lab.aspnet restart NODE_DIR`` (wrapped in the node's ``bin/restart``
script, which is what the lab inventory's ``farmsync_recycle`` runs over SSH). The new process
is detached (own session, stdio on the node log) so the SSH channel returns at once.

Everything about a node lives in its directory and its ``aspnet.json``, so any process can
stop or restart it by pid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from farmsync.errors import ExitCode, FarmsyncError
from farmsync.lab.probe import health, ping
from farmsync.lab.sshd import free_port

ASSETS = Path(__file__).resolve().parent / "assets"
HOST_LIBRARY_SOURCE = "FarmsyncLab.cs"  # runs inside the ASP.NET AppDomain
HOST_LAUNCHER_SOURCE = "FarmsyncLabHost.cs"  # creates that AppDomain
SYSTEM_MONO_CONFIG = Path("/etc/mono")
SYSTEM_WEB_DLL = Path("/usr/lib/mono/4.5/System.Web.dll")
MONO_MISSING = (
    "Mono is not installed; run make test "
    "(it installs mono-runtime, mono-mcs and libmono-system-web4.0-cil)"
)
DEFAULT_READY_TIMEOUT = 60.0
SPEC_NAME = "aspnet.json"


class LabError(FarmsyncError):
    """The lab could not be set up, started or stopped. Messages name files, never keys."""

    exit_code = ExitCode.CANNOT_START


# --------------------------------------------------------------------------- processes

# Children started by this process, so they can be reaped (no zombies counted as alive).
_children: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    # Only our own Popen children: another owner's child keeps its exit status to collect.
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie does not count)."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pid_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def terminate(pid: int, *, owns: list[str] | None = None, timeout: float = 10.0) -> bool:
    """Stop ``pid`` (TERM, then KILL after ``timeout``); True when it was running.

    With ``owns``, the process is only signalled when every string in it appears in its
    command line: a recycled pid that now belongs to someone else is left alone.
    """
    if not pid_alive(pid):
        return False
    if owns is not None:
        cmdline = "\0".join(pid_cmdline(pid))
        if not all(marker in cmdline for marker in owns):
            return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


def _write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a small non-secret file atomically (pid files, specs, scripts)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the host build


def require_mono() -> tuple[str, str]:
    """The ``mono`` and ``mcs`` executables; LabError when Mono or System.Web is missing."""
    mono = shutil.which("mono")
    mcs = shutil.which("mcs")
    if mono is None or mcs is None or not SYSTEM_WEB_DLL.exists():
        raise LabError(MONO_MISSING)
    return mono, mcs


@dataclass(frozen=True)
class HostBuild:
    """The compiled lab host: the launcher and the in-domain library next to it."""

    directory: Path

    @property
    def launcher(self) -> Path:
        return self.directory / "FarmsyncLabHost.exe"

    @property
    def library(self) -> Path:
        return self.directory / "FarmsyncLab.dll"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "farmsync" / "lab-host"


def _source_digest(mcs: str) -> str:
    digest = hashlib.sha256(mcs.encode())
    for name in (HOST_LIBRARY_SOURCE, HOST_LAUNCHER_SOURCE):
        digest.update(name.encode() + b"\0" + (ASSETS / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _mcs(mcs: str, args: list[str], cwd: Path) -> None:
    result = subprocess.run(
        [mcs, "-nologo", "-optimize+", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise LabError(f"mcs could not compile the lab host:\n{result.stdout}{result.stderr}")


def build_host(cache_dir: Path | None = None) -> HostBuild:
    """Compile the lab host with mcs, once per source version (cached by source hash).

    Concurrent callers are safe: each compiles into its own temporary directory and the
    first to rename it into place wins.
    """
    _, mcs = require_mono()
    cache = cache_dir or default_cache_dir()
    build = HostBuild(cache / _source_digest(mcs))
    if build.launcher.exists() and build.library.exists():
        return build
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".build-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        _mcs(
            mcs,
            [
                "-target:library",
                "-out:FarmsyncLab.dll",
                "-r:System.Web.dll",
                str(ASSETS / HOST_LIBRARY_SOURCE),
            ],
            tmp,
        )
        _mcs(
            mcs,
            [
                "-target:exe",
                "-out:FarmsyncLabHost.exe",
                "-r:System.Web.dll",
                "-r:FarmsyncLab.dll",
                str(ASSETS / HOST_LAUNCHER_SOURCE),
            ],
            tmp,
        )
        try:
            os.rename(tmp, build.directory)
        except OSError:
            if not build.launcher.exists():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return build


# --------------------------------------------------------------------------- one node


@dataclass(frozen=True)
class AspNetNode:
    """One lab ASP.NET node, described by its directory.

    Layout of ``node_dir``: ``etc/mono/...`` (the node's MONO_CFG_DIR copy of /etc/mono),
    ``app/`` (the lab application, ``app/bin/FarmsyncLab.dll``), ``bin/restart`` (the recycle
    command), ``logs/aspnet.log``, ``run/aspnet.pid``, ``tmp/`` and ``registry/`` (Mono's
    scratch space) and ``aspnet.json`` (this spec).
    """

    name: str
    node_dir: Path
    port: int
    mono: str
    launcher: Path

    # --- paths ----------------------------------------------------------------------
    @property
    def mono_cfg_dir(self) -> Path:
        return self.node_dir / "etc"

    @property
    def root_web_config(self) -> Path:
        return self.mono_cfg_dir / "mono" / "4.5" / "web.config"

    @property
    def app_dir(self) -> Path:
        return self.node_dir / "app"

    @property
    def log_path(self) -> Path:
        return self.node_dir / "logs" / "aspnet.log"

    @property
    def pid_path(self) -> Path:
        return self.node_dir / "run" / "aspnet.pid"

    @property
    def restart_script(self) -> Path:
        return self.node_dir / "bin" / "restart"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # --- creation ---------------------------------------------------------------------
    @classmethod
    def create(
        cls, name: str, node_dir: Path, build: HostBuild, *, port: int | None = None
    ) -> AspNetNode:
        """Lay out a fresh node directory (MONO_CFG_DIR copy, app, restart script)."""
        mono, _ = require_mono()
        node_dir = node_dir.resolve()
        node = cls(name, node_dir, port or free_port(), mono, build.launcher)
        for sub in ("logs", "run", "bin"):
            (node_dir / sub).mkdir(parents=True, exist_ok=True)
        if node.mono_cfg_dir.exists():
            shutil.rmtree(node.mono_cfg_dir)
        # Wholesale: Mono also reads its dllmap (mono/config) and browser files from here.
        shutil.copytree(SYSTEM_MONO_CONFIG, node.mono_cfg_dir / "mono", symlinks=True)
        os.chmod(node.root_web_config, 0o600)  # it will hold the node's machineKey
        if node.app_dir.exists():
            shutil.rmtree(node.app_dir)
        shutil.copytree(ASSETS / "app", node.app_dir)
        (node.app_dir / "bin").mkdir(exist_ok=True)
        shutil.copy2(build.library, node.app_dir / "bin" / build.library.name)
        node.save()
        _write_text(node.restart_script, node.restart_script_text(), 0o755)
        return node

    def save(self) -> None:
        spec = {
            "name": self.name,
            "port": self.port,
            "mono": self.mono,
            "launcher": str(self.launcher),
        }
        _write_text(self.node_dir / SPEC_NAME, json.dumps(spec, indent=2) + "\n")

    @classmethod
    def load(cls, node_dir: Path) -> AspNetNode:
        node_dir = Path(node_dir).resolve()
        try:
            spec = json.loads((node_dir / SPEC_NAME).read_text())
            return cls(
                str(spec["name"]),
                node_dir,
                int(spec["port"]),
                str(spec["mono"]),
                Path(spec["launcher"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise LabError(f"{node_dir / SPEC_NAME}: not a lab ASP.NET node ({e})") from None

    def restart_script_text(self) -> str:
        command = shlex.join(
            [sys.executable, "-m", "farmsync.lab.aspnet", "restart", str(self.node_dir)]
        )
        return (
            "#!/bin/sh\n"
            "# Recycle this lab node's ASP.NET process: Mono does not reload the root\n"
            "# web.config, so restart the host (what an application-pool recycle does on IIS).\n"
            f"exec {command}\n"
        )

    # --- state ------------------------------------------------------------------------
    def _markers(self) -> list[str]:
        return [str(self.launcher), str(self.app_dir)]

    @property
    def pid(self) -> int | None:
        """The pid of this node's running host process, or None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        cmdline = "\0".join(pid_cmdline(pid))
        return pid if all(m in cmdline for m in self._markers()) else None

    def alive(self) -> bool:
        return self.pid is not None

    def reachable(self, timeout: float = 2.0) -> bool:
        """The node answers its ping page through System.Web."""
        return ping(self.url, timeout)

    # --- life cycle -------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """The host's whole environment: the same whether started here or over SSH.

        Only paths: MONO_CFG_DIR (the node's root web.config), and TMPDIR and
        MONO_REGISTRY_PATH so Mono's "Temporary ASP.NET Files" and auto-generated key store
        stay inside the node directory instead of /tmp and ~/.mono.
        """
        (self.node_dir / "tmp").mkdir(exist_ok=True)
        (self.node_dir / "registry").mkdir(exist_ok=True)
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.node_dir),
            "LANG": "C.UTF-8",
            "MONO_CFG_DIR": str(self.mono_cfg_dir),
            "MONO_REGISTRY_PATH": str(self.node_dir / "registry"),
            "TMPDIR": str(self.node_dir / "tmp"),
        }

    def launch(self) -> int:
        """Start the host process (detached, in its own session) without waiting for it."""
        if self.alive():
            raise LabError(f"{self.name}: ASP.NET host already running (pid {self.pid})")
        env = self.environment()
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(
                [self.mono, str(self.launcher), str(self.port), str(self.app_dir)],
                cwd=self.node_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        _children[process.pid] = process
        _write_text(self.pid_path, f"{process.pid}\n")
        return process.pid

    def wait_ready(self, pid: int, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        """Wait until the node answers through System.Web; LabError (naming the log) if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                raise LabError(
                    f"{self.name}: the ASP.NET host (pid {pid}) exited during start-up; "
                    f"see {self.log_path}"
                )
            state = health(self.url, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            if state == "ok":
                return
            if state.startswith("config-error"):
                terminate(pid)
                raise LabError(
                    f"{self.name}: System.Web cannot use this node's configuration "
                    f"({state.split()[-1]}); check {self.root_web_config}, see {self.log_path}"
                )
            time.sleep(0.05)
        terminate(pid)
        raise LabError(
            f"{self.name}: the ASP.NET host did not answer on {self.url} within {timeout:g}s; "
            f"see {self.log_path}"
        )

    def start(self, timeout: float = DEFAULT_READY_TIMEOUT, attempts: int = 3) -> int:
        """Start the host and wait until it serves requests; returns its pid.

        Retries when the process died because its port was still held (a restart can race
        the previous process's socket); any other failure is reported at once.
        """
        for attempt in range(attempts):
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            pid = self.launch()
            try:
                self.wait_ready(pid, timeout)
                return pid
            except LabError:
                if attempt == attempts - 1 or not self._port_was_busy(log_offset):
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def _port_was_busy(self, log_offset: int) -> bool:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(log_offset)
                return b"Address already in use" in log.read()
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the host by pid; True when one was running."""
        pid = self.pid
        if pid is None:
            return False
        terminate(pid, owns=self._markers(), timeout=timeout)
        with contextlib.suppress(OSError):
            self.pid_path.unlink()
        return True

    def restart(self, timeout: float = DEFAULT_READY_TIMEOUT) -> int:
        """Stop and start again, re-reading the root web.config; returns the new pid."""
        self.stop()
        return self.start(timeout)


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``python -m farmsync.lab.aspnet {restart|start|stop|status} NODE_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("restart", "start", "stop", "status"):
        print(
            "usage: python -m farmsync.lab.aspnet {restart|start|stop|status} NODE_DIR",
            file=sys.stderr,
        )
        return ExitCode.BAD_INPUT
    action, node_dir = args
    try:
        node = AspNetNode.load(Path(node_dir))
        if action == "restart":
            print(f"{node.name}: restarted, pid {node.restart()}")
        elif action == "start":
            print(f"{node.name}: started, pid {node.start()}")
        elif action == "stop":
            print(f"{node.name}: {'stopped' if node.stop() else 'was not running'}")
        else:
            state = "running" if node.alive() else "stopped"
            reach = "reachable" if node.reachable() else "unreachable"
            print(f"{node.name}: {state}, {reach} at {node.url}")
    except LabError as e:
        print(f"farmsync lab: {e}", file=sys.stderr)
        return e.exit_code
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
