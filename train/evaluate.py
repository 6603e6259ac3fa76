"""`bdinn-eval`: a debander against FFmpeg's deband and gradfun, on paired or synthetic banding.

    bdinn-eval MODEL --pairs BANDED_DIR CLEAN_DIR
    bdinn-eval MODEL --clean DIR --degrade q5,blur6,x264,x265,svtav1 --size 1080x1920

For every degradation, each banded image is debanded by FFmpeg's `deband` and `gradfun` (FFmpeg's
defaults and a stronger preset, see bdinn.runtime.ffmpeg_filters) and by the model, and every
output is scored against the clean image:

- PSNR (dB) and SSIM over the whole RGB image, in [0, 1] units; a PSNR of identical images is
  counted as 100 dB so that means stay finite.
- Smooth-region PSNR: PSNR over the pixels where banding shows, those whose clean BT.709 luma has
  a standard deviation below 1/255 over the 9x9 window around them (reflected borders). Images
  with fewer than 64 such pixels are left out of this mean.
- CAMBI (bdinn.runtime.cambi, no-reference: 0 = no banding; topk 0.2, contrasts up to 8 codes).
  The "clean" row gives the clean images' own CAMBI: 8-bit pictures with wide smooth gradients
  have some. CAMBI only looks at flat areas (pixels equal to their neighbours), so any output
  with grain or dither in it, deband's included, scores low whether or not its steps are gone:
  read CAMBI next to the smooth-region PSNR.

The degradations (train/degrade.py) are deterministic, single-frame 8-bit 4:2:0 BT.709 encodes
for the codecs; the named ones are fixed here:

| name | degradation | what |
| --- | --- | --- |
| q5 | q5 | 5 bits per channel |
| blur6 | b1.0q6 | Gaussian blur, sigma 1 pixel, then 6 bits |
| x264 | x264crf38 | x264, CRF 38, preset medium |
| x265 | x265crf40 | x265, CRF 40, preset medium |
| svtav1 | svtav1crf57 | SVT-AV1, CRF 57, preset 8 |

The CRFs sit three quarters up the training ranges (x264 30-40, x265 32-42, SVT-AV1 48-60),
where the three codecs band about equally. Any degradation id also works: q4, b0.5q5, x264crf30
(CAMBI takes steps over 8 codes, 4 bits and coarser, for edges: it scores such an input low).

The model sees the banded image as H x W x 3 uint8 (16-bit banded files are rounded to 8 bits)
and may return uint8 or uint16 (--bit-depth 16); with --bit-depth 16, `deband` also runs at 16
bits (gradfun is 8-bit only). Clean folders are searched recursively with one file per picture,
transparent pictures composited, as for training; --max-images takes a seeded random subset.
Scoring costs about 20 s of CPU per 1080p pair with the baselines (SSIM and CAMBI, ~1.5 s each
per output), most of it outside the model.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np
from tqdm import tqdm

from ..runtime.cambi import cambi
from ..runtime.cli_options import (
    BdinnCommand,
    allow_embedded_plugin_option,
    max_change_option,
    one_line_warnings,
    out_of_memory,
    parse_optional_size,
    plugin_library_option,
    stops_cleanly,
)
from ..runtime.cli_reports import ReportFile, echo_result
from ..runtime.debander import Debander
from ..runtime.ffmpeg_filters import PRESETS, apply_preset
from ..runtime.files import OutputError, atomic_write_text, check_writable, files_of_model, written_together
from ..runtime.imageio import (
    MAX_PIXELS,
    ImageError,
    from_float,
    read_image,
    stored_layout,
    stored_size,
    to_float,
)
from ..runtime.metrics import BT709_LUMA, PSNR_CAP, capped_psnr, ssim
from ..runtime.pyav import MissingPackage, require_pyav
from .clean_sources import discover_sources, load_clean, none_found
from .degrade import Degradation
from .image_pair import ImagePair, find_pairs

NAMED_DEGRADATIONS = {
    "q5": "q5",
    "blur6": "b1.0q6",
    "x264": "x264crf38",
    "x265": "x265crf40",
    "svtav1": "svtav1crf57",
}
DEFAULT_DEGRADATIONS = "q5,blur6,x264,x265,svtav1"
BASELINES = ("deband", "deband-strong", "gradfun", "gradfun-strong")
ROW_LABELS = {
    "input": "input (banded)",
    "deband": "deband (default)",
    "deband-strong": "deband (strong)",
    "gradfun": "gradfun (default)",
    "gradfun-strong": "gradfun (strong)",
    "model": "model",
    "clean": "clean (reference)",
}
SMOOTH_WINDOW = 9
SMOOTH_STD = 1 / 255
MIN_SMOOTH_PIXELS = 64
MIN_SIDE = 16  # SSIM's 11x11 window and the codecs want a little room

Model = Callable[[np.ndarray], np.ndarray]


class EvalError(ValueError):
    """Bad evaluation input; the message is one line."""


@dataclass(frozen=True)
class EvalPair:
    """One banded image and its clean original, under the degradation that made it."""

    degradation: str
    name: str
    banded: np.ndarray  # H x W x 3 uint8 (or uint16, scored at 16 bits): what the debanders get
    clean: np.ndarray  # H x W x 3 uint8 or uint16


def parse_degradations(text: str) -> list[tuple[str, Degradation]]:
    """ "q5,blur6,x264" -> [(name, Degradation)]: the names above or any degradation id."""
    out: list[tuple[str, Degradation]] = []
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        try:
            degradation = Degradation.parse(NAMED_DEGRADATIONS.get(name, name))
        except ValueError as exc:
            if not str(exc).startswith("unknown degradation"):  # a well-formed id out of range
                raise EvalError(f"degradation {name!r}: {str(exc).rpartition(': ')[2]}") from None
            raise EvalError(
                f"unknown degradation {name!r}; use {', '.join(NAMED_DEGRADATIONS)} "
                "or an id such as q4, b0.5q5, x264crf30, x265crf36, svtav1crf50"
            ) from None
        if degradation.id not in {d.id for _, d in out}:  # blur6 and b1.0q6 are one: the first name
            out.append((name, degradation))
    if not out:
        raise EvalError("no degradation given (e.g. --degrade q5,x264)")
    return out


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """(height, width) from --size, refused when a side is too small to evaluate, or the picture
    larger than bdinn decodes (now, not as an allocation failure after the first picture's work)."""
    if min(size) < MIN_SIDE:
        raise EvalError(f"size {size[0]}x{size[1]}: both sides must be at least {MIN_SIDE}")
    if size[0] * size[1] > MAX_PIXELS:
        raise EvalError(
            f"size {size[0]}x{size[1]}: over {MAX_PIXELS / 1e6:.0f} megapixels, more than bdinn handles"
        )
    return size


def fit_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale to cover (height, width) (area when shrinking, bicubic when enlarging), centre-crop."""
    height, width = size
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    if scale != 1:
        shape = (max(width, round(w * scale)), max(height, round(h * scale)))
        image = cv2.resize(image, shape, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    h, w = image.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    return np.ascontiguousarray(image[top : top + height, left : left + width])


def _pick(items: list, max_images: int | None, seed: int) -> list:
    """All items, or a seeded random max_images of them in their original order."""
    if max_images is None or len(items) <= max_images:
        return items
    chosen = np.random.default_rng(seed).choice(len(items), max_images, replace=False)
    return [items[i] for i in sorted(chosen)]


def _to8(image: np.ndarray) -> np.ndarray:
    return image if image.dtype == np.uint8 else from_float(to_float(image), 8)


def _at_depth(image: np.ndarray, bit_depth: int) -> np.ndarray:
    """An 8- or 16-bit picture as uint8 (rounded) or uint16 (an 8-bit one scaled by 257)."""
    if bit_depth == 8:
        return _to8(image)
    return image if image.dtype == np.uint16 else image.astype(np.uint16) * np.uint16(257)


def _check_side(name: str, shape: tuple[int, ...]) -> None:
    """Refuse a picture of `shape` (height, width, ...) too small to evaluate."""
    if min(shape[:2]) < MIN_SIDE:
        raise EvalError(
            f"{name}: {shape[1]}x{shape[0]} is too small (at least {MIN_SIDE}x{MIN_SIDE}); move it out "
            "of the folder"
        )


def _deep_banded(name: str) -> None:
    """Refuse a 16-bit banded picture at 8-bit scoring: rounded first (as it was), the input row
    scored another picture than a user's bdinn-run gives the model."""
    raise EvalError(
        f"{name}: a 16-bit banded picture; score it with --bit-depth 16, at which every row gets it as it is"
    )


def _check_pair(pair: ImagePair, banded: tuple[int, ...], clean: tuple[int, ...]) -> None:
    """Refuse a pair whose pictures, of these shapes (height, width, ...), differ in size."""
    if banded[:2] != clean[:2]:
        raise EvalError(
            f"{pair.banded} is {banded[1]}x{banded[0]} but {pair.clean} is {clean[1]}x{clean[0]}: a pair "
            "must have one size"
        )


def pairs_from_folders(
    banded_dir: Path, clean_dir: Path, max_images: int | None = None, seed: int = 0, bit_depth: int = 8
) -> tuple[int, Iterator[EvalPair]]:
    """Pairs matched by file name (any image suffix); (count, lazily loaded pairs). A 16-bit banded
    picture is given to every row as it is, at `bit_depth` 16 only."""
    found = _pick(find_pairs(Path(banded_dir), Path(clean_dir)), max_images, seed)
    for pair in found:  # from the headers, now: not after scoring every pair before it
        banded, clean = stored_size(pair.banded), stored_size(pair.clean)
        if banded and clean:
            _check_pair(pair, banded, clean)
        if banded:
            _check_side(str(pair.banded), banded)
        if bit_depth == 8 and (layout := stored_layout(pair.banded)) and layout[0] > 8:
            _deep_banded(str(pair.banded))

    def load() -> Iterator[EvalPair]:
        for pair in found:
            try:
                banded, clean = read_image(pair.banded), read_image(pair.clean)
            except ImageError as exc:
                warnings.warn(f"{exc}; pair {pair.name} skipped", stacklevel=1)
                continue
            _check_pair(pair, banded.shape, clean.shape)
            _check_side(str(pair.banded), banded.shape)
            yield EvalPair("pairs", pair.name, banded, clean)

    return len(found), load()


def clean_pictures(
    clean_dir: Path, max_images: int | None = None, size: tuple[int, int] | None = None, seed: int = 0
) -> tuple[int, Iterator[tuple[str, np.ndarray]]]:
    """The clean pictures in clean_dir (searched recursively, one file per picture as for
    training), fitted to `size` if given; (count, lazily loaded (name, picture) pairs)."""
    try:
        sources = list(discover_sources([Path(clean_dir)]).items())
    except ValueError as exc:
        raise EvalError(str(exc)) from None
    if not sources:
        raise EvalError(none_found([Path(clean_dir)]))
    sources = _pick(sources, max_images, seed)
    # A picture too small is refused now, from its header, not after the others; with --size too,
    # which blew a 10x10 icon up into 1080p blobs and scored them.
    for _, path in sources:
        if (shape := stored_size(path)) is not None:
            _check_side(str(path), shape)

    def load() -> Iterator[tuple[str, np.ndarray]]:
        for key, path in sources:
            try:
                clean = load_clean(path, key, None)
            except ImageError as exc:
                warnings.warn(f"{exc}; skipped", stacklevel=1)
                continue
            _check_side(str(path), clean.shape)
            yield key, fit_size(clean, size) if size else clean

    return len(sources), load()


def pairs_from_clean(
    clean_dir: Path,
    degradations: list[tuple[str, Degradation]],
    max_images: int | None = None,
    size: tuple[int, int] | None = None,
    seed: int = 0,
) -> tuple[int, Iterator[EvalPair]]:
    """Banded pairs made from the clean pictures in clean_dir (clean_pictures), each degraded
    every way; (count, lazily made pairs)."""
    count, pictures = clean_pictures(clean_dir, max_images, size, seed)

    def load() -> Iterator[EvalPair]:
        for key, clean in pictures:
            for name, degradation in degradations:
                yield EvalPair(name, key, degradation.apply(clean), clean)

    return count * len(degradations), load()


def smooth_mask(clean: np.ndarray) -> np.ndarray:
    """Pixels whose clean luma varies by less than SMOOTH_STD (std over a 9x9 window)."""
    luma = to_float(clean) @ BT709_LUMA
    k = (SMOOTH_WINDOW, SMOOTH_WINDOW)
    mean = cv2.boxFilter(luma, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT_101)
    mean_sq = cv2.boxFilter(luma * luma, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT_101)
    std = np.sqrt(np.maximum(mean_sq.astype(np.float64) - mean.astype(np.float64) ** 2, 0))
    return std < SMOOTH_STD


def _scores(
    out: np.ndarray, clean_f: np.ndarray, smooth: np.ndarray, bit_depth: int
) -> dict[str, float | None]:
    """PSNR, SSIM and smooth-region PSNR of `out` as it is; CAMBI at `bit_depth`, for every row
    alike: it scores 8- and 16-bit pictures on different scales (libvmaf's two paths)."""
    out_f = to_float(out)
    return {
        "psnr": capped_psnr(out_f, clean_f),
        "ssim": ssim(out_f, clean_f),
        "smooth_psnr": (
            capped_psnr(out_f[smooth], clean_f[smooth]) if smooth.sum() >= MIN_SMOOTH_PIXELS else None
        ),
        "cambi": cambi(_at_depth(out, bit_depth)),
    }


def _run_model(model: Model, banded: np.ndarray, name: str) -> np.ndarray:
    out = np.asarray(model(banded.copy()))
    if out.shape != banded.shape or out.dtype not in (np.uint8, np.uint16):
        raise EvalError(
            f"{name}: the model returned {out.dtype} {out.shape} for {banded.dtype} {banded.shape} "
            "(want the same H x W x 3 as uint8 or uint16)"
        )
    return out


def _degradation_id(label: str) -> str:
    try:
        return Degradation.parse(NAMED_DEGRADATIONS.get(label, label)).id
    except ValueError:
        return label  # "pairs", or a caller's own label


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def evaluate(
    model: Model | None,
    pairs: Iterable[EvalPair],
    baselines: bool = True,
    bit_depth: int = 8,
    total: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score the model (any H x W x 3 uint8/uint16 -> uint8/uint16 callable; None: baselines only) and
    FFmpeg's debanders on banded/clean pairs; returns the report (see `to_markdown`, `to_json`).

    Rows per degradation, means over its images: input, deband, deband-strong, gradfun,
    gradfun-strong (unless baselines=False), model (unless None), clean (CAMBI only). The
    baselines get the banded image at `bit_depth` (8, or 16: an 8-bit one scaled by 257).
    """
    if bit_depth not in (8, 16):
        raise EvalError(f"bit depth must be 8 or 16, got {bit_depth}")
    methods = ["input", *(BASELINES if baselines else ()), *(["model"] if model is not None else [])]
    per: dict[str, dict[str, dict[str, list]]] = {}
    names: dict[str, list[str]] = {}
    for pair in tqdm(pairs, total=total, desc="evaluating", unit="pair", disable=not progress or None):
        banded = pair.banded
        if banded.dtype not in (np.uint8, np.uint16) or banded.ndim != 3 or banded.shape[2] != 3:
            raise EvalError(
                f"{pair.name}: banded images must be H x W x 3 uint8 or uint16, got {banded.dtype}"
            )
        if banded.dtype == np.uint16 and bit_depth == 8:
            _deep_banded(pair.name)
        if pair.banded.shape != pair.clean.shape:
            raise EvalError(f"{pair.name}: banded {pair.banded.shape} and clean {pair.clean.shape} differ")
        rows = per.setdefault(pair.degradation, {m: {} for m in [*methods, "clean"]})
        names.setdefault(pair.degradation, []).append(pair.name)
        clean_f = to_float(pair.clean)
        smooth = smooth_mask(pair.clean)
        wide = _at_depth(banded, bit_depth)
        for method in methods:
            start = time.perf_counter()
            if method == "input":
                out = pair.banded
            elif method == "model":
                assert model is not None
                out = _run_model(model, pair.banded, pair.name)
            else:
                out = apply_preset(wide, method)
            seconds = time.perf_counter() - start
            scores = {
                **_scores(out, clean_f, smooth, bit_depth),
                "seconds": seconds if method != "input" else None,
            }
            for key, value in scores.items():
                rows[method].setdefault(key, []).append(value)
        # a 16-bit clean file lacks the 8-bit steps an 8-bit output must have
        rows["clean"].setdefault("cambi", []).append(cambi(_at_depth(pair.clean, bit_depth)))
        rows["clean"].setdefault("smooth_fraction", []).append(float(smooth.mean()))
    if not per:
        raise EvalError("no image pairs to evaluate")
    results: dict[str, Any] = {}
    for degradation, rows in per.items():
        smooth_fraction = _mean(rows["clean"].pop("smooth_fraction"))
        scored = next((row["smooth_psnr"] for row in rows.values() if "smooth_psnr" in row), [])
        results[degradation] = {
            "id": _degradation_id(degradation),
            "images": len(names[degradation]),
            "smooth_images": sum(value is not None for value in scored),  # with MIN_SMOOTH_PIXELS
            "smooth_fraction": smooth_fraction,
            "rows": {
                method: {
                    key: _mean(rows[method].get(key, [None]))
                    for key in ("psnr", "ssim", "smooth_psnr", "cambi", "seconds")
                }
                for method in rows
            },
        }
    return {
        "format": "bdinn-eval/1",
        "settings": {
            "bit_depth": bit_depth,
            "baselines": {name: PRESETS[name][1] or "(FFmpeg defaults)" for name in BASELINES}
            if baselines
            else {},
            "smooth_region": f"clean luma std < {SMOOTH_STD:.6f} over {SMOOTH_WINDOW}x{SMOOTH_WINDOW}",
            "psnr_cap_db": PSNR_CAP,
            "cambi": "bdinn.runtime.cambi, topk 0.2, max_log_contrast 5",
        },
        "images": {degradation: list(found) for degradation, found in names.items()},
        "results": results,
    }


def _cell(value: float | None, digits: int) -> str:
    # ASCII: the table goes to a console that may not be UTF-8 (an en dash ended the run there).
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def to_markdown(report: dict[str, Any]) -> str:
    """One table: a row per degradation and method, then the clean images' CAMBI."""
    lines = [
        "| degradation | method | PSNR (dB) | SSIM | smooth PSNR (dB) | CAMBI | s/image |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for degradation, result in report["results"].items():
        label = degradation if degradation == result["id"] else f"{degradation} ({result['id']})"
        for method, row in result["rows"].items():
            lines.append(
                f"| {label} | {ROW_LABELS.get(method, method)} | {_cell(row['psnr'], 2)} | "
                f"{_cell(row['ssim'], 4)} | {_cell(row['smooth_psnr'], 2)} | {_cell(row['cambi'], 2)} | "
                f"{_cell(row['seconds'], 3)} |"
            )
    fewer = [
        f"{degradation}: {result['smooth_images']} of {result['images']}"
        for degradation, result in report["results"].items()
        if result.get("smooth_images", result["images"]) < result["images"]
    ]
    if fewer:  # the other columns average every picture
        lines.append(
            f"\nSmooth PSNR averages only the pictures with at least {MIN_SMOOTH_PIXELS} smooth pixels "
            f"({'; '.join(fewer)})."
        )
    return "\n".join(lines) + "\n"


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=1, allow_nan=False) + "\n"


def _check_reports(
    json_path: Path | None, markdown_path: Path | None, model: Path | None, folders: list[Path], force: bool
) -> None:
    """The report files, checked before the evaluation: writable, each its own, none a file of the
    model or of the picture folders (--clean searches its folder's subfolders too)."""
    inputs = [
        *files_of_model(model),
        *(f for folder in folders if folder.is_dir() for f in folder.rglob("*")),
    ]
    if json_path is not None and markdown_path is not None and json_path.resolve() == markdown_path.resolve():
        raise OutputError(f"{json_path}: --json and --markdown name the same file; give each its own")
    for path in (json_path, markdown_path):
        if path is not None:
            check_writable(path, inputs, replace=force)


@click.command("bdinn-eval", cls=BdinnCommand)
@click.argument("model", required=False, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--pairs",
    nargs=2,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="BANDED_DIR CLEAN_DIR",
    help="Banded and clean folders, images matched by file name.",
)
@click.option(
    "--clean",
    "clean_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of clean pictures (searched recursively, read as 8-bit as training reads them), "
    "banded here by --degrade.",
)
@click.option(
    "--degrade",
    "degrade_text",
    default=DEFAULT_DEGRADATIONS,
    help="With --clean: comma-separated q5, blur6, x264, x265, svtav1, or ids like q4, x264crf30.",
)
@click.option(
    "--max-images", type=click.IntRange(min=1), default=None, help="Evaluate a seeded random subset."
)
@click.option(
    "--size",
    "size",
    default=None,
    callback=parse_optional_size,
    help="With --clean: scale and centre-crop clean pictures to HEIGHTxWIDTH, e.g. 1080x1920.",
)
@click.option(
    "--bit-depth",
    type=click.Choice(["8", "16"]),
    default="8",
    help="Depth of the model's (and deband's) output; 8 is what viewers get.",
)
@click.option(
    "--json",
    "json_path",
    type=ReportFile(),
    help="Write the report here ('-': on standard output, instead of the table).",
)
@click.option(
    "--markdown",
    "markdown_path",
    type=ReportFile(),
    help="Write the table here.",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing --json and --markdown files.")
@click.option("--no-baselines", is_flag=True, help="Skip FFmpeg's deband and gradfun.")
@click.option("--seed", default=0, type=click.IntRange(min=0), help="Seed of the --max-images subset.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N [default: a GPU when there is one].")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16"]),
    default=None,
    help="Checkpoints only, e.g. to measure what FP16 costs [default: as bdinn-run].",
)
@plugin_library_option
@allow_embedded_plugin_option
@max_change_option
@click.pass_context
@stops_cleanly
@one_line_warnings()
def main(
    ctx: click.Context,
    model: Path | None,
    pairs: tuple[Path, Path] | None,
    clean_dir: Path | None,
    degrade_text: str,
    max_images: int | None,
    size: tuple[int, int] | None,
    bit_depth: str,
    json_path: Path | None,
    markdown_path: Path | None,
    force: bool,
    no_baselines: bool,
    seed: int,
    device: str | None,
    precision: str | None,
    plugin_library: Path | None,
    allow_embedded_plugin: bool,
    max_change: float | None,
) -> None:
    """Score MODEL (a .plan, .onnx or .safetensors file; omitted: the bundled model) against
    FFmpeg's deband and gradfun: PSNR, SSIM, smooth-region PSNR and CAMBI per degradation."""
    if bool(pairs) == bool(clean_dir):
        raise click.UsageError("give exactly one of --pairs BANDED_DIR CLEAN_DIR and --clean DIR")
    explicit = ctx.get_parameter_source("degrade_text") == click.core.ParameterSource.COMMANDLINE
    if pairs and (explicit or size):
        raise click.UsageError(
            "--degrade and --size go with --clean (prepare --pairs folders at the size you want)"
        )
    if pairs and Path(pairs[0]).resolve() == Path(pairs[1]).resolve():  # the input scored 100 dB
        raise click.UsageError(f"--pairs names {pairs[0]} twice; give the banded and the clean folder")
    try:
        degradations = parse_degradations(degrade_text)
        size = check_size(size) if size else None
    except EvalError as exc:
        raise click.UsageError(str(exc)) from None
    depth = int(bit_depth)
    json_to_stdout = str(json_path) == "-"
    if json_to_stdout:
        json_path = None
    if str(markdown_path) == "-":  # the table goes to standard output anyway
        if json_to_stdout:
            raise click.UsageError("--json - and --markdown - both name standard output; give one a file")
        markdown_path = None
    try:
        # Now, not after the model has run on every picture (PyAV installs on Python >= 3.11 only).
        if not no_baselines:
            require_pyav("the FFmpeg baselines (deband, gradfun; or pass --no-baselines)")
        if clean_dir and any(degradation.kind != "bits" for _, degradation in degradations):
            require_pyav("codec degradations")
        _check_reports(json_path, markdown_path, model, [*pairs] if pairs else [clean_dir], force)
        if pairs:
            total, found = pairs_from_folders(pairs[0], pairs[1], max_images, seed, depth)
        else:
            assert clean_dir is not None
            total, found = pairs_from_clean(clean_dir, degradations, max_images, size, seed)
        with Debander.open(
            model, device=device, precision=precision, plugin_library=plugin_library,
            allow_embedded_plugin=allow_embedded_plugin, max_change=max_change,
        ) as deb:  # fmt: skip
            runs_on = deb.describe()
            report = evaluate(
                lambda image: deb(image, bit_depth=depth), found, baselines=not no_baselines, bit_depth=depth,
                total=total, progress=True,
            )  # fmt: skip
    except (ImageError, ValueError, OSError, RuntimeError, MissingPackage) as exc:
        # One line for the user: a bad image, model file or filter setting (EvalError, FilterError,
        # BackendError), or PyAV missing.
        raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    except MemoryError as exc:  # PyTorch's, which was a RuntimeError caught above
        raise out_of_memory(exc, "a smaller --size needs less") from None
    report["settings"].update(
        model=str(model) if model else "(bundled model)",
        source={"pairs": [str(p) for p in pairs]} if pairs else {"clean": str(clean_dir)},
        degradations={name: d.id for name, d in degradations} if clean_dir else None,
        size=f"{size[0]}x{size[1]}" if size else None,
        max_images=max_images,
        seed=seed,
        runs_on=runs_on,
    )
    table = to_markdown(report)
    shown, what = (to_json(report), "the JSON") if json_to_stdout else (table, "the table")
    reports = {path: text for path, text in ((markdown_path, table), (json_path, to_json(report))) if path}
    try:  # checked before the work; a disk that filled up since is still one line, and both or neither
        with written_together(*reports) as written:
            written.extend(atomic_write_text(path, text, replace=force) for path, text in reports.items())
    except OutputError as exc:
        echo_result(shown, what)  # minutes of scoring are not lost with the files
        raise click.ClickException(str(exc)) from None
    echo_result(shown, what)


if __name__ == "__main__":
    main()
