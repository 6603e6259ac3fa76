"""benchmarks/headroom.py: each picture's error split into its smooth region and the rest."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bdinn.runtime import Debander
from bdinn.train.evaluate import BASELINES, evaluate, pairs_from_clean, parse_degradations

DATA = Path(__file__).parent / "data"
UNREADABLE = "not an image file OpenCV can read (use PNG, JPEG, WebP, TIFF or BMP)"


def test_split_error_puts_each_pixels_error_on_its_side_of_the_mask(benchmark_script):
    clean = np.full((8, 16, 3), 100, np.uint8)
    out = clean.copy()
    out[:, :8] += 10  # the smooth half is off by 10 levels, the rest by 20
    out[:, 8:] += 20
    smooth = np.zeros((8, 16), bool)
    smooth[:, :8] = True
    scores = benchmark_script("headroom").split_error(out, clean, smooth)
    smooth_mse, rest_mse = 0.5 * (10 / 255) ** 2, 0.5 * (20 / 255) ** 2
    # abs 1e-5 dB: the pixels are float32.
    assert scores["psnr"] == pytest.approx(-10 * math.log10(smooth_mse + rest_mse), abs=1e-5)
    assert scores["smooth_share"] == pytest.approx(0.2, abs=1e-6)  # 100 / (100 + 400)
    assert scores["smooth_restored"] == pytest.approx(-10 * math.log10(rest_mse), abs=1e-5)
    assert scores["rest_restored"] == pytest.approx(-10 * math.log10(smooth_mse), abs=1e-5)
    exact = benchmark_script("headroom").split_error(clean, clean, smooth)
    assert exact["psnr"] == exact["smooth_restored"] == 100.0  # capped, as bdinn-eval caps


def test_script_agrees_with_bdinn_eval_and_its_parts_add_up(tmp_path, run_benchmark):
    out = tmp_path / "headroom.json"
    done = run_benchmark("headroom", "--clean", DATA, "--degrade", "q5", "--max-images", 2, "--json", out)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())["q5"]
    assert len(report["images"]) == 2
    assert set(report["methods"]) == {"input", *BASELINES, "model"}
    for row in report["methods"].values():
        for image in row["per_image"]:
            # The two restored PSNRs leave complementary parts of one error: their MSEs add up to the whole.
            parts = 10 ** (-image["smooth_restored"] / 10) + 10 ** (-image["rest_restored"] / 10)
            assert parts == pytest.approx(10 ** (-image["psnr"] / 10), rel=1e-9)
            share = 10 ** ((image["psnr"] - image["rest_restored"]) / 10)
            assert image["smooth_share"] == pytest.approx(share)
            assert image["smooth_restored"] >= image["psnr"] and image["rest_restored"] >= image["psnr"]
    assert 0 < report["methods"]["input"]["mean"]["smooth_share"] < 1
    assert "| q5 | model |" in done.stdout

    _, pairs = pairs_from_clean(DATA, parse_degradations("q5"), max_images=2)
    debander = Debander.open()
    eval_rows = evaluate(lambda image: debander(image, bit_depth=8), pairs)["results"]["q5"]["rows"]
    for method in ("input", "gradfun", "model"):
        assert report["methods"][method]["mean"]["psnr"] == pytest.approx(eval_rows[method]["psnr"], abs=1e-6)


def test_a_folder_without_pictures_is_one_line_and_exit_1(tmp_path, run_benchmark):
    done = run_benchmark("headroom", "--clean", tmp_path)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == f"headroom.py: error: {tmp_path}: no images found (looked for .png .jpg .jpeg .webp .tif .tiff "
        ".bmp)"
    )


@pytest.mark.parametrize("script", ["headroom", "temporal_stability", "interlaced_fields"])
def test_a_report_never_replaces_a_clean_picture(tmp_path, script, benchmark_script):
    """--json clean/a.png -f replaced the picture the script read with its JSON report."""
    from click.testing import CliRunner

    clean = tmp_path / "clean"
    clean.mkdir()
    picture = clean / "sky.png"
    picture.write_bytes((DATA / "sky-gradient.png").read_bytes())
    done = CliRunner().invoke(
        benchmark_script(script).main, ["--clean", str(clean), "--json", str(picture), "-f"]
    )
    assert done.exit_code == 1
    assert (
        done.stderr
        == f"{script}.py: error: {picture}: is one of this command's inputs; choose another output\n"
    )
    assert picture.read_bytes() == (DATA / "sky-gradient.png").read_bytes()


@pytest.mark.parametrize("size", ["0x0", "-32x32", "15x64"])
def test_a_size_bdinn_eval_refuses_is_one_line_and_exit_1(size, run_benchmark):
    """--size went unchecked: 0x0 ended in an OpenCV traceback, -32x32 blamed the first picture."""
    done = run_benchmark("headroom", "--clean", DATA, "--size", size)
    assert done.returncode == 1
    assert done.stderr.strip() == f"headroom.py: error: size {size}: both sides must be at least 16"
    assert done.stdout == ""


def test_a_folder_of_unreadable_pictures_is_one_line_and_exit_1(tmp_path, run_benchmark):
    """Every picture skipped gave an empty table, an empty --json report and exit 0; the warning
    is one line (it was Python's two, file:line and source)."""
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "broken.png").write_text("not a picture")
    out = tmp_path / "headroom.json"
    done = run_benchmark("headroom", "--clean", tmp_path / "clean", "--json", out)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"Warning: {tmp_path / 'clean' / 'broken.png'}: {UNREADABLE}; skipped",
        f"headroom.py: error: {tmp_path / 'clean'}: none of its pictures could be read (see the warnings "
        "above)",
    ]
    assert done.stdout == "" and not out.exists()
