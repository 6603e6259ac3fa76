"""scripts/validation_split.py: bad input is one line and writes nothing."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "validation_split.py"
DATA = Path(__file__).parent / "data"


def _split(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_neither_a_run_nor_a_cache_is_one_line_and_exit_2(tmp_path):
    """click's four lines (usage, help hint, blank, error) named no program of a pipeline."""
    done = _split("--clean", DATA, "-o", tmp_path / "val")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "validation_split.py: error: give --run (a bdinn-train run folder) or --cache-dir and the run's "
        "settings (see validation_split.py --help)"
    ]
    assert list(tmp_path.iterdir()) == []
