"""Fixtures for the command-line tests: a farm of local hosts whose configs live in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.clikit import LocalFarm, make_local_farm


@pytest.fixture
def local_farm(tmp_path: Path) -> LocalFarm:
    """web1, web2 (group east) and web3 (group west), each on its own key."""
    return make_local_farm(tmp_path)
