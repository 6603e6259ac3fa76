"""benchmarks/band_width_sweep.py: the ramps it makes, and that it scores a model served or raw."""

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def sweep_script(benchmark_script):
    return benchmark_script("band_width_sweep")


@pytest.mark.parametrize("angle", [0.0, 30.0])
def test_ramps_step_one_level_every_band_width(sweep_script, angle):
    clean, banded = sweep_script.ramp_pair(16, 5, angle)
    assert clean.shape == banded.shape and clean.shape[2] == 3 and clean.dtype == np.uint8
    row = banded[banded.shape[0] // 2, sweep_script.MARGIN : -sweep_script.MARGIN, 0].astype(int)
    steps = np.flatnonzero(np.diff(row))
    assert set(np.unique(np.abs(np.diff(row)))) <= {0, 8, 9}  # one 5-bit level (255 / 31) a step
    if angle == 0.0:
        spacing = np.diff(steps)  # a step every 16 px along the ramp (the 8-bit ramp's rounding: +-1)
        assert spacing.min() >= 15 and spacing.max() <= 17 and abs(spacing.mean() - 16) < 0.2
    assert np.abs(clean.astype(int) - banded).max() <= 5  # half a 5-bit level, rounded twice


def test_every_bits_allowed_keeps_the_scored_ramps_unclipped_and_no_other(sweep_script):
    """--bits 2..4 was taken, but the ramps (from 0.25 over 16 levels) ran into white and were scored
    clipped: --bits starts at the coarsest depth whose ramps reach neither black nor white where scored."""
    inner = (slice(sweep_script.MARGIN, -sweep_script.MARGIN),) * 2

    def unclipped(bits: int) -> bool:
        ramps = [
            sweep_script.ramp_pair(band, bits, angle)[0][inner]
            for band in sweep_script.BAND_WIDTHS
            for angle in sweep_script.ANGLES_DEG
        ]
        return all(ramp.min() > 0 and ramp.max() < 255 for ramp in ramps)

    [bits] = [param.type for param in sweep_script.main.params if param.name == "bits"]
    assert [depth for depth in range(2, 8) if unclipped(depth)] == list(range(bits.min, bits.max + 1))
    assert bits.min == 5  # the README's numbers are for 5 bits, the default


def test_bits_too_few_for_the_ramps_is_one_line_and_exit_2(run_benchmark):
    done = run_benchmark("band_width_sweep", "--bits", 4)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "band_width_sweep.py: error: Invalid value for '--bits': 4 is not in the range 5<=x<=7 "
        "(see band_width_sweep.py --help)"
    ]


def test_the_bundled_model_gains_on_narrow_bands_served_and_raw(sweep_script, monkeypatch):
    monkeypatch.setattr(sweep_script, "BAND_WIDTHS", (8,))
    gains = {}
    for max_change in (2.0, None):
        with sweep_script.Debander.open(max_change=max_change) as debander:
            [row] = sweep_script.sweep(debander, 5)
        gains[max_change] = np.mean(
            [row[f"model_{a:g}"] - row[f"input_{a:g}"] for a in sweep_script.ANGLES_DEG]
        )
    assert gains[2.0] > 2 and gains[None] > 2 and gains[2.0] != gains[None]


def test_a_usage_mistake_is_one_line_and_exit_2(run_benchmark):
    """click's four lines (usage, help hint, blank, error) named no program of a pipeline."""
    done = run_benchmark("band_width_sweep", "--max-change", "0")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "band_width_sweep.py: error: Invalid value for '--max-change': '0' is neither a positive number of "
        "8-bit levels nor 'off' (see band_width_sweep.py --help)"
    ]


def test_a_model_that_does_not_open_is_said_before_any_sweep(run_benchmark, tmp_path):
    """The models opened one at a time: a bad second one failed after the first one's sweep
    (45 s here), and its table was printed for nothing."""
    from bdinn.runtime import default_model_path

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    done = run_benchmark("band_width_sweep", default_model_path("onnxruntime"), bad)
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr.count("\n") == 1 and str(bad) in done.stderr


def test_running_out_of_memory_is_one_line_with_advice(tmp_path):
    """ONNX Runtime's out of memory, a MemoryError as PyTorch's is, was a traceback here."""
    import subprocess

    from stand_ins import greedy_onnx, memory_limited_script

    script = Path(__file__).parents[1] / "benchmarks" / "band_width_sweep.py"
    done = subprocess.run(
        memory_limited_script(script, str(greedy_onnx(tmp_path / "greedy.onnx"))),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "band_width_sweep.py: error: not enough memory (ONNX Runtime could not allocate a 192x256 tile's "
        "memory); the widest ramp is 1056x4224: free memory or use a larger machine"
    ]
