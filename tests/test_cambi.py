"""CAMBI in numpy: libvmaf's numbers, and the banding it should and should not see."""

import math
from pathlib import Path

import numpy as np
import pytest

from bdinn.runtime.cambi import CONTRAST_WEIGHTS, c_values, cambi, cambi_luma10, luma8, to_luma10, window_size
from bdinn.runtime.imageio import from_float, read_image, to_float
from bdinn.train.degrade import reduce_bit_depth

DATA = Path(__file__).parent / "data"


def ramp(low, high, height=256, width=256) -> np.ndarray:
    """A horizontal RGB ramp from colour `low` (left) to `high` (right), float32 in [0, 1]."""
    t = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
    return np.ascontiguousarray(np.broadcast_to(low + (high - low) * t, (height, width, 3)))


def quantised(img: np.ndarray, bits: int) -> np.ndarray:
    return from_float(reduce_bit_depth(img, bits), 8 if bits <= 8 else 16)


# libvmaf 3.2.0 (`vmaf --feature cambi=topk=..:max_log_contrast=..`, built from Netflix/vmaf) on
# the luma planes that `luma8` / `to_luma10` make of these pictures: 8-bit yuv420p for uint8,
# 10-bit yuv420p10le for the 16-bit one.
LIBVMAF = [
    ("soft-shapes", None, 0.2, 5, 11.461625),
    ("soft-shapes", None, 0.6, 2, 3.088580),
    ("sky-gradient", 5, 0.2, 5, 35.491051),
    ("sky-gradient", 5, 0.6, 2, 1.165896),
    ("leaf-texture", 5, 0.2, 5, 1.377161),
    ("sky-gradient", 16, 0.2, 5, 33.620968),  # 6 bits, stored as 16-bit: the 10-bit path
]


@pytest.mark.parametrize(("name", "bits", "topk", "mlc", "expected"), LIBVMAF)
def test_matches_libvmaf(name, bits, topk, mlc, expected):
    img = read_image(DATA / f"{name}.png")
    if bits == 5:
        img = quantised(to_float(img), 5)
    elif bits == 16:
        img = quantised(reduce_bit_depth(to_float(img), 6), 16)
    assert cambi(img, topk=topk, max_log_contrast=mlc) == pytest.approx(expected, rel=2e-6, abs=2e-6)


def test_quantised_ramp_scores_far_above_its_16_bit_version():
    # Red and blue rise, green stays: 4-bit steps are 1-3 8-bit luma codes, the banding CAMBI is for.
    img = ramp((0.0, 0.4, 0.0), (1.0, 0.4, 1.0))
    banded, smooth = cambi(quantised(img, 4)), cambi(quantised(img, 16))
    assert smooth < 0.5
    assert banded > 10 and banded > 5 * max(smooth, 0.1)


def test_fewer_bits_band_more():
    img = ramp((0.2,) * 3, (0.8,) * 3)
    scores = {bits: cambi(quantised(img, bits)) for bits in (5, 7, 16)}
    assert scores[5] > scores[7] > 5 * max(scores[16], 0.1)
    assert scores[16] < 0.5


def test_steps_beyond_the_contrast_range_are_edges_not_banding():
    # A grey ramp at 5 bits steps by ~28 10-bit codes: seen with contrasts up to 32 codes (our
    # default), invisible to libvmaf's default of 4; at 4 bits (~58 codes) invisible to both.
    img = ramp((0.2,) * 3, (0.8,) * 3)
    assert cambi(quantised(img, 5)) > 20
    assert cambi(quantised(img, 5), max_log_contrast=2) < 0.5
    assert cambi(quantised(img, 4)) < 1


def test_flat_and_noise_score_about_zero():
    assert cambi(np.full((120, 200, 3), 128, np.uint8)) == 0.0
    noise = np.random.default_rng(0).integers(0, 256, (192, 320, 3), dtype=np.uint8)
    assert cambi(noise) < 0.1
    texture = read_image(DATA / "leaf-texture.png")
    assert cambi(texture) < 0.1


def test_input_types():
    img = read_image(DATA / "soft-shapes.png")
    as_float, as_16 = to_float(img), img.astype(np.uint16) * np.uint16(257)
    # float and 16-bit take the 10-bit path (no anti-dithering): the same luma, the same score
    assert np.array_equal(to_luma10(as_float), to_luma10(as_16))
    assert cambi(as_float) == pytest.approx(cambi(as_16))
    assert np.array_equal(to_luma10(img[:, :, 0]), to_luma10(np.repeat(img[:, :, :1], 3, axis=2)))
    # float input is clipped to [0, 1] first, and NaN (a diverged network) read as 0
    overshoot = as_float * np.float32(1.02) - np.float32(0.01)
    assert np.array_equal(to_luma10(overshoot), to_luma10(np.clip(overshoot, 0, 1)))
    holes = as_float.copy()
    holes[::7, ::5] = np.nan
    filled = np.where(np.isnan(holes), np.float32(0), holes)
    assert np.array_equal(to_luma10(holes), to_luma10(filled)) and math.isfinite(cambi(holes))
    assert luma8(np.zeros((1, 1, 3), np.uint8))[0, 0] == 16
    assert luma8(np.full((1, 1, 3), 255, np.uint8))[0, 0] == 235
    with pytest.raises(TypeError, match="int32"):
        cambi(img.astype(np.int32))
    with pytest.raises(ValueError, match="shape"):
        cambi(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="topk"):
        cambi(img, topk=0)
    with pytest.raises(ValueError, match="10-bit"):
        cambi_luma10(np.full((8, 8), 2000, np.uint16))


def test_window_scales_with_the_picture():
    assert window_size(2160, 3840) == 65
    assert window_size(1080, 1920) == 33
    assert window_size(192, 320) == 5
    assert window_size(8, 8) == 3


def test_windows_of_more_than_65535_pixels_count_every_pixel():
    """The window grows with width + height: past 255 px (a 12000 x 12000 picture) its counts
    saturated at 65535 in 16 bits. A window wider than twice this 300 x 300 plane counts all of
    it from every pixel: 81,000 pixels of one level and 9,000 of a level 4 codes up."""
    luma = np.full((300, 300), 200, np.uint16)
    luma[:30] = 204
    c = c_values(luma, np.ones(luma.shape, bool), 601, 5)
    p0, p = 81_000.0, 9_000.0
    assert c[150, 150] == pytest.approx(CONTRAST_WEIGHTS[3] * p0 * p / (p + p0), rel=1e-6)


def test_big_endian_samples_score_as_native_ones():
    """A big-endian uint16 picture (a TIFF read as stored; what Debander returns for one) was
    refused as 'got >u2', and by to_float too."""
    ramp = (np.tile(np.linspace(0, 65535, 96), (64, 1))[:, :, None] * np.ones(3)).astype(np.uint16)
    swapped = ramp.astype(">u2")
    assert cambi(swapped) == cambi(ramp)
    assert np.array_equal(to_float(swapped), to_float(ramp))
