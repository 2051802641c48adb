"""The scenario registry: every benchmark ``bench/run.py`` knows, in the order it runs them.

A scenario is a name, a one-line description and a function that starts its own servers,
measures, stops them and returns a :class:`ScenarioResult` with its targets.

Comparisons with other tools (rotating the same inventories with Ansible's
``win_xml``/``xml`` modules and with pyinfra) belong in :func:`comparison_scenarios`, as
scenarios named ``ansible-<N>`` / ``pyinfra-<N>`` against the very farms built here; they
report numbers for the table, without targets. Not implemented yet (a later issue).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from bench.audit_scenario import run_audit_local, run_audit_ssh
from bench.local_scenario import run_local
from bench.report import ScenarioResult
from bench.ssh_scenario import run_ssh
from bench.winrm_scenario import run_winrm


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: Callable[[], ScenarioResult]


def farmsync_scenarios(quick: bool) -> list[Scenario]:
    # local runs first: its peak RSS is the process's, so nothing heavier may run before it.
    local = 200 if quick else 1000
    ssh_sizes = (5,) if quick else (10, 30)
    winrm = 3 if quick else 10
    runs = 1 if quick else 2
    scenarios = [
        Scenario(f"local-{local}", f"rotate {local} local hosts", partial(run_local, local)),
    ]
    for size in ssh_sizes:
        scenarios.append(
            Scenario(
                f"ssh-{size}",
                f"rotate {size} real sshd nodes, {runs} run(s)",
                partial(run_ssh, size, runs=runs),
            )
        )
    scenarios.append(
        Scenario(
            f"winrm-{winrm}",
            f"rotate {winrm} WinRM HTTPS endpoints, {runs} run(s)",
            partial(run_winrm, winrm, runs=runs),
        )
    )
    audit_local = 200 if quick else 1000
    audit_ssh = 5 if quick else 20
    scenarios += [
        Scenario(
            f"audit-local-{audit_local}",
            f"audit {audit_local} local hosts",
            partial(run_audit_local, audit_local),
        ),
        Scenario(
            f"audit-{audit_ssh}", f"audit {audit_ssh} sshd nodes", partial(run_audit_ssh, audit_ssh)
        ),
    ]
    return scenarios


def comparison_scenarios(quick: bool) -> list[Scenario]:
    """Ansible and pyinfra doing the same rotation: to come (see the module docstring)."""
    return []


def registry(quick: bool) -> list[Scenario]:
    return [*farmsync_scenarios(quick), *comparison_scenarios(quick)]
