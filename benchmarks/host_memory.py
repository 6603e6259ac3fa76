"""Peak memory and seconds per frame on the CPU, by frame size: what a machine needs to run bdinn.

Each case runs in a fresh process (peak resident memory is per process): it opens the model,
debands `--frames` frames of one size and reports its peak memory and each frame's seconds,
once as `Debander` serves it (frames over 2048 x 1152 pixels in even tiles) and once whole
(`tile=` past the frame's size), so that what tiling saves shows beside what it costs.

    python benchmarks/host_memory.py [MODEL] [--size 1080x1920 --size 2160x3840] [--frames 2]
                                     [--backend onnxruntime|torch] [--json out.json]
"""

from __future__ import annotations

import json
import multiprocessing
import platform
import resource
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import click
import numpy as np

from bdinn.runtime.backends import BackendError
from bdinn.runtime.bench import cpu_model, parse_frame_size
from bdinn.runtime.cli_options import BdinnCommand, stops_cleanly
from bdinn.runtime.cli_reports import json_option, report_files, write_report


def measure(
    model: str | None, backend: str | None, size: tuple[int, int], frames: int, whole: bool
) -> dict[str, Any]:
    """One case, in its own process: peak memory (GB) and seconds of each frame."""
    from bdinn.runtime import Debander

    h, w = size
    whole_tile = -(-max(h, w, 32) // 8) * 8  # a user tile at least the frame's size: never tiled
    deband = Debander.open(model, backend=backend, device="cpu", tile=whole_tile if whole else None)
    opened = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows, cols = np.ogrid[0:h, 0:w]  # a gradient, summed into the frame: no H x W int64 beside it
    frame = np.empty((h, w, 3), np.uint8)
    frame[..., 0], frame[..., 1] = cols * 60 // w + 40, rows * 60 // h + 60
    np.add(rows * 40 // (w + h) + 90, cols * 40 // (w + h), out=frame[..., 2], casting="unsafe")
    seconds = []
    for _ in range(frames):
        start = time.perf_counter()
        deband(frame)
        seconds.append(time.perf_counter() - start)
    tile = deband.tile_for(size)
    return {
        "backend": deband.backend.name,
        "size": f"{h}x{w}",
        "mode": "whole" if whole else "served",
        "tile": None if tile is None else list(tile),
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,  # Linux: KiB
        "opened_gb": opened * 1024 / 1e9,
        "seconds": seconds,
    }


def _case(results: Connection, args: tuple) -> None:
    """measure(*args), its result or its failure sent back through `results`."""
    try:
        results.send(("done", measure(*args)))
    except (BackendError, ValueError) as exc:
        results.send(("error", str(exc)))
    except MemoryError:
        results.send(("memory", ""))


def run_case(
    model: str | None, backend: str | None, size: tuple[int, int], frames: int, whole: bool
) -> dict[str, Any]:
    """measure() in a fresh process, so that no other case's peak is counted. A process killed (by
    the kernel, out of memory) ends the case with an error: a pool replaced it and waited forever.
    Stopped (Ctrl-C, SIGTERM), the process is killed rather than waited for (minutes for 8K)."""
    context = multiprocessing.get_context("spawn")
    results, sending = context.Pipe(duplex=False)
    process = context.Process(target=_case, args=(sending, (model, backend, size, frames, whole)))
    process.start()
    sending.close()  # the child's copy alone is left: its death ends recv()
    case = f"the {size[0]}x{size[1]} {'whole' if whole else 'served'} case"
    try:
        kind, value = results.recv()
    except EOFError:
        process.join()
        raise click.ClickException(
            f"{case}'s process ended without a result (exit code {process.exitcode}; killed for memory?): "
            "try a smaller --size or --mode served"
        ) from None
    except BaseException:  # Ctrl-C, SIGTERM
        process.kill()
        process.join()
        raise
    process.join()
    if kind == "memory":
        raise click.ClickException(f"not enough memory for {case}: try a smaller --size or --mode served")
    if kind == "error":
        raise click.ClickException(value)
    return value


@click.command("host_memory.py", cls=BdinnCommand)
@click.argument("model", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--size", "sizes", multiple=True, default=["1080x1920", "2160x3840"], callback=lambda c, p, v: [
    parse_frame_size(c, p, s) for s in v], help="Frame HEIGHTxWIDTH; repeat for several.")  # fmt: skip
@click.option("--frames", default=2, show_default=True, type=click.IntRange(min=1),
              help="Frames per case: the first one also sets up the backend.")  # fmt: skip
@click.option("--mode", "modes", default="both", show_default=True,
              type=click.Choice(["served", "whole", "both"]),
              help="Whole frames of 8K need about 24 GB: more than many machines have.")  # fmt: skip
@click.option(
    "--backend", type=click.Choice(["onnxruntime", "torch"]),
    help="[default: the model file's: torch for a checkpoint, onnxruntime for the rest]",
)  # fmt: skip
@json_option
@report_files("json_path", models="model")
@stops_cleanly
def main(
    model: str | None, sizes: list[tuple[int, int]], frames: int, modes: str, backend: str | None,
    json_path: Path | None,
) -> None:  # fmt: skip
    """Print a Markdown table of peak memory and seconds per frame, served and whole."""
    wholes = {"served": (False,), "whole": (True,), "both": (False, True)}[modes]
    rows = [run_case(model, backend, size, frames, whole) for size in sizes for whole in wholes]
    backend = rows[0]["backend"]
    click.echo(f"{backend} on {cpu_model()} ({platform.machine()}), {frames} frame(s) per case\n")
    click.echo("| frame | mode | tile | peak memory (GB) | first frame (s) | later frames (s) |")
    click.echo("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        tile = "-" if row["tile"] is None else "x".join(map(str, row["tile"]))
        later = f"{np.mean(row['seconds'][1:]):.2f}" if len(row["seconds"]) > 1 else "-"
        click.echo(f"| {row['size']} | {row['mode']} | {tile} | {row['peak_gb']:.2f} | "
                   f"{row['seconds'][0]:.2f} | {later} |")  # fmt: skip
    if json_path is not None:
        write_report(json_path, json.dumps({"backend": backend, "cpu": cpu_model(), "cases": rows}, indent=2))


if __name__ == "__main__":
    main()
