"""How much of a frame's flat black, white and grey a model changes.

Letterbox bars are video black (RGB 0 after limited-range conversion) and must reach the encoder
uniform, as must black frames and white backgrounds. This script debands a smooth gradient
between black bars (`--size`, 1920x1080 with 140-px bars by default) and flat frames of black,
dark grey (16), mid grey (128) and white, and reports the share of the flat pixels with any
channel changed and the mean change of all their samples, for the network's raw output and
served as bdinn-run serves it (`--max-change`: the change limit, which keeps samples at 0 and
255 as they are in a picture that is not posterised).

    python benchmarks/flat_areas.py [MODEL ...] [--size 1080x1920] [--max-change 2] [--json out.json]
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click
import numpy as np

from bdinn.runtime import Debander
from bdinn.runtime.backends import BackendError
from bdinn.runtime.bench import parse_frame_size
from bdinn.runtime.cli_options import (
    BdinnCommand,
    max_change_option,
    one_line_warnings,
    out_of_memory,
    stops_cleanly,
)
from bdinn.runtime.cli_reports import json_option, report_files, write_report

BAR_SHARE = 140 / 1080  # of the height, each bar: a 2.39:1 film in a 16:9 frame
FLAT_SIZE = (256, 384)
FLAT_LEVELS = {"black": 0, "dark grey": 16, "mid grey": 128, "white": 255}


def letterboxed(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(frame, mask of its bars): an 8-bit colour gradient between two black bars."""
    bar = max(round(height * BAR_SHARE), 2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    picture = np.stack(
        [40 + 120 * xx / width, 60 + 80 * yy / height, 90 + 60 * (xx + yy) / (width + height)], -1
    )
    frame = np.rint(picture).astype(np.uint8)
    bars = np.zeros((height, width), bool)
    bars[:bar] = bars[height - bar :] = True
    frame[bars] = 0
    return frame, bars


def frames(size: tuple[int, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each test frame with the mask of its flat pixels."""
    made = {"letterbox bars": letterboxed(*size)}
    for name, level in FLAT_LEVELS.items():
        made[f"flat {name}"] = (np.full((*FLAT_SIZE, 3), level, np.uint8), np.ones(FLAT_SIZE, bool))
    return made


def changes(debander: Debander, frame: np.ndarray, flat: np.ndarray) -> dict[str, float]:
    """Share (%) of the flat pixels with any channel changed, and the mean change of the flat
    pixels' samples in levels (changed or not)."""
    moved = debander(frame, bit_depth=8).astype(np.int16) - frame
    return {
        "changed_percent": 100 * float(moved[flat].any(axis=-1).mean()),
        "mean_change": float(moved[flat].mean()),
    }


def to_markdown(name: str, rows: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        f"### {name}",
        "",
        "| frame | raw: changed (%) | raw: mean change | served: changed (%) | served: mean change |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for frame, row in rows.items():
        raw, served = row["raw"], row["served"]
        lines.append(
            f"| {frame} | {raw['changed_percent']:.2f} | {raw['mean_change']:+.3f} | "
            f"{served['changed_percent']:.2f} | {served['mean_change']:+.3f} |"
        )
    return "\n".join(lines)


@click.command("flat_areas.py", cls=BdinnCommand)
@click.argument("models", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--size",
    default="1080x1920",
    show_default=True,
    callback=parse_frame_size,
    metavar="HxW",
    help="Size of the letterboxed frame (bars of 140/1080 of its height each).",
)
@json_option
@max_change_option
@report_files("json_path", models="models")
@stops_cleanly
@one_line_warnings()
def main(
    models: tuple[Path, ...], size: tuple[int, int], json_path: Path | None, max_change: float | None
) -> None:
    """Changes to flat black, grey and white by MODELS (default: the bundled model), raw and served."""
    made = frames(size)
    results = {}
    with contextlib.ExitStack() as opened:
        try:  # every model now, so that a bad second one fails before the first one's work
            debanders = {
                str(model) if model else "bundled model": {
                    way: opened.enter_context(Debander.open(model, max_change=limit))
                    for way, limit in (("raw", None), ("served", max_change))
                }
                for model in models or (None,)
            }
            for name, ways in debanders.items():
                results[name] = {
                    frame: {way: changes(debander, picture, flat) for way, debander in ways.items()}
                    for frame, (picture, flat) in made.items()
                }
                click.echo(to_markdown(name, results[name]) + "\n")
        except (BackendError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        except MemoryError as exc:  # PyTorch's or ONNX Runtime's
            raise out_of_memory(exc, "a smaller --size needs less") from None
    if json_path:
        record = {"size": list(size), "max_change": max_change, "results": results}
        write_report(json_path, json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
