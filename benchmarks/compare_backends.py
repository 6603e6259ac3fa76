"""Whole-network latency of one checkpoint on every backend this machine has, side by side.

Runs in one process on one machine: PyTorch FP32 eager (CPU or GPU), PyTorch FP16 (GPU only),
ONNX Runtime on the portable GridSample and DeformConv graphs (FP32, and the FP16 GridSample
graph), and TensorRT FP16 engines (plugin, GridSample and DeformConv graphs) when a GPU and TensorRT are
present. Each row is `bdinn.runtime.bench.benchmark` on the same frame size. Writes a markdown
table (and --json); rows that cannot run here say why instead of a number.

Host memory is the whole run's peak, once: one process's peak only grows, so a row's own would
carry every earlier row's. `benchmarks/host_memory.py` measures it per case, a process each.

    python benchmarks/compare_backends.py [CHECKPOINT] [--size 1080x1920] [-n 5] [--markdown out.md]
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from bdinn.runtime import Debander, default_model_path
from bdinn.runtime.bench import benchmark, cpu_model, parse_frame_size, peak_host_memory_mib
from bdinn.runtime.cli_options import BdinnCommand, stops_cleanly
from bdinn.runtime.cli_reports import ReportFile, report_files, write_report


def machine_name() -> str:
    """CPU model and core count, plus the GPU when PyTorch sees one."""
    cpu = f"{cpu_model()} ({os.cpu_count()} cores)"
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} + {cpu}"
    return cpu


def candidates(checkpoint: Path, folder: Path) -> list[tuple[str, dict[str, Any] | str]]:
    """(row name, Debander.open kwargs) for every configuration, or (row name, why it cannot run)."""
    import torch

    from bdinn.export.onnx_export import export_onnx
    from bdinn.train.checkpoint import CheckpointError, load_checkpoint

    cuda = torch.cuda.is_available()
    rows: list[tuple[str, dict[str, Any] | str]] = [
        ("PyTorch FP32 eager", {"path": checkpoint, "device": "cpu", "precision": "fp32"}),
    ]
    if cuda:
        rows.append(("PyTorch FP32 eager", {"path": checkpoint, "device": "cuda", "precision": "fp32"}))
        rows.append(("PyTorch FP16 eager", {"path": checkpoint, "device": "cuda", "precision": "fp16"}))
    else:
        rows.append(("PyTorch FP16 eager", "needs a CUDA GPU"))
    try:
        model, _ = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise click.ClickException(str(exc)) from None
    for graph, fp16 in (("gridsample", False), ("deformconv", False), ("gridsample", True)):
        path = export_onnx(model, folder / f"{graph}-{'fp16' if fp16 else 'fp32'}.onnx", graph, fp16).path
        rows.append((f"ONNX Runtime, {graph} graph {'FP16' if fp16 else 'FP32'}", {"path": path}))
    rows.extend(tensorrt_rows(checkpoint, folder, cuda))
    return rows


def tensorrt_rows(checkpoint: Path, folder: Path, cuda: bool) -> list[tuple[str, dict[str, Any] | str]]:
    from bdinn.runtime.tensorrt import TensorRTUnavailable, load_tensorrt

    try:
        load_tensorrt()
    except TensorRTUnavailable as exc:
        return [("TensorRT FP16", f"not installed ({exc})")]
    if not cuda:
        return [("TensorRT FP16", "needs an NVIDIA GPU")]
    from click.testing import CliRunner

    from bdinn.export.cli import main as export

    rows: list[tuple[str, dict[str, Any] | str]] = []
    # The DeformConv graph is the plugin-free baseline the plugin must beat (DESIGN.md); TensorRT-RTX
    # has no importer for it, and its row then says so.
    for graph in ("plugin", "gridsample", "deformconv"):
        plan = folder / f"{graph}.plan"
        result = CliRunner().invoke(export, [str(checkpoint), "--fp16", "--graph", graph, "-o", str(plan)])
        name = f"TensorRT FP16, {graph} graph"
        failed = f"build failed: {result.output.strip()}"
        rows.append((name, {"path": plan} if result.exit_code == 0 else failed))
    return rows


def time_row(name: str, spec: dict[str, Any], size: tuple[int, int], iterations: int, warmup: int) -> dict:
    """One row's timings, its name saying where it ran: from the backend itself, as onnxruntime
    without its GPU build runs on the CPU of a GPU machine."""
    with Debander.open(**spec) as deband:
        where = "GPU" if deband.describe()["device"].startswith("cuda") else "CPU"
        timings = benchmark(deband, size, 1, iterations, warmup)
    del timings["peak_host_memory_mib"]  # this process's so far, not this row's
    return {"name": f"{name} ({where})", **timings}


def markdown(results: list[dict[str, Any]], size: tuple[int, int], machine: str, peak_host: int) -> str:
    lines = [
        f"Machine: {machine}. Frame 1x3x{size[0]}x{size[1]}, latency in ms per frame; "
        f"peak host memory of the whole run {peak_host} MiB.",
        "",
        "| backend | end to end p50 | p90 | mean | fps | on device p50 | peak GPU memory |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results:
        if "error" in row:
            lines.append(f"| {row['name']} | n/a: {row['error']} | | | | | |")
            continue
        e2e, device = row["end_to_end"], row.get("on_device")
        # Host peak RSS only grows within one process, so per-row memory is reported for GPUs only.
        memory = f"{row['peak_gpu_memory_mib']} MiB" if "peak_gpu_memory_mib" in row else "–"
        on_device = f"{device['p50_ms']:.1f}" if device else "–"
        lines.append(
            f"| {row['name']} | {e2e['p50_ms']:.1f} | {e2e['p90_ms']:.1f} | {e2e['mean_ms']:.1f} | "
            f"{e2e['fps']:.2f} | {on_device} | {memory} |"
        )
    return "\n".join(lines) + "\n"


@click.command("compare_backends.py", cls=BdinnCommand)
@click.argument("checkpoint", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--size", default="1080x1920", callback=parse_frame_size)
@click.option("-n", "--iterations", type=click.IntRange(1), default=5)
@click.option("--warmup", type=click.IntRange(0), default=1)
@click.option("--markdown", "markdown_out", type=ReportFile(), default=None)
@click.option("--json", "json_out", type=ReportFile(), default=None)
@report_files("markdown_out", "json_out", models="checkpoint")
@stops_cleanly
def main(
    checkpoint: Path | None, size: tuple[int, int], iterations: int, warmup: int,
    markdown_out: Path | None, json_out: Path | None,
) -> None:  # fmt: skip
    """Compare backends on CHECKPOINT (default: the bundled model)."""
    checkpoint = checkpoint or default_model_path("torch")
    machine = machine_name()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for name, spec in candidates(checkpoint, Path(folder)):
            if isinstance(spec, str):
                results.append({"name": name, "error": spec})
                continue
            click.echo(f"{name} ...", err=True)
            try:
                results.append(time_row(name, spec, size, iterations, warmup))
            except (RuntimeError, ValueError, MemoryError) as exc:  # BackendError, out of GPU memory
                # One row that cannot open or run (a plan this GPU cannot load, an older ONNX
                # Runtime without DeformConv) is that row's reason, not the end of the others.
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                results.append({"name": name, "error": reason})
    peak_host = peak_host_memory_mib()
    table = markdown(results, size, machine, peak_host)
    click.echo(table)
    if markdown_out:
        write_report(markdown_out, table)
    if json_out:
        report = {
            "machine": machine,
            "size": list(size),
            "peak_host_memory_mib": peak_host,
            "results": results,
        }
        write_report(json_out, json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
