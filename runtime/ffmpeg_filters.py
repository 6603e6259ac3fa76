"""FFmpeg's debanding filters, `deband` and `gradfun`, on one RGB numpy image (the baselines).

Runs the FFmpeg that PyAV bundles through an `av.filter.Graph`: buffer (rgb24 or rgb48le) ->
format -> filter -> format back -> buffersink. The filters work on planar RGB, so every channel
is treated alike (no YUV round trip, whose rounding would add an error of its own):

- `deband` runs in gbrp for uint8 images and in gbrp16le for uint16 ones (its thresholds are
  fractions of the full range, so they mean the same at both depths).
- `gradfun` supports 8-bit formats only: it runs in gbrp; a uint16 image is rounded to 8 bits
  first and its 8-bit (dithered) result is scaled back to 16 bits.

The output has the input's shape and dtype. PRESETS names the settings bdinn-eval compares
against, FFmpeg's defaults and a stronger setting for heavy banding:

| preset | filter options | what for |
| --- | --- | --- |
| `deband` | FFmpeg's defaults: thresholds 0.02 (5 8-bit codes), range 16 | plain `-vf deband` |
| `deband-strong` | 1thr..4thr=0.04 (10 codes), range=24 | the 8-code steps of 5-bit pictures |
| `gradfun` | FFmpeg's defaults: strength 1.2, radius 16 | plain `-vf gradfun` |
| `gradfun-strong` | strength=4:radius=24 | wider, 2-4 code steps; more smears detail |

The strong settings were picked on the bundled test pictures banded to 5 and 6 bits and by
x264 / SVT-AV1 at high CRF: the strongest that still lowered CAMBI without costing more than
about 1-3 dB of PSNR (deband) or 0.2 dB (gradfun).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .pyav import require_pyav

FILTERS = ("deband", "gradfun")
PRESETS: dict[str, tuple[str, str]] = {
    "deband": ("deband", ""),
    "deband-strong": ("deband", "1thr=0.04:2thr=0.04:3thr=0.04:4thr=0.04:range=24"),
    "gradfun": ("gradfun", ""),
    "gradfun-strong": ("gradfun", "strength=4:radius=24"),
}
MIN_SIDE = {"deband": 1, "gradfun": 4}  # gradfun refuses frames under 4x4


class FilterError(ValueError):
    """An unknown filter or preset, bad options, or an image the filter cannot take."""


def apply_filter(image: np.ndarray, name: str, options: str = "") -> np.ndarray:
    """Run FFmpeg filter `name` ("deband" or "gradfun") with `options` ("key=value:...") on an
    H x W x 3 uint8 or uint16 RGB image; returns the filtered image, same shape and dtype."""
    av = require_pyav("FFmpeg's deband and gradfun filters")
    if name not in FILTERS:
        raise FilterError(f"unknown filter {name!r}; choose one of {', '.join(FILTERS)}")
    if name not in av.filter.filters_available:
        raise FilterError(f"this FFmpeg (PyAV {av.__version__}) has no {name!r} filter")
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype not in (np.uint8, np.uint16):
        raise FilterError(f"{name} takes H x W x 3 uint8 or uint16 RGB, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE[name]:
        raise FilterError(f"{name} needs images of at least {MIN_SIDE[name]}x{MIN_SIDE[name]}, got {w}x{h}")
    wide = img.dtype == np.uint16
    if wide and name == "gradfun":
        eight = np.rint(img.astype(np.float32) / 257).astype(np.uint8)
        return apply_filter(eight, name, options).astype(np.uint16) * np.uint16(257)
    io_format, work_format = ("rgb48le", "gbrp16le") if wide else ("rgb24", "gbrp")
    graph = av.filter.Graph()
    source = graph.add_buffer(width=w, height=h, format=io_format, time_base=Fraction(1, 25))
    try:
        node = graph.add(name, options) if options else graph.add(name)
    except av.error.FFmpegError as exc:
        raise FilterError(f"{name}: bad options {options!r} ({exc.strerror})") from None
    graph.link_nodes(
        source,
        graph.add("format", work_format),
        node,
        graph.add("format", io_format),
        graph.add("buffersink"),
    ).configure()
    graph.push(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=io_format))
    out = graph.pull().to_ndarray()
    if out.shape != img.shape or out.dtype != img.dtype:  # never expected: the graph keeps both
        raise FilterError(f"{name} returned {out.dtype} {out.shape} for {img.dtype} {img.shape}")
    return np.ascontiguousarray(out)


def apply_preset(image: np.ndarray, preset: str) -> np.ndarray:
    """One of PRESETS (deband, deband-strong, gradfun, gradfun-strong) on an RGB image."""
    if preset not in PRESETS:
        raise FilterError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return apply_filter(image, *PRESETS[preset])
