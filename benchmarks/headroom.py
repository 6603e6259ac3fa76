"""How far any debander could go: whole-image PSNR if the smooth regions were restored perfectly.

Banding lives in smooth regions, but whole-image PSNR also counts texture that quantisation or a
codec destroyed and no debander rebuilds. Before training for a PSNR bar it pays to know whether
the bar is reachable at all. For every degradation and method (the input, FFmpeg's presets, the
model) this script splits each picture's squared error into its smooth region (bdinn-eval's
mask: clean luma std < 1/255 over 9x9) and the rest, and reports, as means over the pictures:

- `psnr`: as bdinn-eval reports it;
- `smooth_share`: the smooth region's share of the squared error;
- `smooth_restored`: PSNR with the smooth region replaced by the clean picture, i.e. the ceiling
  of a perfect debander that leaves the rest as this method does;
- `rest_restored`: PSNR with everything else replaced by the clean picture.

    python benchmarks/headroom.py [MODEL] --clean runs/val-clean --size 1080x1920 \\
        --degrade q5,blur6 --max-images 6 [--max-change off] [--json out.json]
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from bdinn.runtime import Debander
from bdinn.runtime.cli_options import (
    BdinnCommand,
    max_change_option,
    one_line_warnings,
    out_of_memory,
    parse_optional_size,
    stops_cleanly,
)
from bdinn.runtime.cli_reports import json_option, report_files, write_report
from bdinn.runtime.debander import DEFAULT_MAX_CHANGE
from bdinn.runtime.ffmpeg_filters import apply_preset
from bdinn.runtime.imageio import to_float
from bdinn.runtime.metrics import PSNR_CAP, psnr_of_mse
from bdinn.train.evaluate import (
    BASELINES,
    EvalError,
    check_size,
    pairs_from_clean,
    parse_degradations,
    smooth_mask,
)

FIELDS = ("psnr", "smooth_share", "smooth_restored", "rest_restored")


def _db(mse: float) -> float:
    """PSNR of a mean squared error, capped as bdinn-eval caps it (a perfect part has no finite dB)."""
    return min(psnr_of_mse(mse), PSNR_CAP)


def split_error(out: np.ndarray, clean: np.ndarray, smooth: np.ndarray) -> dict[str, float]:
    """The FIELDS for one picture: its squared error split by the smooth mask."""
    err = ((to_float(out).astype(np.float64) - to_float(clean).astype(np.float64)) ** 2).sum(-1)
    size = err.size * out.shape[-1]
    smooth_part, rest_part = err[smooth].sum() / size, err[~smooth].sum() / size
    total = smooth_part + rest_part
    return {
        "psnr": _db(total),
        "smooth_share": smooth_part / total if total > 0 else 0.0,
        "smooth_restored": _db(rest_part),
        "rest_restored": _db(smooth_part),
    }


def headroom(
    model: Path | None,
    clean_dir: Path,
    degrade: str,
    max_images: int | None,
    size: tuple[int, int] | None,
    max_change: float | None = DEFAULT_MAX_CHANGE,
) -> dict[str, dict]:
    """Per degradation: the pictures' names and, per method, the FIELDS per picture and their means."""
    size = check_size(size) if size else None  # as bdinn-eval: now, not as an OpenCV error mid-run
    debander = Debander.open(model, max_change=max_change)
    _, pairs = pairs_from_clean(clean_dir, parse_degradations(degrade), max_images, size)
    report: dict[str, dict] = {}
    for pair in pairs:
        smooth = smooth_mask(pair.clean)
        outs = {"input": pair.banded, **{name: apply_preset(pair.banded, name) for name in BASELINES}}
        outs["model"] = np.asarray(debander(pair.banded.copy(), bit_depth=8))
        entry = report.setdefault(pair.degradation, {"images": [], "methods": {}})
        entry["images"].append(pair.name)
        for method, out in outs.items():
            entry["methods"].setdefault(method, {"per_image": []})["per_image"].append(
                split_error(out, pair.clean, smooth)
            )
    if not report:  # every picture skipped: an empty table would read as a result
        raise EvalError(f"{clean_dir}: none of its pictures could be read (see the warnings above)")
    for entry in report.values():
        for row in entry["methods"].values():
            row["mean"] = {f: float(np.mean([image[f] for image in row["per_image"]])) for f in FIELDS}
    return report


def to_markdown(report: dict[str, dict]) -> str:
    """The means as one table, a row per degradation and method."""
    lines = [
        "| degradation | method | PSNR (dB) | smooth share of error | smooth restored (dB) "
        "| rest restored (dB) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for degradation, entry in report.items():
        for method, row in entry["methods"].items():
            m = row["mean"]
            lines.append(
                f"| {degradation} | {method} | {m['psnr']:.2f} | {m['smooth_share']:.2f} | "
                f"{m['smooth_restored']:.2f} | {m['rest_restored']:.2f} |"
            )
    return "\n".join(lines)


@click.command("headroom.py", cls=BdinnCommand)
@click.argument("model", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--clean", "clean_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option("--degrade", default="q5,blur6", help="As bdinn-eval: q5, blur6, x264, x265, svtav1 or ids.")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="bdinn-eval's seeded subset.")
@click.option("--size", default=None, callback=parse_optional_size, help="HEIGHTxWIDTH, e.g. 1080x1920.")
@max_change_option
@json_option
@report_files("json_path", models="model", folders=("clean_dir",))
@stops_cleanly
@one_line_warnings()
def main(
    model: Path | None, clean_dir: Path, degrade: str, max_images: int | None, size: tuple[int, int] | None,
    max_change: float | None, json_path: Path | None,
) -> None:  # fmt: skip
    """Split each method's error into smooth regions and the rest (default MODEL: the bundled one)."""
    try:
        report = headroom(model, clean_dir, degrade, max_images, size, max_change)
    except (ValueError, OSError, RuntimeError) as exc:  # EvalError, ImageError, a model that will not open
        raise click.ClickException(str(exc)) from None
    except MemoryError as exc:  # PyTorch's, which was a RuntimeError caught above
        raise out_of_memory(exc, "a smaller --size needs less") from None
    click.echo(to_markdown(report))
    if json_path:
        write_report(json_path, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
