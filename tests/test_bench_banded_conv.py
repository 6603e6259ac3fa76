"""benchmarks/bench_banded_conv.py: the PyTorch formulations timed on the CPU, the report checked first."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "bench_banded_conv.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="counts the CPU's rows")
def test_times_both_formulations_on_the_bottleneck_shapes_and_writes_json(tmp_path):
    out = tmp_path / "reports" / "kernels.json"  # a missing folder is made
    done = run("--repeats", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())
    # Two shapes (the full-resolution one is skipped on a CPU) x the two PyTorch formulations,
    # plus torchvision's when it is installed.
    formulations = {"reference (gather)", "grid_sample"}
    assert {r["impl"] for r in rows} - {"torchvision deform_conv2d"} == formulations
    assert {r["shape"] for r in rows} == {"paper bottleneck 1080p", "wide bottleneck"}
    for r in rows:
        assert r["dtype"] == "torch.float32" and r["ms"] > 0
        n, c, h, w, o = r["nchw_o"]
        assert r["gflops"] == pytest.approx(2 * n * o * c * 15 * h * w / 1e9 / r["ms"] * 1000, rel=1e-9)
    assert done.stdout.count("\n| ") == len(rows) + 1  # the table's rule and one line per row


def test_an_existing_report_is_refused_before_the_timings(tmp_path):
    out = tmp_path / "kernels.json"
    out.write_text("kept")
    done = run("--json", str(out))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"bench_banded_conv.py: error: {out}: already exists (pass --force to overwrite it)"
    )
    assert out.read_text() == "kept" and done.stdout == ""


def test_the_cuda_cores_row_alone_fails_without_the_kernel_library(benchmark_script, monkeypatch):
    """The CUDA-cores formulation loaded the kernels when the table was set up, outside each
    row's try: on a GPU without them built the run ended in a traceback and lost every row."""
    from bdinn.plugins.kernels import KernelLibraryError, load_kernels

    bench = benchmark_script("bench_banded_conv")
    monkeypatch.setenv("BDINN_KERNEL_LIBRARY", "/nonexistent/libbdinn_bdconv.so")
    load_kernels.cache_clear()
    run = bench.kernels_on_cuda_cores()
    x, geometry = torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, 4)
    with pytest.raises(KernelLibraryError, match=r"libbdinn_bdconv\.so: CUDA kernel library not built"):
        run(x, geometry, torch.zeros(2, 2, 3, 5), torch.zeros(2))
    load_kernels.cache_clear()
