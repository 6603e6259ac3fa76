"""Interlaced video: what debanding field by field gains over debanding whole frames.

bdinn debands an interlaced frame's two fields one by one (runtime/video_fields.py). This script
measures why, on clean pictures made into interlaced 4:2:0 frames the way a camera makes them: the
top field from the picture, the bottom field from the picture moved `--pan` pixels (motion between
the two instants), each field converted to 4:2:0 on its own, after 5-bit banding. Each frame is
then handled the old way (converted and debanded as one picture) and the new way (field by
field), and scored against the clean frame as a correct interlaced display shows it (each field
converted on its own), PSNR in dB:

- `input`: the banded frame;
- `whole, no model`: converted to RGB and back as one picture, the colour bleed alone;
- `whole`: debanded as one picture; `fields`: debanded field by field.

    python benchmarks/interlaced_fields.py [MODEL] --clean runs/val-clean --max-images 4 --pan 0 --pan 8
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
from bdinn.runtime.imageio import to_float
from bdinn.runtime.metrics import capped_psnr
from bdinn.runtime.processing import MIN_SIDE
from bdinn.runtime.video_colour import Colour, decode_rgb, encode_frame
from bdinn.runtime.video_fields import split_fields, weave
from bdinn.train.degrade import reduce_bit_depth
from bdinn.train.evaluate import EvalError, clean_pictures

METHODS = ("input", "whole, no model", "whole", "fields")
BT709 = Colour(1, 1, 1, 1, 1)  # limited-range BT.709 tags, as HD video has


def interlaced_frame(rgb: np.ndarray) -> object:
    """A 4:2:0 frame whose fields are `rgb`'s even and odd rows, each converted on its own."""
    top, bottom = (encode_frame(np.ascontiguousarray(rgb[parity::2]), "yuv420p", BT709) for parity in (0, 1))
    return weave(top, bottom, rgb.shape[0])


def as_shown(frame: object) -> np.ndarray:
    """What a correct interlaced display shows of a frame: each field converted on its own."""
    rgb = np.empty((frame.height, frame.width, 3), np.uint8)
    for parity, field in enumerate(split_fields(frame)):
        rgb[parity::2] = decode_rgb(field, False)
    return rgb


def scores(deband: Debander, clean: np.ndarray) -> dict[str, float]:
    """Each METHOD's PSNR for one clean interlaced picture (H x W x 3 uint8, fields woven)."""
    banded = interlaced_frame((reduce_bit_depth(to_float(clean), 5) * 255).round().astype(np.uint8))
    whole = decode_rgb(banded, False)
    fields = [encode_frame(deband(decode_rgb(f, False)), "yuv420p", BT709) for f in split_fields(banded)]
    outputs = {
        "input": banded,
        "whole, no model": encode_frame(whole, "yuv420p", BT709),
        "whole": encode_frame(deband(whole), "yuv420p", BT709),
        "fields": weave(*fields, clean.shape[0]),
    }
    return {name: capped_psnr(as_shown(frame) / 255, clean / 255) for name, frame in outputs.items()}


def measure(
    model: Path | None, clean_dir: Path, size: tuple[int, int], pans: tuple[int, ...], max_images: int,
    max_change: float | None,
) -> dict[str, dict[str, dict[str, float]]]:  # fmt: skip
    """pan -> picture (and "mean") -> METHOD -> PSNR."""
    deband = Debander.open(model, max_change=max_change)
    height, width = size
    _, pictures = clean_pictures(clean_dir, max_images, (height, width + max(pans)))
    report: dict[str, dict[str, dict[str, float]]] = {}
    for key, picture in pictures:
        for pan in pans:
            woven = picture[:, :width].copy()
            woven[1::2] = picture[1::2, pan : pan + width]  # the bottom field, a moment later
            report.setdefault(f"pan {pan} px", {})[key] = scores(deband, woven)
            click.echo(f"{key} (pan {pan} px): done", err=True)
    if not report:  # every picture skipped: an empty table would read as a result
        raise EvalError(f"{clean_dir}: none of its pictures could be read (see the warnings above)")
    for rows in report.values():
        rows["mean"] = {m: float(np.mean([row[m] for row in rows.values()])) for m in METHODS}
    return report


def field_frame_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """An interlaced 4:2:0 frame size whose fields (half its height) the network takes."""
    height, width = parse_frame_size(ctx, param, value)
    if height % 4 or height < 2 * MIN_SIDE or width % 2:
        raise click.BadParameter(
            f"{value}: each field is half the height, so the height must be a multiple of 4 from "
            f"{2 * MIN_SIDE}, and the width even (4:2:0)"
        )
    return height, width


@click.command("interlaced_fields.py", cls=BdinnCommand)
@click.argument("model", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--clean", "clean_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option("--size", default="1080x1920", callback=field_frame_size, help="HEIGHTxWIDTH of the frames.")
@click.option("--pan", "pans", multiple=True, type=click.IntRange(0), default=(0, 8), help="Motion, px.")
@click.option("--max-images", default=4, type=click.IntRange(1), help="Clean pictures used (seeded pick).")
@max_change_option
@json_option
@report_files("json_path", models="model", folders=("clean_dir",))
@stops_cleanly
@one_line_warnings()
def main(model: Path | None, clean_dir: Path, size: tuple[int, int], pans: tuple[int, ...], max_images: int,
         max_change: float | None, json_path: Path | None) -> None:  # fmt: skip
    """PSNR of interlaced frames debanded whole and field by field (default MODEL: the bundled one)."""
    try:
        report = measure(model, clean_dir, size, pans, max_images, max_change)
    except (ValueError, OSError, RuntimeError) as exc:  # EvalError, ImageError, a model that will not open
        raise click.ClickException(str(exc)) from None
    except MemoryError as exc:  # PyTorch's, which was a RuntimeError caught above
        raise out_of_memory(exc, "a smaller --size needs less") from None
    click.echo(f"| motion | picture | {' | '.join(METHODS)} |")
    click.echo(f"| --- | --- |{' ---: |' * len(METHODS)}")
    for pan, rows in report.items():
        for picture, row in rows.items():
            click.echo(f"| {pan} | {picture} | {' | '.join(f'{row[m]:.2f}' for m in METHODS)} |")
    if json_path:
        write_report(json_path, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
