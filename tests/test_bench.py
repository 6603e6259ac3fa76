"""`bdinn-bench` on the CPU: the numbers it reports are there, ordered and consistent."""

import functools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from common import perturbed_tiny, workers_left_running

from bdinn.runtime.bench import main, summarise
from bdinn.train.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    return save_checkpoint(folder / "tiny.safetensors", perturbed_tiny(), config_name=None, step=1)


def test_summary_statistics():
    stats = summarise([0.010, 0.020, 0.030, 0.040], batch=2)
    assert stats["min_ms"] == pytest.approx(10)
    assert stats["p50_ms"] == pytest.approx(25)
    assert stats["mean_ms"] == pytest.approx(25)
    assert stats["fps"] == pytest.approx(80)
    assert stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] < stats["max_ms"]
    assert stats["max_ms"] == pytest.approx(40)  # the slowest call: p99 of few interpolates below it
    assert stats["calls"] == 4  # what the percentiles come from


def test_json_result_on_the_cpu(model, tmp_path):
    out = tmp_path / "bench.json"
    args = [str(model), "--device", "cpu", "--size", "48x64", "--batch", "2", "-n", "4", "--warmup", "1"]
    args += ["--json", str(out)]  # on the CPU also where a GPU is: bench's default device
    before = set(threading.enumerate())
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert workers_left_running(before) == []  # the model is closed when it ends
    assert "end_to_end" in result.output and "fps" in result.output
    assert "banded_conv=gridsample" in result.output  # which formulation ran: the CPU has no kernels
    data = json.loads(out.read_text())
    assert data["shape"] == [2, 3, 48, 64]
    assert data["backend"] == "torch" and data["device"] == "cpu" and data["precision"] == "fp32"
    timing = data["end_to_end"]
    assert 0 < timing["min_ms"] <= timing["p50_ms"] <= timing["p99_ms"]
    assert timing["fps"] == pytest.approx(2000 / timing["mean_ms"])
    assert (timing["calls"], data["warmup_calls"]) == (4, 1) and "4 calls)" in result.output
    assert "on_device" not in data  # no GPU: no device-resident timing
    assert data["uint8_frames"]["p50_ms"] > 0 and "uint8_frames" in result.output  # as deband(frame) serves
    assert data["peak_host_memory_mib"] > 0
    assert data["host"]["cpu"] not in ("", "x86_64", "aarch64") and data["host"]["cores"] >= 1  # a model name


def test_stdout_json_and_errors(model, tmp_path):
    result = CliRunner().invoke(
        main, [str(model), "--size", "32x32", "-n", "1", "--warmup", "0", "--json", "-"]
    )
    assert result.exit_code == 0
    assert json.loads(result.output)["shape"] == [1, 3, 32, 32]
    bad = CliRunner().invoke(main, [str(tmp_path / "none.onnx")])
    assert bad.exit_code == 1 and "no such model file" in bad.output
    assert CliRunner().invoke(main, [str(model), "--size", "8x8"]).exit_code == 2
    huge = CliRunner().invoke(main, [str(model), "--size", "9999999999x16"])  # 1.75 TiB: a traceback
    assert huge.exit_code == 2 and "both sides must be from 16 to 16384, the graphs' bounds" in huge.output
    (tmp_path / "folder").mkdir()  # found after the whole benchmark, as a traceback
    folder = CliRunner().invoke(main, [str(model), "--size", "32x32", "--json", str(tmp_path / "folder")])
    assert folder.exit_code == 2 and "'--json': File '" in folder.output
    assert "folder' is a directory" in folder.output
    assert "Traceback" not in folder.output and "ms" not in folder.output
    meant = CliRunner().invoke(main, [str(model), "--size", "32x32", "--json", f"{tmp_path / 'new'}/"])
    assert meant.exit_code == 2 and "new/' names a folder; name a file to write" in meant.output
    assert not (tmp_path / "new").exists()  # a file of the folder's name was written
    earlier = tmp_path / "earlier.json"
    earlier.write_text("kept")
    quick = [str(model), "--size", "32x32", "-n", "1", "--json", str(earlier)]
    kept = CliRunner().invoke(main, quick)
    assert kept.exit_code == 1 and "earlier.json: already exists (pass --force to overwrite" in kept.output
    assert earlier.read_text() == "kept" and "ms" not in kept.output
    forced = CliRunner().invoke(main, [*quick, "-f"])
    assert forced.exit_code == 0 and json.loads(earlier.read_text())["shape"] == [1, 3, 32, 32]
    graph = CliRunner().invoke(main, [str(model), "--size", "32x32", "--cuda-graph"])
    assert graph.exit_code == 2 and "CUDA graphs are for TensorRT engines" in graph.output


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_standard_output_loses_only_the_echo(model, tmp_path):
    """The timings were printed before --json FILE was written: a full disk or a closed pipe on
    standard output was a traceback, and the file was never written."""
    report = tmp_path / "bench.json"
    for json_to in (report, "-"):
        command = [sys.executable, "-m", "bdinn.runtime.bench", str(model), "--size", "32x32", "-n", "1",
                   "--warmup", "0", "--json", str(json_to)]  # fmt: skip
        with open("/dev/full", "w") as full:
            done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
        what = "the timings" if json_to == report else "the JSON"
        assert done.returncode == 1
        assert done.stderr.splitlines() == [
            f"bdinn-bench: error: could not print {what} (No space left on device)"
        ]
    assert json.loads(report.read_text())["shape"] == [1, 3, 32, 32]


