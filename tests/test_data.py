"""Pairs, the split by source picture, the banding filter and the patch datasets."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from bdinn.runtime.imageio import from_float, read_image, to_float, write_image
from bdinn.train.data import (
    FullImageDataset,
    ImagePair,
    PatchDataset,
    banding_contours,
    has_banding,
    holding_every_family,
    large_enough,
    split_by_source,
    stratified_order,
)
from bdinn.train.degrade import codec_roundtrip, reduce_bit_depth
from bdinn.train.image_pair import find_pairs

DATA = Path(__file__).parent / "data"


def ramp(h: int = 128, w: int = 128) -> np.ndarray:
    """A smooth diagonal colour gradient, stored in 8 bits like a real clean image."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack((0.2 + 0.3 * x, 0.3 + 0.2 * y, 0.5 + 0.2 * (x + y) / 2), axis=2)
    return to_float(from_float(img, 8))


def test_has_banding_on_known_cases():
    clean = ramp()
    assert has_banding(reduce_bit_depth(clean, 5), clean)
    assert not has_banding(clean, clean)
    noise = to_float(from_float(np.random.default_rng(0).random((128, 128, 3)), 8))
    assert not has_banding(reduce_bit_depth(noise, 5), noise)
    leaf = to_float(read_image(DATA / "leaf-texture.png"))[64:192, 176:304]  # the leaf and the litter
    assert not has_banding(reduce_bit_depth(leaf, 5), leaf)
    sky = to_float(read_image(DATA / "sky-gradient.png"))[:128, :128]
    assert has_banding(to_float(codec_roundtrip(from_float(sky, 8), "x264", 40)), sky)
    assert not has_banding(sky, sky)


def test_contours_follow_the_steps_of_a_quantised_ramp():
    x = np.linspace(0.2, 0.8, 256, dtype=np.float32)
    clean = to_float(from_float(np.broadcast_to(x[None, :, None], (64, 256, 3)), 8))
    banded = reduce_bit_depth(clean, 5)
    contours = banding_contours(banded, clean)
    steps = np.flatnonzero(np.diff(banded[0, :, 0]))  # banded[:, s] != banded[:, s + 1]
    assert len(steps) == 19  # levels 6 (0.2 * 31) to 25 (0.8 * 31)
    assert np.array_equal(np.flatnonzero(contours.any(axis=0)), steps)  # one contour line per step
    assert contours[1:-1, steps].all()  # each line runs top to bottom (the border rows aside)
    assert not banding_contours(clean, clean).any()


def write_pair(root: Path, name: str, banded: np.ndarray, clean: np.ndarray, source: str = "") -> ImagePair:
    b = write_image(root / "banded" / f"{name}.png", from_float(banded, 8))
    c = write_image(root / "clean" / f"{name}.png", from_float(clean, 8))
    return ImagePair(name, b, c, source or name)


def test_pictures_too_small_are_dropped_before_the_split(tmp_path):
    """An 8x8 picture took a validation place and was skipped only when loaded: where it was the
    only one, the run had no validation and wrote no best.safetensors."""
    rng = np.random.default_rng(0)
    pairs = [write_pair(tmp_path, n, rng.random((h, w, 3)), rng.random((h, w, 3))) for n, h, w in
             (("big", 32, 48), ("tiny", 8, 8), ("thin", 64, 15), ("edge", 16, 16))]  # fmt: skip
    with pytest.warns(UserWarning) as said:
        kept = large_enough(pairs)
    assert [p.name for p in kept] == ["big", "edge"]
    assert [str(w.message) for w in said] == [
        f"skipping pair tiny: {pairs[1].clean}: 8x8 is smaller than the 16x16 bdinn works on",
        f"skipping pair thin: {pairs[2].clean}: 15x64 is smaller than the 16x16 bdinn works on",
    ]


def test_find_pairs_matches_names_and_reports_strays(tmp_path):
    write_pair(tmp_path, "a", ramp(), ramp())
    write_pair(tmp_path, "c", ramp(), ramp())
    write_image(tmp_path / "banded" / "b.jpg", from_float(ramp(), 8))  # any suffix pairs by name
    write_image(tmp_path / "clean" / "b.png", from_float(ramp(), 8))
    write_image(tmp_path / "banded" / "only-banded.png", from_float(ramp(), 8))
    write_image(tmp_path / "clean" / "only-clean.png", from_float(ramp(), 8))
    (tmp_path / "clean" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=r"2 images have no partner .*1 only in .*banded, 1 only in"):
        pairs = find_pairs(tmp_path / "banded", tmp_path / "clean")
    assert [(p.name, p.banded.name, p.clean.name, p.source) for p in pairs] == [
        ("a", "a.png", "a.png", "a"),
        ("b", "b.jpg", "b.png", "b"),
        ("c", "c.png", "c.png", "c"),
    ]
    with pytest.raises(ValueError, match="missing: no such folder"):
        find_pairs(tmp_path / "missing", tmp_path / "clean")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image names in common"):
        find_pairs(tmp_path / "banded", tmp_path / "empty")
    write_image(tmp_path / "clean" / "a.jpg", from_float(ramp(), 8))
    with pytest.raises(ValueError, match=r"a\.jpg and .*a\.png: two images with one name"):
        find_pairs(tmp_path / "banded", tmp_path / "clean")


