"""Entry point for ``make bench``: ``python bench/run.py [--quick] [--json] [--only NAME]``."""

import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
# Run as a script, Python puts bench/ itself first on the path; its modules are meant to be
# imported as the ``bench`` package (and tests.* helpers) from the repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bench.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
