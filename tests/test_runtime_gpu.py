"""The runtime on a CUDA GPU: the bundled model through PyTorch with our kernels (needs a GPU).

The CPU tests pin every backend to the network; these pin the GPU path to the CPU one, so that a
user's GPU results are the CPU's within FP16's precision, and check that GPU tensors stay on it.
"""

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from bdinn.plugins.build import build_libraries, default_build_dir
from bdinn.runtime import Debander
from bdinn.runtime.imageio import read_image
from bdinn.runtime.metrics import psnr

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch"),
]


@pytest.fixture(scope="module")
def pictures() -> list[np.ndarray]:
    """The bundled pictures, quantised to 5 bits so the model has banding to remove."""
    data = Path(__file__).parent / "data"
    return [(read_image(p) >> 3 << 3).astype(np.uint8) for p in sorted(data.glob("*.png"))]


@pytest.fixture(scope="module")
def cpu_outputs(pictures) -> list[np.ndarray]:
    with Debander.open(backend="torch", device="cpu", max_change=None) as deband:
        return [deband(p, bit_depth=16) for p in pictures]


@pytest.fixture(scope="module")
def kernels_built() -> None:
    build_libraries(default_build_dir(), cuda=True)


@pytest.mark.parametrize("precision, min_psnr", [("fp32", 90.0), ("fp16", 62.0)])
def test_gpu_matches_cpu(kernels_built, pictures, cpu_outputs, precision, min_psnr):
    """16-bit outputs: the CUDA kernels (FP32, FP16) against grid_sample on the CPU in FP32.

    The model changes a picture by about 40 dB, so a wrong layer shows far below these bars. On an
    H200: 98-103 dB in FP32 (cuDNN's TF32 convolutions, PyTorch's default), 68-73 dB in FP16."""
    with Debander.open(backend="torch", device="cuda", precision=precision, max_change=None) as deband:
        assert deband.describe()["banded_conv"] == "op"
        for picture, expected in zip(pictures, cpu_outputs, strict=True):
            got = deband(picture, bit_depth=16)
            score = psnr(got / 65535.0, expected / 65535.0)
            worst = np.abs(got.astype(int) - expected).max()
            print(f"{precision} GPU vs FP32 CPU: {score:.1f} dB, largest difference {worst} of 65535")
            assert score >= min_psnr


def test_default_on_a_gpu_is_fp16_with_the_kernels(kernels_built):
    with Debander.open() as deband:
        info = deband.describe()
    assert (info["backend"], info["precision"], info["banded_conv"]) == ("torch", "fp16", "op")


def test_cuda_tensors_stay_on_the_gpu(kernels_built, pictures):
    with Debander.open(backend="torch", device="cuda", precision="fp32") as deband:
        frames = [torch.from_numpy(p).permute(2, 0, 1).float().div(255) for p in pictures]
        batch = torch.stack(frames).cuda()
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            out = deband.tensor(batch)
        stream.synchronize()
        assert out.device == batch.device and out.dtype == batch.dtype and out.shape == batch.shape
        host = deband.infer(batch.cpu().numpy())
    assert np.abs(out.cpu().numpy() - host).max() < 1e-4


def test_threads_share_one_gpu_debander(kernels_built, pictures, cpu_outputs):
    """A decode and an encode thread (here four) on one instance get the single-thread results."""
    with Debander.open(backend="torch", device="cuda", precision="fp32") as deband:
        expected = [deband(p, bit_depth=16) for p in pictures]
        results: dict[int, list[np.ndarray]] = {}

        def work(index: int) -> None:
            results[index] = [deband(p, bit_depth=16) for p in pictures * 3]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 4
    for outputs in results.values():
        for got, want in zip(outputs, expected * 3, strict=True):
            assert np.abs(got.astype(int) - want).max() <= 1  # cuDNN may pick another algorithm


def test_without_the_kernels_it_says_so_and_uses_grid_sample(kernels_built, monkeypatch, tmp_path):
    from bdinn.plugins.kernels import load_kernels

    monkeypatch.setenv("BDINN_KERNEL_LIBRARY", str(tmp_path / "missing.so"))
    load_kernels.cache_clear()
    try:
        with pytest.warns(UserWarning, match="grid_sample"), Debander.open(device="cuda") as deband:
            assert deband.describe()["banded_conv"] == "gridsample"
    finally:
        load_kernels.cache_clear()


def test_cli_on_the_gpu(kernels_built, pictures, tmp_path):
    """bdinn-run and bdinn-bench with the bundled model on the GPU, as a user runs them."""
    import json

    from click.testing import CliRunner

    from bdinn.runtime.bench import main as bench
    from bdinn.runtime.imageio import write_image
    from bdinn.runtime.run_cli import main as run

    write_image(tmp_path / "in.png", pictures[0])
    result = CliRunner().invoke(run, [str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "-q"])
    assert result.exit_code == 0, result.output
    with Debander.open() as deband:
        expected = deband(pictures[0])
    assert np.abs(read_image(tmp_path / "out.png").astype(int) - expected).max() <= 1

    result = CliRunner().invoke(bench, ["--size", "256x384", "-n", "3", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert (report["device"], report["precision"], report["banded_conv"]) == ("cuda", "fp16", "op")
    assert report["on_device"]["p50_ms"] > 0 and report["peak_gpu_memory_mib"] > 0
