"""``make`` on a stock Debian: the virtual environment is built from Debian's own interpreter,
which refuses ``pip install`` into the system (PEP 668), and farmsync runs from it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEBIAN_PYTHON = Path("/usr/bin/python3")


@pytest.mark.slow
def test_make_builds_the_venv_from_debians_own_python(tmp_path: Path) -> None:
    assert DEBIAN_PYTHON.exists(), f"{DEBIAN_PYTHON} is Debian's python3: install python3"
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS")}

    made = subprocess.run(
        ["make", "-C", str(REPO), "venv", "pip", f"PYTHON={DEBIAN_PYTHON}", f"VENV={venv}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )

    assert made.returncode == 0, made.stdout + made.stderr
    assert f"installed farmsync and its test tools into {venv}/" in made.stdout
    # The venv's interpreter is Debian's, not whichever python3 came first on PATH.
    config = dict(
        line.split(" = ", 1)
        for line in (venv / "pyvenv.cfg").read_text().splitlines()
        if " = " in line
    )
    assert config["home"] == str(DEBIAN_PYTHON.parent)
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sys, farmsync; print(sys.base_prefix); print(farmsync.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert probe[0] == "/usr"
    assert probe[1] == str(REPO / "agent" / "farmsync" / "__init__.py")  # editable: this tree
    version = subprocess.run(
        [str(venv / "bin" / "farmsync"), "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("farmsync, version ")
    # Nothing went into the system interpreter.
    system = subprocess.run(
        [str(DEBIAN_PYTHON), "-c", "import farmsync"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "No module named 'farmsync'" in system.stderr
    # A second run finds everything in place and installs nothing again.
    again = subprocess.run(
        ["make", "-C", str(REPO), "venv", "pip", f"PYTHON={DEBIAN_PYTHON}", f"VENV={venv}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "pip install" not in again.stdout
