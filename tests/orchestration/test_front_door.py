"""The README's "From Python" lines, run as they are written, against a farm of real sshd nodes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.orchestration.farmkit import TestFarm

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python() -> str:
    section = README.read_text().split("## From Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README's From Python section has no python block"
    return match.group(1)


def test_the_readme_rotates_a_farm_from_python_in_five_lines(
    make_farm: Callable[..., TestFarm],
) -> None:
    code = readme_python()
    assert len(code.splitlines()) == 5
    farm = make_farm(ssh=2, ssh_windows=0, winrm=1)
    assert farm.inventory_path == farm.root / "farm.yml"  # the name the README uses

    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=farm.root,
        env={**os.environ, **farm.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    outcome, fingerprint, exit_code = done.stdout.split()
    assert (outcome, exit_code) == ("changed", "0")
    keys = farm.fingerprints()
    assert keys["web1"] == keys["web2"] == fingerprint  # limit="web*"
    assert farm.configs["iis1"].read_bytes() == farm.originals["iis1"]
