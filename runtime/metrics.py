"""Full-reference image quality metrics with numpy and OpenCV (no torch): PSNR and SSIM.

SSIM is Wang et al.'s with an 11x11 Gaussian window (sigma 1.5), population statistics and
symmetric border handling: the definition scikit-image implements with gaussian_weights=True
and use_sample_covariance=False, which the tests compare against.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .imageio import native_order

BT709_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)  # R, G, B weights of luma
PSNR_CAP = 100.0  # dB: a perfect result has no finite PSNR, and a mean over pictures must stay finite
_SIGMA = 1.5
_TRUNCATE = 3.5
_RADIUS = int(_TRUNCATE * _SIGMA + 0.5)  # 5: an 11-tap window


def psnr(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB; inf for identical inputs. The range, unless given, is the
    samples' (255 for uint8, 65535 for uint16, 1 for floats), as scikit-image takes it: 8-bit
    pictures scored against a range of 1 gave -6 dB without a word."""
    data_range = _range_of(a, b, data_range, "psnr")
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return psnr_of_mse(mse, data_range)


def _range_of(a: np.ndarray, b: np.ndarray, data_range: float | None, what: str) -> float:
    """The range a metric scores on; equal shapes checked (numpy would broadcast RGB against gray)."""
    a, b = native_order(np.asarray(a)), native_order(np.asarray(b))
    if a.shape != b.shape:
        raise ValueError(f"{what} needs equal shapes, got {a.shape} and {b.shape}")
    if data_range is not None:
        return data_range
    kinds = {a.dtype, b.dtype}
    if kinds <= {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64), np.dtype(bool)}:
        return 1.0
    if len(kinds) == 1 and a.dtype in (np.uint8, np.uint16):
        return float(np.iinfo(a.dtype).max)
    raise ValueError(  # signed or wide integers (a Python list is int64): no range to take from them
        f"{what}: {a.dtype} against {b.dtype} samples; give data_range, or pictures of one of uint8, "
        "uint16 or float in [0, 1]"
    )


def capped_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR, at most PSNR_CAP: one picture left exactly as it should be made every mean inf."""
    return min(psnr(a, b), PSNR_CAP)


def psnr_of_mse(mse: float, data_range: float = 1.0) -> float:
    """PSNR in dB of a mean squared error (for errors summed part by part); inf for 0."""
    return float("inf") if mse == 0.0 else 10.0 * math.log10(data_range**2 / mse)


def _blur(img: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float64 array, borders mirrored (d c b a | a b c d)."""
    taps = cv2.getGaussianKernel(2 * _RADIUS + 1, _SIGMA, cv2.CV_64F)
    return cv2.sepFilter2D(img, cv2.CV_64F, taps, taps, borderType=cv2.BORDER_REFLECT)


def _ssim_channel(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    ux, uy = _blur(x), _blur(y)
    vx = _blur(x * x) - ux * ux
    vy = _blur(y * y) - uy * uy
    vxy = _blur(x * y) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    r = _RADIUS
    return float(s[r:-r, r:-r].mean())


def ssim(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> float:
    """Mean SSIM over an HxW or HxWxC image pair (channels averaged); the range as psnr's."""
    data_range = _range_of(a, b, data_range, "ssim")
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if min(a.shape[:2]) <= 2 * _RADIUS:
        raise ValueError(f"ssim needs images larger than {2 * _RADIUS + 1}x{2 * _RADIUS + 1}")
    if a.ndim == 2:
        return _ssim_channel(a, b, data_range)
    return float(np.mean([_ssim_channel(a[..., c], b[..., c], data_range) for c in range(a.shape[-1])]))
