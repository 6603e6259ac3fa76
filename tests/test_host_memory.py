"""benchmarks/host_memory.py measures each case in its own process and reports it."""

import json
import subprocess
import sys
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
