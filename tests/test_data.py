"""Pairs, the split by source picture, the banding filter and the patch dataset."""

from pathlib import Path

import numpy as np
import pytest
import torch

from bdinn.runtime.imageio import from_float, read_image, to_float, write_image
from bdinn.train.data import (
    FullImageDataset,
    ImagePair,
    PatchDataset,
    find_pairs,
    has_banding,
    split_by_source,
)
from bdinn.train.degrade import codec_roundtrip, reduce_bit_depth

DATA = Path(__file__).parent / "data"


def ramp(h: int = 128, w: int = 128) -> np.ndarray:
    """A smooth diagonal colour gradient, 8-bit like real clean images."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack((0.2 + 0.3 * x, 0.3 + 0.2 * y, 0.5 + 0.2 * (x + y) / 2), axis=2)
    return to_float(from_float(img, 8))


def test_has_banding_on_known_cases():
    clean = ramp()
    assert has_banding(reduce_bit_depth(clean, 5), clean)
    assert not has_banding(clean, clean)
    noise = to_float(from_float(np.random.default_rng(0).random((128, 128, 3)), 8))
    assert not has_banding(reduce_bit_depth(noise, 5), noise)
    assert has_banding(reduce_bit_depth(clean, 4), clean)
    assert not has_banding(reduce_bit_depth(clean, 8), clean)  # 8 bits: no step beyond one code
    flat = np.full((128, 128, 3), 0.5, np.float32)
    assert not has_banding(flat + 1 / 255, flat)  # a uniform shift is no contour
    sky = to_float(read_image(DATA / "sky-gradient.png"))[:128, :128]
    assert has_banding(to_float(codec_roundtrip(from_float(sky, 8), "x264", 40)), sky)


def write_pair(root: Path, name: str, banded: np.ndarray, clean: np.ndarray) -> ImagePair:
    b = write_image(root / "banded" / f"{name}.png", from_float(banded, 8))
    c = write_image(root / "clean" / f"{name}.png", from_float(clean, 8))
    return ImagePair(name, b, c, name)


def test_find_pairs_matches_names_and_reports_strays(tmp_path):
    write_pair(tmp_path, "a", ramp(), ramp())
    write_pair(tmp_path, "b", ramp(), ramp())
    write_image(tmp_path / "banded" / "only-banded.png", from_float(ramp(), 8))
    with pytest.warns(UserWarning, match="1 images .* no partner"):
        pairs = find_pairs(tmp_path / "banded", tmp_path / "clean")
    assert [p.name for p in pairs] == ["a", "b"]
    with pytest.raises(ValueError, match="no such folder"):
        find_pairs(tmp_path / "missing", tmp_path / "clean")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image names in common"):
        find_pairs(tmp_path / "banded", tmp_path / "empty")


def test_split_by_source_never_shares_a_source():
    pairs = [ImagePair(f"s{s}v{v}", Path("b"), Path("c"), f"s{s}") for s in range(10) for v in range(3)]
    train, val = split_by_source(pairs, 0.2, seed=1)
    assert {p.source for p in train}.isdisjoint({p.source for p in val})
    assert len({p.source for p in val}) == 2 and len(train) + len(val) == 30
    assert split_by_source(pairs, 0.2, seed=1) == (train, val)
    two = pairs[:6]
    assert len({p.source for p in split_by_source(two, 0.01, seed=0)[1]}) == 1
    assert split_by_source(two, 0.0, seed=0)[1] == []


def test_patch_grid_counts_and_filter(tmp_path):
    clean = ramp(384, 512)
    banded_pair = write_pair(tmp_path, "banded", reduce_bit_depth(clean, 4), clean)
    identical_pair = write_pair(tmp_path, "same", clean, clean)
    everything = PatchDataset([banded_pair, identical_pair], 256, 128, filter_banding=False)
    assert everything.patches_total == 12 and len(everything) == 12  # 3 x 2 per 512x384 image
    filtered = PatchDataset([banded_pair, identical_pair], 256, 128)
    assert filtered.patches_total == 12
    assert filtered.patches_kept == 6  # every banded patch, no identical one
    b, c = filtered[0]
    assert b.shape == c.shape == (3, 256, 256) and b.dtype == torch.float32
    assert float(b.min()) >= 0 and float(b.max()) <= 1


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    good = write_pair(tmp_path, "good", reduce_bit_depth(ramp(), 4), ramp())
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.banded.read_bytes()[:100])
    with pytest.warns(UserWarning, match="skipping pair bad.*truncated"):
        data = PatchDataset([good, ImagePair("bad", broken, good.clean, "bad")], 64, 64)
    assert data.skipped_images == 1 and data.patches_total == 4


def test_size_mismatch_names_both_files(tmp_path):
    pair = write_pair(tmp_path, "x", ramp(64, 64), ramp(64, 80))
    with pytest.raises(ValueError, match=r"x\.png is 64x64 but .*x\.png is 80x64"):
        PatchDataset([pair], 32, 32)
    with pytest.raises(ValueError, match="one size"):
        FullImageDataset([pair])[0]


def test_gray_rgba_and_16_bit_inputs_are_converted(tmp_path):
    clean = ramp(64, 64)
    banded = reduce_bit_depth(clean, 4)
    b16 = write_image(tmp_path / "b16.png", from_float(banded, 16))
    c_rgba = write_image(
        tmp_path / "crgba.png", np.dstack((from_float(clean, 8), np.full((64, 64), 255, np.uint8)))
    )
    gray = write_image(tmp_path / "gray.png", from_float(clean[..., 0], 8))
    data = PatchDataset(
        [ImagePair("a", b16, c_rgba, "a"), ImagePair("g", gray, gray, "g")], 64, 64, filter_banding=False
    )
    b, c = data[0]
    assert torch.allclose(b, torch.from_numpy(banded.transpose(2, 0, 1)), atol=1e-4)
    assert torch.allclose(c, torch.from_numpy(clean.transpose(2, 0, 1)), atol=1e-6)
    g, _ = data[1]
    assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])


def test_augmentation_is_reproducible_per_seed_epoch_and_index(tmp_path):
    clean = to_float(read_image(DATA / "soft-shapes.png"))
    pair = write_pair(tmp_path, "s", reduce_bit_depth(clean, 4), clean)
    data = PatchDataset([pair], 64, 32, augment=True, seed=3)
    plain = PatchDataset([pair], 64, 32, augment=False)
    assert len(data) > 8
    first = [data[i][0] for i in range(len(data))]
    again = [data[i][0] for i in reversed(range(len(data)))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # Augmentation is one of the 8 symmetries of the square, applied to both images alike.
    for i in range(len(data)):
        b, c = data[i]
        pb, pc = plain[i]
        matches = [
            k
            for k in range(8)
            if torch.equal(torch.rot90(pb.flip(-1) if k >= 4 else pb, k % 4, (-2, -1)), b)
            and torch.equal(torch.rot90(pc.flip(-1) if k >= 4 else pc, k % 4, (-2, -1)), c)
        ]
        assert matches
    data.set_epoch(1)
    assert any(not torch.equal(data[i][0], first[i]) for i in range(len(data)))


def test_full_image_dataset(tmp_path):
    pair = write_pair(tmp_path, "full", reduce_bit_depth(ramp(100, 150), 5), ramp(100, 150))
    name, banded, clean = FullImageDataset([pair])[0]
    assert name == "full" and banded.shape == clean.shape == (3, 100, 150)
