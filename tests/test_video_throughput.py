"""benchmarks/video_throughput.py runs every setting through the real pipeline and reports it."""

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("av", reason="needs the video extra")

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "video_throughput.py"


def load_script():
    spec = importlib.util.spec_from_file_location("video_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_is_timed_on_the_whole_clip(tmp_path):
    script = load_script()
    report = tmp_path / "throughput.json"
    result = CliRunner().invoke(script.main, ["--frames", "3", "--size", "64x96", "--json", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    rows = data["without_model"]
    assert [row["setting"] for row in rows] == [label for label, _, _ in script.SETTINGS]
    assert all(row["frames"] == 3 and row["seconds"] > 0 and row["fps"] > 0 for row in rows)
    assert data["frame"] == "64x96, 10-bit 4:2:0 in and out"
    assert result.output.count("\n| ") == len(rows) + 2  # header, rule, one line per setting
