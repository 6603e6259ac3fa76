"""PSNR and SSIM against scikit-image's implementations on random and structured images."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bdinn.runtime.metrics import psnr, ssim


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_match_scikit_image(seed):
    rng = np.random.default_rng(seed)
    clean = rng.random((48, 61, 3))
    noisy = np.clip(clean + rng.normal(0, 0.05 * (seed + 1), clean.shape), 0, 1)
    assert psnr(clean, noisy) == pytest.approx(
        peak_signal_noise_ratio(clean, noisy, data_range=1.0), abs=1e-9
    )
    expected = structural_similarity(
        clean,
        noisy,
        data_range=1.0,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(clean, noisy) == pytest.approx(expected, abs=1e-9)


def test_grayscale_gradient_and_quantised_copy():
    ramp = np.tile(np.linspace(0, 1, 200), (40, 1))
    banded = np.round(ramp * 15) / 15
    expected = structural_similarity(
        ramp, banded, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(ramp, banded) == pytest.approx(expected, abs=1e-9)
    assert 25 < psnr(ramp, banded) < 40


def test_identical_images():
    img = np.random.default_rng(3).random((20, 20, 3))
    assert psnr(img, img) == float("inf")
    assert ssim(img, img) == pytest.approx(1.0)


def test_rejects_mismatched_or_tiny_inputs():
    with pytest.raises(ValueError, match="equal shapes"):
        ssim(np.zeros((20, 20)), np.zeros((20, 21)))
    with pytest.raises(ValueError, match="larger than"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_pictures_are_scored_on_their_own_range(dtype):
    """8-bit pictures were scored against a range of 1: -6 dB and SSIM 0.65 for a close pair."""
    rng = np.random.default_rng(4)
    top = np.iinfo(dtype).max
    clean = np.tile(np.linspace(0, top, 120), (40, 1)).astype(dtype)
    noisy = np.clip(clean + rng.integers(-3, 4, clean.shape) * (top // 255), 0, top).astype(dtype)
    assert psnr(clean, noisy) == pytest.approx(peak_signal_noise_ratio(clean, noisy), abs=1e-9)
    expected = structural_similarity(
        clean, noisy, data_range=top, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(clean, noisy) == pytest.approx(expected, abs=1e-9)
    scaled = psnr(clean.astype(np.float64) / top, noisy.astype(np.float64) / top)
    assert psnr(clean, noisy) == pytest.approx(scaled, abs=1e-9)


def test_pictures_of_other_shapes_or_kinds_are_refused():
    with pytest.raises(ValueError, match="equal shapes"):  # numpy broadcast RGB against gray
        psnr(np.zeros((20, 20, 3)), np.zeros((20, 20, 1)))
    with pytest.raises(ValueError, match="uint8 against float64 samples; give data_range"):
        psnr(np.zeros((20, 20), np.uint8), np.zeros((20, 20)))
    with pytest.raises(ValueError, match="int16 against int16 samples; give data_range"):
        psnr(np.zeros((20, 20), np.int16), np.ones((20, 20), np.int16))  # no range of its own
    big_endian = np.full((20, 20), 258, ">u2")
    assert psnr(np.full((20, 20), 257, np.uint16), big_endian) == pytest.approx(96.33, abs=0.01)
    given = psnr(np.zeros((20, 20), np.uint8), np.ones((20, 20)), data_range=255)
    assert given == pytest.approx(48.13, abs=0.01)
