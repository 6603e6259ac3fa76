"""benchmarks/video_throughput.py runs every setting through the real pipeline and reports it."""

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("av", reason="needs the video extra")


def test_every_setting_is_timed_on_the_whole_clip_with_and_without_the_model(tmp_path, benchmark_script):
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    from bdinn.runtime import default_model_path

    script = benchmark_script("video_throughput")
    report = tmp_path / "throughput.json"
    model = default_model_path("onnxruntime")
    args = ["--frames", "3", "--size", "64x96", "--model", str(model), "--json", str(report)]
    result = CliRunner().invoke(script.main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    labels = [label for label, _, _ in script.SETTINGS]
    for rows in (data["without_model"], data["with_model"]):
        assert [row["setting"] for row in rows] == labels
        assert all(row["frames"] == 3 and row["seconds"] > 0 and row["fps"] > 0 for row in rows)
    assert data["frame"] == "64x96, 10-bit 4:2:0 in and out"
    assert data["model"]["file"] == str(model) and data["model"]["backend"] == "onnxruntime"
    assert result.output.count("\n| ") == len(labels) + 2  # header, rule, one line per setting


def test_a_precision_without_a_model_is_a_usage_error(benchmark_script):
    """--precision fp16 without --model was accepted and did nothing: no model runs."""
    from click.testing import CliRunner

    done = CliRunner().invoke(benchmark_script("video_throughput").main, ["--precision", "fp16"])
    assert done.exit_code == 2
    assert done.stderr.splitlines() == [
        "video_throughput.py: error: Invalid value for --precision: is for the model's runs; give --model "
        "too (see video_throughput.py --help)"
    ]
