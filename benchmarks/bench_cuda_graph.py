"""How much of a GPU frame is launch overhead: eager PyTorch against CUDA-graph replay.

On an H200 the paper network took 64 ms per 1080p frame in eager FP16 against ~3 ms of tensor-
core arithmetic, and swapping our kernels for grid_sample moved it by only 5 ms. If most of the
rest is one kernel launch per operation, replaying the whole forward pass as one captured CUDA
graph removes it; this measures that, and checks the replay computes what eager does.

    python benchmarks/bench_cuda_graph.py [--size 1080x1920] [--json out.json]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click
import torch
from bench_banded_conv import time_ms

from bdinn.runtime import default_model_path
from bdinn.runtime.bench import parse_frame_size
from bdinn.runtime.cli_options import BdinnCommand, stops_cleanly
from bdinn.runtime.cli_reports import json_option, report_files, write_report
from bdinn.train.checkpoint import load_checkpoint
from bdinn.train.network import BDINN, build_model


def eager_and_graph(model: BDINN, frame: torch.Tensor, repeats: int) -> dict[str, float]:
    """Eager and replayed milliseconds per frame, and the largest difference between their outputs."""
    with torch.no_grad():
        eager = time_ms(lambda: model(frame), frame.device, repeats)
        side = torch.cuda.Stream()  # warm up on a side stream before capture, as PyTorch advises
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                model(frame)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = model(frame)
        replay = time_ms(graph.replay, frame.device, repeats)
        difference = (captured.float() - model(frame).float()).abs().max().item()
    return {"eager_ms": eager, "graph_ms": replay, "max_abs_difference": difference}


@click.command("bench_cuda_graph.py", cls=BdinnCommand)
@click.option(
    "--size",
    default="1080x1920",
    callback=parse_frame_size,
    show_default=True,
    help="HEIGHTxWIDTH (multiples of 8).",
)
@click.option("--repeats", type=click.IntRange(1), default=20, show_default=True, help="Timed calls.")
@json_option
@report_files("json_path")
@stops_cleanly
def main(size: tuple[int, int], repeats: int, json_path: Path | None) -> None:
    """Eager PyTorch against CUDA-graph replay of the same forward pass, per 1-frame call."""
    if not torch.cuda.is_available():
        raise click.ClickException("needs a CUDA GPU visible to torch")
    height, width = size
    models: dict[str, Callable[[], BDINN]] = {
        "lite (bundled)": lambda: load_checkpoint(default_model_path("torch"))[0],
        "paper (untrained)": lambda: build_model("paper"),
    }
    rows = []
    for name, make in models.items():
        for dtype in (torch.float16, torch.float32):
            model = make()
            model.set_banded_impl("op")
            model = model.to("cuda", dtype).eval()
            frame = torch.rand(1, 3, height, width, device="cuda", dtype=dtype)
            row = {"model": name, "dtype": str(dtype).removeprefix("torch."), "size": [height, width]}
            try:
                row.update(eager_and_graph(model, frame, repeats))
            except RuntimeError as exc:  # e.g. an operation that synchronises cannot be captured
                row["error"] = str(exc).splitlines()[0]
            rows.append(row)
    print(f"| model | dtype | eager ms | CUDA graph ms | max difference |  ({torch.cuda.get_device_name()})")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['dtype']} | failed: {r['error']} | | |")
        else:
            print(f"| {r['model']} | {r['dtype']} | {r['eager_ms']:.2f} | {r['graph_ms']:.2f} | "
                  f"{r['max_abs_difference']:.1e} |")  # fmt: skip
    if json_path:
        write_report(json_path, json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
