"""Fixtures for the command-line tests: a farm of local hosts whose configs live in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.clikit import LocalFarm, make_local_farm


@pytest.fixture
def local_farm(tmp_path: Path) -> LocalFarm:
    """web1, web2 (group east) and web3 (group west), each on its own key."""
    return make_local_farm(tmp_path)


@pytest.fixture
def make_farm_at(tmp_path: Path) -> Callable[..., LocalFarm]:
    """``make_farm_at(groups, host_vars)``: a local farm of other shape."""

    def make(
        groups: dict[str, list[str]] | None = None,
        host_vars: dict[str, dict[str, Any]] | None = None,
    ) -> LocalFarm:
        return make_local_farm(tmp_path, groups, host_vars)

    return make
