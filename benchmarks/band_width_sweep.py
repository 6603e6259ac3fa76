"""How a model's debanding gain depends on how wide the bands are.

A debander can only rebuild the ramp inside a band if it sees the band's edges, so its gain
falls once bands grow wider than its receptive field. This script makes that visible: linear
8-bit ramps (horizontal and at 30 degrees) quantised to `--bits` bits, one level every W pixels
for W = 8 .. 256, debanded by the model (any file `Debander.open` takes; default: the bundled
model), scored against the 8-bit ramp away from the picture's borders. On the held-out
wallpapers the median luma slope of the smooth regions puts 5-bit bands at 60-280 px wide.

    python benchmarks/band_width_sweep.py [MODEL ...] [--bits 5] [--max-change off] [--json out.json]
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click
import numpy as np

from bdinn.runtime import Debander
from bdinn.runtime.backends import BackendError
from bdinn.runtime.cli_options import (
    BdinnCommand,
    max_change_option,
    one_line_warnings,
    out_of_memory,
    stops_cleanly,
)
from bdinn.runtime.cli_reports import json_option, report_files, write_report
from bdinn.runtime.metrics import psnr

BAND_WIDTHS = (8, 16, 32, 64, 128, 256)
ANGLES_DEG = (0.0, 30.0)
LEVELS_SPANNED = 16  # quantisation levels each ramp crosses
MARGIN = 64  # border pixels left out of the score (the network pads there)
# The coarsest depth whose ramps stay below white where they are scored: from 0.25 they climb 16
# levels there, which at 4 bits (1/15 a level) would end at 1.32, a clipped, flat end scored as ramp.
MIN_BITS = 5


def ramp_pair(band_px: int, bits: int, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """(clean 8-bit ramp, the same ramp quantised to `bits`), RGB uint8, one level per band_px."""
    step = 1.0 / (2**bits - 1)
    width = LEVELS_SPANNED * band_px + 2 * MARGIN
    height = max(2 * MARGIN + 64, width // 4)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    theta = np.deg2rad(angle_deg)
    along = (xx - MARGIN) * np.cos(theta) + (yy - height / 2) * np.sin(theta)
    value = np.clip(0.25 + along / band_px * step, 0, 1)
    clean = np.rint(value * 255).astype(np.uint8)
    banded = np.rint(np.rint(clean / 255 / step) * step * 255).astype(np.uint8)
    return np.repeat(clean[..., None], 3, -1), np.repeat(banded[..., None], 3, -1)


def sweep(debander: Debander, bits: int) -> list[dict[str, float]]:
    """One row per band width: input and model PSNR for each angle."""
    inner = (slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))

    def score(a: np.ndarray, clean: np.ndarray) -> float:
        return psnr(a[inner].astype(np.float32) / 255, clean[inner].astype(np.float32) / 255)

    rows = []
    for band in BAND_WIDTHS:
        row: dict[str, float] = {"band_px": band}
        for angle in ANGLES_DEG:
            clean, banded = ramp_pair(band, bits, angle)
            row[f"input_{angle:g}"] = score(banded, clean)
            row[f"model_{angle:g}"] = score(np.asarray(debander(banded, bit_depth=8)), clean)
        rows.append(row)
    return rows


def to_markdown(name: str, rows: list[dict[str, float]]) -> str:
    head = " | ".join(f"input / model at {a:g}° (dB)" for a in ANGLES_DEG)
    lines = [
        f"### {name}",
        "",
        f"| band width (px) | {head} | mean gain (dB) |",
        "| ---: |" + " --- |" * (len(ANGLES_DEG) + 1),
    ]
    for row in rows:
        cells = " | ".join(f"{row[f'input_{a:g}']:.2f} / {row[f'model_{a:g}']:.2f}" for a in ANGLES_DEG)
        gain = np.mean([row[f"model_{a:g}"] - row[f"input_{a:g}"] for a in ANGLES_DEG])
        lines.append(f"| {row['band_px']} | {cells} | {gain:+.2f} |")
    return "\n".join(lines)


@click.command("band_width_sweep.py", cls=BdinnCommand)
@click.argument("models", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--bits",
    type=click.IntRange(MIN_BITS, 7),
    default=5,
    show_default=True,
    help=f"Quantise the ramps to this many bits (from {MIN_BITS}: coarser levels run them into white).",
)
@json_option
@max_change_option
@report_files("json_path", models="models")
@stops_cleanly
@one_line_warnings()
def main(models: tuple[Path, ...], bits: int, json_path: Path | None, max_change: float | None) -> None:
    """Debanding gain against band width for MODELS (default: the bundled model), served as
    bdinn-run serves them (--max-change off: the network's raw output, as the model card has it)."""
    results = {}
    with contextlib.ExitStack() as opened:
        try:  # every model now: a bad second one failed after the first one's sweep
            debanders = {
                str(model) if model else "bundled model": opened.enter_context(
                    Debander.open(model, max_change=max_change)
                )
                for model in models or (None,)
            }
            for name, debander in debanders.items():
                results[name] = sweep(debander, bits)
                click.echo(to_markdown(name, results[name]) + "\n")
        except (BackendError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        except MemoryError as exc:  # PyTorch's or ONNX Runtime's
            raise out_of_memory(
                exc, "the widest ramp is 1056x4224: free memory or use a larger machine"
            ) from None
    if json_path:
        record = {"bits": bits, "max_change": max_change, "results": results}
        write_report(json_path, json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
