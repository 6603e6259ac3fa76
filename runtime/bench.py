"""`bdinn-bench [MODEL]`: latency of any model file on any backend, with and without copies.

"end_to_end" times what `Debander.infer` costs a caller holding frames in host memory: upload,
inference, download and the change limit on the host. "on_device" times inference on frames
already in GPU memory (what a GPU decode/encode pipeline sees); on the CPU the two are the same
thing and only one is reported. Each timing waits for the device, so a number is a real frame
latency, not a queueing time.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np

from .backends import BACKENDS, BackendError
from .cli_options import (
    BdinnCommand,
    allow_embedded_plugin_option,
    parse_size,
    plugin_library_option,
    stops_cleanly,
    tile_option,
)
from .cli_reports import ReportFile, echo_result
from .debander import Debander
from .files import OutputError, atomic_write_text, check_writable, files_of_model
from .processing import MAX_SIDE, MIN_SIDE


def summarise(seconds: list[float], batch: int) -> dict[str, float]:
    """min / p50 / p90 / p99 / max / mean in milliseconds, frames per second at the mean, and how
    many calls they come from. Percentiles interpolate: p99 of 20 calls lies between the two
    slowest, so the slowest is given too."""
    ms = np.asarray(seconds) * 1000
    stats = {f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 99)}
    mean = float(ms.mean())
    return {
        "min_ms": float(ms.min()), **stats, "max_ms": float(ms.max()), "mean_ms": mean,
        "fps": 1000 * batch / mean, "calls": len(ms),
    }  # fmt: skip


def time_calls(
    run: Callable[[], object], wait: Callable[[], None], warmup: int, iterations: int
) -> list[float]:
    """Wall time of `iterations` calls of run() + wait(), after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
        wait()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        wait()
        times.append(time.perf_counter() - start)
    return times


@contextmanager
def device_runner(deband: Debander, shape: tuple[int, int, int, int]) -> Iterator[tuple[Any, Any, Any]]:
    """(run, wait, peak_memory_mib) for frames already in GPU memory, freed on exit; Nones where
    there is no GPU path."""
    backend = deband.backend
    n, c, h, w = shape
    if backend.name == "torch" and backend.device.startswith("cuda"):
        import torch

        frames = torch.rand(shape, device=backend.device)
        torch.cuda.reset_peak_memory_stats(backend.device)
        yield (
            lambda: backend.infer_tensor(frames),
            backend.synchronize,
            lambda: torch.cuda.max_memory_allocated(backend.device) / 2**20,
        )
        return
    if backend.name != "tensorrt":
        yield None, None, None
        return
    from .backends.tensorrt_backend import cuda_checked

    cudart = backend.cudart
    sizes = (
        c * h * w * np.dtype(backend.input_dtype).itemsize,
        c * h * w * np.dtype(backend.output_dtype).itemsize,
    )
    pointers: list[int] = []
    stream = None
    try:  # what was made is freed whatever fails after it (a full GPU: one line, not a traceback)
        with backend.on_device():  # the engine's GPU (--device cuda:1), whichever this thread has current
            for nbytes in sizes:
                pointers.append(int(cuda_checked(cudart.cudaMalloc(nbytes), "cudaMalloc")))
            cuda_checked(cudart.cudaMemset(pointers[0], 0, sizes[0]), "cudaMemset")  # black, not NaN
            stream = int(cuda_checked(cudart.cudaStreamCreate(), "stream"))
        dev_in, dev_out = pointers

        def run() -> None:
            for _ in range(n):
                backend.infer_device(dev_in, dev_out, h, w, stream)

        def wait() -> None:
            with backend.on_device():
                cudart.cudaStreamSynchronize(stream)

        yield run, wait, lambda: backend.describe()["gpu_memory_used_mib"]
    finally:
        with backend.on_device():
            if stream is not None:
                cudart.cudaStreamSynchronize(stream)
                cudart.cudaStreamDestroy(stream)
            for pointer in pointers:
                cudart.cudaFree(pointer)


