"""The README read as a user reads it, checked against the code: the variable table, the exit
codes, every command and every option of the farm commands. Drift fails here."""

from __future__ import annotations

import re
from pathlib import Path

import click

from farmsync.cli.main import cli
from farmsync.errors import ExitCode
from farmsync.inventory.variables import variables_reference_markdown

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_variable_table_is_the_generated_one() -> None:
    generated = [line for line in variables_reference_markdown().splitlines() if line.strip()]
    for line in generated:
        assert line in README, line


def test_readme_exit_code_table_has_every_code() -> None:
    codes = {v for k, v in vars(ExitCode).items() if k.isupper()}
    for code in codes:
        assert re.search(rf"^\| {code} \| ", README, re.M), code


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    found: list[str] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
        else:
            found.append(prefix + name)
    return found


def test_readme_describes_every_command() -> None:
    for command in _commands(cli):
        assert f"| `{command}` |" in README, command


def test_readme_names_every_option_of_the_farm_commands() -> None:
    for name in ("rotate", "sync", "rollback", "recover", "restore", "history"):
        command = cli.commands[name]
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            longest = max(param.opts, key=len)
            if longest == "--help":
                continue
            assert re.search(rf"(?<![\w-]){re.escape(longest)}(?![\w-])", README), (name, longest)


def test_readme_quick_start_uses_the_paths_lab_up_writes() -> None:
    lab_up = cli.commands["lab"].commands["up"]  # type: ignore[attr-defined]
    default = next(p.default for p in lab_up.params if p.name == "inventory_out")
    assert f"farmsync rotate -i {default} --check" in README
    assert "/.lab/node1/etc/mono/4.5/web.config" in README
