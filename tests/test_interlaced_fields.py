"""benchmarks/interlaced_fields.py: interlaced frames debanded whole and field by field."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="needs the video extra")

from bdinn.runtime.video_colour import decode_rgb, encode_frame

DATA = Path(__file__).parent / "data"
UNREADABLE = "not an image file OpenCV can read (use PNG, JPEG, WebP, TIFF or BMP)"


def test_a_correct_field_round_trip_is_exact_and_a_whole_frame_one_bleeds(benchmark_script):
    """Fields converted on their own come back as they went in; converted as one picture, a red
    top field and a blue bottom one come back mixed."""
    script = benchmark_script("interlaced_fields")
    rgb = np.empty((32, 48, 3), np.uint8)
    rgb[0::2], rgb[1::2] = (255, 0, 0), (0, 0, 255)
    frame = script.interlaced_frame(rgb)
    assert np.abs(script.as_shown(frame).astype(int) - rgb).max() <= 2
    whole = encode_frame(decode_rgb(frame, False), "yuv420p", script.BT709)
    assert np.abs(script.as_shown(whole).astype(int) - rgb).max() > 60


def test_script_scores_every_method_for_each_pan(tmp_path, run_benchmark):
    out = tmp_path / "fields.json"
    done = run_benchmark(
        "interlaced_fields", "--clean", DATA, "--size", "96x128", "--pan", 0, "--pan", 8, "--max-images", 1,
        "--json", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert set(report) == {"pan 0 px", "pan 8 px"}
    for rows in report.values():
        assert len(rows) == 2 and set(rows["mean"]) == {"input", "whole, no model", "whole", "fields"}
    still, moving = report["pan 0 px"]["mean"], report["pan 8 px"]["mean"]
    assert still["input"] - still["whole, no model"] < moving["input"] - moving["whole, no model"]  # bleed
    assert "| pan 8 px | mean |" in done.stdout


def test_a_folder_of_unreadable_pictures_is_one_line_and_exit_1(tmp_path, run_benchmark):
    """Every picture skipped gave an empty table, an empty --json report and exit 0; the warning
    is one line (it was Python's two, file:line and source)."""
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "broken.png").write_text("not a picture")
    out = tmp_path / "fields.json"
    args = ["--clean", tmp_path / "clean", "--size", "96x128", "--json", out]
    done = run_benchmark("interlaced_fields", *args)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"Warning: {tmp_path / 'clean' / 'broken.png'}: {UNREADABLE}; skipped",
        f"interlaced_fields.py: error: {tmp_path / 'clean'}: none of its pictures could be read (see the "
        "warnings above)",
    ]
    assert done.stdout == "" and not out.exists()


def test_a_bad_size_is_one_line_and_exit_2(run_benchmark):
    """A usage mistake took click's four lines (usage, help hint, blank, error)."""
    done = run_benchmark("interlaced_fields", "--clean", DATA, "--size", "98x128")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "interlaced_fields.py: error: Invalid value for '--size': 98x128: each field is half the height, "
        "so the height must be a multiple of 4 from 32, and the width even (4:2:0) "
        "(see interlaced_fields.py --help)"
    ]
