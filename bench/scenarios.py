"""The scenario registry: every benchmark ``bench/run.py`` knows, in the order it runs them.

A scenario is a name, a one-line description and a function that starts its own servers,
measures, stops them and returns a :class:`ScenarioResult` with its targets.

Three sets: farmsync's own targets (the default run), the comparisons with Ansible and pyinfra
(``--compare``: ``farmsync-N``/``ansible-N``/``pyinfra-N`` share one interleaved run per N),
and the large SSH farms (``--scale``). ``--only`` picks any scenario of any set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from bench.audit_scenario import run_audit_local, run_audit_ssh
from bench.compare_scenario import ORDER, Comparison
from bench.local_scenario import run_local
from bench.report import ScenarioResult
from bench.sim_scenario import run_sim
from bench.ssh_scenario import run_ssh
from bench.startup_scenario import run_startup
from bench.winrm_scenario import run_winrm

COMPARE_SIZES = (5, 10, 20)
COMPARE_RUNS = 5
SCALE_SIZES = (100, 200)
# Here the 100-200 sshd nodes share the controller's 2 cores: arming 200 /bin/sh took 43 s
# and outran farmsync's default 30 s per node (the run aborted, safely). The large farms
# measure the controller, so their nodes get longer to answer.
SCALE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: Callable[[], ScenarioResult]
    # Called once when the scenario is picked to run (a shared comparison learns its tools).
    selected: Callable[[], None] | None = None


def farmsync_scenarios(quick: bool) -> list[Scenario]:
    # startup first, on a machine no scenario has loaded yet (it times fresh interpreters);
    # then local: its peak RSS is the process's, so nothing heavier may run before it.
    local = 200 if quick else 1000
    sim = 200 if quick else 2000
    ssh_sizes = (5,) if quick else (10, 30)
    winrm = 3 if quick else 10
    runs = 1 if quick else 2
    scenarios = [
        Scenario("startup", "farmsync --help, and what a rotation imports", run_startup),
        Scenario(f"local-{local}", f"rotate {local} local hosts", partial(run_local, local)),
        Scenario(
            f"sim-{sim}",
            f"rotate {sim} simulated nodes, 50 ms round trips",
            partial(run_sim, sim),
        ),
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
    """farmsync's CLI, Ansible and pyinfra doing the same job on the same sshd farm."""
    sizes = COMPARE_SIZES[:1] if quick else COMPARE_SIZES
    runs = 1 if quick else COMPARE_RUNS
    scenarios: list[Scenario] = []
    for size in sizes:
        shared = Comparison(size, runs)
        for tool in ORDER:
            scenarios.append(
                Scenario(
                    shared.scenario_name(tool),
                    f"{tool} puts one key on {size} sshd nodes ({runs} interleaved runs)",
                    partial(shared.result, tool),
                    partial(shared.want, tool),
                )
            )
    return scenarios


def scale_scenarios(quick: bool) -> list[Scenario]:
    """Large real SSH farms: one rotation each."""
    return [
        Scenario(
            f"ssh-{size}",
            f"rotate {size} real sshd nodes, 1 run",
            partial(run_ssh, size, runs=1, timeout=SCALE_TIMEOUT_S),
        )
        for size in SCALE_SIZES
    ]


def registry(quick: bool, *, compare: bool = True, scale: bool = True) -> list[Scenario]:
    """Every scenario of the sets asked for, in running order."""
    scenarios = farmsync_scenarios(quick)
    if scale:
        scenarios += scale_scenarios(quick)
    if compare:
        scenarios += comparison_scenarios(quick)
    return scenarios
