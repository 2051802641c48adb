"""Helpers for inventory tests: write a YAML snippet to a real file and load it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from farmsync.errors import InputError
from farmsync.inventory.loader import load_inventory
from farmsync.inventory.model import Inventory

Loader = Callable[..., Inventory]
ErrorLoader = Callable[..., InputError]


def write_snippet(directory: Path, text: str, name: str = "farm.yml") -> Path:
    """Write ``text`` dedented, its first line being line 1 of the file."""
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def load(tmp_path: Path) -> Loader:
    def _load(text: str, env: Mapping[str, str] | None = None, name: str = "farm.yml") -> Inventory:
        return load_inventory(write_snippet(tmp_path, text, name), environ=env or {})

    return _load


@pytest.fixture
def load_error(tmp_path: Path) -> ErrorLoader:
    def _load_error(
        text: str, env: Mapping[str, str] | None = None, name: str = "farm.yml"
    ) -> InputError:
        path = write_snippet(tmp_path, text, name)
        with pytest.raises(InputError) as caught:
            load_inventory(path, environ=env or {})
        assert caught.value.source == str(path)
        return caught.value

    return _load_error