def test_split_by_source_never_shares_a_source():
    pairs = [ImagePair(f"s{s}v{v}", Path("b"), Path("c"), f"s{s}") for s in range(10) for v in range(3)]
    train, val = split_by_source(pairs, 0.2, seed=1)
    assert {p.source for p in train}.isdisjoint({p.source for p in val})
    assert len({p.source for p in val}) == 2 and len(train) + len(val) == 30
    assert all(sum(p.source == q.source for q in val) == 3 for p in val)  # variants stay together
    assert split_by_source(pairs, 0.2, seed=1) == (train, val)
    assert any(split_by_source(pairs, 0.2, seed=s)[1] != val for s in range(2, 6))
    two = pairs[:6]
    assert len({p.source for p in split_by_source(two, 0.01, seed=0)[1]}) == 1  # at least one
    assert len({p.source for p in split_by_source(two, 0.9, seed=0)[0]}) == 1  # never all
    assert split_by_source(two, 0.0, seed=0) == (two, [])
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_source(two, 1.0, seed=0)


def test_stratified_order_keeps_every_family_in_proportion_in_every_prefix():
    families = ["x265"] * 10 + ["bits"] * 10 + ["svtav1"] * 5 + ["blur-bits"] * 5
    pairs = [ImagePair(f"p{i}__{f}", Path("b"), Path("c"), f"s{i % 7}", f) for i, f in enumerate(families)]
    ordered = stratified_order(pairs)
    assert sorted(ordered, key=pairs.index) == pairs  # a reordering: nothing lost or repeated
    for n in (2, 4, 6, 12, 30):
        counts = Counter(p.family for p in ordered[:n])
        for family, total in Counter(families).items():
            assert abs(counts[family] - n * total / 30) <= 1, (n, family, counts)
    assert {p.family for p in ordered[:4]} == {"x265", "bits", "svtav1", "blur-bits"}
    assert holding_every_family(ordered) == 4
    # Families of unequal size: the small ones come late, so more than one pair per family.
    mix = ["bits"] * 30 + ["blur-bits"] * 30 + ["x264"] * 10 + ["x265"] * 10 + ["svtav1"] * 10
    uneven = stratified_order(
        [ImagePair(f"q{i}", Path("b"), Path("c"), f"q{i}", f) for i, f in enumerate(mix)]
    )
    needed = holding_every_family(uneven)
    held = [len({p.family for p in uneven[:n]}) for n in (needed - 1, needed)]
    assert needed == 7 and held == [4, 5]
    assert stratified_order(list(reversed(pairs))) == ordered  # by name, not by input order
    user_pairs = [ImagePair(f"u{i}", Path("b"), Path("c"), f"u{i}") for i in range(5)]
    assert sorted(stratified_order(user_pairs), key=user_pairs.index) == user_pairs


