"""Does debanding flicker? How steady a debanded clip's smooth regions are from frame to frame.

A debander sees one frame at a time, but video is watched in motion: where a codec re-quantises a
gradient differently from one frame to the next (each new GOP's I-frame, a slow pan), a debander
that reacts to every small change makes the sky shimmer, which no single-frame score shows. This
script makes short clips from clean pictures (held still, and panning slowly), encodes each as
one real x264 video (an I-frame every --gop frames), decodes it, debands every frame with the
model and FFmpeg's presets, and measures over the clean picture's smooth region (bdinn-eval's
mask), with the pan undone so that a steady picture scores zero:

- `flicker`: per pixel, the standard deviation over the frames, averaged (8-bit levels);
- `step`: the mean absolute change from one frame to the next (8-bit levels);
- `psnr`, `smooth_psnr`: against the clean clip, means over the frames (as bdinn-eval scores).

    python benchmarks/temporal_stability.py [MODEL] --clean runs/val-clean --size 540x960 \\
        --frames 12 --max-images 3 [--json out.json]

The model's output is taken at 16 bits, as the 10-bit video that bdinn-run writes by default
keeps it; rounding to 8 bits would add steps of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from bdinn.runtime import Debander
from bdinn.runtime.bench import parse_frame_size
from bdinn.runtime.cli_options import (
    BdinnCommand,
    max_change_option,
    one_line_warnings,
    out_of_memory,
    stops_cleanly,
)
from bdinn.runtime.cli_reports import json_option, report_files, write_report
from bdinn.runtime.ffmpeg_filters import apply_preset
from bdinn.runtime.imageio import to_float
from bdinn.runtime.metrics import capped_psnr
from bdinn.train.degrade import codec_roundtrip_clip
from bdinn.train.evaluate import (
    BASELINES,
    MIN_SMOOTH_PIXELS,
    EvalError,
    clean_pictures,
    smooth_mask,
)

SCORES = ("psnr", "smooth_psnr", "flicker", "step")
MOTIONS = {"still": 0, "pan": 1}  # pixels the picture moves per frame


def clip_of(picture: np.ndarray, width: int, frames: int, speed: int) -> list[np.ndarray]:
    """`frames` windows `width` wide, each `speed` pixels further right than the one before."""
    return [np.ascontiguousarray(picture[:, i * speed : i * speed + width]) for i in range(frames)]


def aligned(frames: list[np.ndarray], speed: int, first: int) -> np.ndarray:
    """The frames as float levels (0..255), shifted so that one pixel of the picture sits at one
    place in every frame, from picture column `first` to the frames' width: a part that every
    frame shows when first >= (frames - 1) * speed, so the still and panning clips can be cut alike."""
    width = frames[0].shape[1]
    windows = [to_float(f)[:, first - i * speed : width - i * speed] for i, f in enumerate(frames)]
    return np.stack(windows) * 255


def stability(out: np.ndarray, smooth: np.ndarray) -> dict[str, float]:
    """flicker and step of an aligned clip (frames x H x W x 3, levels) over the smooth mask."""
    return {
        "flicker": float(out.std(axis=0)[smooth].mean()),
        "step": float(np.abs(np.diff(out, axis=0))[:, smooth].mean()),
    }


def scores(out: np.ndarray, clean: np.ndarray, smooth: np.ndarray) -> dict[str, float]:
    """All SCORES of an aligned clip against the aligned clean clip."""

    def mean_psnr(pixels: np.ndarray | slice) -> float:
        return float(
            np.mean([capped_psnr(o[pixels] / 255, c[pixels] / 255) for o, c in zip(out, clean, strict=True)])
        )

    return {"psnr": mean_psnr(slice(None)), "smooth_psnr": mean_psnr(smooth), **stability(out, smooth)}


def measure(
    model: Path | None,
    clean_dir: Path,
    size: tuple[int, int],
    frames: int,
    crf: int,
    gop: int,
    max_images: int | None,
    max_change: float | None,
) -> dict[str, dict[str, dict[str, float]]]:
    """motion -> method -> SCORES, means over the pictures."""
    height, width = size
    first = (frames - 1) * max(MOTIONS.values())  # the columns every clip shows, still or panning
    if first >= width:
        raise EvalError(
            f"{frames} frames pan {first} px, more than the clips' width {width}; use fewer frames"
        )
    deband = Debander.open(model, max_change=max_change)
    _, pictures = clean_pictures(clean_dir, max_images, (height, width + first))
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    read = 0
    for key, picture in pictures:
        read += 1
        for motion, speed in MOTIONS.items():
            clean = clip_of(picture, width, frames, speed)
            banded = codec_roundtrip_clip(clean, "x264", crf, {"g": str(gop)})
            clean_aligned = aligned(clean, speed, first)
            smooth = smooth_mask(clean_aligned[0].round().astype(np.uint8))
            if smooth.sum() < MIN_SMOOTH_PIXELS:
                click.echo(f"{key} ({motion}): skipped, it has no smooth region at this size", err=True)
                continue
            outputs = {
                "input (banded)": banded,
                **{preset: [apply_preset(f, preset) for f in banded] for preset in BASELINES},
                "model": [deband(f, bit_depth=16) for f in banded],
                "clean (reference)": clean,
            }
            for method, out in outputs.items():
                row = scores(aligned(out, speed, first), clean_aligned, smooth)
                results.setdefault(motion, {}).setdefault(method, []).append(row)
            click.echo(f"{key} ({motion}): done", err=True)

    if not read:
        raise EvalError(f"{clean_dir}: none of its pictures could be read (see the warnings above)")
    if not results:
        raise EvalError(
            f"{clean_dir}: no picture has a smooth region at --size {height}x{width}; "
            "give pictures with smooth areas or a larger --size"
        )

    def means(rows: list[dict[str, float]]) -> dict[str, float]:
        return {f: float(np.mean([r[f] for r in rows])) for f in SCORES}

    return {motion: {method: means(rows) for method, rows in by.items()} for motion, by in results.items()}


def even_frame_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """A 4:2:0 clip size the network takes: even sides from 16."""
    height, width = parse_frame_size(ctx, param, value)
    if height % 2 or width % 2:
        raise click.BadParameter(f"{value}: 4:2:0 clips need even sides")
    return height, width


@click.command("temporal_stability.py", cls=BdinnCommand)
@click.argument("model", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--clean", "clean_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option("--size", default="540x960", callback=even_frame_size, help="HEIGHTxWIDTH of the clips.")
@click.option("--frames", default=12, type=click.IntRange(2), help="Frames per clip.")
@click.option("--crf", default=38, type=click.IntRange(0, 51), help="x264 CRF of the banded clips.")
@click.option("--gop", default=4, type=click.IntRange(1), help="Frames from one I-frame to the next.")
@click.option("--max-images", default=3, type=click.IntRange(1), help="Clean pictures used (seeded pick).")
@max_change_option
@json_option
@report_files("json_path", models="model", folders=("clean_dir",))
@stops_cleanly
@one_line_warnings()
def main(model: Path | None, clean_dir: Path, size: tuple[int, int], frames: int, crf: int, gop: int,
         max_images: int, max_change: float | None, json_path: Path | None) -> None:  # fmt: skip
    """Flicker of the model's and FFmpeg's debanding on x264 clips (default MODEL: the bundled one)."""
    try:
        report = measure(model, clean_dir, size, frames, crf, gop, max_images, max_change)
    except (ValueError, OSError, RuntimeError) as exc:  # EvalError, ImageError, a model that will not open
        raise click.ClickException(str(exc)) from None
    except MemoryError as exc:  # PyTorch's, which was a RuntimeError caught above
        raise out_of_memory(exc, "a smaller --size needs less") from None
    click.echo("| motion | method | PSNR (dB) | smooth PSNR (dB) | flicker (levels) | step (levels) |")
    click.echo("| --- | --- | ---: | ---: | ---: | ---: |")
    for motion, by in report.items():
        for method, row in by.items():
            cells = " | ".join(f"{row[f]:.2f}" if f.endswith("psnr") else f"{row[f]:.3f}" for f in SCORES)
            click.echo(f"| {motion} | {method} | {cells} |")
    if json_path:
        write_report(json_path, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
