"""CAMBI, Netflix's Contrast Aware Multiscale Banding Index, in numpy (no torch, no libvmaf).

A no-reference banding score of one picture: 0 means no visible banding. On libvmaf's settings
about 5 is where banding starts to annoy and 24 the worst seen in video; this module's defaults
(below) pool fewer, worse pixels and see larger steps, so its numbers run higher (a grey ramp at
5 bits: ~60): compare scores at equal settings only. After Tandon et al., "CAMBI: Contrast-aware
Multiscale Banding Index" (PCS 2021), step for step as libvmaf 3.2's cambi.c computes it:

1. Luma: RGB -> BT.709 limited-range luma in 10-bit codes. 8-bit input becomes 8-bit luma shifted
   left by 2 and smoothed by libvmaf's 2x2 anti-dithering average; uint16 and float input are
   rounded to 10 bits directly (libvmaf's path for 10-bit video).
2. Spatial mask of smooth regions: a pixel is "zero-derivative" when it equals its right and
   bottom neighbours; a pixel is kept when more than `mask_index` pixels of the 7x7 window around
   it are (libvmaf's size-dependent index: 13 at 320x192, 21 at 1080p, 24 at 4K).
3. Five scales: scale 0 is the picture, each further one keeps every other pixel of the previous
   one (and of the mask); each scale is first smoothed by a separable 3x3 mode filter.
4. Per kept pixel of luma v, over a window around it (kept pixels only): counts p(v) and
   p(v +- d) for contrasts d = 1 .. 2**max_log_contrast 10-bit codes; the c-value is
   max_d w(d) * p(v) * q / (q + p(v)) with q = max(p(v + d), p(v - d)), over the d that are
   visible at v (BT.1886 display, Weber threshold 0.019), with contrast weights 1, 2, 3, 4, 4,
   5, 5, 6, ... Pixels outside the mask get 0. The window is 65 pixels at 4K and scales with
   width + height (33 at 1080p, 5 at 320x192); it stays that many pixels at every scale.
5. Pooling: the mean of the top `topk` fraction of each scale's c-values; the scales are summed
   with weights 16, 8, 4, 2, 1 (finest first) and divided by the window's pixel count.

Given the same luma plane, `cambi_luma10` reproduces libvmaf 3.2.0's `cambi` feature (checked to
5 decimals on the bundled 320x192 test pictures and a 1920x1080 upscale, 8- and 10-bit, at both
settings below; the tests keep some of those values). Where this module departs from libvmaf:

- Defaults: topk=0.2 (pool the worst 20 % of c-values, which tracks a local banded patch more
  closely) instead of libvmaf's 0.6, and max_log_contrast=5 (steps of up to 32 10-bit = 8 8-bit
  codes) instead of 2 (at most one 8-bit code: right for codec banding, but blind to the 4-8 code
  steps of 5- and 6-bit quantisation that bdinn-eval also measures). cambi(img, topk=0.6,
  max_log_contrast=2) is libvmaf's default. Steps larger than 2**max_log_contrast codes are edges
  to CAMBI, not banding: a grey ramp quantised to 4 bits (~58 10-bit codes a step) scores ~0.
- Input is RGB, converted to luma here; pictures are scored at their own size (no rescaling to
  an encoding resolution), with no full-reference mode, heatmaps, visibility-luminance threshold
  (libvmaf's default 0 disables it) or high-resolution speed-up.
- Windowed histograms come from box filters over one 0/1 plane per luma level present in a tile
  (not libvmaf's sliding column histograms): the same counts, about 1 s of CPU at 1080p.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from .imageio import native_order
from .metrics import BT709_LUMA

NUM_SCALES = 5
SCALE_WEIGHTS = (16, 8, 4, 2, 1)
# Suprathreshold contrast response (libvmaf g_contrast_weights): the weight of a step of d codes.
# fmt: off
CONTRAST_WEIGHTS = (1, 2, 3, 4, 4, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8,
                    8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9)
# fmt: on
WINDOW_4K = 65
MASK_FILTER_SIZE = 7
TVI_THRESHOLD = 0.019
DEFAULT_TOPK = 0.2
DEFAULT_MAX_LOG_CONTRAST = 5
_FOOT, _HEAD = 64, 940  # 10-bit limited range
_TILE = 128  # core tile side for the windowed histograms


def _bt1886(v: np.ndarray) -> np.ndarray:
    """BT.1886 EOTF: normalised signal -> cd/m2 for a 300-nit display with a 0.01-nit black."""
    gamma, lw, lb = 2.4, 300.0, 0.01
    span = lw ** (1 / gamma) - lb ** (1 / gamma)
    a, b = span**gamma, lb ** (1 / gamma) / span
    return a * np.maximum(v + b, 0) ** gamma


def _luminance(sample: np.ndarray) -> np.ndarray:
    return _bt1886((np.clip(sample, _FOOT, _HEAD) - _FOOT) / (_HEAD - _FOOT))


@functools.lru_cache(maxsize=8)
def tvi_thresholds(num_diffs: int) -> np.ndarray:
    """Per contrast d = 1..num_diffs, the brightest 10-bit luma at which a step of d is visible.

    Visible: L(v + d) - L(v) > TVI_THRESHOLD * L(v) on a BT.1886 display (libvmaf's bisection,
    done here by scanning all codes): 0 if not even at black, 1023 if everywhere.
    """
    out = np.empty(num_diffs, np.int32)
    for d in range(1, num_diffs + 1):
        s = np.arange(_FOOT, _HEAD - d + 1)
        visible = _luminance(s + d) - _luminance(s) > TVI_THRESHOLD * _luminance(s)
        if not visible[0]:
            out[d - 1] = 0
        elif visible.all():
            out[d - 1] = 1023
        else:
            out[d - 1] = s[np.argmin(visible)] - 1
    out.flags.writeable = False  # cached: shared by every call
    return out


def window_size(height: int, width: int) -> int:
    """The c-value window (odd, pixels): 65 at 4K, scaled with width + height."""
    size = WINDOW_4K * (width + height) // (3840 + 2160)
    return max(3, 2 * (size // 2) + 1)


def _mask_index(height: int, width: int) -> int:
    """Zero-derivative pixels a 7x7 window must exceed: 21 at 1080p, 24 at 4K (libvmaf's formula)."""
    blocks = (width >> 6) * (height >> 6)
    ceil_log2 = int(blocks - 1).bit_length() if blocks else 0
    return (MASK_FILTER_SIZE**2 + 3 * (ceil_log2 - 11) - 1) >> 1


def _luma(x: np.ndarray) -> np.ndarray:
    """BT.709 luma of H x W x 3 float32 RGB, summed channel by channel as libvmaf's tools do."""
    return x[:, :, 0] * BT709_LUMA[0] + x[:, :, 1] * BT709_LUMA[1] + x[:, :, 2] * BT709_LUMA[2]


def luma8(image: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 RGB -> H x W uint8 BT.709 limited-range luma (16..235)."""
    x = image[:, :, :3].astype(np.float32) / np.float32(255)
    return np.rint(16 + 219 * _luma(x)).astype(np.uint8)


def to_luma10(image: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB (uint8, uint16 or float in [0, 1]; or H x W grey) -> H x W uint16 10-bit
    limited-range BT.709 luma; 8-bit input goes through libvmaf's anti-dithering filter."""
    img = native_order(np.asarray(image))
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or 0 in img.shape:
        raise ValueError(f"cambi takes an H x W x 3 RGB image, got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.dtype == np.uint8:
        return _anti_dither(luma8(img).astype(np.uint16) << 2)
    if img.dtype == np.uint16:
        x = img[:, :, :3].astype(np.float32) / np.float32(65535)
    elif np.issubdtype(img.dtype, np.floating):
        x = np.nan_to_num(np.clip(img[:, :, :3].astype(np.float32), 0, 1), nan=0.0)
    else:
        raise TypeError(f"cambi takes uint8, uint16 or float images, got {img.dtype}")
    return np.rint(_FOOT + (_HEAD - _FOOT) * _luma(x)).astype(np.uint16)


def _anti_dither(y: np.ndarray) -> np.ndarray:
    """libvmaf's filter for 8-bit input: the mean of each 2x2 block (1x2 on the last row/column)."""
    y = y.astype(np.uint32)
    out = y.copy()
    out[:-1, :-1] = (y[:-1, :-1] + y[:-1, 1:] + y[1:, :-1] + y[1:, 1:]) >> 2
    out[:-1, -1] = (y[:-1, -1] + y[1:, -1]) >> 1
    out[-1, :-1] = (y[-1, :-1] + y[-1, 1:]) >> 1
    return out.astype(np.uint16)


def spatial_mask(luma: np.ndarray) -> np.ndarray:
    """Smooth pixels: more than mask_index zero-derivative pixels in the 7x7 window around them."""
    h, w = luma.shape
    zero = np.ones((h, w), np.uint8)
    zero[:-1, :] &= luma[:-1, :] == luma[1:, :]
    zero[:, :-1] &= luma[:, :-1] == luma[:, 1:]
    counts = cv2.boxFilter(
        zero,
        cv2.CV_16U,
        (MASK_FILTER_SIZE, MASK_FILTER_SIZE),
        normalize=False,
        borderType=cv2.BORDER_CONSTANT,
    )
    return counts > _mask_index(h, w)


def _mode3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The value that occurs at least twice among a, b, c, else the smallest."""
    return np.where((a == b) | (a == c), a, np.where(b == c, b, np.minimum(np.minimum(a, b), c)))


def mode_filter(luma: np.ndarray) -> np.ndarray:
    """libvmaf's separable 3x3 mode filter: a 1x3 mode along each row (the first and last columns
    kept), then a 3x1 mode of those down each column; the first and last rows stay as they are."""
    h, w = luma.shape
    rows = luma.copy()
    if w >= 3:
        rows[:, 1:-1] = _mode3(luma[:, :-2], luma[:, 1:-1], luma[:, 2:])
    out = luma.copy()
    if h >= 3:
        out[1:-1] = _mode3(rows[:-2], rows[1:-1], rows[2:])
    return out


def c_values(luma: np.ndarray, mask: np.ndarray, window: int, max_log_contrast: int) -> np.ndarray:
    """Per-pixel c-values (float32, 0 outside the mask) from the windowed histograms of kept pixels."""
    num_diffs = 1 << max_log_contrast
    tvi = tvi_thresholds(num_diffs)
    r = window // 2
    h, w = luma.shape
    out = np.zeros((h, w), np.float32)
    luma = luma.astype(np.int32)
    offsets = np.arange(-num_diffs, num_diffs + 1)
    for y0 in range(0, h, _TILE):
        for x0 in range(0, w, _TILE):
            y1, x1 = min(y0 + _TILE, h), min(x0 + _TILE, w)
            core_mask = mask[y0:y1, x0:x1]
            if not core_mask.any():
                continue
            values = luma[y0:y1, x0:x1][core_mask]
            lo, hi = int(values.min()) - num_diffs, int(values.max()) + num_diffs
            ry0, rx0, ry1, rx1 = max(y0 - r, 0), max(x0 - r, 0), min(y1 + r, h), min(x1 + r, w)
            region = luma[ry0:ry1, rx0:rx1]
            keep = mask[ry0:ry1, rx0:rx1] & (region >= lo) & (region <= hi)
            levels = np.unique(region[keep])
            n = len(levels)
            # lut: luma level (shifted by num_diffs) -> plane index; plane n stays all zero
            lut = np.full(1024 + 2 * num_diffs + 1, n, np.int32)
            lut[levels + num_diffs] = np.arange(n)
            # Only the contrasts d for which some pixel of the core has a neighbour level v +- d.
            present = lut[np.unique(values)[:, None] + num_diffs + offsets[None, :]] < n
            ks = offsets[present.any(axis=0)]
            if len(ks) == 1:  # its own level only: no contrast anywhere in this tile
                continue
            # One 0/1 plane per level, stacked vertically with r zero rows after each plane so
            # that a single box filter over the tall image counts each plane on its own.
            rh, rw = region.shape
            planes = np.zeros((n + 1, rh + r, rw), np.uint8)
            ys, xs = np.nonzero(keep)
            planes[lut[region[ys, xs] + num_diffs], ys, xs] = 1
            counts = cv2.boxFilter(
                planes.reshape(-1, rw),
                cv2.CV_16U if window * window <= 0xFFFF else cv2.CV_32S,  # 16 bits saturate past 255 px
                (window, window),
                normalize=False,
                borderType=cv2.BORDER_CONSTANT,
            ).ravel()
            py, px = np.nonzero(core_mask)
            pos = (py + (y0 - ry0)) * rw + (px + (x0 - rx0))
            index = lut[values[None, :] + num_diffs + ks[:, None]] * ((rh + r) * rw) + pos[None, :]
            g = np.take(counts, index).astype(np.float32)  # (len(ks), M): p(v + k) for k in ks
            row = {int(k): i for i, k in enumerate(ks)}
            p0 = g[row[0]]
            c = np.zeros_like(p0)
            for d in sorted({abs(int(k)) for k in ks} - {0}):
                p = (
                    np.maximum(g[row[d]], g[row[-d]])
                    if d in row and -d in row
                    else g[row.get(d, row.get(-d))]
                )
                val = CONTRAST_WEIGHTS[d - 1] * p0 * p / (p + p0)
                if tvi[d - 1] < values.max():
                    val[values > tvi[d - 1]] = 0
                np.maximum(c, val, out=c)
            out[y0:y1, x0:x1][core_mask] = c
    return out


def _pool(c: np.ndarray, topk: float) -> float:
    flat = c.ravel()
    k = min(max(int(topk * flat.size), 1), flat.size)
    return float(np.partition(flat, flat.size - k)[flat.size - k :].mean(dtype=np.float64))


def cambi(
    image: np.ndarray,
    topk: float = DEFAULT_TOPK,
    max_log_contrast: int = DEFAULT_MAX_LOG_CONTRAST,
) -> float:
    """CAMBI banding score of an H x W x 3 RGB image (uint8, uint16 or float in [0, 1]); 0 = none."""
    return cambi_luma10(to_luma10(image), topk, max_log_contrast)


def cambi_luma10(
    luma: np.ndarray,
    topk: float = DEFAULT_TOPK,
    max_log_contrast: int = DEFAULT_MAX_LOG_CONTRAST,
) -> float:
    """CAMBI of an H x W plane of 10-bit luma codes (after to_luma10's conversion)."""
    if not 0 < topk <= 1:
        raise ValueError(f"topk must be in (0, 1], got {topk}")
    if not 0 <= max_log_contrast <= 5:
        raise ValueError(f"max_log_contrast must be 0..5, got {max_log_contrast}")
    luma = np.asarray(luma)
    if luma.ndim != 2 or luma.dtype != np.uint16 or (luma.size and int(luma.max()) > 1023):
        raise ValueError(
            f"cambi_luma10 takes an H x W uint16 plane of 10-bit codes, got {luma.dtype} {luma.shape}"
        )
    h, w = luma.shape
    window = window_size(h, w)
    mask = spatial_mask(luma)
    score = 0.0
    for scale in range(NUM_SCALES):
        if scale:
            luma, mask = luma[::2, ::2], mask[::2, ::2]
        luma = mode_filter(luma)
        score += SCALE_WEIGHTS[scale] * _pool(c_values(luma, mask, window, max_log_contrast), topk)
    return score / window**2
