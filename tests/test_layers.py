"""The package's layers, checked from the source: a lower layer never imports a higher one.

errors, algorithms, fsutil -> inventory -> keys, webconfig -> nodes -> orchestration
-> api, cli, lab. The package's ``__init__`` is the one exception: it re-exports ``api`` lazily,
so importing it (which every submodule import does) loads no layer at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "agent" / "farmsync"

LAYERS = {
    "errors": 0,
    "algorithms": 0,
    "fsutil": 0,
    "inventory": 1,
    "keys": 2,
    "webconfig": 2,
    "nodes": 3,
    "orchestration": 4,
    "api": 5,
    "cli": 5,
    "lab": 5,
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("farmsync.")]


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem in LAYERS)


def test_every_module_belongs_to_a_layer() -> None:
    for path in modules():
        relative = path.relative_to(PACKAGE)
        top = relative.parts[0].removesuffix(".py")
        assert top in LAYERS, f"{relative} is in no layer"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    own = LAYERS[path.relative_to(PACKAGE).parts[0].removesuffix(".py")]
    for line, name in imports(path):
        target = layer_of(name)
        if target in LAYERS:
            assert LAYERS[target] <= own, f"{path.name}:{line} imports {name} (a higher layer)"


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from farmsync.orchestration.farm import Farm\n")
    assert imports(bad) == [(1, "farmsync.orchestration.farm")]
    assert LAYERS[layer_of("farmsync.orchestration.farm")] > LAYERS["nodes"]


def test_importing_the_package_loads_no_layer_until_a_public_name_is_used() -> None:
    probe = (
        "import sys, farmsync\n"
        "print(sorted(m for m in sys.modules if m.startswith('farmsync')))\n"
        "farmsync.Farm\n"
        "print('farmsync.orchestration.farm' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["['farmsync']", "True"]


def test_the_top_level_exports_exactly_the_api() -> None:
    import farmsync
    import farmsync.api

    assert sorted(farmsync.__all__) == sorted([*farmsync.api.__all__, "__version__"])
    for name in farmsync.api.__all__:
        assert getattr(farmsync, name) is getattr(farmsync.api, name)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        farmsync.Nope  # noqa: B018