def cpu_model() -> str:
    """The CPU's marketing name (Linux says it in /proc/cpuinfo; platform.processor() is empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def benchmark(
    deband: Debander, size: tuple[int, int], batch: int = 1, iterations: int = 20, warmup: int = 3
) -> dict[str, Any]:
    """Every timing this backend supports at N x 3 x H x W, plus what ran where."""
    shape = (batch, 3, *size)
    frames = np.random.default_rng(0).random(shape, dtype=np.float32)
    result: dict[str, Any] = {
        "shape": list(shape),
        "warmup_calls": warmup,
        **deband.describe(),
        "host": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
    }
    tile = deband.tile_for(size)  # what ran, not only what was asked: large CPU frames are tiled
    result["tile"] = None if tile is None else list(tile)
    with warnings.catch_warnings():  # a uint8-I/O model rounds these float frames; timed all the same
        warnings.filterwarnings("ignore", "this model takes and returns 8-bit pictures")
        result["end_to_end"] = summarise(
            time_calls(lambda: deband.infer(frames), deband.backend.synchronize, warmup, iterations), batch
        )
    # What deband(frame) costs on top: uint8 H x W x 3 in and out (layout, rounding, the copies).
    pictures = [np.ascontiguousarray((chw.transpose(1, 2, 0) * 255).astype(np.uint8)) for chw in frames]
    result["uint8_frames"] = summarise(
        time_calls(lambda: deband(pictures), deband.backend.synchronize, warmup, iterations), batch
    )
    with device_runner(deband, shape) as (run, wait, peak):
        if run is not None:
            result["on_device"] = summarise(time_calls(run, wait, warmup, iterations), batch)
            if result.get("cuda_graph"):  # infer_device enqueues the engine itself, never a graph
                result["cuda_graph"] = "end_to_end and uint8_frames only"
            result["peak_gpu_memory_mib"] = round(peak())
    result["peak_host_memory_mib"] = peak_host_memory_mib()
    return result


def peak_host_memory_mib() -> int:
    """This process's peak resident memory so far, MiB (Linux reports KiB): it only grows."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def format_result(result: dict[str, Any]) -> str:
    """A few human lines: what ran, then one line per timing."""
    keys = ("backend", "precision", "device", "gpu", "banded_conv", "tensorrt")
    head = ", ".join(f"{k}={result[k]}" for k in keys if k in result)
    tiles = f" in {'x'.join(map(str, result['tile']))} tiles" if result.get("tile") else ""
    lines = [f"{head}; shape {'x'.join(map(str, result['shape']))}{tiles}"]
    for mode in ("end_to_end", "uint8_frames", "on_device"):
        if mode in result:
            s = result[mode]
            lines.append(
                f"  {mode:<12} min {s['min_ms']:.2f}  p50 {s['p50_ms']:.2f}  p90 {s['p90_ms']:.2f}  "
                f"p99 {s['p99_ms']:.2f}  max {s['max_ms']:.2f}  mean {s['mean_ms']:.2f} ms  "
                f"({s['fps']:.2f} fps, {s['calls']} calls)"
            )
    memory = f"  peak host memory {result['peak_host_memory_mib']} MiB"
    if "peak_gpu_memory_mib" in result:
        memory += f", GPU memory {result['peak_gpu_memory_mib']} MiB"
    lines.append(memory)
    return "\n".join(lines)


def parse_frame_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """HEIGHTxWIDTH of a frame the network accepts (both sides at least 16)."""
    height, width = parse_size(ctx, param, value)
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SIDE:
        raise click.BadParameter(
            f"{value}: both sides must be from {MIN_SIDE} to {MAX_SIDE}, the graphs' bounds"
        )
    return height, width


@click.command("bdinn-bench", cls=BdinnCommand)
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--size", default="1080x1920", callback=parse_frame_size, help="Frame HEIGHTxWIDTH.")
@click.option("--batch", type=click.IntRange(1), default=1, help="Frames per call.")
@click.option("-n", "--iterations", type=click.IntRange(1), default=20, help="Timed calls.")
@click.option("--warmup", type=click.IntRange(0), default=3, help="Untimed calls first.")
@click.option("--backend", type=click.Choice(BACKENDS), default=None, help="[default: from the model file]")
@click.option("--device", default=None, help="cpu, cuda or cuda:N [default: a GPU when there is one].")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None, help="Checkpoints only.")
@tile_option
@plugin_library_option
@allow_embedded_plugin_option
@click.option("--cuda-graph", is_flag=True, help="TensorRT: replay a captured CUDA graph per frame.")
@click.option("--json", "json_out", type=ReportFile(), default=None,
              help="Also write the result as JSON to this file ('-' for stdout only).")  # fmt: skip
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing --json file.")
@stops_cleanly
def main(
    model: Path | None, size: tuple[int, int], batch: int, iterations: int, warmup: int,
    backend: str | None, device: str | None, precision: str | None, tile: int | None,
    plugin_library: Path | None, allow_embedded_plugin: bool, cuda_graph: bool, json_out: Path | None,
    force: bool,
) -> None:  # fmt: skip
    """Latency of MODEL (default: the bundled model) at a frame size, in milliseconds per call."""
    to_file = json_out is not None and str(json_out) != "-"
    try:
        if to_file:
            check_writable(json_out, inputs=files_of_model(model), replace=force)
        with Debander.open(
            model, backend=backend, device=device, precision=precision, tile=tile,
            plugin_library=plugin_library, allow_embedded_plugin=allow_embedded_plugin,
        ) as deband:  # fmt: skip
            if cuda_graph:
                if deband.backend.name != "tensorrt":
                    raise click.BadParameter(
                        "CUDA graphs are for TensorRT engines", param_hint="--cuda-graph"
                    )
                deband.backend.cuda_graph = True
            result = benchmark(deband, size, batch, iterations, warmup)
    except (BackendError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except MemoryError:
        raise click.ClickException(
            f"not enough memory for {batch} frame(s) of {size[0]}x{size[1]}; try a smaller --size or --tile"
        ) from None
    result["model"] = str(model) if model else "bundled default"
    text = json.dumps(result, indent=2) + "\n"
    if to_file:  # checked before the work; a disk that filled up since is still one line
        try:
            atomic_write_text(json_out, text, replace=force)
        except OutputError as exc:
            raise click.ClickException(str(exc)) from None
    shown = text if json_out is not None and not to_file else format_result(result) + "\n"
    echo_result(shown, "the JSON" if shown is text else "the timings")


if __name__ == "__main__":
    main()