def test_a_closed_standard_output_is_no_traceback(model, tmp_path):
    """`bdinn-bench ... >&-`: AttributeError ('NoneType' object has no attribute 'flush') after the
    work, where bdinn-run with standard output closed ends cleanly; a --json file is still written."""
    report = tmp_path / "bench.json"
    command = [sys.executable, "-m", "bdinn.runtime.bench", str(model), "--size", "32x32", "-n", "1",
               "--warmup", "0", "--json", str(report)]  # fmt: skip
    closing_stdout = functools.partial(os.close, 1)  # in the child: as a shell's >&- leaves it
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=closing_stdout)
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(report.read_text())["shape"] == [1, 3, 32, 32]


def test_the_bundled_model_is_an_input_when_no_model_is_named(tmp_path, monkeypatch):
    """Without MODEL the bundled one runs, but only a named model was protected from --json: with
    --force it was replaced by the report, and the package's model was a 955-byte JSON file. The
    bundled folder here is a copy, so that a regression writes there and not into the package."""
    from bdinn.runtime import files

    bundled = tmp_path / "models"
    bundled.mkdir()
    for path in files.BUNDLED_MODELS.glob("default.*"):
        (bundled / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(files, "BUNDLED_MODELS", bundled)
    before = (bundled / "default.onnx").read_bytes()
    for name in ("default.onnx", "default.json", "default.safetensors"):
        result = CliRunner().invoke(main, ["--size", "32x32", "-n", "1", "--warmup", "0",
                                           "--json", str(bundled / name), "--force"])  # fmt: skip
        assert result.exit_code == 1
        assert result.output == f"bdinn-bench: error: {bundled / name}: is one of this command's inputs; " \
            "choose another output\n"  # fmt: skip
    assert (bundled / "default.onnx").read_bytes() == before


def test_small_tiles_take_a_fitting_overlap(model):
    """--tile 40 once failed: the default 64-px overlap did not fit, and bench has no --overlap."""
    result = CliRunner().invoke(
        main, [str(model), "--size", "64x96", "-n", "1", "--warmup", "0", "--tile", "40"]
    )
    assert result.exit_code == 0, result.output
    assert "shape 1x3x64x96 in 40x40 tiles" in result.output  # what ran, not only what was asked
    args = [str(model), "--size", "64x96", "-n", "1", "--warmup", "0", "--json", "-"]
    whole = CliRunner().invoke(main, args)
    assert json.loads(whole.output)["tile"] is None
    bad = CliRunner().invoke(main, [str(model), "--size", "64x64", "--tile", "100"])
    assert bad.exit_code == 2 and "100 is not a multiple of 8 of at least 32" in bad.output
