"""StateDir: where the vault, journal and lock live, and that they are private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from farmsync.errors import InputError
from farmsync.orchestration.state import StateDir, default_state_root


def test_root_from_farmsync_state_dir_first(tmp_path: Path) -> None:
    env = {"FARMSYNC_STATE_DIR": str(tmp_path / "s"), "XDG_STATE_HOME": "/x", "HOME": "/h"}
    assert default_state_root(env) == tmp_path / "s"


def test_root_from_xdg_then_home() -> None:
    assert default_state_root({"XDG_STATE_HOME": "/x", "HOME": "/h"}) == Path("/x/farmsync")
    # A relative XDG_STATE_HOME is invalid per the spec and ignored.
    assert default_state_root({"XDG_STATE_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.local/state/farmsync"
    )
    assert default_state_root({"HOME": "/h"}) == Path("/h/.local/state/farmsync")


def test_paths_and_private_directories(tmp_path: Path) -> None:
    state = StateDir(default_state_root({"FARMSYNC_STATE_DIR": str(tmp_path / "root")}), "web")
    assert not state.farm_dir.exists()  # nothing created before ensure()
    state.ensure()
    assert state.vault == tmp_path / "root" / "web" / "vault.fsv"
    assert state.journal == tmp_path / "root" / "web" / "journal.jsonl"
    assert state.lock == tmp_path / "root" / "web" / "lock"
    assert stat.S_IMODE(state.farm_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.root.stat().st_mode) == 0o700


def test_existing_farm_dir_is_tightened_but_a_shared_root_is_not(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    (root / "web").mkdir()
    (root / "web").chmod(0o755)
    StateDir(root, "web").ensure()
    assert stat.S_IMODE((root / "web").stat().st_mode) == 0o700
    assert stat.S_IMODE(root.stat().st_mode) == 0o755


@pytest.mark.parametrize("farm", ["", "..", ".", "a/b", "../x", "-x", "a b"])
def test_farm_names_that_are_not_one_safe_path_component_are_refused(
    tmp_path: Path, farm: str
) -> None:
    with pytest.raises(InputError, match="farm name"):
        StateDir(tmp_path, farm)
