"""Image files in and out as numpy arrays, keeping 16-bit precision (no torch).

OpenCV reads and writes 48-bit RGB PNG; Pillow silently drops it to 8 bits, which would
destroy exactly the smooth gradients a debander produces. Arrays are RGB(A), H x W x C, in the
file's own integer dtype (uint8 or uint16). Writes are atomic.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .files import atomic_write

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # ImageError says it in one line

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


class ImageError(ValueError):
    """An input or output image problem; the message is one line: file, problem, what to do."""


def _decode(path: Path) -> np.ndarray:
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    data = path.read_bytes()
    if not data:
        raise ImageError(f"{path}: empty file (0 bytes)")
    if data.startswith(PNG_SIGNATURE) and b"IEND" not in data[-32:]:
        # Caught here rather than by libpng, which would print its own error to stderr.
        raise ImageError(f"{path}: truncated PNG (no IEND chunk; re-export or replace it)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"{path}: not a readable image, or truncated/corrupt (re-export or replace it)")
    if img.size == 0:
        raise ImageError(f"{path}: image has zero size")
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{path}: unsupported sample type {img.dtype} (use 8- or 16-bit images)")
    return img


def read_image(path: str | os.PathLike, keep_alpha: bool = False) -> np.ndarray:
    """H x W x 3 RGB (x 4 RGBA with keep_alpha) uint8/uint16; grayscale is expanded to RGB."""
    path = Path(path)
    img = _decode(path)
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels == 1:
        rgb = np.repeat(img, 3, axis=2)
        alpha = None
    elif channels == 2:  # gray + alpha
        rgb = np.repeat(img[:, :, :1], 3, axis=2)
        alpha = img[:, :, 1:]
    elif channels in (3, 4):
        rgb = img[:, :, 2::-1]  # OpenCV stores BGR(A)
        alpha = img[:, :, 3:] if channels == 4 else None
    else:
        raise ImageError(f"{path}: {channels}-channel images are not supported (use gray, RGB or RGBA)")
    if keep_alpha:
        if alpha is None:
            alpha = np.full((*rgb.shape[:2], 1), np.iinfo(rgb.dtype).max, rgb.dtype)
        return np.ascontiguousarray(np.concatenate((rgb, alpha), axis=2))
    return np.ascontiguousarray(rgb)


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1]."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    raise TypeError(f"expected uint8 or uint16, got {img.dtype}")


def from_float(arr: np.ndarray, bit_depth: int) -> np.ndarray:
    """float in [0, 1] -> uint8 (bit_depth 8) or uint16 (16), rounded to nearest and clipped."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, got {bit_depth}")
    top = 255.0 if bit_depth == 8 else 65535.0
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.clip(np.rint(np.asarray(arr, np.float64) * top), 0, top).astype(dtype)


def write_image(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Write a uint8/uint16 gray, RGB or RGBA array; the suffix picks the format (PNG for 16-bit).

    Written to a temporary file in the same folder and renamed, so a crash never leaves a
    half-written image under the final name.
    """
    path = Path(path)
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{path}: cannot write {img.dtype} samples (convert to uint8 or uint16)")
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[:, :, [2, 1, 0, 3][: img.shape[2]]]
    elif not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1)):
        raise ImageError(f"{path}: cannot write an array of shape {img.shape}")
    suffix = path.suffix.lower()
    if img.dtype == np.uint16 and suffix not in (".png", ".tif", ".tiff"):
        raise ImageError(f"{path}: 16-bit output needs .png or .tif")
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(img))
    if not ok:
        raise ImageError(f"{path}: cannot encode an image with suffix {suffix!r}")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(encoded.tobytes()))
    return path
