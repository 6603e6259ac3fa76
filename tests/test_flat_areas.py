"""benchmarks/flat_areas.py: the frames it makes, and what it reports of the bundled model."""

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def flat_script(benchmark_script):
    return benchmark_script("flat_areas")


def test_the_letterboxed_frame_is_a_gradient_between_black_bars(flat_script):
    frame, bars = flat_script.letterboxed(1080, 1920)
    assert frame.shape == (1080, 1920, 3) and frame.dtype == np.uint8
    assert bars[:140].all() and bars[-140:].all() and not bars[140:-140].any()
    assert (frame[bars] == 0).all() and frame[~bars].min() >= 40
    assert np.abs(np.diff(frame[~bars].reshape(800, 1920, 3).astype(int), axis=1)).max() <= 1  # smooth


def test_the_bundled_model_served_leaves_flat_black_and_white_alone(run_benchmark, tmp_path):
    out = tmp_path / "flat.json"
    done = run_benchmark("flat_areas", "--size", "144x256", "--json", out)
    assert done.returncode == 0, done.stderr
    [rows] = json.loads(out.read_text())["results"].values()
    assert set(rows) == {"letterbox bars", "flat black", "flat dark grey", "flat mid grey", "flat white"}
    for frame in ("flat black", "flat white"):
        assert rows[frame]["served"] == {"changed_percent": 0.0, "mean_change": 0.0}
        assert rows[frame]["raw"]["changed_percent"] > 1  # the network alone moves them
    bars = rows["letterbox bars"]
    assert bars["served"] == {"changed_percent": 0.0, "mean_change": 0.0}
    assert bars["raw"]["changed_percent"] > 5
    assert "| flat white | " in done.stdout


def test_a_frame_too_small_is_one_line_and_exit_2(run_benchmark):
    done = run_benchmark("flat_areas", "--size", "8x8")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--size" in done.stderr and "at least" not in done.stdout


def test_running_out_of_memory_is_one_line_with_advice(tmp_path):
    """ONNX Runtime's out of memory, a MemoryError as PyTorch's is, was a traceback here."""
    import subprocess

    from stand_ins import greedy_onnx, memory_limited_script

    script = Path(__file__).parents[1] / "benchmarks" / "flat_areas.py"
    command = memory_limited_script(script, str(greedy_onnx(tmp_path / "greedy.onnx")), "--size", "64x64")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "flat_areas.py: error: not enough memory (ONNX Runtime could not allocate a 64x64 tile's memory); "
        "a smaller --size needs less"
    ]
