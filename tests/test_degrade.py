"""Synthetic banding: exact quantisation, real codec round trips, reproducible cached pairs."""

import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from bdinn.runtime.imageio import read_image, to_float, write_image
from bdinn.runtime.metrics import psnr
from bdinn.train.degrade import (
    Degradation,
    codec_roundtrip,
    discover_sources,
    prepare_synthetic_pairs,
    reduce_bit_depth,
    sample_degradation,
)

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("bits", [4, 5, 6])
def test_bit_reduction_lands_on_the_level_grid(bits):
    img = to_float(read_image(DATA / "sky-gradient.png"))
    out = reduce_bit_depth(img, bits)
    levels = out * (2**bits - 1)
    assert np.allclose(levels, np.round(levels), atol=1e-4)
    assert len(np.unique(np.round(levels))) <= 2**bits
    assert np.abs(out - img).max() <= 0.5 / (2**bits - 1) + 1e-6
    blurred = reduce_bit_depth(img, bits, blur_sigma=1.0)
    assert not np.array_equal(blurred, out)


@pytest.mark.parametrize("codec", ["x264", "x265", "svtav1"])
def test_codec_round_trip_is_real_and_deterministic(codec):
    img = read_image(DATA / "soft-shapes.png")[:191, :317]  # odd sizes: 4:2:0 needs padding inside
    crf = {"x264": 40, "x265": 38, "svtav1": 55}[codec]
    out = codec_roundtrip(img, codec, crf)
    assert out.shape == img.shape and out.dtype == np.uint8
    quality = psnr(to_float(out), to_float(img))
    assert 25 < quality < 48
    assert np.array_equal(out, codec_roundtrip(img, codec, crf))
    # A higher CRF loses more.
    assert psnr(to_float(codec_roundtrip(img, codec, crf - 15)), to_float(img)) > quality


def test_degradation_ids_round_trip_and_sampling_is_seeded():
    for d in (
        Degradation("bits", bits=5),
        Degradation("bits", bits=6, blur=1.2),
        Degradation("x265", crf=36),
    ):
        assert Degradation.parse(d.id) == d
    with pytest.raises(ValueError, match="unknown degradation"):
        Degradation.parse("jpeg90")
    draws = [sample_degradation(np.random.default_rng([3, i])) for i in range(200)]
    assert draws == [sample_degradation(np.random.default_rng([3, i])) for i in range(200)]
    kinds = {d.kind for d in draws}
    assert kinds == {"bits", "x264", "x265", "svtav1"}
    assert {d.bits for d in draws if d.kind == "bits"} == {4, 5, 6}


def make_clean_tree(root: Path) -> Path:
    """A plasma-style wallpaper with two sizes and a preview, a mate-style pair, one broken file."""
    sky = read_image(DATA / "sky-gradient.png")
    images = root / "Sky" / "contents" / "images"
    write_image(images / "320x192.png", sky)
    write_image(images / "160x96.png", sky[::2, ::2])
    write_image(root / "Sky" / "contents" / "screenshot.png", sky[::4, ::4])
    shapes = read_image(DATA / "soft-shapes.png")
    write_image(root / "mate" / "Shapes.png", shapes[::2, ::2])
    write_image(root / "mate" / "Shapes_320x192.png", shapes)
    (root / "mate" / "Broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def test_sources_group_resolutions(tmp_path):
    sources = discover_sources([make_clean_tree(tmp_path / "clean")])
    assert sorted(sources) == ["Sky", "mate-Broken", "mate-Shapes"]
    assert sources["Sky"].name == "320x192.png"
    assert sources["mate-Shapes"].name == "Shapes_320x192.png"


def test_prepare_pairs_is_reproducible_and_cached(tmp_path):
    clean = make_clean_tree(tmp_path / "clean")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        pairs = prepare_synthetic_pairs([clean], tmp_path / "a", variants_per_image=3, seed=7, max_side=256)
    assert len(pairs) == 6
    assert {p.source for p in pairs} == {"Sky", "mate-Shapes"}
    first = read_image(pairs[0].clean)
    assert max(first.shape[:2]) == 256  # downsized to max_side
    for p in pairs:
        assert read_image(p.banded).shape == read_image(p.clean).shape
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        again = prepare_synthetic_pairs([clean], tmp_path / "b", variants_per_image=3, seed=7, max_side=256)
    assert [p.name for p in again] == [p.name for p in pairs]
    assert all(a.banded.read_bytes() == b.banded.read_bytes() for a, b in zip(pairs, again, strict=True))
    # Second call on the same cache: no image work, nothing rewritten.
    files = sorted((tmp_path / "a").rglob("*"))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    time.sleep(0.01)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cached = prepare_synthetic_pairs([clean], tmp_path / "a", variants_per_image=3, seed=7, max_side=256)
    assert time.perf_counter() - started < 0.5
    assert cached == pairs
    assert {f: f.stat().st_mtime_ns for f in sorted((tmp_path / "a").rglob("*"))} == stamps
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        other_seed = prepare_synthetic_pairs(
            [clean], tmp_path / "a", variants_per_image=3, seed=8, max_side=256
        )
    assert [p.name for p in other_seed] != [p.name for p in pairs]
    assert os.path.isfile(tmp_path / "a" / "manifest.json")


def test_no_images_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no images found"):
        prepare_synthetic_pairs([tmp_path], tmp_path / "cache")
