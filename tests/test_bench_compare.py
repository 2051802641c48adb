"""The comparison harness (bench/compare_scenario.py) on real sshd nodes, farmsync's side only.

Ansible and pyinfra come from PyPI on first use and are not needed here: with no other tool
asked for, a comparison runs farmsync's CLI alone. This proves the harness (nodes started and
stopped, the CLI run as a program, every file read back from disk, skew and phases
summarised), not a speed.
"""

from __future__ import annotations

from bench.compare_scenario import Comparison


def test_a_comparison_runs_the_farmsync_cli_and_reads_every_file_back() -> None:
    comparison = Comparison(size=2, runs=1)

    result = comparison.result("farmsync")

    metrics = {m.name: m for m in result.metrics}
    assert result.error is None and result.ok, result.notes
    assert metrics["runs ok"].value == 1
    assert metrics["files on the new key, min"].value == 2
    assert metrics["wall median"].value is not None and metrics["wall median"].value > 0
    assert metrics["mtime skew max"].goal == "issue 9"
    assert "phase arm median" in metrics and "phase commit median" in metrics
    assert comparison.samples is not None and set(comparison.samples) == {"farmsync"}


def test_the_floor_runs_beside_farmsync_and_its_key_is_read_back_from_every_file() -> None:
    # The floor (bench/floor_job.py: bare paramiko, no guarantees) needs nothing from PyPI.
    comparison = Comparison(size=2, runs=1)
    comparison.want("floor")

    result = comparison.result("floor")

    metrics = {m.name: m for m in result.metrics}
    assert result.error is None and result.ok, result.notes
    assert metrics["runs ok"].value == 1
    assert metrics["files on the new key, min"].value == 2  # read from disk, its key
    ratio = metrics["floor/farmsync median"]
    assert ratio.value is not None and ratio.value > 0 and ratio.goal is None
    assert comparison.samples is not None and set(comparison.samples) == {"farmsync", "floor"}
