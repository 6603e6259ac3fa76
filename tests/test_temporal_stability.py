"""benchmarks/temporal_stability.py: flicker of debanded clips, with the pan undone."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bdinn.runtime.imageio import write_image
from bdinn.train.evaluate import BASELINES

DATA = Path(__file__).parent / "data"
UNREADABLE = "not an image file OpenCV can read (use PNG, JPEG, WebP, TIFF or BMP)"


def test_a_steady_clip_scores_zero_and_a_blinking_one_its_amplitude(benchmark_script):
    script = benchmark_script("temporal_stability")
    picture = np.random.default_rng(0).integers(0, 256, (8, 40, 3), dtype=np.uint8)
    clip = script.clip_of(picture, 24, 5, 3)
    assert [f.shape for f in clip] == [(8, 24, 3)] * 5 and not np.array_equal(clip[0], clip[1])
    steady = script.aligned(clip, 3, first=12)
    assert steady.shape == (5, 8, 12, 3) and np.allclose(steady, steady[0], atol=1e-3)  # the pan undone
    smooth = np.ones((8, 12), bool)
    assert script.stability(steady, smooth) == pytest.approx({"flicker": 0, "step": 0}, abs=1e-4)
    blinking = np.stack([np.full((8, 12, 3), 100.0 + (-1) ** i) for i in range(6)])  # 101, 99, 101, ...
    assert script.stability(blinking, smooth) == pytest.approx({"flicker": 1.0, "step": 2.0})


def test_script_reports_every_method_and_motion(tmp_path, run_benchmark):
    pytest.importorskip("av", reason="needs the video extra (x264)")
    out, clean = tmp_path / "stability.json", tmp_path / "clean"
    clean.mkdir()
    shutil.copy(DATA / "soft-shapes.png", clean)  # smooth regions of 7,000 pixels at this size
    args = ["--clean", clean, "--size", "128x192", "--frames", 4, "--gop", 2, "--max-images", 1]
    done = run_benchmark("temporal_stability", *args, "--json", out)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert set(report) == {"still", "pan"}
    for rows in report.values():
        assert set(rows) == {"input (banded)", *BASELINES, "model", "clean (reference)"}
        assert rows["clean (reference)"]["flicker"] == pytest.approx(0, abs=1e-4)
        assert rows["input (banded)"]["flicker"] > 0  # x264 re-quantises each frame a little differently
        assert (
            rows["model"]["flicker"] < 0.9 * rows["input (banded)"]["flicker"]
        )  # README: steadier (0.71 vs 0.97)
        assert all(np.isfinite(list(row.values())).all() for row in rows.values())
    assert "| pan | model |" in done.stdout


def test_a_folder_without_pictures_is_one_line_and_exit_1(tmp_path, run_benchmark):
    done = run_benchmark("temporal_stability", "--clean", tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"temporal_stability.py: error: {tmp_path}: no images found (looked for .png .jpg .jpeg .webp .tif "
        ".tiff .bmp)"
    )


def test_a_pan_wider_than_the_clip_is_one_line_and_exit_1(run_benchmark):
    done = run_benchmark("temporal_stability", "--clean", DATA, "--size", "64x96", "--frames", 97)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "temporal_stability.py: error: 97 frames pan 96 px, more than the clips' width 96; use fewer frames"
    )


def test_a_folder_of_unreadable_pictures_says_so_in_one_line(tmp_path, run_benchmark):
    """It blamed the pictures' smooth regions; the warning is one line (it was Python's two)."""
    (tmp_path / "broken.png").write_text("not a picture")
    done = run_benchmark("temporal_stability", "--clean", tmp_path, "--size", "96x128", "--frames", 4)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"Warning: {tmp_path / 'broken.png'}: {UNREADABLE}; skipped",
        f"temporal_stability.py: error: {tmp_path}: none of its pictures could be read (see the warnings "
        "above)",
    ]


def test_pictures_without_a_smooth_region_are_named_at_the_size_as_given(tmp_path, run_benchmark):
    """--size is HEIGHTxWIDTH; the message said "at 128x96" for --size 96x128."""
    pytest.importorskip("av", reason="needs the video extra (x264)")
    noise = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    write_image(tmp_path / "noise.png", noise)
    done = run_benchmark("temporal_stability", "--clean", tmp_path, "--size", "96x128", "--frames", 4)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"temporal_stability.py: error: {tmp_path}: no picture has a smooth region at --size 96x128; give "
        "pictures with smooth areas or a larger --size"
    )
