"""Float video samples (EXR-like gbrpf32, FFV1's half floats): what FFmpeg's scaler does not do
right with them is checked or done here.

swscale clips float RGB to 0..1 without a word (an EXR's highlights came back as white) and reads
float grey as video range whatever its range tag says (0.0625 as black, 0.92 as white), so frames
beyond 0..1 are refused and float grey is read here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from .pyav import plane_rows

FLOAT_FORMAT = re.compile(r"f(16|32)(le|be)$")  # float samples: grayf32le, gbrpf16le, yaf16le, rgbaf32be
_ROUNDING = 0.5 / 65535  # nearer to 0..1 than this is the same 16-bit sample


def is_float(pix_fmt: str) -> bool:
    return FLOAT_FORMAT.search(pix_fmt) is not None


def is_float_grey(pix_fmt: str) -> bool:
    return is_float(pix_fmt) and pix_fmt.startswith(("grayf", "yaf"))


def _samples(frame: Any, component: Any) -> np.ndarray:
    """One component of a float frame as H x W floats. Packed formats hold their components in
    the order FFmpeg lists them (ya: Y then A; rgbaf: R, G, B, A)."""
    fmt = frame.format
    dtype = np.dtype(f"{'<' if fmt.name.endswith('le') else '>'}f{component.bits // 8}")
    sharing = [c.index for c in fmt.components if c.plane == component.plane]
    rows = plane_rows(frame, component.plane)
    samples = rows[:, : frame.width * len(sharing) * dtype.itemsize].view(dtype)
    return samples[:, sharing.index(component.index) :: len(sharing)]


def _colour_samples(frame: Any) -> Iterator[np.ndarray]:
    """Each colour (not alpha) component of a float frame as H x W floats."""
    return (_samples(frame, c) for c in frame.format.components if not c.is_alpha)


def beyond_white(frame: Any) -> str | None:
    """What is wrong with a float frame: its sample farthest outside 0..1 (EXR's scene light above
    white, say), or NaN; None for integer frames and for float ones within 0..1."""
    if not is_float(frame.format.name):
        return None
    farthest, by = None, _ROUNDING
    for samples in _colour_samples(frame):
        ends = (float(samples.min()), float(samples.max()))  # NaN where any sample is NaN
        if math.isnan(ends[0]) or math.isnan(ends[1]):
            return "holds NaN samples, which have no picture to deband: replace them first"
        for value in ends:
            if (distance := max(-value, value - 1)) > by:
                farthest, by = value, distance
    if farthest is None:
        return None
    return (
        f"holds a sample of {farthest:g}, outside 0..1, which the model's 16-bit RGB would clip: "
        "tone-map it into 0..1 first"
    )


def float_grey_rgb(frame: Any, deep: bool) -> np.ndarray:
    """A grayf/yaf frame as decode_rgb gives frames (H x W x 3, uint16 on 0..65535 when deep,
    else uint8), its luma read as the full range it is (swscale's reading is video range). Samples
    outside 0..1 are clipped: beyond_white refuses such frames first where that matters."""
    grey = _levels(next(_colour_samples(frame)), np.uint16 if deep else np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def float_alpha(frame: Any) -> np.ndarray:
    """A float frame's alpha as alpha_of gives it (H x W uint16 on 0..65535), clipped to 0..1:
    alpha_of read half floats' bits as integers (1.0 as 23 % opaque), and swscale aborts the
    process on yaf32's."""
    (alpha,) = (c for c in frame.format.components if c.is_alpha)
    return _levels(_samples(frame, alpha), np.uint16)


def _levels(samples: np.ndarray, dtype: type[np.unsignedinteger]) -> np.ndarray:
    """Float samples as integers of `dtype` on its full scale, clipped to 0..1 (NaN as 0)."""
    values = np.nan_to_num(samples.astype(np.float32))
    return np.rint(np.clip(values, 0.0, 1.0) * np.iinfo(dtype).max).astype(dtype)
