"""``farmsync inventory check``: validate, then show every host and the files it manages."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from farmsync.cli.output import print_json
from farmsync.cli.printable import markup
from farmsync.errors import ExitCode
from farmsync.inventory.describe import HostSummary, describe_inventory
from farmsync.inventory.loader import load_inventory
from farmsync.inventory.model import Policy
from farmsync.inventory.paths import missing_controller_files


def _policy_text(policy: Policy) -> str:
    parts = [f"validation={policy.validation}", f"decryption={policy.decryption}"]
    if policy.compatibility_mode:
        parts.append(f"compatibility_mode={policy.compatibility_mode}")
    if policy.max_key_age_days is not None:
        parts.append(f"max_key_age={policy.max_key_age_days:g}d")
    return ", ".join(parts)


def _print_narrow(farm: str, summaries: list[HostSummary], out: Console) -> None:
    """The table's content as a few short lines per host, for a terminal too narrow for it."""
    out.print(f"farm {markup(farm)}: {len(summaries)} host(s)")
    for s in summaries:
        out.print(f"{markup(s.name)} ({markup(', '.join(s.groups))})", soft_wrap=True)
        out.print(f"    {s.transport}/{s.shell} {markup(s.address)}", soft_wrap=True)
        out.print(f"    password: {markup(s.password_source)}", soft_wrap=True)
        for root in s.root_configs:
            out.print(f"    root: {markup(root)}", soft_wrap=True)
        for app in s.app_configs:
            out.print(f"    application: {markup(app)}", soft_wrap=True)
        # Wrapped, not cut: it may name a long CA path.
        out.print(f"    identity checked by: {markup(s.trust)}", soft_wrap=False)


def show_inventory(path: Path, as_json: bool, out: Console, err: Console) -> None:
    inventory = load_inventory(path)
    summaries = describe_inventory(inventory)
    policies = {h.policy for h in inventory.hosts.values()}
    policy = next(iter(policies)) if len(policies) == 1 else None
    missing = missing_controller_files(inventory)
    warnings = [
        f"{w.source}:{w.line}: warning: {w.message}"
        if w.line
        else f"{w.source}: warning: {w.message}"
        for w in inventory.warnings
    ]
    if as_json:
        print_json(
            {
                "inventory": str(path),
                "farm": inventory.farm,
                "policy": asdict(policy) if policy is not None else None,
                "hosts": [s.to_dict() for s in summaries],
                "warnings": warnings,
                "missing_files": [str(problem) for problem in missing],
            },
            out.file,
        )
        if missing:
            raise SystemExit(ExitCode.BAD_INPUT)
        return
    for warning in warnings:
        err.print(f"[yellow]{markup(warning)}[/]", soft_wrap=True)
    for s in summaries:
        for note in s.notes:
            err.print(f"[yellow]{markup(s.name)}: warning: {markup(note)}[/]", soft_wrap=True)
    table = Table(title=f"farm {markup(inventory.farm)}: {len(summaries)} host(s)")
    columns = ["host", "groups", "transport", "address", "password", "root web.config files"]
    with_apps = any(s.app_configs for s in summaries)
    if with_apps:
        columns.append("application web.config files")
    columns.append("identity checked by")
    for column in columns:
        table.add_column(column)
    for s in summaries:
        row = [
            markup(s.name),
            markup(",".join(s.groups)),
            f"{s.transport}/{s.shell}",
            markup(s.address),
            markup(s.password_source),
            "\n".join(markup(p) for p in s.root_configs),
        ]
        if with_apps:
            row.append("\n".join(markup(p) for p in s.app_configs))
        row.append(markup(s.trust))
        table.add_row(*row)
    natural = out.measure(table, options=out.options.update_width(100_000)).maximum
    if out.is_terminal and natural > out.width:
        _print_narrow(inventory.farm, summaries, out)  # never cut a host name or a path
    else:
        out.print(table)
    if policy is not None:
        out.print(f"key policy: {markup(_policy_text(policy))}", soft_wrap=False)
    if missing:
        for problem in missing:
            err.print(f"farmsync: error: {markup(str(problem))}", soft_wrap=True)
        out.print(
            f"[red]not ready[/]: {len(missing)} file(s) that {markup(str(path))} names are "
            "missing on this controller"
        )
        raise SystemExit(ExitCode.BAD_INPUT)
    out.print(f"[green]ok[/]: {markup(str(path))} is valid")
