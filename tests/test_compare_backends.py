"""benchmarks/compare_backends.py on the CPU: every backend row this machine has, one process.

The rows are what is tested, not the network: MICRO exports in seconds, TINY in tens of seconds."""

import json

import pytest
import torch
from common import MICRO, perturbed_tiny

from bdinn.train.checkpoint import save_checkpoint


@pytest.mark.skipif(torch.cuda.is_available(), reason="counts the rows a machine without CUDA has")
def test_times_every_cpu_backend_and_says_why_the_others_cannot_run(run_benchmark, tmp_path):
    micro = perturbed_tiny(config=MICRO)
    checkpoint = save_checkpoint(tmp_path / "micro.safetensors", micro, config_name=None, step=1)
    out, table = tmp_path / "rows.json", tmp_path / "rows.md"
    done = run_benchmark("compare_backends", checkpoint, "--size", "32x48", "-n", "2", "--warmup", "0",
                         "--json", out, "--markdown", table)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["size"] == [32, 48]
    timed = {r["name"]: r for r in report["results"] if "end_to_end" in r}
    assert sorted(timed) == [
        "ONNX Runtime, deformconv graph FP32 (CPU)",
        "ONNX Runtime, gridsample graph FP16 (CPU)",
        "ONNX Runtime, gridsample graph FP32 (CPU)",
        "PyTorch FP32 eager (CPU)",
    ]
    for row in timed.values():
        assert row["end_to_end"]["calls"] == 2 and row["end_to_end"]["p50_ms"] > 0
        # One process's peak only grows, so a row's would carry the rows before it: the run's
        # peak is reported once, beside the rows.
        assert "peak_host_memory_mib" not in row
    assert report["peak_host_memory_mib"] > 100  # torch and onnxruntime are loaded
    refused = {r["name"]: r["error"] for r in report["results"] if "error" in r}
    assert refused["PyTorch FP16 eager"] == "needs a CUDA GPU"
    assert set(refused) == {"PyTorch FP16 eager", "TensorRT FP16"}
    markdown = table.read_text()
    assert markdown in done.stdout
    assert f"peak host memory of the whole run {report['peak_host_memory_mib']} MiB" in markdown
    assert markdown.count("\n| ") == len(report["results"]) + 2  # with the heading and its rule


def test_a_row_that_cannot_open_says_why_and_the_others_are_timed(benchmark_script, tmp_path, monkeypatch):
    """One backend failing to open (a plan this GPU cannot load, an ONNX Runtime without DeformConv)
    ended the run in a traceback, and every row timed before it was lost."""
    from click.testing import CliRunner

    from bdinn.export.onnx_export import export_onnx

    compare = benchmark_script("compare_backends")
    good = export_onnx(perturbed_tiny(config=MICRO), tmp_path / "good.onnx", "gridsample", False).path
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    rows = [("first", {"path": good}), ("broken", {"path": tmp_path / "bad.onnx"}), ("last", {"path": good})]
    monkeypatch.setattr(compare, "candidates", lambda checkpoint, folder: rows)
    out = tmp_path / "rows.json"
    args = ["--size", "32x48", "-n", "1", "--warmup", "0", "--json", str(out)]
    done = CliRunner().invoke(compare.main, args)
    assert done.exit_code == 0, done.output
    results = json.loads(out.read_text())["results"]
    assert [r["name"] for r in results] == ["first (CPU)", "broken", "last (CPU)"]
    assert results[1]["error"].startswith(f"{tmp_path / 'bad.onnx'}: ")
    assert "\n" not in results[1]["error"]
    assert all(r["end_to_end"]["calls"] == 1 for r in (results[0], results[2]))
