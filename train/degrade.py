"""Synthetic banding from clean pictures: bit-depth reduction and real codec encoding.

No banded dataset can be downloaded here, so banded inputs are made from clean wallpapers:
quantisation to 4-6 bits per channel (sometimes after light smoothing, so that the steps fall on
smooth ramps instead of on noise) and single-frame x264 / x265 / SVT-AV1 encodes at high CRF
through the FFmpeg that PyAV bundles, in 8-bit 4:2:0 BT.709 as real video is. Everything is
seeded and deterministic; `pairs_cache.prepare_synthetic_pairs` caches the pairs as PNGs so that
the cost is paid once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import cv2
import numpy as np

from ..runtime.imageio import (
    from_float,
    to_float,
)
from ..runtime.pyav import require_pyav

# Encoder, decoder and private options per codec. One thread, fixed presets and quiet logs keep
# an encode deterministic for a given input (the cache and the tests rely on it).
CODECS: dict[str, tuple[str, str, dict[str, str]]] = {
    "x264": ("libx264", "h264", {"preset": "medium", "threads": "1"}),
    "x265": (
        "libx265",
        "hevc",
        {"preset": "medium", "x265-params": "log-level=none:pools=1:frame-threads=1"},
    ),
    "svtav1": ("libsvtav1", "libdav1d", {"preset": "8"}),
}
# CRF ranges drawn by sample_degradation. Checked by eye (contrast-stretched crops) and PSNR on
# FHD wallpapers: at the low end steps on sky and soft gradients are just visible, at the high end
# the blocks are obvious but detail is not yet smeared away. The ranges line up in quality:
# x264 30/40 ~ x265 32/42 ~ SVT-AV1 48/60 (SVT-AV1's CRF scale runs to 63).
CRF_RANGES: dict[str, tuple[int, int]] = {"x264": (30, 40), "x265": (32, 42), "svtav1": (48, 60)}
MAX_CRF = {"x264": 51, "x265": 51, "svtav1": 63}
BITS_RANGE = (4, 6)
BLUR_PROBABILITY = 1 / 3
BLUR_SIGMAS = (0.5, 1.5)
MAX_BLUR = 16.0  # px: a "light blur" far beyond; a sigma of 1e8 allocated gigabytes in OpenCV
MIN_CODEC_SIDE = 32  # x265 refuses frames of 8 pixels, SVT-AV1 below 4: smaller ones are padded
GENERATOR_VERSION = 2  # part of every cache key: bump when a degradation's output changes


@dataclass(frozen=True)
class Degradation:
    """One way of banding an image: kind "bits" (with bits, blur) or a codec name (with crf)."""

    kind: str
    bits: int = 0
    blur: float = 0.0
    crf: int = 0

    def __post_init__(self) -> None:
        if self.kind == "bits":
            if not 1 <= self.bits <= 16 or not 0 <= self.blur <= MAX_BLUR or self.crf:
                raise ValueError(f"bad bit-depth degradation {self}: bits 1-16, blur 0-{MAX_BLUR:g}, no crf")
        elif self.kind in CODECS:
            if not 0 <= self.crf <= MAX_CRF[self.kind] or self.bits or self.blur:
                raise ValueError(f"bad {self.kind} degradation {self}: crf 0-{MAX_CRF[self.kind]} only")
        else:
            raise ValueError(f"unknown degradation kind {self.kind!r}; use 'bits' or one of {sorted(CODECS)}")

    @property
    def id(self) -> str:
        """Short name used in file names: q5, b1.0q6, x264crf38, svtav1crf55."""
        if self.kind == "bits":
            return (f"b{self.blur:.1f}" if self.blur else "") + f"q{self.bits}"
        return f"{self.kind}crf{self.crf}"

    @property
    def family(self) -> str:
        """The stratum validation samples by: bits, blur-bits or the codec's name."""
        return "blur-bits" if self.blur else self.kind

    @classmethod
    def parse(cls, text: str) -> Degradation:
        """Inverse of `id`, so that a degradation can be named on a command line."""
        match = re.fullmatch(r"(?:b(\d+(?:\.\d+)?))?q(\d+)", text)
        if match:
            blur = float(match.group(1) or 0.0)
            if round(blur, 1) != blur:  # the id, and the cache's file names, keep one decimal
                raise ValueError(f"bad degradation {text!r}: blur is given to a tenth of a pixel (b1.0q6)")
            return cls("bits", bits=int(match.group(2)), blur=blur)
        match = re.fullmatch(r"(x264|x265|svtav1)crf(\d+)", text)
        if match:
            return cls(match.group(1), crf=int(match.group(2)))
        raise ValueError(f"unknown degradation {text!r} (examples: q5, b1.0q6, x264crf38, svtav1crf55)")

    def apply(self, clean: np.ndarray) -> np.ndarray:
        """Band an 8-bit RGB image; returns the banded 8-bit RGB image of the same size."""
        if clean.dtype != np.uint8:
            raise TypeError(f"degradations take uint8 RGB images, got {clean.dtype}")
        if self.kind == "bits":
            return from_float(reduce_bit_depth(to_float(clean), self.bits, self.blur), 8)
        return codec_roundtrip(clean, self.kind, self.crf)