def test_stratified_order_takes_pictures_not_yet_scored_first():
    """--max-val-images 2 scored two encodes of one picture while the other held-out picture went
    unscored: within a family the order was a shuffle by name, blind to pictures."""
    families = ["x264", "svtav1", "bits"]
    pairs = [ImagePair(f"p{s}__{f}", Path("b"), Path("c"), f"p{s}", f) for s in range(4) for f in families]
    ordered = stratified_order(pairs)
    assert sorted(ordered, key=pairs.index) == pairs
    assert len({p.source for p in ordered[:4]}) == 4
    for n in (3, 6, 9, 12):  # and the families still in proportion
        assert Counter(p.family for p in ordered[:n]) == dict.fromkeys(families, n // 3)
    # Two pictures with three encodes each: the first two pairs show both.
    two = [ImagePair(f"{s}__x{v}", Path("b"), Path("c"), s, "x264") for s in ("a", "b") for v in range(3)]
    assert {p.source for p in stratified_order(two)[:2]} == {"a", "b"}


def test_patch_grid_counts_and_filter(tmp_path):
    clean = ramp(384, 512)
    banded_pair = write_pair(tmp_path, "banded", reduce_bit_depth(clean, 5), clean)
    identical_pair = write_pair(tmp_path, "same", clean, clean)
    everything = PatchDataset([banded_pair, identical_pair], 256, 128, filter_banding=False)
    assert everything.patches_total == 12 and everything.patches_banded == 12  # 3 x 2 per 512x384
    filtered = PatchDataset([banded_pair, identical_pair], 256, 128)
    assert filtered.patches_total == 12 and filtered.patches_banded == 6  # all banded, no identical
    assert len(filtered.images) == 1  # the identical pair is not held in memory
    assert sorted(filtered.index) == [(0, y, x) for y in (0, 128) for x in (0, 128, 256)]
    b, c = filtered[5]
    assert b.shape == c.shape == (3, 256, 256) and b.dtype == c.dtype == torch.float32
    assert torch.equal(c, torch.from_numpy(clean[128:384, 256:512].transpose(2, 0, 1).copy()))
    assert float(b.min()) >= 0 and float(b.max()) <= 1
    odd = PatchDataset([banded_pair], 200, 150, filter_banding=False)
    assert odd.patches_total == 2 * 3  # y in (0, 150), x in (0, 150, 300)


def test_unbanded_share_adds_seeded_banding_free_patches(tmp_path):
    clean = ramp(384, 512)
    banded_pair = write_pair(tmp_path, "banded", reduce_bit_depth(clean, 5), clean)
    identical_pair = write_pair(tmp_path, "same", clean, clean)
    pairs = [banded_pair, identical_pair]
    quarter = PatchDataset(pairs, 256, 128, unbanded_share=0.25)
    assert quarter.patches_banded == 6 and quarter.patches_unbanded == 2  # 2 of 8 patches
    assert len(quarter) == 8 and len(quarter.images) == 2
    for i in (6, 7):  # the added patches come from the identical pair: input equals target
        b, c = quarter[i]
        assert torch.equal(b, c)
    assert PatchDataset(pairs, 256, 128, unbanded_share=0.25).index == quarter.index
    assert any(
        PatchDataset(pairs, 256, 128, unbanded_share=0.25, seed=s).index != quarter.index for s in range(1, 6)
    )
    assert PatchDataset(pairs, 256, 128, unbanded_share=0.9).patches_unbanded == 6  # all there are
    assert PatchDataset(pairs, 256, 128).patches_unbanded == 0
    with pytest.raises(ValueError, match="unbanded_share"):
        PatchDataset(pairs, 256, 128, unbanded_share=1.0)


def test_identity_share_adds_clean_patches_once_per_clean_image(tmp_path):
    clean = ramp(384, 512)
    five = write_pair(tmp_path, "five", reduce_bit_depth(clean, 5), clean)
    four = write_pair(tmp_path, "four", reduce_bit_depth(clean, 4), clean)
    four = ImagePair("four", four.banded, five.clean, "five")  # a second variant of the same picture
    half = PatchDataset([five, four], 256, 128, identity_share=0.5)
    assert half.patches_banded == 12 and half.patches_identity == 6  # 6 clean patches to draw from
    assert half.patches_unbanded == 0 and len(half) == 18
    third = PatchDataset([five, four], 256, 128, identity_share=0.25, unbanded_share=0.1)
    # No banding-free patch to draw: a quarter of the set is 4 (it was 5 of 17, 29 %, sized as if
    # the unbanded tenth were there)
    assert third.patches_unbanded == 0 and third.patches_identity == 4 and len(third) == 16
    for i in range(12, 16):
        b, c = third[i]
        image_banded, image_clean = third.images[third.index[i][0]]
        assert torch.equal(b, c) and image_banded is image_clean
    with pytest.raises(ValueError, match="sum below 1"):
        PatchDataset([five], 256, 128, identity_share=0.5, unbanded_share=0.5)


def test_shares_short_of_patches_leave_the_others_their_share_of_the_set():
    """Each share was sized as if the others were there: one short left another above its share."""
    from bdinn.train.data import _share_sizes

    asked, take = _share_sizes(2170, {"unbanded": (0.2, 830), "identity": (0.3, 1000)})  # both short
    assert take == {"unbanded": 792, "identity": 1000} and asked == {"unbanded": 792, "identity": 1269}
    assert round(792 / (2170 + 792 + 1000), 3) == 0.2
    asked, take = _share_sizes(
        24390, {"unbanded": (0.3, 6339), "identity": (0.15, 10**6)}
    )  # the model card's
    assert take["unbanded"] == 6339 and round(take["identity"] / (24390 + 6339 + take["identity"]), 3) == 0.15
    assert _share_sizes(120, {"unbanded": (0.25, 500), "identity": (0.25, 500)}) == (
        {"unbanded": 60, "identity": 60},
        {"unbanded": 60, "identity": 60},
    )  # enough of both: as asked, the numbers earlier runs drew
    assert _share_sizes(9, {"unbanded": (0.05, 10), "identity": (0.05, 10)})[1] == {
        "unbanded": 1,
        "identity": 1,
    }
    # (a tie: 9 / 0.9 x 0.05 is just above 0.5 as 1 - 0.05 - 0.05 computes it, and rounds to 1;
    # exactly 0.5 as 1 - 0.1 does, which rounds to 0: earlier runs drew 1)


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    good = write_pair(tmp_path, "good", reduce_bit_depth(ramp(), 4), ramp())
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.banded.read_bytes()[:100])
    bad = ImagePair("bad", broken, good.clean, "bad")
    with pytest.warns(UserWarning, match=r"skipping pair bad: .*broken\.png: truncated PNG"):
        data = PatchDataset([good, bad], 64, 64)
    assert data.skipped_images == 1 and data.patches_total == 4 and data.patches_banded == 4
    with pytest.warns(UserWarning, match="skipping pair bad"):
        full = FullImageDataset([bad, good])
    assert full.skipped_images == 1 and len(full) == 1 and full[0][0] == "good"


