"""bdinn-eval: the report's numbers, its JSON and markdown, and the CLI's errors."""

import json
import math
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from bdinn.runtime.imageio import from_float, read_image, to_float
from bdinn.runtime.metrics import psnr
from bdinn.train.degrade import Degradation
from bdinn.train.evaluate import (
    EvalError,
    EvalPair,
    evaluate,
    fit_size,
    main,
    pairs_from_clean,
    pairs_from_folders,
    parse_degradations,
    smooth_mask,
    to_json,
    to_markdown,
)

DATA = Path(__file__).parent / "data"
ROWS = ["input", "deband", "deband-strong", "gradfun", "gradfun-strong", "model", "clean"]


def blur(image: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), 1.0)


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory) -> Path:
    """Two of the bundled pictures."""
    folder = tmp_path_factory.mktemp("clean")
    for name in ("sky-gradient.png", "soft-shapes.png"):
        shutil.copy(DATA / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def report(clean_dir) -> dict:
    pytest.importorskip("av", reason="codec banding and FFmpeg's filters need PyAV")
    total, pairs = pairs_from_clean(clean_dir, parse_degradations("q5,x264"))
    assert total == 4
    return evaluate(blur, pairs, total=total)


def test_numbers_are_finite(report):
    assert list(report["results"]) == ["q5", "x264"]
    for result in report["results"].values():
        assert result["images"] == 2
        assert list(result["rows"]) == ROWS
        for method, row in result["rows"].items():
            keys = ["cambi"] if method == "clean" else ["psnr", "ssim", "smooth_psnr", "cambi"]
            for key in keys:
                assert isinstance(row[key], float) and math.isfinite(row[key]), (method, key)
            assert row["cambi"] >= 0
        assert result["rows"]["clean"]["psnr"] is None
        assert 0 < result["smooth_fraction"] < 1


def test_input_row_is_the_banded_images_psnr(report):
    """Each score of the input row, recomputed by hand: whole-image and smooth-region PSNR, SSIM."""
    from bdinn.runtime.metrics import ssim

    for name, degradation in (("q5", "q5"), ("x264", "x264crf38")):
        expected: dict[str, list[float]] = {"psnr": [], "ssim": [], "smooth_psnr": []}
        for picture in ("sky-gradient", "soft-shapes"):
            clean = read_image(DATA / f"{picture}.png")
            banded, clean_f = to_float(Degradation.parse(degradation).apply(clean)), to_float(clean)
            smooth = smooth_mask(clean)
            expected["psnr"].append(psnr(banded, clean_f))
            expected["ssim"].append(ssim(banded, clean_f))
            expected["smooth_psnr"].append(psnr(banded[smooth], clean_f[smooth]))
        row = report["results"][name]["rows"]["input"]
        for key, values in expected.items():
            assert row[key] == pytest.approx(np.mean(values), abs=1e-9), key
        assert row["smooth_psnr"] != pytest.approx(row["psnr"], abs=0.05)  # not the whole picture again
        assert report["results"][name]["id"] == degradation


def test_debanders_lower_the_banding(report):
    rows = report["results"]["q5"]["rows"]
    assert rows["deband"]["cambi"] < rows["input"]["cambi"]
    assert rows["input"]["cambi"] > rows["clean"]["cambi"]


def test_json_and_markdown(report):
    data = json.loads(to_json(report))
    assert {"format", "settings", "images", "results"} <= data.keys()
    assert len(data["images"]["q5"]) == 2
    row = data["results"]["x264"]["rows"]["model"]
    assert set(row) == {"psnr", "ssim", "smooth_psnr", "cambi", "seconds"}
    table = to_markdown(report).splitlines()
    assert len([line for line in table if line.startswith("|")]) == 2 + 2 * len(ROWS)
    assert table[0].startswith("| degradation | method | PSNR")
    assert any(line.startswith("| x264 (x264crf38) | clean (reference) | - | - | - |") for line in table)


def test_pairs_without_baselines_and_16_bit_output(paired_dirs):
    total, pairs = pairs_from_folders(*paired_dirs, max_images=2, seed=1)
    assert total == 2

    def wide(image):
        return blur(image).astype(np.uint16) * np.uint16(257)

    result = evaluate(wide, pairs, baselines=False, bit_depth=16)["results"]["pairs"]
    assert result["id"] == "pairs" and result["images"] == 2
    assert list(result["rows"]) == ["input", "model", "clean"]
    # Scored as the 16-bit picture it is: the same PSNR as the blur's own 8-bit levels, and CAMBI
    # on the 16-bit scale, where the 8-bit input (scaled by 257) scores more than the clean.
    _, again = pairs_from_folders(*paired_dirs, max_images=2, seed=1)
    expected = np.mean([min(psnr(to_float(blur(p.banded)), to_float(p.clean)), 100) for p in again])
    assert result["rows"]["model"]["psnr"] == pytest.approx(expected, abs=1e-3)
    assert result["rows"]["input"]["cambi"] > result["rows"]["clean"]["cambi"]


def test_baselines_only_and_bad_models(clean_dir):
    pytest.importorskip("av", reason="FFmpeg's filters need PyAV")
    _, pairs = pairs_from_clean(clean_dir, parse_degradations("q6"), max_images=1)
    rows = evaluate(None, pairs)["results"]["q6"]["rows"]
    assert "model" not in rows and "gradfun" in rows
    _, pairs = pairs_from_clean(clean_dir, parse_degradations("q6"), max_images=1)
    with pytest.raises(EvalError, match="the model returned float32"):
        evaluate(lambda image: image.astype(np.float32), pairs, baselines=False)
    with pytest.raises(EvalError, match="no image pairs"):
        evaluate(blur, iter([]))
    bad = EvalPair("q5", "x", np.zeros((32, 32, 3), np.uint8), np.zeros((32, 48, 3), np.uint8))
    with pytest.raises(EvalError, match="differ"):
        evaluate(blur, [bad])


def test_degradation_names():
    named = dict(parse_degradations("q5, blur6,x264,x265,svtav1,q5,x264crf30"))
    assert {k: v.id for k, v in named.items()} == {
        "q5": "q5",
        "blur6": "b1.0q6",
        "x264": "x264crf38",
        "x265": "x265crf40",
        "svtav1": "svtav1crf57",
        "x264crf30": "x264crf30",
    }
    with pytest.raises(EvalError, match="unknown degradation 'jpeg'"):
        parse_degradations("q5,jpeg")


def test_a_degradation_id_out_of_range_says_its_range():
    with pytest.raises(EvalError, match=r"degradation 'x264crf99': crf 0-51 only"):
        parse_degradations("q5,x264crf99")
    with pytest.raises(EvalError, match=r"degradation 'q17': bits 1-16, blur 0-16, no crf"):
        parse_degradations("q17")
    # a sigma of 1e8 allocated gigabytes in OpenCV (a traceback), or ran for minutes
    with pytest.raises(EvalError, match=r"degradation 'b100000000.0q5': bits 1-16, blur 0-16, no crf"):
        parse_degradations("b100000000.0q5")


def test_two_names_of_one_degradation_are_scored_once():
    """blur6 and b1.0q6 (or q5 and q05) made two identical row sets, each scored in full."""
    assert [name for name, _ in parse_degradations("blur6,b1.0q6,q5,q05,b0q5")] == ["blur6", "q5"]


def test_max_images_is_a_seeded_subset_in_the_folders_order(paired_dirs):
    """--seed picks which pictures --max-images keeps, the same ones for the same seed."""
    everything = [pair.name for pair in pairs_from_folders(*paired_dirs)[1]]

    def kept(seed: int) -> list[str]:
        count, pairs = pairs_from_folders(*paired_dirs, max_images=2, seed=seed)
        names = [pair.name for pair in pairs]
        assert count == len(names) == 2
        return names

    subsets = [kept(seed) for seed in range(6)]
    assert kept(1) == subsets[1]
    assert len({tuple(names) for names in subsets}) >= 2
    for names in subsets:
        assert names == [name for name in everything if name in names]


def test_size_and_smooth_mask():
    img = read_image(DATA / "soft-shapes.png")
    assert fit_size(img, (64, 64)).shape == (64, 64, 3)
    assert fit_size(img, (200, 640)).shape == (200, 640, 3)
    flat = np.full((32, 32, 3), 90, np.uint8)
    assert smooth_mask(flat).all()
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert not smooth_mask(noise).any()
    # The crop is the centre: a picture whose left, middle and right thirds are 0, 128 and 255
    thirds = np.repeat(np.array([0, 128, 255], np.uint8), 100)[None, :, None].repeat(60, 0).repeat(3, 2)
    assert np.all(fit_size(thirds, (60, 100)) == 128)
    assert np.all(fit_size(np.ascontiguousarray(thirds.transpose(1, 0, 2)), (100, 60)) == 128)  # and rows
    # Smooth: a luma standard deviation under 1/255 over 9x9. A ramp of slope s has std s * 2.58;
    # one just under and one just over the threshold, and red and blue weighed as BT.709 says.
    columns = np.arange(64)[None, :, None].repeat(32, 0)
    for slope, smooth in ((0.33, True), (0.45, False)):
        ramp = np.rint(60 + columns * slope * 256).astype(np.uint16).repeat(3, 2)
        inner = smooth_mask(ramp)[:, 8:-8]
        assert inner.all() if smooth else not inner.any(), slope
    blue_only = np.zeros((32, 64, 3), np.uint16)
    blue_only[..., 2] = np.rint(60 + columns[..., 0] * 0.45 * 256 / 0.0722 * 0.6)  # 0.6 of the limit
    assert smooth_mask(blue_only)[:, 8:-8].all()  # blue counts 0.0722 of luma, not 0.2126


def test_smooth_psnr_says_how_many_pictures_it_averages():
    """A picture with under 64 smooth pixels is left out of the smooth-PSNR mean only, which then
    stood above the whole-picture PSNR of a different set of pictures without a word."""
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    flat = np.full((64, 64, 3), 100, np.uint8)
    pairs = [
        EvalPair("q5", name, (clean // 8) * 8, clean) for name, clean in (("noise", noise), ("flat", flat))
    ]
    report = evaluate(None, pairs, baselines=False)
    result = report["results"]["q5"]
    assert (result["images"], result["smooth_images"]) == (2, 1)
    assert "Smooth PSNR averages only the pictures with at least 64 smooth pixels (q5: 1 of 2)." in (
        to_markdown(report)
    )
    assert "averages only" not in to_markdown(evaluate(None, pairs[1:], baselines=False))


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_usage_errors(clean_dir, tmp_path):
    result = _invoke("--clean", str(clean_dir), "--degrade", "q5,jpeg")
    assert result.exit_code == 2
    assert "unknown degradation 'jpeg'" in result.output
    assert _invoke("--clean", str(tmp_path / "missing")).exit_code == 2
    assert _invoke().exit_code == 2  # neither --pairs nor --clean
    assert _invoke("--clean", str(clean_dir), "--pairs", str(clean_dir), str(clean_dir)).exit_code == 2
    assert _invoke("--clean", str(clean_dir), "--size", "big").exit_code == 2
    result = _invoke("--clean", str(clean_dir), "--size", "8x1920")
    assert result.exit_code == 2 and "both sides must be at least" in result.output
    result = _invoke("--clean", str(clean_dir), "--size", "100000x100000", "--no-baselines")
    assert result.exit_code == 2 and "over 179 megapixels" in result.output  # was out of memory, later
    result = _invoke("--clean", str(clean_dir), "--seed", "-1", "--max-images", "1")
    assert result.exit_code == 2 and "--seed" in result.output
    result = _invoke("--clean", str(clean_dir), "--degrade", "b1.04q6")  # was scored as b1.0q6
    assert result.exit_code == 2 and "blur is given to a tenth of a pixel" in result.output
    result = _invoke("--pairs", str(clean_dir), str(clean_dir / "." / ".." / clean_dir.name))  # input: 100 dB
    assert result.exit_code == 2
    assert f"--pairs names {clean_dir} twice; give the banded and the clean folder" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _invoke("--clean", str(empty))
    assert result.exit_code == 1
    assert "no images found" in result.output and "Traceback" not in result.output


def test_cli_end_to_end(clean_dir, tmp_path, monkeypatch):
    from common import TINY, workers_left_running

    from bdinn.train.checkpoint import save_checkpoint
    from bdinn.train.network import BDINN

    model = save_checkpoint(tmp_path / "tiny.safetensors", BDINN(TINY), config_name=None, step=1)
    out_json, out_md = tmp_path / "report.json", tmp_path / "report.md"
    (tmp_path / "work").mkdir()
    args = ["--clean", str(clean_dir), "--degrade", "q5", "--max-images", "1", "--size", "64x96"]
    before = set(threading.enumerate())
    result = _invoke(
        str(model), *args, "--no-baselines", "--device", "cpu", "--precision", "fp32",
        "--json", str(out_json), "--markdown", str(out_md),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert workers_left_running(before) == []  # the model is closed when it ends
    data = json.loads(out_json.read_text())
    runs_on = data["settings"]["runs_on"]
    assert (runs_on["backend"], runs_on["device"], runs_on["precision"]) == ("torch", "cpu", "fp32")
    rows = data["results"]["q5"]["rows"]
    # An untrained BDINN is the identity: the model row repeats the input row.
    assert rows["model"]["psnr"] == pytest.approx(rows["input"]["psnr"], abs=0.05)
    assert data["settings"]["size"] == "64x96" and data["settings"]["model"] == str(model)
    assert out_md.read_text() in result.output
    # '-' is standard output, as for bdinn-bench --json: it wrote a file named '-'
    monkeypatch.chdir(tmp_path / "work")
    result = _invoke(str(model), *args, "--no-baselines", "--device", "cpu", "--json", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"]["q5"]["rows"]["model"]["psnr"] == rows["model"]["psnr"]
    result = _invoke(str(model), *args, "--no-baselines", "--markdown", "-", "--json", "-")
    assert result.exit_code == 2 and "both name standard output" in result.output
    assert list(Path().iterdir()) == []


def test_cli_out_of_memory_is_one_line_with_advice(clean_dir, tmp_path, monkeypatch):
    """PyTorch's out of memory, now a MemoryError, escaped the RuntimeError caught here."""
    import torch
    from common import TINY

    from bdinn.train.checkpoint import save_checkpoint
    from bdinn.train.network import BDINN

    model = save_checkpoint(tmp_path / "tiny.safetensors", BDINN(TINY), config_name=None, step=1)
    monkeypatch.setattr(BDINN, "forward", lambda self, x: x + torch.empty(1 << 60, dtype=torch.uint8).sum())
    args = ["--clean", str(clean_dir), "--degrade", "q5", "--max-images", "1", "--size", "64x96"]
    result = _invoke(str(model), *args, "--no-baselines", "--device", "cpu")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    line = result.output.splitlines()[-1]
    assert line.startswith("bdinn-eval: error: not enough memory (") and "can't allocate memory" in line
    assert line.endswith("); a smaller --size needs less")


def test_cli_fp16_on_the_cpu_is_one_clear_error(clean_dir, tmp_path):
    from common import TINY

    from bdinn.train.checkpoint import save_checkpoint
    from bdinn.train.network import BDINN

    model = save_checkpoint(tmp_path / "tiny.safetensors", BDINN(TINY), config_name=None, step=1)
    args = ["--clean", str(clean_dir), "--degrade", "q5", "--max-images", "1", "--size", "64x96"]
    result = _invoke(str(model), *args, "--no-baselines", "--device", "cpu", "--precision", "fp16")
    assert result.exit_code == 1
    assert "fp16 runs on CUDA only" in result.output and "Traceback" not in result.output


def test_cli_max_change_reaches_the_model_and_the_report(clean_dir, tmp_path):
    from common import perturbed_tiny

    from bdinn.train.checkpoint import save_checkpoint

    model = save_checkpoint(tmp_path / "tiny.safetensors", perturbed_tiny(), config_name=None, step=1)
    args = ["--clean", str(clean_dir), "--degrade", "q5", "--max-images", "1", "--size", "64x96",
            "--no-baselines"]  # fmt: skip
    reports = {}
    for value in ("off", "1"):
        out = tmp_path / f"{value}.json"
        result = _invoke(str(model), *args, "--max-change", value, "--json", str(out))
        assert result.exit_code == 0, result.output
        reports[value] = json.loads(out.read_text())
    assert reports["off"]["settings"]["runs_on"]["max_change"] is None
    assert reports["1"]["settings"]["runs_on"]["max_change"] == 1.0
    raw, limited = (reports[v]["results"]["q5"]["rows"]["model"]["psnr"] for v in ("off", "1"))
    banded = reports["1"]["results"]["q5"]["rows"]["input"]["psnr"]
    # The perturbed network wrecks the picture; held within one level of its input it cannot.
    assert raw < banded - 5 and limited > raw + 5
    result = _invoke(str(model), *args, "--max-change", "none")
    assert result.exit_code == 2 and "neither a positive number of 8-bit levels nor 'off'" in result.output


def test_cli_skips_an_unreadable_picture_with_one_warning_line(paired_dirs, tmp_path):
    """As bdinn-train does: one bad file costs its own row, not the evaluation so far."""
    banded, clean = (tmp_path / side.name for side in paired_dirs)
    for side, copy in zip(paired_dirs, (banded, clean), strict=True):
        shutil.copytree(side, copy)
    (banded / "broken.png").write_bytes(b"not a picture")
    shutil.copy(next(clean.glob("*.png")), clean / "broken.png")
    out = tmp_path / "report.json"
    result = _invoke("--pairs", str(banded), str(clean), "--no-baselines", "--json", str(out))
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if "broken.png" in line]
    assert (
        len(warning) == 1
        and warning[0].startswith("Warning: ")
        and warning[0].endswith("pair broken skipped")
    )
    pictures = len(list(paired_dirs[0].glob("*.png")))
    assert json.loads(out.read_text())["results"]["pairs"]["images"] == pictures


def test_an_existing_report_file_is_kept_unless_forced(paired_dirs, tmp_path):
    """--json and --markdown replaced any file, a checkpoint's sidecar given by mistake included,
    where every other bdinn command keeps an existing output without --force."""
    sidecar = tmp_path / "best.json"
    sidecar.write_text('{"config": {}}')
    arguments = ["--pairs", *map(str, paired_dirs), "--no-baselines"]
    kept = _invoke(*arguments, "--markdown", str(sidecar))
    assert kept.exit_code == 1 and "best.json: already exists (pass --force to overwrite it)" in kept.output
    assert sidecar.read_text() == '{"config": {}}' and "PSNR" not in kept.output  # refused before the work
    forced = _invoke(*arguments, "--json", str(sidecar), "--force")
    assert forced.exit_code == 0, forced.output
    assert "results" in json.loads(sidecar.read_text())


def test_the_report_goes_to_a_console_that_is_not_utf8(paired_dirs, tmp_path):
    """An en dash in the table's empty cells ended the run, after all the scoring, where the
    console's encoding is Latin-1 (an ISO-8859 locale)."""
    import os
    import subprocess
    import sys

    code = "import sys; sys.argv[0] = 'bdinn-eval'; from bdinn.train.evaluate import main; main()"
    arguments = ["--pairs", *map(str, paired_dirs), "--no-baselines", "--markdown", str(tmp_path / "r.md")]
    done = subprocess.run(
        [sys.executable, "-c", code, *arguments],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "latin-1", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    table = done.stdout.decode("latin-1")
    assert "| pairs | clean (reference) | - | - | - |" in table
    assert (tmp_path / "r.md").read_text(encoding="utf-8") == table


def test_a_report_never_replaces_a_clean_picture_in_a_subfolder(tmp_path):
    """--clean searches subfolders, but only the folder's own files were protected as inputs:
    --markdown naming a picture one level down replaced it with the table."""
    picture = tmp_path / "clean" / "sub" / "sky.png"
    picture.parent.mkdir(parents=True)
    shutil.copy(DATA / "sky-gradient.png", picture)
    before = picture.read_bytes()
    arguments = ["--clean", str(tmp_path / "clean"), "--size", "32x32", "--degrade", "q5", "--no-baselines"]
    result = _invoke(*arguments, "--markdown", str(picture), "--force")
    assert result.exit_code == 1 and "sky.png: is one of this command's inputs" in result.output
    assert picture.read_bytes() == before


def test_reports_are_written_when_standard_output_fails(paired_dirs, tmp_path):
    """The table was printed first: a full disk or a closed pipe on standard output ended the run
    with a traceback and lost the --json and --markdown files asked for."""
    import os
    import subprocess
    import sys

    code = "import sys; sys.argv[0] = 'bdinn-eval'; from bdinn.train.evaluate import main; main()"
    report, table = tmp_path / "r.json", tmp_path / "r.md"
    arguments = [
        "--pairs",
        *map(str, paired_dirs),
        "--no-baselines",
        "--json",
        str(report),
        "--markdown",
        str(table),
    ]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-c", code, *arguments],
            stdout=full,
            stderr=subprocess.PIPE,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    message = done.stderr.decode(errors="replace")
    assert done.returncode == 1 and "Traceback" not in message, message[-2000:]
    assert "could not print the table (No space left on device)" in message
    assert "results" in json.loads(report.read_text()) and table.read_text().startswith("| degradation")
    report.unlink()  # started with standard output closed (>&-): no traceback after the work either
    done = subprocess.run(
        [sys.executable, "-c", code, *arguments, "--force"],
        capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=lambda: os.close(1),
    )
    assert (done.returncode, done.stderr) == (0, b"") and "results" in json.loads(report.read_text())


def test_reports_of_one_run_are_written_both_or_neither_and_the_table_is_printed(
    paired_dirs, tmp_path, monkeypatch
):
    """A disk full by the time the JSON was written: the old table had been replaced already, and
    the run's results were lost (no table printed)."""
    import bdinn.train.evaluate as evaluate

    table, report = tmp_path / "r.md", tmp_path / "r.json"
    table.write_text("old table")
    write = evaluate.atomic_write_text

    def full_for_json(path, text, replace=True):
        if Path(path).suffix == ".json":
            raise evaluate.OutputError(f"{path}: cannot be written (No space left on device)")
        return write(path, text, replace=replace)

    monkeypatch.setattr(evaluate, "atomic_write_text", full_for_json)
    arguments = ["--pairs", *map(str, paired_dirs), "--no-baselines", "--markdown", str(table)]
    result = _invoke(*arguments, "--json", str(report), "--force")
    assert result.exit_code == 1 and "r.json: cannot be written (No space left on device)" in result.output
    assert "| degradation" in result.output  # the results, printed
    assert table.read_text() == "old table" and not report.exists()


def test_cli_refuses_a_mismatched_or_tiny_picture_before_scoring(paired_dirs, tmp_path):
    """A pair of two sizes, or a picture too small, sorted last ended the run after every other
    pair had been scored, with no table; the headers are now checked first."""
    banded, clean = (tmp_path / side.name for side in paired_dirs)
    for side, copy in zip(paired_dirs, (banded, clean), strict=True):
        shutil.copytree(side, copy)
    picture = read_image(next(clean.glob("*.png")))
    cv2.imwrite(str(banded / "zz.png"), picture[:40, :, ::-1])
    cv2.imwrite(str(clean / "zz.png"), picture[:, :, ::-1])
    with pytest.raises(EvalError, match=rf"zz\.png is {picture.shape[1]}x40 but .*: a pair must have one"):
        pairs_from_folders(banded, clean)
    cv2.imwrite(str(banded / "zz.png"), picture[:12, :12, ::-1])
    cv2.imwrite(str(clean / "zz.png"), picture[:12, :12, ::-1])
    result = _invoke("--pairs", str(banded), str(clean), "--no-baselines")
    assert (
        result.exit_code == 1
        and "zz.png: 12x12 is too small (at least 16x16); move it out of the folder" in result.output
    )
    assert "evaluating" not in result.output  # refused before the first pair was scored


@pytest.mark.parametrize("size", [None, "64x64"])
def test_cli_refuses_a_tiny_clean_picture_with_or_without_size(clean_dir, tmp_path, size):
    """With --size a 12x12 picture was scaled up into blobs and scored without a word."""
    folder = tmp_path / "clean"
    shutil.copytree(clean_dir, folder)
    cv2.imwrite(str(folder / "zz.png"), read_image(DATA / "sky-gradient.png")[:12, :12, ::-1])
    args = ("--clean", str(folder), "--degrade", "q5", "--no-baselines", *(("--size", size) if size else ()))
    result = _invoke(*args)
    assert (
        result.exit_code == 1
        and "zz.png: 12x12 is too small (at least 16x16); move it out of the folder" in result.output
    )
    assert "evaluating" not in result.output


def test_clean_cambi_is_scored_at_the_outputs_depth():
    """A 16-bit clean picture scored 16-bit made the clean row's CAMBI a bar no 8-bit output could
    be held to; it is scored as the outputs are: 8-bit, or 16-bit with --bit-depth 16."""
    ramp = np.linspace(0, 1, 512, dtype=np.float32)[None, :, None].repeat(64, 0).repeat(3, 2) * 0.2 + 0.4
    deep = np.round(ramp * 65535).astype(np.uint16)
    pair = EvalPair("pairs", "ramp", from_float(ramp, 8), deep)
    rows = {depth: evaluate(None, [pair], baselines=False, bit_depth=depth)["results"]["pairs"]["rows"]
            for depth in (8, 16)}  # fmt: skip
    assert rows[8]["clean"]["cambi"] == pytest.approx(rows[8]["input"]["cambi"])  # the same 8-bit picture
    assert rows[16]["clean"]["cambi"] < rows[8]["clean"]["cambi"] - 1


def test_every_row_is_scored_on_one_cambi_scale():
    """CAMBI scores 8- and 16-bit pictures on different scales; at --bit-depth 16 an 8-bit row
    (the input, an 8-bit clean picture) used to be scored as 8-bit beside 16-bit outputs, so the
    same pixels scored 35 as the input and 49 as the model's output."""
    ramp = np.linspace(0, 1, 512, dtype=np.float32)[None, :, None].repeat(64, 0).repeat(3, 2) * 0.5 + 0.2
    banded = Degradation.parse("q5").apply(from_float(ramp, 8))
    clean = from_float(ramp, 8)

    def widen(image: np.ndarray) -> np.ndarray:
        return image.astype(np.uint16) * np.uint16(257)

    rows = [
        evaluate(widen, [EvalPair("pairs", "ramp", banded, picture)], baselines=False, bit_depth=16)[
            "results"
        ]["pairs"]["rows"]
        for picture in (clean, widen(clean))
    ]
    assert rows[0]["input"]["cambi"] > 10
    assert rows[0]["model"]["cambi"] == pytest.approx(rows[0]["input"]["cambi"])  # the same pixels
    assert rows[0]["clean"]["cambi"] == pytest.approx(rows[1]["clean"]["cambi"])  # the same picture


def test_header_sizes_agree_with_the_pictures_read(tmp_path):
    """The up-front size check turned a rotated TIFF twice (OpenCV turns TIFFs itself) and
    refused a good pair; it now judges from headers only what it can tell, as read_image reads."""
    from PIL import Image

    from bdinn.runtime.imageio import stored_size

    picture = np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8)
    for side in ("b", "c"):
        (tmp_path / side).mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter
    Image.fromarray(picture).save(tmp_path / "b" / "x.tif", exif=exif)
    Image.fromarray(picture).save(tmp_path / "b" / "y.jpg", exif=exif, quality=95)
    for name in ("x", "y"):
        shape = read_image(next((tmp_path / "b").glob(f"{name}.*"))).shape
        Image.fromarray(np.zeros(shape, np.uint8)).save(tmp_path / "c" / f"{name}.png")
    assert stored_size(tmp_path / "b" / "y.jpg") == read_image(tmp_path / "b" / "y.jpg").shape[:2] == (32, 64)
    count, pairs = pairs_from_folders(tmp_path / "b", tmp_path / "c")
    assert count == 2 and [pair.banded.shape for pair in pairs] == [
        read_image(tmp_path / "b" / "x.tif").shape,
        (32, 64, 3),
    ]


def test_cli_runs_without_torch(clean_dir, tmp_path):
    """bdinn-eval scores ONNX models and the bundled one on the torch-free install (it needed torch
    only to find pairs); a checkpoint there is one line that says what to install."""
    pytest.importorskip("av", reason="codec banding and FFmpeg's filters need PyAV")
    pytest.importorskip("onnxruntime", reason="the bundled model runs in ONNX Runtime without torch")
    import os
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None; sys.argv[0] = 'bdinn-eval'; "
        "from bdinn.train.evaluate import main; main()"
    )
    args = ["--clean", str(clean_dir), "--degrade", "q5", "--max-images", "1", "--size", "64x96"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-c", code, *args, "--json", report], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["settings"]["runs_on"]["backend"] == "onnxruntime"
    rows = data["results"]["q5"]["rows"]
    assert set(rows) == set(ROWS) and all(
        math.isfinite(rows[name]["psnr"]) for name in ROWS if name != "clean"
    )
    checkpoint = DATA.parent.parent / "runtime" / "models" / "default.safetensors"
    done = subprocess.run(
        [sys.executable, "-c", code, str(checkpoint), *args], capture_output=True, text=True, env=env
    )
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert (
        line.startswith("bdinn-eval: error: ")
        and "checkpoints need PyTorch: pip install '.[train]' in bdinn's folder" in line
    )


def test_baselines_at_16_bits_get_the_banded_picture_on_the_full_scale(paired_dirs):
    """At --bit-depth 16 the FFmpeg filters take the 8-bit banded picture times 257 (0..65535);
    times 256 would hand them a picture 0.4 % darker than the input and score them unfairly."""
    pytest.importorskip("av", reason="FFmpeg's filters need PyAV")
    from bdinn.runtime.ffmpeg_filters import apply_preset

    pairs = list(pairs_from_folders(*paired_dirs, max_images=2, seed=1)[1])
    report = evaluate(None, pairs, baselines=True, bit_depth=16)
    assert len(pairs) == 2
    expected = [
        psnr(to_float(apply_preset(p.banded.astype(np.uint16) * np.uint16(257), "deband")), to_float(p.clean))
        for p in pairs
    ]
    [result] = report["results"].values()
    assert result["rows"]["deband"]["psnr"] == pytest.approx(np.mean(expected), abs=1e-9)


def test_a_16_bit_banded_picture_is_scored_as_it_is_at_16_bits_and_refused_at_8(tmp_path):
    """16-bit banded files were rounded to 8 bits for every row: the input row scored 58.7 dB
    where the file itself scores 71.0, and the model was given another picture than bdinn-run
    gives it."""
    ramp = np.linspace(3000, 60000, 96)
    clean = np.stack([np.tile(ramp, (64, 1))] * 3, axis=-1).round().astype(np.uint16)
    banded = (np.round(clean / 64.0) * 64).clip(0, 65535).astype(np.uint16)  # 10-bit steps
    for folder, picture in (("banded", banded), ("clean", clean)):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "ramp.png"), picture[:, :, ::-1])
    seen = []
    _, pairs = pairs_from_folders(tmp_path / "banded", tmp_path / "clean", bit_depth=16)
    report = evaluate(lambda image: seen.append(image) or image, pairs, baselines=False, bit_depth=16)
    rows = report["results"]["pairs"]["rows"]
    assert rows["input"]["psnr"] == pytest.approx(psnr(to_float(banded), to_float(clean)), abs=1e-6)
    assert rows["input"]["psnr"] > 70 and np.array_equal(seen[0], banded)
    with pytest.raises(EvalError, match=r"ramp\.png: a 16-bit banded picture; score it with --bit-depth 16"):
        pairs_from_folders(tmp_path / "banded", tmp_path / "clean")
    result = _invoke("--pairs", str(tmp_path / "banded"), str(tmp_path / "clean"), "--no-baselines")
    assert result.exit_code == 1 and "score it with --bit-depth 16" in result.output
