"""``farmsync inventory check``: validate, then show every host and the files it manages."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from farmsync.cli.render import print_json
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
    out.print(f"farm {escape(farm)}: {len(summaries)} host(s)")
    for s in summaries:
        out.print(f"{escape(s.name)} ({escape(', '.join(s.groups))})", soft_wrap=True)
        out.print(f"    {s.transport}/{s.shell} {escape(s.address)}", soft_wrap=True)
        out.print(f"    password: {escape(s.password_source)}", soft_wrap=True)
        for root in s.root_configs:
            out.print(f"    root: {escape(root)}", soft_wrap=True)
        for app in s.app_configs:
            out.print(f"    application: {escape(app)}", soft_wrap=True)


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
            out,
        )
        if missing:
            raise SystemExit(ExitCode.BAD_INPUT)
        return
    for warning in warnings:
        err.print(f"[yellow]{escape(warning)}[/]", soft_wrap=True)
    table = Table(title=f"farm {escape(inventory.farm)}: {len(summaries)} host(s)")
    columns = ["host", "groups", "transport", "address", "password", "root web.config files"]
    with_apps = any(s.app_configs for s in summaries)
    if with_apps:
        columns.append("application web.config files")
    for column in columns:
        table.add_column(column)
    for s in summaries:
        row = [
            escape(s.name),
            escape(",".join(s.groups)),
            f"{s.transport}/{s.shell}",
            escape(s.address),
            escape(s.password_source),
            escape("\n".join(s.root_configs)),
        ]
        if with_apps:
            row.append(escape("\n".join(s.app_configs)))
        table.add_row(*row)
    natural = out.measure(table, options=out.options.update_width(100_000)).maximum
    if out.is_terminal and natural > out.width:
        _print_narrow(inventory.farm, summaries, out)  # never cut a host name or a path
    else:
        out.print(table)
    if policy is not None:
        out.print(f"key policy: {escape(_policy_text(policy))}", soft_wrap=False)
    if missing:
        for problem in missing:
            err.print(f"farmsync: error: {escape(str(problem))}", soft_wrap=True)
        out.print(
            f"[red]not ready[/]: {len(missing)} file(s) that {escape(str(path))} names are "
            "missing on this controller"
        )
        raise SystemExit(ExitCode.BAD_INPUT)
    out.print(f"[green]ok[/]: {escape(str(path))} is valid")
