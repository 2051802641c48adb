"""How much to say and whether in colour: ``-v``/``-q``, ``--no-color`` and ``NO_COLOR``.

The options are accepted before the command (``farmsync -q rotate``) and, as Ansible users
type them, after it (``farmsync rotate -v``); both set the same settings for this process.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import IO, Any

import click


@dataclass
class OutputSettings:
    verbosity: int = 0  # -1 quiet, 0 normal, 1+ verbose
    color: bool = True


SETTINGS = OutputSettings()


def print_json(data: Any, out: IO[str]) -> None:
    """``data`` as JSON on ``out`` (a plain stream: ``--json`` needs no console)."""
    out.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def colour_wanted() -> bool:
    # https://no-color.org: any non-empty NO_COLOR turns colour off.
    return SETTINGS.color and not os.environ.get("NO_COLOR")


def _verbose(ctx: click.Context, _param: click.Parameter, value: int) -> int:
    if value:
        SETTINGS.verbosity = max(SETTINGS.verbosity, value)
    return value


def _quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        SETTINGS.verbosity = -1
    return value


def _no_color(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        SETTINGS.color = False
    return value


def output_options(f: Any) -> Any:
    """-v/--verbose, -q/--quiet and --no-color, processed eagerly and kept in SETTINGS."""
    for option in (
        click.option(
            "--no-color",
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_no_color,
            help="No colour (also when NO_COLOR is set).",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_quiet,
            help="No progress; only the closing line and errors.",
        ),
        click.option(
            "-v",
            "--verbose",
            count=True,
            expose_value=False,
            is_eager=True,
            callback=_verbose,
            help="More detail: every event, and how long each phase took.",
        ),
    ):
        f = option(f)
    return f
