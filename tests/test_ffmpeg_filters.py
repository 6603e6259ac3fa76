"""FFmpeg's deband and gradfun through PyAV: dtype and shape kept, banding lowered."""

import numpy as np
import pytest

from bdinn.runtime.cambi import cambi
from bdinn.runtime.ffmpeg_filters import PRESETS, FilterError, apply_filter, apply_preset
from bdinn.runtime.imageio import from_float
from bdinn.train.degrade import reduce_bit_depth

pytest.importorskip("av", reason="the FFmpeg filters come with PyAV (pip install '.[video]')")


@pytest.fixture(scope="module")
def banded() -> np.ndarray:
    """A grey ramp quantised to 5 bits, 96 x 160."""
    t = np.linspace(0.2, 0.8, 160, dtype=np.float32)[None, :, None]
    return from_float(reduce_bit_depth(np.broadcast_to(t, (96, 160, 3)), 5), 8)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("depth", [8, 16])
def test_shape_and_dtype_kept(banded, preset, depth):
    img = banded if depth == 8 else banded.astype(np.uint16) * np.uint16(257)
    out = apply_preset(img, preset)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert np.abs(out.astype(np.int64) - img).mean() < (8 if depth == 8 else 8 * 257)


def test_filters_are_available():
    import av

    assert {"deband", "gradfun"} <= set(av.filter.filters_available)


def test_deband_lowers_cambi(banded):
    before = cambi(banded)
    assert before > 20
    assert cambi(apply_filter(banded, "deband")) < before / 2
    assert cambi(apply_preset(banded, "deband-strong")) < before / 2
    assert cambi(apply_preset(banded, "gradfun-strong")) < before


def test_options_change_the_result(banded):
    default = apply_filter(banded, "gradfun")
    strong = apply_filter(banded, "gradfun", "strength=4:radius=24")
    assert not np.array_equal(default, strong)


def test_errors(banded):
    with pytest.raises(FilterError, match="unknown filter 'hqdn3d'"):
        apply_filter(banded, "hqdn3d")
    with pytest.raises(FilterError, match="unknown preset"):
        apply_preset(banded, "deband-extreme")
    with pytest.raises(FilterError, match="bad options"):
        apply_filter(banded, "deband", "nonsense=1")
    with pytest.raises(FilterError, match="H x W x 3"):
        apply_filter(banded[:, :, 0], "deband")
    with pytest.raises(FilterError, match="at least 4x4"):
        apply_filter(banded[:2, :2], "gradfun")
