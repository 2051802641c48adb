"""``farmsync audit``: read every node (read-only, no vault), report keys and findings.

The command is built by :func:`audit_command` from the shared pieces of ``cli.main`` (the
inventory and state-dir options, the progress reporter), which registers it with one line."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from farmsync.errors import InputError
from farmsync.orchestration.audit.options import AuditOptions, Severity

if TYPE_CHECKING:  # the audit and its renderers load when it runs, not for `--help`
    from rich.console import Console

    from farmsync.orchestration.audit import AuditReport
    from farmsync.orchestration.events import Reporter

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _disclosed(known_keys: tuple[Path, ...]) -> Any:
    from farmsync.keys.disclosed import DisclosedKeys

    lists = DisclosedKeys.bundled()
    for path in known_keys:
        lists = lists.merged(DisclosedKeys.load_any(path))
    return lists


def _write_html(report: AuditReport, path: Path) -> None:
    from farmsync.cli.audit_html import render_html
    from farmsync.fsutil import atomic_write_private

    atomic_write_private(path, render_html(report).encode("utf-8"))
    os.chmod(path, 0o644)  # fingerprints and paths only, meant to be looked at


def _check_output(path: Path | None, option: str) -> None:
    """An output file's folder must exist: bad input, found before any node is contacted."""
    if path is not None and not path.parent.is_dir():
        raise InputError(f"folder {path.parent} does not exist", source=option)


def _write(path: Path, option: str, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as exc:
        raise InputError(
            f"cannot write {path}: {exc.strerror or type(exc).__name__}", source=option
        ) from None


def audit_command(
    inventory_option: Decorator,
    state_dir_option: Decorator,
    reporter_for: Callable[[bool], AbstractContextManager[Reporter]],
    stdout_console: Callable[[], Console],
) -> click.Command:
    @click.command("audit")
    @click.option("-l", "--limit", default=None, help="Ansible host pattern selecting hosts.")
    @click.option(
        "-f",
        "--forks",
        default=AuditOptions.forks,
        show_default=True,
        type=click.IntRange(1, 10000),
        help="How many nodes to read at once.",
    )
    @click.option(
        "--timeout",
        default=AuditOptions.timeout,
        show_default=True,
        type=click.FloatRange(1, 3600),
        help="Longest wait for one node (caps farmsync_timeout).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Report as JSON (schema 1) on stdout.")
    @click.option(
        "--prometheus",
        "prometheus",
        default=None,
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write a node_exporter textfile (atomically).",
    )
    @click.option(
        "--html",
        "html",
        default=None,
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write a self-contained HTML page.",
    )
    @click.option(
        "--known-keys",
        "known_keys",
        multiple=True,
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="More disclosed keys: Microsoft's CSV format or VALIDATIONKEY,DECRYPTIONKEY lines.",
    )
    @click.option(
        "--fail-on",
        default="high",
        show_default=True,
        type=click.Choice([s.value for s in Severity]),
        help="Exit 1 when a finding of this severity or worse is found.",
    )
    @state_dir_option
    @inventory_option
    def audit(
        inventory_path: Path,
        limit: str | None,
        forks: int,
        timeout: float,
        as_json: bool,
        prometheus: Path | None,
        html: Path | None,
        known_keys: tuple[Path, ...],
        fail_on: str,
        state_dir: Path | None,
    ) -> None:
        """Every key each application on each node uses, and what to do about it.

        Read-only: one round trip per node, nothing written on any node, no vault secret
        needed. Exit 0 when nothing at or above --fail-on was found, 1 when something was,
        2 for bad input, 3 when a node could not be read."""
        from farmsync.cli.audit_prometheus import write_prometheus
        from farmsync.cli.audit_terminal import render_audit
        from farmsync.cli.output import print_json
        from farmsync.inventory.loader import load_inventory
        from farmsync.inventory.patterns import select_hosts
        from farmsync.orchestration.audit import run_audit
        from farmsync.orchestration.state import StateDir, default_state_root

        inventory = load_inventory(inventory_path)
        hosts = select_hosts(inventory, limit)
        disclosed = _disclosed(known_keys)  # bad input (exit 2) before anything is contacted
        _check_output(prometheus, "--prometheus")
        _check_output(html, "--html")
        state = StateDir(state_dir or default_state_root(), inventory.farm)
        options = AuditOptions(forks=forks, timeout=timeout, fail_on=Severity(fail_on))
        with reporter_for(as_json) as reporter:
            report = run_audit(
                inventory.farm, hosts, state.journal, options, reporter, disclosed=disclosed
            )
        if prometheus is not None:
            _write(prometheus, "--prometheus", lambda: write_prometheus(report, prometheus))
        if html is not None:
            _write(html, "--html", lambda: _write_html(report, html))
        if as_json:
            print_json(report.to_dict(), sys.stdout)
        else:
            render_audit(report, stdout_console())
        sys.exit(report.exit_code)

    return audit
