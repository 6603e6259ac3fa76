"""scripts/interpolate_checkpoints.py: the blend it writes, and a share that is no number."""

import subprocess
import sys
from pathlib import Path

import torch
from common import TINY, perturbed_tiny

from bdinn.train.checkpoint import load_checkpoint, save_checkpoint
from bdinn.train.network import BDINN

SCRIPT = Path(__file__).parents[1] / "scripts" / "interpolate_checkpoints.py"


def _blend(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_writes_the_straight_line_between_two_checkpoints_and_refuses_nan(tmp_path):
    """--t nan passed FloatRange(0, 1) and wrote a checkpoint of NaN weights (and a sidecar that is
    not JSON), with exit 0."""
    first = save_checkpoint(tmp_path / "a.safetensors", BDINN(TINY), config_name=None, step=1)
    second = save_checkpoint(tmp_path / "b.safetensors", perturbed_tiny(), config_name=None, step=2)
    done = _blend(first, second, "--t", "0.25", "-o", tmp_path / "soup.safetensors")
    assert done.returncode == 0, done.stderr
    soup = load_checkpoint(tmp_path / "soup.safetensors")[0].state_dict()
    a, b = (load_checkpoint(path)[0].state_dict() for path in (first, second))
    for name, value in soup.items():
        torch.testing.assert_close(value, torch.lerp(a[name], b[name], 0.25))
    done = _blend(first, second, "--t", "nan", "-o", tmp_path / "nan.safetensors")
    assert done.returncode == 2
    assert "nan is not a number from 0 to 1" in done.stderr
    assert not list(tmp_path.glob("nan*"))
