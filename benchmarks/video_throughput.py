"""Frames per second of bdinn-run's video pipeline without the model: what the CPU side costs.

`deband_video` decodes (and converts YUV to RGB) on one thread, calls the model on the caller's
thread and converts back and encodes on a third. With a GPU the model takes ~20 ms per 1080p
frame (README, Benchmarks), so the slowest of the other two stages sets the speed. This script
runs the pipeline with a `process` that returns its frame, for several encoders and presets, on
a synthetic 10-bit 1080p clip (moving gradients with grain, so encoders have work to do), and
reports frames per second: the most any model can reach on this machine with that setting.
`--model` also runs a real model in the pipeline (slow on a CPU: use few frames).

    python benchmarks/video_throughput.py [--frames 48] [--size 1080x1920] [--model M [--precision fp16]]
                                          [--json out.json]
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

from bdinn.runtime import Debander
from bdinn.runtime.backends import BackendError
from bdinn.runtime.bench import cpu_model, parse_frame_size
from bdinn.runtime.cli_options import BdinnCommand, stops_cleanly
from bdinn.runtime.cli_reports import ReportFile, report_files, write_report
from bdinn.runtime.video import deband_video

# (label, output suffix, deband_video settings): the encoders users pick, fast to slow.
SETTINGS = [
    ("Y4M (raw, no encoder)", ".y4m", {}),
    ("FFV1 (lossless)", ".mkv", {"codec": "ffv1"}),
    ("x264 veryfast", ".mkv", {"codec": "libx264", "preset": "veryfast"}),
    ("x264 medium (default preset)", ".mkv", {"codec": "libx264"}),
    ("x265 ultrafast", ".mkv", {"codec": "libx265", "preset": "ultrafast"}),
    ("x265 veryfast", ".mkv", {"codec": "libx265", "preset": "veryfast"}),
    ("x265 medium (bdinn-run's default)", ".mkv", {"codec": "libx265"}),
    ("SVT-AV1 preset 11", ".mkv", {"codec": "libsvtav1", "preset": 11}),  # SVT 4 runs 12, 13 as 11
    ("SVT-AV1 preset 8", ".mkv", {"codec": "libsvtav1", "preset": 8}),
]


def make_clip(path: Path, frames: int, height: int, width: int) -> Path:
    """A 10-bit HEVC clip of drifting gradients with light grain, encoded losslessly enough."""
    import av

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx265", rate=24, options={"crf": "16", "preset": "ultrafast",
                                                             "x265-params": "log-level=error"})  # fmt: skip
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p10le"
        for i in range(frames):
            shift = 4.0 * i
            rgb = np.stack(
                [(xx + shift) / width, yy / height, 0.5 + 0.3 * np.sin((xx + yy + shift) / width * 3)], -1
            )
            rgb += rng.normal(0, 0.004, rgb.shape).astype(np.float32)
            frame = av.VideoFrame.from_ndarray(
                (np.clip(rgb, 0, 1) * 65535).astype(np.uint16), format="rgb48le"
            ).reformat(format="yuv420p10le")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def run_settings(
    source: Path, folder: Path, process: Callable[[np.ndarray], np.ndarray], frames: int, warm_up: Path
) -> list[dict]:
    """deband_video with every setting in SETTINGS; seconds and frames per second of each. An
    untimed pass over the short clip `warm_up` comes first: the first setting paid for the
    model's first call and the pipeline's start-up (Y4M, with no encoder, read slowest)."""
    deband_video(warm_up, folder / "warm-up.y4m", process, force=True, progress=False)
    rows = []
    for label, suffix, settings in SETTINGS:
        started = time.perf_counter()
        report = deband_video(
            source, folder / f"out{suffix}", process, force=True, progress=False, **settings
        )
        seconds = time.perf_counter() - started
        assert report.frames == frames, (label, report.frames)
        rows.append({"setting": label, **{k: str(v) for k, v in settings.items()}, "frames": frames,
                     "seconds": seconds, "fps": frames / seconds})  # fmt: skip
        click.echo(f"{label:36s} {frames / seconds:7.2f} fps", err=True)
    return rows


@click.command("video_throughput.py", cls=BdinnCommand)
@click.option("--frames", type=click.IntRange(1), default=48, help="Frames in the synthetic clip.")
@click.option("--size", default="1080x1920", callback=parse_frame_size, help="Frame HEIGHTxWIDTH.")
@click.option("--model", default=None, help="Also run this model (any file Debander.open takes).")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None, help="Checkpoints only.")
@click.option("--json", "json_path", type=ReportFile(), default=None)
@report_files("json_path", models="model", bundled_default=False)  # no --model: none runs
@stops_cleanly
def main(
    frames: int, size: tuple[int, int], model: str | None, precision: str | None, json_path: Path | None
) -> None:
    height, width = size
    if height % 2 or width % 2:
        raise click.BadParameter(f"{height}x{width}: 4:2:0 needs even sides", param_hint="--size")
    if precision is not None and model is None:  # it was ignored: no model runs without --model
        raise click.BadParameter("is for the model's runs; give --model too", param_hint="--precision")
    try:  # before the runs without it, minutes of them: a model that does not open is said now
        deband = Debander.open(model, precision=precision) if model else None
    except (BackendError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    with tempfile.TemporaryDirectory() as tmp, deband or contextlib.nullcontext():
        folder = Path(tmp)
        source = make_clip(folder / "source.mkv", frames, height, width)
        warm_up = make_clip(folder / "warm-up.mkv", 2, height, width)
        result = {
            "machine": f"{cpu_model()} ({os.cpu_count()} cores), {platform.python_version()}",
            "frame": f"{height}x{width}, 10-bit 4:2:0 in and out",
            "without_model": run_settings(source, folder, lambda rgb: rgb, frames, warm_up),
        }
        if deband is not None:
            result["model"] = {"file": str(model), **deband.describe()}
            result["with_model"] = run_settings(
                source, folder, lambda rgb: deband(rgb, bit_depth=16), frames, warm_up
            )
    click.echo(f"\n{result['machine']}; {result['frame']}; frames per second\n")
    click.echo("| setting | without model |" + (" with model |" if model else ""))
    click.echo("| --- | --- |" + (" --- |" if model else ""))
    for i, row in enumerate(result["without_model"]):
        with_model = f" {result['with_model'][i]['fps']:.2f} |" if model else ""
        click.echo(f"| {row['setting']} | {row['fps']:.2f} |{with_model}")
    if json_path:
        write_report(json_path, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
