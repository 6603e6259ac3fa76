"""benchmarks/host_memory.py measures each case in its own process and reports it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "host_memory.py"


def test_each_case_reports_its_tile_memory_and_frame_times(tmp_path):
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    report = tmp_path / "memory.json"
    args = ["--size", "48x64", "--size", "40x120", "--frames", "2", "--json", str(report)]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("| 4")]
    assert len(table) == 4
    cases = json.loads(report.read_text())["cases"]
    assert [(c["size"], c["mode"]) for c in cases] == [
        ("48x64", "served"), ("48x64", "whole"), ("40x120", "served"), ("40x120", "whole")
    ]  # fmt: skip
    for case in cases:
        assert case["tile"] is None  # small frames run whole either way
        assert len(case["seconds"]) == 2 and all(0 < s < 60 for s in case["seconds"])
        assert case["opened_gb"] > 0.02 and case["peak_gb"] < 2  # a process of its own: one small model


def test_a_case_whose_process_is_killed_ends_the_run_in_one_line():
    """Killed by the kernel (out of memory), the case's process was replaced by the pool, which
    then waited for it forever without a word."""
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    args = ["--size", "2160x3840", "--frames", "50", "--mode", "served"]  # long enough to be killed in
    run = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        case = None
        for _ in range(600):  # up to a minute for the case's process (not the resource tracker) to start
            for child in Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split():
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    case = int(child)
            if case is not None:
                break
            time.sleep(0.1)
        assert case is not None
        time.sleep(2)  # into its work
        os.kill(case, signal.SIGKILL)
        _, stderr = run.communicate(timeout=120)
    finally:  # SIGTERM: the script kills its case process (SIGKILL would leave it running)
        run.terminate()
        run.wait(timeout=60)
    assert run.returncode == 1
    assert (
        "the 2160x3840 served case's process ended without a result (exit code -9; killed for memory?)"
        in stderr
    )


def test_a_case_out_of_memory_is_one_line(tmp_path):
    """It was a multiprocessing traceback ending in numpy's _ArrayMemoryError."""
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1_600_000_000, 1_600_000_000))"
    argv = ["host_memory.py", "--size", "16384x16384", "--frames", "1", "--mode", "whole"]
    run = f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    code = f"{limit}; import runpy, sys; sys.argv = {argv!r}; {run}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    said = "not enough memory for the 16384x16384 whole case: try a smaller --size or --mode served"
    assert done.stderr.strip().splitlines() == [f"host_memory.py: error: {said}"]


def test_a_checkpoint_runs_on_torch_without_naming_the_backend(tmp_path):
    """The backend defaulted to onnxruntime, which refuses a .safetensors checkpoint."""
    pytest.importorskip("torch", reason="checkpoints need the train extra")
    from common import MICRO

    from bdinn.train.checkpoint import save_checkpoint
    from bdinn.train.network import BDINN

    model = save_checkpoint(tmp_path / "micro.safetensors", BDINN(MICRO), config_name=None, step=1)
    args = [str(model), "--size", "48x64", "--frames", "1", "--mode", "served"]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("torch on ")
