"""Banded deformable convolution: our CUDA kernels vs the PyTorch formulations, side by side.

Times, on the shapes the `paper` configuration meets at 1920x1080 (the bottleneck at 1/8
resolution) and on one full-resolution shape: the CUDA kernels (torch.ops.bdinn), the explicit
gather reference, the grid_sample formulation, and torchvision.ops.deform_conv2d with the
equivalent per-tap offsets when torchvision is installed. On a CPU only the PyTorch formulations
run. Prints a markdown table; --json for machines.

    python benchmarks/bench_banded_conv.py [--dtype float16] [--json out.json]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import click
import torch

from bdinn.runtime.bench import cpu_model
from bdinn.runtime.cli_options import BdinnCommand, stops_cleanly
from bdinn.runtime.cli_reports import json_option, report_files, write_report
from bdinn.train.network import activate_geometry, banded_deform_conv_op
from bdinn.train.ops import banded_deform_conv_gridsample, banded_deform_conv_reference, sampling_positions

# (name, N, C, O, H, W): the BDACB attention convs of `paper` at 1080p run on 24 channels at 135x240.
SHAPES = [
    ("paper bottleneck 1080p", 1, 24, 24, 135, 240),
    ("wide bottleneck", 1, 96, 96, 135, 240),
    ("full resolution 1080p", 1, 16, 16, 1080, 1920),
]


def torchvision_equivalent() -> Callable[..., torch.Tensor] | None:
    """deform_conv2d fed with the offsets our geometry implies, or None without torchvision."""
    try:
        from torchvision.ops import deform_conv2d
    except ImportError:
        return None

    def run(
        x: torch.Tensor, geometry: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dilation=(1, 1)
    ) -> torch.Tensor:
        kh, kw = weight.shape[2:]
        px, py = sampling_positions(geometry, (kh, kw), dilation)
        h, w = x.shape[2:]
        rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
        grid_y = (torch.arange(kh, device=x.device) - kh // 2).repeat_interleave(kw).view(
            1, -1, 1, 1
        ) * dilation[0]
        grid_x = (torch.arange(kw, device=x.device) - kw // 2).repeat(kh).view(1, -1, 1, 1) * dilation[1]
        offset = torch.stack((py - rows - grid_y, px - cols - grid_x), dim=2).flatten(1, 2).to(x.dtype)
        padding = (kh // 2 * dilation[0], kw // 2 * dilation[1])
        return deform_conv2d(x, offset, weight, bias, padding=padding, dilation=dilation)

    return run


def kernels_on_cuda_cores() -> Callable[..., torch.Tensor]:
    """The kernels with FP32 products on CUDA cores, through the C ABI (FP16's default, and what
    the torch op runs, is the tensor-core path): which of the two an FP16 engine should use."""
    from bdinn.plugins.kernels import load_kernels

    def run(
        x: torch.Tensor, geometry: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dilation=(1, 1)
    ) -> torch.Tensor:
        lib = load_kernels()  # here: a library not built is this row's failure (KernelLibraryError)
        forward = lib.bdinn_banded_deform_conv_forward_algo
        n, c, h, w = x.shape
        o, _, kh, kw = weight.shape
        out = x.new_empty((n, o, h, w))
        status = forward(
            1 if x.dtype == torch.float16 else 0, 1,  # dtype, BDINN_ALGO_CUDA_CORES
            x.data_ptr(), geometry.data_ptr(), weight.data_ptr(), bias.data_ptr(), out.data_ptr(),
            n, c, h, w, o, kh, kw, dilation[0], dilation[1], torch.cuda.current_stream().cuda_stream,
        )  # fmt: skip
        if status:
            raise RuntimeError(lib.bdinn_error_string(status).decode())
        return out

    return run


def time_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of one call, after warm-up; CUDA events on the GPU."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t) * 1000)
    return sorted(samples)[len(samples) // 2]


@click.command("bench_banded_conv.py", cls=BdinnCommand)
@click.option(
    "--dtype",
    "dtype_name",
    type=click.Choice(["float32", "float16"]),
    default="float16",
    show_default=True,
    help="Data type on a GPU (a CPU runs float32).",
)
@click.option("--repeats", type=click.IntRange(1), default=20, show_default=True, help="Timed calls.")
@json_option
@report_files("json_path")
@stops_cleanly
def main(dtype_name: str, repeats: int, json_path: Path | None) -> None:
    """Banded deformable convolution: our CUDA kernels vs the PyTorch formulations, side by side."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, dtype_name) if device.type == "cuda" else torch.float32
    on_gpu = device.type == "cuda"
    impls: dict[str, Callable[..., torch.Tensor] | None] = {
        "bdinn CUDA kernels": banded_deform_conv_op if on_gpu else None,
        "bdinn CUDA kernels, CUDA cores": (
            kernels_on_cuda_cores() if on_gpu and dtype == torch.float16 else None
        ),
        "reference (gather)": banded_deform_conv_reference,
        "grid_sample": banded_deform_conv_gridsample,
        "torchvision deform_conv2d": torchvision_equivalent(),
    }
    machine = torch.cuda.get_device_name() if device.type == "cuda" else cpu_model()
    rows = []
    for name, n, c, o, h, w in SHAPES:
        if device.type == "cpu" and h * w > 500_000:
            continue  # the full-resolution shape takes minutes per call on a CPU
        torch.manual_seed(0)
        x = torch.randn(n, c, h, w, device=device, dtype=dtype)
        geometry = activate_geometry(torch.randn(n, 4, h, w, device=device) * 0.5).to(dtype)
        weight = torch.randn(o, c, 3, 5, device=device, dtype=dtype) * 0.1
        bias = torch.randn(o, device=device, dtype=dtype)
        gmacs = n * o * c * 15 * h * w / 1e9
        for impl, fn in impls.items():
            if fn is None:
                continue
            row = {"shape": name, "nchw_o": [n, c, h, w, o], "impl": impl,
                   "device": machine, "dtype": str(dtype)}  # fmt: skip
            try:  # one failing formulation (out of memory, say) must not cost the others' rows
                with torch.no_grad():
                    tensors = (x, geometry, weight, bias)
                    row["ms"] = time_ms(lambda fn=fn, tensors=tensors: fn(*tensors), device, repeats)
                row["gflops"] = 2 * gmacs / row["ms"] * 1000
            except RuntimeError as exc:
                row["error"] = str(exc).splitlines()[0]
            rows.append(row)
    click.echo(f"| shape | implementation | ms | GFLOP/s |  ({machine}, {dtype})")
    click.echo("| --- | --- | --- | --- |")
    for r in rows:
        timing = f"{r['ms']:.3f} | {r['gflops']:.1f}" if "ms" in r else f"failed: {r['error']} |"
        click.echo(f"| {r['shape']} | {r['impl']} | {timing} |")
    if json_path:
        write_report(json_path, json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