def sample_degradation(rng: np.random.Generator) -> Degradation:
    """Half bit-depth reductions (4-6 bits, a third of them smoothed first), half codec encodes."""
    if rng.random() < 0.5:
        bits = int(rng.integers(BITS_RANGE[0], BITS_RANGE[1] + 1))
        blur = round(float(rng.uniform(*BLUR_SIGMAS)), 1) if rng.random() < BLUR_PROBABILITY else 0.0
        return Degradation("bits", bits=bits, blur=blur)
    kind = sorted(CODECS)[int(rng.integers(len(CODECS)))]
    low, high = CRF_RANGES[kind]
    return Degradation(kind, crf=int(rng.integers(low, high + 1)))


def reduce_bit_depth(img: np.ndarray, bits: int, blur_sigma: float = 0.0) -> np.ndarray:
    """Quantise float RGB in [0, 1] to 2**bits levels per channel; float32 on the level grid.

    The optional Gaussian smoothing (sigma in pixels) first removes grain, so that the steps
    appear as clean contours, as in a rendered or denoised picture, rather than as dithering.
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    img = np.asarray(img, np.float32)
    if blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_sigma, borderType=cv2.BORDER_REFLECT)
    levels = 2**bits - 1
    return (np.rint(np.clip(img, 0, 1) * levels) / levels).astype(np.float32)


def codec_roundtrip(img: np.ndarray, codec: str, crf: int) -> np.ndarray:
    """Encode one 8-bit RGB frame with `codec` at `crf` as 8-bit 4:2:0 BT.709 video, decode to RGB.

    Odd and tiny sizes are padded (edge pixels repeated) to what 4:2:0 and the encoders accept,
    and cropped back afterwards.
    """
    return codec_roundtrip_clip([img], codec, crf)[0]


def codec_roundtrip_clip(
    frames: list[np.ndarray], codec: str, crf: int, options: dict[str, str] | None = None
) -> list[np.ndarray]:
    """codec_roundtrip for a clip: the frames encoded as one video (so that its GOP, motion search
    and rate control act across frames as in real video), decoded back in order. `options` are
    more encoder options (`{"g": "4"}` for an I-frame every 4 frames)."""
    av = require_pyav("codec degradations")
    from av.video.reformatter import Interpolation

    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {sorted(CODECS)}")
    shapes = {frame.shape for frame in frames}
    first = frames[0] if frames else np.zeros(0)
    if len(shapes) != 1 or first.dtype != np.uint8 or first.ndim != 3 or first.shape[2] != 3:
        got = ", ".join(sorted({f"{f.dtype} {f.shape}" for f in frames})) or "no frames"
        raise ValueError(f"codec_roundtrip takes H x W x 3 uint8 RGB frames of one size, got {got}")
    encoder_name, decoder_name, codec_options = CODECS[codec]
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr itself; errors only
    h, w = first.shape[:2]
    pad_h = max(h + h % 2, MIN_CODEC_SIDE) - h
    pad_w = max(w + w % 2, MIN_CODEC_SIDE) - w
    # Limited-range BT.709 like HD video, converted bit-exactly on one thread so that a cached
    # pair can be remade anywhere. Through 4:4:4: swscale's direct rgb24 <-> yuv420p path is
    # biased (about -1 code value on photos), the two-step path is not.
    exact: dict[str, Any] = {"interpolation": Interpolation.BICUBIC | Interpolation.BITEXACT, "threads": 1}
    bt709 = {"colorspace": "ITU709", "color_range": "MPEG"}
    to_yuv = {f"dst_{k}": v for k, v in bt709.items()}
    from_yuv = {f"src_{k}": v for k, v in bt709.items()}
    encoder = av.CodecContext.create(encoder_name, "w")
    encoder.width, encoder.height = w + pad_w, h + pad_h
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"crf": str(crf), **codec_options, **(options or {})}
    packets = []
    for index, rgb in enumerate(frames):
        padded = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = (
            av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")
            .reformat(format="yuv444p", **to_yuv, **exact)
            .reformat(format="yuv420p", **from_yuv, **to_yuv, **exact)
        )
        frame.pts = index
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    decoder = av.CodecContext.create(decoder_name, "r")
    decoded = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    if len(decoded) != len(frames):
        raise RuntimeError(f"{codec} at CRF {crf} gave {len(decoded)} decodable frames of {len(frames)}")
    return [
        np.ascontiguousarray(
            f.reformat(format="yuv444p", **from_yuv, **to_yuv, **exact)
            .reformat(format="rgb24", **from_yuv, **exact)
            .to_ndarray()[:h, :w]
        )
        for f in decoded
    ]