def test_size_mismatch_names_both_files(tmp_path):
    pair = write_pair(tmp_path, "x", ramp(64, 64), ramp(64, 80))
    with pytest.raises(ValueError, match=r"banded/x\.png is 64x64 but .*clean/x\.png is 80x64"):
        PatchDataset([pair], 32, 32)
    with pytest.raises(ValueError, match="must have the same size"):
        FullImageDataset([pair])


def test_gray_rgba_and_16_bit_inputs_are_converted(tmp_path):
    clean = ramp(64, 64)
    banded = reduce_bit_depth(clean, 4)
    b16 = write_image(tmp_path / "b16.png", from_float(banded, 16))
    rgba = np.dstack((from_float(clean, 8), np.full((64, 64), 9, np.uint8)))  # alpha is dropped
    c_rgba = write_image(tmp_path / "crgba.png", rgba)
    gray = write_image(tmp_path / "gray.png", from_float(clean[..., 0], 8))
    pairs = [ImagePair("a", b16, c_rgba, "a"), ImagePair("g", gray, gray, "g")]
    data = PatchDataset(pairs, 64, 64, filter_banding=False)
    b, c = data[0]
    assert torch.allclose(b, torch.from_numpy(banded.transpose(2, 0, 1)), atol=1e-6)
    assert torch.allclose(c, torch.from_numpy(clean.transpose(2, 0, 1)), atol=1e-6)
    g, _ = data[1]
    assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])
    name, full_b, full_c = FullImageDataset(pairs)[0]
    assert name == "a" and torch.equal(full_b, b) and torch.equal(full_c, c)


def symmetries(t: torch.Tensor) -> list[torch.Tensor]:
    return [torch.rot90(t.flip(-1) if k >= 4 else t, k % 4, (-2, -1)) for k in range(8)]


def test_augmentation_is_reproducible_per_seed_epoch_and_index(tmp_path):
    clean = to_float(read_image(DATA / "soft-shapes.png"))
    pair = write_pair(tmp_path, "s", reduce_bit_depth(clean, 4), clean)
    data = PatchDataset([pair], 64, 32, augment=True, seed=3)
    plain = PatchDataset([pair], 64, 32)
    assert len(data) == len(plain) > 20
    forward = [data[i] for i in range(len(data))]
    fresh = PatchDataset([pair], 64, 32, augment=True, seed=3)
    backward = [fresh[i] for i in reversed(range(len(fresh)))][::-1]  # another object, another order
    for (b1, c1), (b2, c2) in zip(forward, backward, strict=True):
        assert torch.equal(b1, b2) and torch.equal(c1, c2)
    used = set()
    for i, (b, c) in enumerate(forward):  # one of the 8 symmetries, the same for both images
        pb, pc = plain[i]
        ks = [k for k, sb in enumerate(symmetries(pb)) if torch.equal(sb, b)]
        assert ks and any(torch.equal(symmetries(pc)[k], c) for k in ks)
        used.add(ks[0])
    assert len(used) >= 5
    data.set_epoch(1)
    assert sum(not torch.equal(data[i][0], forward[i][0]) for i in range(len(data))) > len(data) // 2
    data.set_epoch(0)
    assert all(torch.equal(data[i][0], forward[i][0]) for i in range(len(data)))
    other_seed = PatchDataset([pair], 64, 32, augment=True, seed=4)
    assert any(not torch.equal(other_seed[i][0], forward[i][0]) for i in range(len(data)))


def test_full_image_dataset(tmp_path):
    pairs = [write_pair(tmp_path, n, reduce_bit_depth(ramp(100, 150), 5), ramp(100, 150)) for n in ("p", "q")]
    data = FullImageDataset(pairs)
    assert len(data) == 2
    name, banded, clean = data[1]
    assert name == "q" and banded.shape == clean.shape == (3, 100, 150) and banded.dtype == torch.float32
    assert torch.allclose(clean, torch.from_numpy(ramp(100, 150).transpose(2, 0, 1)))
