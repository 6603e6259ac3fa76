"""benchmarks/bench_train_step.py: the trainer's own step, timed, on the CPU (GPU fields need CUDA)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from common import TINY

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "bench_train_step.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_times_the_training_step_and_writes_json(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY.to_dict()))
    out = tmp_path / "step.json"
    done = run("--config", str(config), "--batch-size", "3", "--patch-size", "32", "--steps", "2",
               "--device", "cpu", "--json", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["batch_size"] == 3 and result["patch_size"] == 32
    assert result["ms_per_step"] > 0
    assert result["patches_per_s"] == pytest.approx(3 * 1000 / result["ms_per_step"], rel=1e-6)
    assert "cuda_kernels" not in result  # profiled on CUDA only
    assert f"ms_per_step {result['ms_per_step']:.1f}" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line_and_exit_1():
    done = run("--device", "cuda")
    assert done.returncode == 1
    message = (
        "bench_train_step.py: error: --device cuda: no CUDA device is available (use --device cpu or auto)"
    )
    assert done.stderr.strip() == message
