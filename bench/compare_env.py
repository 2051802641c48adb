"""The comparison tools' own virtual environment (``bench/.venv-compare``).

Ansible, pyinfra, matplotlib and py-spy are not farmsync dependencies: they are installed from
PyPI into a separate venv on first use, pinned from below by ``bench/compare-requirements.txt``,
and run as their own programs, so nothing of theirs is ever imported into farmsync's process.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-compare"
REQUIREMENTS = BENCH / "compare-requirements.txt"
_STAMP = VENV / ".installed-from"


class CompareEnvError(RuntimeError):
    """The comparison venv could not be made (pip's last lines in the message)."""


def ensure() -> Path:
    """The venv's bin directory, installing the requirements first if they changed."""
    wanted = REQUIREMENTS.read_text()
    if _STAMP.exists() and _STAMP.read_text() == wanted:
        return VENV / "bin"
    if not (VENV / "bin" / "python").exists():
        print(f"creating {VENV} for the comparison tools ...", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    print(f"installing {REQUIREMENTS.name} into {VENV.name} (PyPI) ...", file=sys.stderr)
    done = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-5:])
        raise CompareEnvError(f"pip could not install {REQUIREMENTS.name}:\n{tail}")
    _STAMP.write_text(wanted)
    return VENV / "bin"


def tool(name: str) -> str:
    """Path of one of the venv's programs (ansible-playbook, pyinfra, python, py-spy)."""
    return str(ensure() / name)
