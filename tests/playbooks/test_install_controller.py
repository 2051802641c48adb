"""install-controller.yml on localhost into a temporary root (farmsync_root): the venv with
farmsync in it, the state directory, the secret files, the systemd units and their schedule.

The package is a wheel built here from this checkout with no network (no build isolation,
no dependencies fetched): the test proves what the playbook lays out, and that pip put
farmsync's entry point into the venv. `systemd-analyze verify` runs where it exists.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from farmsync import __version__
from tests.playbooks.playbook_runner import ROOT, Ansible, PlaybookRun, key_material, task_results

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("playbooks-install")]

# A password a careless quoting would break or expand, in the shell or in systemd.
WINRM_PASSWORD = "p'a$s \"w\\rd %h"
HAS_SYSTEMD_ANALYZE = shutil.which("systemd-analyze") is not None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built from a copy (the checkout gets no build/ directory)."""
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(
        ROOT / "agent", src / "agent", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("farmsync-*.whl")
    return built


def install(
    tmp_path: Path, wheel: Path, root: Path | None = None, **extra: object
) -> tuple[PlaybookRun, Path, str]:
    if root is None:
        root = tmp_path / "root"
        root.mkdir()
    passphrase = "vault pass 'with' $quotes"
    ansible = Ansible(tmp_path / "ansible", {"FARMSYNC_VAULT_PASSPHRASE": passphrase})
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    done = ansible.playbook(
        "install-controller.yml",
        None,
        {
            "farmsync_root": str(root),
            "farmsync_user": user,
            "farmsync_group": group,
            "farmsync_create_user": False,
            "farmsync_package": str(wheel),
            "farmsync_pip_extra_args": "--no-deps --no-index",
            "farmsync_venv_python": sys.executable,
            # Relative to where ansible-playbook runs (the test's Ansible home).
            "farmsync_inventory_src": os.path.relpath(
                ROOT / "inventory" / "example.yml", tmp_path / "ansible"
            ),
            "farmsync_secrets": {"FARMSYNC_WINRM_PASSWORD": WINRM_PASSWORD},
            "farmsync_rotate_on_calendar": "Mon..Fri *-*-* 04:05",
            **extra,
        },
        "--diff",  # a diff of a secret file must not show either
    )
    leaked = key_material(done.output + ansible.log(), [passphrase, WINRM_PASSWORD])
    assert not leaked, f"secrets in Ansible's output: {leaked}"
    return done, root, passphrase


def unit(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> values, in order (a key may repeat in a unit file)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(f"{section}.{key}", []).append(value)
    return found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory, wheel: Path
) -> tuple[PlaybookRun, Path, str]:
    """One install, shared: creating the venv is the slow part."""
    return install(tmp_path_factory.mktemp("install"), wheel)


def test_install_controller_lays_out_the_venv_state_secrets_and_units(
    installed: tuple[PlaybookRun, Path, str],
) -> None:
    done, root, passphrase = installed

    assert done.returncode == 0, done.output[-4000:]
    venv, etc, state = root / "opt/farmsync/venv", root / "etc/farmsync", root / "var/lib/farmsync"
    farmsync = venv / "bin" / "farmsync"
    assert os.access(farmsync, os.X_OK)
    version = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('farmsync'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == __version__
    assert mode(state) == 0o700 and state.is_dir()
    assert mode(etc) == 0o750
    for secret in (etc / "secrets.env", etc / "vault.key"):
        assert mode(secret) == 0o600, secret
    assert (etc / "vault.key").read_text() == passphrase
    assert (etc / "inventory.yml").read_bytes() == (ROOT / "inventory/example.yml").read_bytes()
    assert mode(etc / "inventory.yml") == 0o640
    # A shell reads the secrets file back to the exact value (systemd reads the same quoting).
    shell = subprocess.run(
        [
            "sh",
            "-c",
            'set -a; . "$1"; printf %s "$FARMSYNC_WINRM_PASSWORD"',
            "sh",
            str(etc / "secrets.env"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == WINRM_PASSWORD

    units = root / "etc/systemd/system"
    rotate = unit(units / "farmsync-rotate.service")
    assert rotate["Service.ExecStart"] == [f'"{farmsync}" rotate -i "{etc}/inventory.yml" --if-due']
    assert rotate["Service.EnvironmentFile"] == [f"{etc}/secrets.env"]
    assert rotate["Service.Environment"] == [
        f'"FARMSYNC_STATE_DIR={state}" "FARMSYNC_VAULT_KEY_FILE={etc}/vault.key"'
    ]
    assert rotate["Service.Type"] == ["oneshot"]
    assert rotate["Service.User"] == [pwd.getpwuid(os.getuid()).pw_name]
    assert rotate["Service.UMask"] == ["0077"]
    audit = unit(units / "farmsync-audit.service")
    prom = root / "var/lib/prometheus/node-exporter/farmsync.prom"
    assert audit["Service.ExecStart"] == [
        f'"{farmsync}" audit -i "{etc}/inventory.yml" --prometheus "{prom}" --fail-on high'
    ]
    assert audit["Service.Environment"] == [f'"FARMSYNC_STATE_DIR={state}"']  # no vault key
    assert prom.parent.is_dir()
    rotate_timer = unit(units / "farmsync-rotate.timer")
    assert rotate_timer["Timer.OnCalendar"] == ["Mon..Fri *-*-* 04:05"]
    assert rotate_timer["Timer.Persistent"] == ["true"]
    assert rotate_timer["Timer.Unit"] == ["farmsync-rotate.service"]
    assert rotate_timer["Install.WantedBy"] == ["timers.target"]
    audit_timer = unit(units / "farmsync-audit.timer")
    assert audit_timer["Timer.OnCalendar"] == ["*-*-* 02:30"]
    assert audit_timer["Timer.Unit"] == ["farmsync-audit.service"]
    for name in (
        "farmsync-rotate.service",
        "farmsync-rotate.timer",
        "farmsync-audit.service",
        "farmsync-audit.timer",
    ):
        assert mode(units / name) == 0o644
    verified = "Check the units (systemd-analyze verify)" in done.stdout
    assert verified
    lines = done.stdout.split("Check the units (systemd-analyze verify)", 1)[1].splitlines()
    assert lines[1].startswith("ok:" if HAS_SYSTEMD_ANALYZE else "skipping:")
    # A temporary root: the timers are not enabled in the machine's systemd.
    assert "skipping: [localhost] => (item=farmsync-rotate.timer)" in done.stdout


def test_a_schedule_systemd_cannot_read_stops_the_install(
    tmp_path: Path, wheel: Path, installed: tuple[PlaybookRun, Path, str]
) -> None:
    # Over the install above (runs after its test, in file order): the venv is there already.
    root = installed[1]
    done, _, _ = install(tmp_path, wheel, root, farmsync_audit_on_calendar="every full moon")

    # The same secrets again: their files are left as they were.
    assert task_results(done.stdout, "Write the secrets environment file") == ["ok"]
    assert task_results(done.stdout, "Write the vault key file") == ["ok"]
    if not HAS_SYSTEMD_ANALYZE:  # "where that command exists": the install says it skipped
        assert done.returncode == 0, done.output[-4000:]
        return
    assert done.returncode != 0
    assert "Failed to parse calendar specification" in done.stdout
    assert "farmsync-audit.timer" in done.stdout


def test_a_multi_line_secret_is_refused_before_anything_is_written(
    tmp_path: Path, wheel: Path
) -> None:
    done, root, _ = install(tmp_path, wheel, farmsync_secrets={"X": "two\nlines"})

    assert done.returncode != 0
    assert "must map environment variable names to one-line values" in done.stdout
    assert list(root.iterdir()) == []
