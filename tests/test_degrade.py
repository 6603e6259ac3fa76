"""Synthetic banding: exact quantisation, real codec round trips, reproducible cached pairs."""

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from bdinn.runtime.imageio import read_image, to_float, write_image
from bdinn.runtime.metrics import psnr
from bdinn.train.clean_sources import discover_sources, one_source_per_picture
from bdinn.train.degrade import (
    CRF_RANGES,
    Degradation,
    codec_roundtrip,
    codec_roundtrip_clip,
    reduce_bit_depth,
    sample_degradation,
)
from bdinn.train.image_pair import find_pairs
from bdinn.train.pairs_cache import MANIFEST_FORMAT, pairs_from_cache, prepare_synthetic_pairs

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("bits", [4, 5, 6])
def test_bit_reduction_lands_exactly_on_the_level_grid(bits):
    img = to_float(read_image(DATA / "sky-gradient.png"))
    out = reduce_bit_depth(img, bits)
    levels = out.astype(np.float64) * (2**bits - 1)
    assert out.dtype == np.float32 and np.abs(levels - np.round(levels)).max() < 1e-4
    assert len(np.unique(np.round(levels))) <= 2**bits
    assert np.abs(out - img).max() <= 0.5 / (2**bits - 1) + 1e-6  # rounded to the nearest level
    smoothed = reduce_bit_depth(img, bits, blur_sigma=1.0)
    smoothed_levels = smoothed.astype(np.float64) * (2**bits - 1)
    assert np.abs(smoothed_levels - np.round(smoothed_levels)).max() < 1e-4
    assert 0 < np.mean(smoothed != out) < 0.5  # smoothing moves some pixels to other levels
    with pytest.raises(ValueError, match=r"bits must be in 1\.\.16"):
        reduce_bit_depth(img, 0)


@pytest.mark.parametrize("codec", ["x264", "x265", "svtav1"])
def test_codec_round_trip_is_real_and_deterministic(codec):
    img = read_image(DATA / "soft-shapes.png")[:191, :317]  # odd sizes: padded for 4:2:0 inside
    low, high = CRF_RANGES[codec]
    out = codec_roundtrip(img, codec, high)
    assert out.shape == img.shape and out.dtype == np.uint8
    quality = psnr(to_float(out), to_float(img))
    assert 25 < quality < 40
    assert np.array_equal(out, codec_roundtrip(img, codec, high))
    assert psnr(to_float(codec_roundtrip(img, codec, low)), to_float(img)) > quality + 2  # lower CRF, better
    # At CRF 0 the colour conversion adds no bias (swscale's direct path shifted 1-1.4 codes).
    near_lossless = codec_roundtrip(img, codec, 0).astype(np.float64)
    assert np.abs(near_lossless.mean(axis=(0, 1)) - img.mean(axis=(0, 1))).max() < 0.5
    tiny = codec_roundtrip(img[:5, :7], codec, low)  # below the encoders' minimum size
    assert tiny.shape == (5, 7, 3)
    with pytest.raises(ValueError, match="unknown codec"):
        codec_roundtrip(img, "mpeg2", 30)


def test_degradation_ids_parse_and_sampling_is_seeded():
    for d in (Degradation("bits", bits=5), Degradation("bits", bits=6, blur=1.2), Degradation("x265", crf=9)):
        assert Degradation.parse(d.id) == d
    assert [Degradation.parse(t).id for t in ("q5", "b1.0q6", "x264crf40")] == ["q5", "b1.0q6", "x264crf40"]
    assert [Degradation.parse(t).family for t in ("q5", "b1q6", "x265crf9")] == ["bits", "blur-bits", "x265"]
    with pytest.raises(ValueError, match="unknown degradation"):
        Degradation.parse("jpeg90")
    with pytest.raises(ValueError, match="crf 0-63"):
        Degradation("svtav1", crf=70)
    draws = [sample_degradation(np.random.default_rng([3, i])) for i in range(300)]
    assert draws == [sample_degradation(np.random.default_rng([3, i])) for i in range(300)]
    bits = [d for d in draws if d.kind == "bits"]
    assert {d.kind for d in draws} == {"bits", "x264", "x265", "svtav1"}
    assert 0.4 < len(bits) / len(draws) < 0.6
    assert {d.bits for d in bits} == {4, 5, 6}
    assert 0.2 < np.mean([d.blur > 0 for d in bits]) < 0.5
    assert all(0.5 <= d.blur <= 1.5 for d in bits if d.blur)
    assert all(CRF_RANGES[d.kind][0] <= d.crf <= CRF_RANGES[d.kind][1] for d in draws if d.kind != "bits")


def make_clean_tree(root: Path) -> Path:
    """Plasma- and mate-style folders: several sizes of one picture, a preview, an overlay, a bad file."""
    sky = read_image(DATA / "sky-gradient.png")
    wallpaper = root / "wallpapers" / "Sky" / "contents"
    write_image(wallpaper / "images" / "320x192.png", sky)
    write_image(wallpaper / "images" / "160x96.png", sky[::2, ::2])
    write_image(wallpaper / "images_dark" / "320x192.png", sky // 2)
    write_image(wallpaper / "screenshot.png", sky[::4, ::4])
    shapes = read_image(DATA / "soft-shapes.png")
    mate = root / "mate" / "abstract"
    write_image(mate / "Shapes.png", shapes[::2, ::2])
    write_image(mate / "Shapes_320x192.png", shapes)
    # An overlay like mate's Silk.png: one flat colour, the picture is all in the alpha channel.
    overlay = np.zeros((96, 160, 4), np.uint8)
    overlay[..., :3] = 255
    overlay[..., 3] = np.linspace(0, 255, 160).astype(np.uint8)
    write_image(mate / "Veil.png", overlay)
    (mate / "Broken.png").write_bytes((DATA / "soft-shapes.png").read_bytes()[:5000])
    return root


def test_sources_group_resolutions_and_skip_previews(tmp_path):
    sources = discover_sources([make_clean_tree(tmp_path / "clean")])
    assert sorted(sources) == ["Sky", "Sky-dark", "abstract-Broken", "abstract-Shapes", "abstract-Veil"]
    chosen = sources["Sky"].relative_to(tmp_path).as_posix()
    assert chosen == "clean/wallpapers/Sky/contents/images/320x192.png"
    assert sources["abstract-Shapes"].name == "Shapes_320x192.png"


def test_the_largest_version_is_chosen_by_its_pixels_not_by_a_size_in_its_name(tmp_path):
    """A Name.png beside its Name_128x100.png thumbnail lost to it: a size in the name beat no size.
    Links under other sizes' names (Plasma's 800x600.jpg -> 2560x1600.jpg) keep the one named."""
    sky = read_image(DATA / "sky-gradient.png")
    write_image(tmp_path / "mate" / "Sky.png", sky[:, ::-1])  # another picture than the wallpaper's
    rows, columns = np.linspace(0, 191, 100).astype(int), np.linspace(0, 319, 128).astype(int)
    write_image(tmp_path / "mate" / "Sky_128x100.png", sky[:, ::-1][rows][:, columns])
    images = tmp_path / "wallpapers" / "Sky" / "contents" / "images"
    write_image(images / "320x192.png", sky)
    (images / "80x48.png").symlink_to("320x192.png")
    sources = discover_sources([tmp_path])
    assert (sources["mate-Sky"].name, sources["Sky"].name) == ("Sky.png", "320x192.png")


def test_pictures_of_one_name_in_different_folders_are_different_sources(tmp_path):
    """Named by folder and file name, A/x/img.png and B/x/img.png (and a/b-c.png, a-b/c.png) made one
    source, of which only the larger file was kept, without a word."""
    sky, shapes = read_image(DATA / "sky-gradient.png"), read_image(DATA / "soft-shapes.png")
    write_image(tmp_path / "A" / "x" / "img.png", sky)
    write_image(tmp_path / "B" / "x" / "img.png", shapes)
    write_image(tmp_path / "C" / "a" / "b-c.png", sky[::-1])  # other pictures: copies are one (below)
    write_image(tmp_path / "C" / "a-b" / "c.png", shapes[::-1])
    shutil.copytree(tmp_path / "A", tmp_path / "D")  # a copy of one picture is still one picture
    roots = [tmp_path / root for root in "ABCD"]
    sources = discover_sources(roots)
    assert len(sources) == 4
    assert {p.relative_to(tmp_path).as_posix() for p in sources.values()} == {
        "A/x/img.png", "B/x/img.png", "C/a/b-c.png", "C/a-b/c.png"
    }  # fmt: skip
    assert all(key.startswith(("x-img-", "a-b-c-")) for key in sources)
    moved = shutil.move(tmp_path, tmp_path.parent / f"{tmp_path.name}-moved")  # keys name the split
    assert list(discover_sources([Path(moved) / root for root in "ABCD"])) == list(sources)


def test_only_a_plasma_package_makes_its_pictures_one_source(tmp_path):
    """Any folder named contents on a path was taken for a Plasma package: every picture under
    contents/photos became one source (the folder above contents), and pictures directly in a
    contents/ folder were skipped as its preview ('no images found')."""
    sky, shapes = read_image(DATA / "sky-gradient.png"), read_image(DATA / "soft-shapes.png")
    for flip, folder in ((1, "contents/photos"), (-1, "x/contents")):  # four different pictures
        write_image(tmp_path / folder / "a.png", sky[::flip])
        write_image(tmp_path / folder / "b.png", shapes[::flip])
    write_image(tmp_path / "x" / "contents" / "screenshot.png", shapes[:, ::-1])  # no images/ beside it
    sources = discover_sources([tmp_path / "contents", tmp_path / "x"])
    assert sorted(sources) == ["contents-a", "contents-b", "contents-screenshot", "photos-a", "photos-b"]


def test_a_link_or_a_copy_under_another_name_is_one_source(tmp_path):
    """zz.png -> p0.png was a second source, which the split could send to the other side of p0:
    validation scored a picture that training saw. The file itself is kept, not the link."""
    sky, shapes = read_image(DATA / "sky-gradient.png"), read_image(DATA / "soft-shapes.png")
    write_image(tmp_path / "sl" / "p0.png", sky)
    write_image(tmp_path / "sl" / "p1.png", shapes)
    (tmp_path / "sl" / "a-link.png").symlink_to("p0.png")
    shutil.copy(tmp_path / "sl" / "p1.png", tmp_path / "sl" / "p1-copy.png")
    write_image(tmp_path / "sl" / "p2.png", sky[::-1])  # as many bytes as p0 maybe, another picture
    sources = discover_sources([tmp_path / "sl"])
    assert sorted(sources) == ["sl-p0", "sl-p1", "sl-p2"]
    # A link to a smaller version of a wallpaper is that wallpaper too; its largest version is kept.
    images = tmp_path / "wp" / "Sky" / "contents" / "images"
    write_image(images / "320x192.png", shapes[:, ::-1])
    write_image(images / "160x96.png", shapes[::2, ::-2])
    (tmp_path / "bg").mkdir()
    (tmp_path / "bg" / "desktop-background.png").symlink_to(images / "160x96.png")
    shutil.copy(images / "160x96.png", tmp_path / "bg" / "copy.png")
    sources = discover_sources([tmp_path / "wp", tmp_path / "bg"])
    assert list(sources) == ["Sky"] and sources["Sky"].name == "320x192.png"


def test_long_picture_names_make_cache_names_the_file_system_takes(tmp_path):
    """Cache names were the folder and picture names whole: past about 224 characters every run
    failed with 'File name too long'."""
    folder = tmp_path / ("f" * 60)
    write_image(folder / ("n" * 200 + ".png"), read_image(DATA / "sky-gradient.png")[:64, :96])
    pairs = prepare_synthetic_pairs([folder], tmp_path / "cache", variants_per_image=1, seed=0, max_side=96)
    assert len(pairs) == 1 and pairs[0].source == "f" * 60 + "-" + "n" * 200
    assert max(len(p.name) for p in (tmp_path / "cache").rglob("*.png")) < 150


def test_an_earlier_runs_pairs_cache_in_a_clean_folder_is_not_taken_for_clean_pictures(tmp_path):
    """bdinn-train -o inside its --clean folder: the next run read the last one's banded and clean
    copies as more clean pictures (6 sources became 19)."""
    clean = make_clean_tree(tmp_path / "clean")
    before = discover_sources([clean])
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        prepare_synthetic_pairs([clean], clean / "run" / "pairs", variants_per_image=1, seed=0, max_side=256)
    assert any((clean / "run" / "pairs").rglob("*.png"))
    assert discover_sources([clean]) == before


def test_a_clean_picture_it_may_not_read_is_skipped_like_a_damaged_one(tmp_path, monkeypatch):
    """Copies are told apart by their bytes: a permission-denied wallpaper of the same size as
    another stopped the run with a bare PermissionError before any pair was made."""
    folder = tmp_path / "clean"
    folder.mkdir()
    picture = read_image(DATA / "sky-gradient.png")[:64, :96]
    write_image(folder / "Open.png", picture)
    write_image(folder / "Locked.png", picture)  # the same size: its bytes are compared
    read_bytes = Path.read_bytes

    def denied(self: Path) -> bytes:
        if self.name == "Locked.png":
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.warns(
        UserWarning, match=r"skipped 1 unreadable .*/Locked\.png: cannot read the file \(Permission"
    ):
        pairs = prepare_synthetic_pairs(
            [folder], tmp_path / "cache", variants_per_image=1, seed=0, max_side=96
        )
    assert [pair.source for pair in pairs] == ["clean-Open"]


def test_a_cache_never_replaces_another_programs_manifest_or_writes_through_a_link(tmp_path):
    """A --cache-dir holding another program's manifest.json had it replaced without a word, and a
    cache whose banded/ was a link wrote the pairs wherever it led."""
    picture = read_image(DATA / "sky-gradient.png")[:64, :96]
    clean = tmp_path / "clean"
    clean.mkdir()
    write_image(clean / "sky.png", picture)
    theirs = tmp_path / "extension"
    theirs.mkdir()
    (theirs / "manifest.json").write_text('{"name": "my-extension", "manifest_version": 3}')
    with pytest.raises(ValueError, match=r"manifest\.json: not a bdinn pairs cache's manifest"):
        prepare_synthetic_pairs([clean], theirs, variants_per_image=1, seed=0, max_side=96)
    assert (theirs / "manifest.json").read_text() == '{"name": "my-extension", "manifest_version": 3}'
    assert sorted(p.name for p in theirs.iterdir()) == ["manifest.json"]
    zeroed = tmp_path / "zeroed"  # a cache's manifest zeroed by a crash is made again, as before
    (zeroed / "clean").mkdir(parents=True)
    (zeroed / "manifest.json").write_bytes(bytes(64))
    with pytest.warns(UserWarning, match="unreadable cache manifest, remaking the pairs"):
        assert len(prepare_synthetic_pairs([clean], zeroed, variants_per_image=1, seed=0, max_side=96)) == 1
    linked, outside = tmp_path / "linked", tmp_path / "outside"
    linked.mkdir()
    outside.mkdir()
    (linked / "banded").symlink_to(outside)
    with pytest.raises(ValueError, match=r"banded: leads out of the pairs cache through a link"):
        prepare_synthetic_pairs([clean], linked, variants_per_image=1, seed=0, max_side=96)
    assert list(outside.iterdir()) == []
    huge = tmp_path / "huge"  # a sparse 4 GB manifest was read whole, gigabytes, before anything
    huge.mkdir()
    with open(huge / "manifest.json", "wb") as manifest:
        manifest.write(b'{"format": "bdinn-synthetic-pairs/1"')
        manifest.truncate(4 << 30)
    for make in (
        lambda: prepare_synthetic_pairs([clean], huge, variants_per_image=1, seed=0, max_side=96),
        lambda: pairs_from_cache(huge),
    ):
        with pytest.raises(ValueError, match=r"manifest\.json: over 256 MB, not a manifest bdinn writes"):
            make()


def snapshot(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_prepare_pairs_is_reproducible_cached_and_skips_bad_files(tmp_path):
    clean = make_clean_tree(tmp_path / "clean")
    args = {"variants_per_image": 3, "seed": 7, "max_side": 256}
    started = time.perf_counter()
    with pytest.warns(
        UserWarning, match=r"skipped 1 unreadable or too small clean image\(s\) of 5, e.g. .*Broken"
    ):
        pairs = prepare_synthetic_pairs([clean], tmp_path / "a", **args)
    first_call = time.perf_counter() - started
    assert len(pairs) == 4 * 3
    assert {p.source for p in pairs} == {"Sky", "abstract-Shapes", "abstract-Veil"}  # Sky-dark is Sky
    for source in ("Sky", "abstract-Shapes"):  # three different degradations per picture
        assert len({p.name for p in pairs if p.name.startswith(source + "__")}) == 3
    sizes = {read_image(p.clean).shape for p in pairs}
    assert sizes == {(154, 256, 3), (96, 160, 3)}  # long side shrunk to max_side, small ones kept
    assert all(read_image(p.banded).shape == read_image(p.clean).shape for p in pairs)
    assert all(p.banded.read_bytes() != p.clean.read_bytes() for p in pairs)
    veil = read_image(next(p.clean for p in pairs if p.source == "abstract-Veil"))
    assert veil[:, 0].std() > 5 and veil.std() > 20  # composited over a gradient, not a flat white
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert len(manifest["pairs"]) == 12 and len(manifest["skipped"]) == 1

    # Same arguments in a fresh folder: byte-identical files.
    with pytest.warns(UserWarning, match="skipped 1"):
        again = prepare_synthetic_pairs([clean], tmp_path / "b", **args)
    assert [p.name for p in again] == [p.name for p in pairs]
    for a, b in zip(pairs, again, strict=True):
        assert a.banded.read_bytes() == b.banded.read_bytes() and a.clean.read_bytes() == b.clean.read_bytes()

    # Same arguments, same folder: the cache answers; nothing is written, nothing decoded.
    before = snapshot(tmp_path / "a")
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cached = prepare_synthetic_pairs([clean], tmp_path / "a", **args)
    assert time.perf_counter() - started < min(0.5, first_call / 3)
    assert cached == pairs
    assert snapshot(tmp_path / "a") == before
    assert [str(w.message)[:20] for w in caught] == ["skipped 1 unreadable"]  # still reported

    # Another seed draws other degradations, reusing the clean files.
    with pytest.warns(UserWarning, match="skipped 1"):
        other = prepare_synthetic_pairs([clean], tmp_path / "a", **{**args, "seed": 8})
    assert {p.name for p in other} != {p.name for p in pairs}
    assert {p.clean for p in other} == {p.clean for p in pairs}

    # A changed source file is made again.
    shapes = clean / "mate" / "abstract" / "Shapes_320x192.png"
    os.utime(shapes, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.warns(UserWarning, match="skipped 1"):
        remade = prepare_synthetic_pairs([clean], tmp_path / "a", **args)
    changed = {p.clean for p in remade} - {p.clean for p in pairs}
    assert len(changed) == 1 and "Shapes" in changed.pop().name


def test_prepare_pairs_errors(tmp_path):
    with pytest.raises(ValueError, match="no images found"):
        prepare_synthetic_pairs([tmp_path], tmp_path / "cache")
    with pytest.raises(ValueError, match="no such folder"):
        prepare_synthetic_pairs([tmp_path / "missing"], tmp_path / "cache")
    (tmp_path / "pictures").mkdir()
    write_image(tmp_path / "pictures" / "sky.png", read_image(DATA / "sky-gradient.png"))
    for cache in (tmp_path / "pictures", tmp_path):  # said "no images found" with a picture there
        with pytest.raises(ValueError) as info:
            prepare_synthetic_pairs([tmp_path / "pictures"], cache)
        assert str(info.value) == (
            f"{cache}: the pairs cache would hold the clean folder {tmp_path / 'pictures'}; give it its own"
        )
    # A run's folder given as clean pictures: its pairs cache is skipped, which was 'no images found'
    prepare_synthetic_pairs([tmp_path / "pictures"], tmp_path / "run" / "pairs", 1, max_side=64)
    with pytest.raises(ValueError) as info:
        prepare_synthetic_pairs([tmp_path / "run"], tmp_path / "cache")
    assert str(info.value) == (
        f"{tmp_path / 'run'}: no clean pictures ({tmp_path / 'run' / 'pairs'} is a pairs cache, skipped: an "
        "earlier run's pictures); give the folder they were made from"
    )


def test_pairs_from_a_moved_recompressed_cache_without_banded_pictures(tmp_path):
    """The sources gone, clean pictures as lossless WebP, banded ones deleted: the same pairs,
    with every banded picture (bit-depth and codec) remade bit for bit."""
    clean = make_clean_tree(tmp_path / "clean")
    with pytest.warns(UserWarning, match="skipped 1"):
        made = prepare_synthetic_pairs([clean], tmp_path / "a", variants_per_image=3, seed=7, max_side=256)
    kinds = {Degradation.parse(p.name.split("__")[1]).kind for p in made}
    assert "bits" in kinds and kinds - {"bits"}  # both kinds of banded picture are remade
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "a", moved)
    shutil.rmtree(clean)
    for png in (moved / "clean").glob("*.png"):
        write_image(png.with_suffix(".webp"), read_image(png))
        png.unlink()
    for banded in (moved / "banded").iterdir():
        banded.unlink()
    pairs = pairs_from_cache(moved)
    assert sorted(p.name for p in pairs) == sorted(p.name for p in made)
    for pair in [*made, *pairs]:  # the degradation family travels with every pair
        assert pair.family == Degradation.parse(pair.name.split("__")[1]).family != ""
    originals = {p.name: p for p in made}
    for pair in pairs:
        original = originals[pair.name]
        assert pair.source == original.source and pair.clean.suffix == ".webp"
        assert np.array_equal(read_image(pair.clean), read_image(original.clean))
        assert np.array_equal(read_image(pair.banded), read_image(original.banded))
    assert pairs_from_cache(moved) == pairs  # a second call finds what the first remade


def test_pairs_from_cache_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError) as info:
        pairs_from_cache(tmp_path)
    manifest = tmp_path / "manifest.json"
    said = f"{manifest}: no pairs cache here (make one with --clean DIR --cache-dir {tmp_path})"
    assert str(info.value) == said
    manifest.write_text("{not json")
    with pytest.raises(ValueError, match=r"json: no readable pairs cache here \(JSONDecodeError\)$"):
        pairs_from_cache(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something else", "pairs": {}}))
    with pytest.raises(ValueError, match="not a bdinn pairs cache"):
        pairs_from_cache(tmp_path)
    bad = {"name": "Sky__jpeg90", "degradation": {"kind": "jpeg", "crf": 90}, "clean": "c", "banded": "b",
           "source": "Sky"}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps({"format": MANIFEST_FORMAT, "pairs": {"k": bad}}))
    with pytest.raises(ValueError, match=r"manifest\.json: pair 'Sky__jpeg90': bad degradation \(unknown"):
        pairs_from_cache(tmp_path)
    made = prepare_synthetic_pairs([DATA], tmp_path / "cache", variants_per_image=2)
    codec = next(p.banded for p in made if Degradation.parse(p.name.split("__")[1]).kind != "bits")
    codec.unlink()
    monkeypatch.setitem(sys.modules, "av", None)  # a machine without PyAV
    with pytest.raises(ValueError, match=r"remaking a codec encode needs PyAV .*copy the banded picture"):
        pairs_from_cache(tmp_path / "cache")
    monkeypatch.undo()
    next((tmp_path / "cache" / "clean").iterdir()).unlink()
    with pytest.raises(ValueError, match=r"clean/.*\.png: missing from the pairs cache \(copy the clean"):
        pairs_from_cache(tmp_path / "cache")


def test_a_cache_alone_gives_the_pairs_of_its_latest_preparation(tmp_path):
    """A cache outlives its pictures: after an edited picture or a run with another seed, it listed
    every pair it ever made, so a run from the cache alone trained on more pairs than the run that
    made it (and a resume from a copy of it was refused as "different pictures")."""
    clean = tmp_path / "clean"
    shutil.copytree(DATA, clean, ignore=shutil.ignore_patterns("*.md"))
    cache = tmp_path / "cache"
    first = prepare_synthetic_pairs([clean], cache, variants_per_image=2, seed=0, max_side=128)
    assert pairs_from_cache(cache) == sorted(first, key=lambda p: p.name)
    other_seed = prepare_synthetic_pairs([clean], cache, variants_per_image=2, seed=1, max_side=128)
    sky = clean / "sky-gradient.png"
    write_image(sky, read_image(sky)[::-1])  # edited: its pairs are made again
    edited = prepare_synthetic_pairs([clean], cache, variants_per_image=2, seed=0, max_side=128)
    manifest = json.loads((cache / "manifest.json").read_text())
    assert len(manifest["pairs"]) == 6 + 6 + 2 and len(edited) == 6

    assert pairs_from_cache(cache) == sorted(edited, key=lambda p: p.name)  # the latest
    assert pairs_from_cache(cache, seed=1) == sorted(other_seed, key=lambda p: p.name)
    assert pairs_from_cache(cache, variants=2, max_side=128) == pairs_from_cache(cache)
    with pytest.raises(ValueError) as info:
        pairs_from_cache(cache, seed=2, variants=2)
    assert str(info.value) == (
        f"{cache / 'manifest.json'}: the cache holds no pairs made with --seed 2 --variants 2; it holds "
        "pairs made with --seed 1 --variants 2 --max-side 128; --seed 0 --variants 2 --max-side 128 "
        "(pass those, or make the pairs with --clean DIR)"
    )
    before = (cache / "manifest.json").read_bytes()
    assert prepare_synthetic_pairs([clean], cache, variants_per_image=2, seed=0, max_side=128) == edited
    assert (cache / "manifest.json").read_bytes() == before  # the same preparation again writes nothing

    del manifest["preparations"]  # a cache made before preparations were recorded: all, and a word
    (cache / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(
        UserWarning, match=r"does not record which pairs a run used .*: training on all 14 pairs"
    ):
        assert len(pairs_from_cache(cache)) == 14


def test_a_preparation_that_made_nothing_or_only_looked_leaves_the_record_alone(tmp_path):
    """A --clean folder whose pictures all failed to read recorded an empty preparation over the
    good one of the same settings, and every run from the cache then had no pairs; a look at the
    pairs (validation_split.py, record=False) narrowed the record to the folders it was given."""
    cache, broken = tmp_path / "cache", tmp_path / "broken"
    made = prepare_synthetic_pairs([DATA], cache, variants_per_image=1, max_side=None)
    broken.mkdir()
    (broken / "cut.png").write_bytes((DATA / "soft-shapes.png").read_bytes()[:5000])
    with pytest.warns(UserWarning, match="skipped 1"):
        assert prepare_synthetic_pairs([broken], cache, variants_per_image=1, max_side=None) == []
    one = tmp_path / "one"
    one.mkdir()
    (one / "sky.png").write_bytes((DATA / "sky-gradient.png").read_bytes())
    assert len(prepare_synthetic_pairs([one], cache, variants_per_image=1, max_side=None, record=False)) == 1
    kept = sorted(made, key=lambda p: p.name)
    assert pairs_from_cache(cache) == kept
    assert pairs_from_cache(cache, max_side=None, variants=1) == kept  # the Python API's "no limit"


def test_two_runs_preparing_one_cache_at_once_keep_each_others_pairs(tmp_path):
    """Each rewrote the manifest it had read, so the last to write lost the other's pairs and
    its preparation: a run from the cache with the lost seed was then refused."""
    cache = tmp_path / "cache"
    code = (
        "import sys\n"
        "from bdinn.train.pairs_cache import prepare_synthetic_pairs\n"
        f"prepare_synthetic_pairs([{str(DATA)!r}], {str(cache)!r}, 2, seed=int(sys.argv[1]))\n"
    )
    runs = [subprocess.Popen([sys.executable, "-c", code, str(seed)]) for seed in (0, 1)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    manifest = json.loads((cache / "manifest.json").read_text())
    assert sorted(manifest["preparations"]) == [
        "--seed 0 --variants 2 --max-side 1920",
        "--seed 1 --variants 2 --max-side 1920",
    ]
    for seed in (0, 1):
        assert len(pairs_from_cache(cache, seed=seed)) == 6


@pytest.mark.parametrize("banded", ["/tmp/elsewhere/planted.png", "../outside/planted.png", ""])
def test_a_manifest_cannot_send_pictures_outside_its_cache(tmp_path, banded):
    """A cache is a folder people copy between machines: a crafted manifest made bdinn-train write
    its banded pictures wherever their paths pointed, and read clean ones from anywhere."""
    cache = tmp_path / "cache"
    made = prepare_synthetic_pairs([DATA], cache, variants_per_image=1)
    manifest = json.loads((cache / "manifest.json").read_text())
    entry = next(iter(manifest["pairs"].values()))
    entry["banded"] = banded.replace("/tmp/elsewhere", str(tmp_path / "elsewhere"))
    (cache / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"manifest\.json: damaged pairs cache manifest .*inside the cache"):
        pairs_from_cache(cache)
    with pytest.warns(UserWarning, match=r"manifest\.json: unreadable cache manifest, remaking the pairs"):
        again = prepare_synthetic_pairs([DATA], cache, variants_per_image=1)
    assert sorted(p.name for p in again) == sorted(p.name for p in made)
    assert all(p.banded.is_relative_to(cache) for p in again)
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "outside").exists()


def test_a_link_inside_a_cache_cannot_send_a_remade_picture_outside_it(tmp_path):
    """The manifest's paths were checked, not the folders they pass through: a copied cache whose
    `out` links elsewhere had bdinn-train write its missing banded picture there."""
    cache, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    prepare_synthetic_pairs([DATA], cache, variants_per_image=1)
    elsewhere.mkdir()
    (cache / "out").symlink_to(elsewhere)
    manifest = json.loads((cache / "manifest.json").read_text())
    entry = next(iter(manifest["pairs"].values()))
    (cache / entry["banded"]).unlink()
    entry["banded"] = "out/planted.png"
    (cache / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ValueError, match=r"out/planted\.png: missing, and its folder leads out of the pairs cache"
    ):
        pairs_from_cache(cache)
    assert list(elsewhere.iterdir()) == []


def test_a_clip_is_encoded_as_one_video_and_comes_back_in_order():
    img = read_image(DATA / "soft-shapes.png")[:96, :160]
    clip = [np.roll(img, 6 * i, axis=1) for i in range(6)]  # a pan: every frame differs
    out = codec_roundtrip_clip(clip, "x264", 30, {"g": "3"})
    assert len(out) == 6 and all(o.shape == img.shape and o.dtype == np.uint8 for o in out)
    for i, frame in enumerate(out):  # each decoded frame is nearest its own source frame
        errors = [np.abs(frame.astype(int) - c).mean() for c in clip]
        assert int(np.argmin(errors)) == i
    with pytest.raises(ValueError, match="frames of one size"):
        codec_roundtrip_clip([img, img[:50]], "x264", 30)


def test_caches_of_two_picture_sizes_share_a_folder_without_mixing(tmp_path):
    """The pair's cache key without the largest side: a run at another --max-side overwrote the
    banded pictures of the first, and going back paired banded and clean pictures of two sizes."""
    for side in (256, 128, 256):
        pairs = prepare_synthetic_pairs([DATA], tmp_path / "cache", variants_per_image=1, max_side=side)
        for pair in pairs:
            banded, clean = read_image(pair.banded), read_image(pair.clean)
            assert banded.shape == clean.shape and max(clean.shape[:2]) <= side


def test_a_cache_cut_short_at_its_first_picture_is_still_known_as_one(tmp_path, monkeypatch):
    """The manifest came after the first picture: a run stopped there (or another run looking in
    meanwhile) left a cache inside --clean that the next run trained on as clean pictures."""
    from bdinn.train import pairs_cache

    root = make_clean_tree(tmp_path / "clean")
    before = set(discover_sources([root]))
    written = []

    def stopped_after_one(path, image, *args, **kwargs):
        written.append(write_image(path, image, *args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(pairs_cache, "write_image", stopped_after_one)
    with pytest.raises(KeyboardInterrupt):
        prepare_synthetic_pairs([root / "wallpapers"], root / "run" / "pairs", 1, max_side=64)
    assert len(written) == 1 and written[0].is_relative_to(root / "run" / "pairs")
    assert set(discover_sources([root])) == before


def test_linked_folders_are_searched_and_hidden_ones_are_not(tmp_path):
    """rglob does not enter a linked folder: a --clean folder of links to picture sets was 'no
    images found', and a link beside a picture lost the linked pictures without a word. A file
    manager's .thumbnails were scored and trained on as pictures of their own."""
    sky, shapes = read_image(DATA / "sky-gradient.png"), read_image(DATA / "soft-shapes.png")
    write_image(tmp_path / "sets" / "one" / "Sky.png", sky)
    write_image(tmp_path / "clean" / "Shapes.png", shapes)
    write_image(tmp_path / "clean" / ".thumbnails" / "normal" / "abc123.png", shapes[::4, ::4])
    (tmp_path / "clean" / "linked").symlink_to(tmp_path / "sets" / "one")
    (tmp_path / "sets" / "one" / "loop").symlink_to(tmp_path / "sets")  # walked once, not forever
    sources = discover_sources([tmp_path / "clean"])
    assert sources == {
        "clean-Shapes": tmp_path / "clean" / "Shapes.png",
        "linked-Sky": tmp_path / "clean" / "linked" / "Sky.png",
    }


def test_a_folder_that_cannot_be_read_is_said_not_skipped_silently(tmp_path, monkeypatch):
    """os.walk leaves out a folder it cannot list (no permission: root reads every folder, so the
    refusal is the operating system's, raised for that one folder), and its pictures were lost
    from training and evaluation without a word."""
    write_image(tmp_path / "clean" / "Shapes.png", read_image(DATA / "soft-shapes.png"))
    write_image(tmp_path / "clean" / "private" / "Sky.png", read_image(DATA / "sky-gradient.png"))
    listing = os.scandir

    def refused(path="."):
        if Path(path) == tmp_path / "clean" / "private":
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", refused)
    with pytest.warns(
        UserWarning, match=r"private: cannot be read \(Permission denied\); its pictures are left out"
    ):
        sources = discover_sources([tmp_path / "clean"])
    assert list(sources) == ["clean-Shapes"]


def test_a_clean_picture_too_small_is_skipped_once_and_named_by_its_own_file(tmp_path):
    """It was made into pairs, then skipped once per pair, each time named by the cache's copy and
    the pair's name (small-tiny__q5: .../pairs/clean/small-tiny_9899391922aa.png)."""
    write_image(tmp_path / "clean" / "Sky.png", read_image(DATA / "sky-gradient.png"))
    write_image(tmp_path / "clean" / "tiny.png", read_image(DATA / "sky-gradient.png")[:12, :12])
    tiny = tmp_path / "clean" / "tiny.png"
    said = rf"skipped 1 unreadable or too small clean image\(s\) of 2, e.g. {tiny}: 12x12 is smaller"
    for _ in range(2):  # made, then from the cache's record
        with pytest.warns(UserWarning, match=said) as caught:
            pairs = prepare_synthetic_pairs([tmp_path / "clean"], tmp_path / "cache", variants_per_image=3)
        assert len(caught) == 1 and {pair.source for pair in pairs} == {"clean-Sky"} and len(pairs) == 3


def test_pairs_of_one_picture_take_one_source_among_pairs_and_with_clean(tmp_path):
    """A picture banded two ways under two names, or the paired set's clean folder also given as
    --clean, was split as different pictures: validation scored pictures the run trained on."""
    sky, shapes = read_image(DATA / "sky-gradient.png"), read_image(DATA / "soft-shapes.png")
    for name, picture in (("sky_q4", sky), ("sky_q5", sky), ("shapes", shapes)):
        write_image(tmp_path / "clean" / f"{name}.png", picture)
        write_image(tmp_path / "banded" / f"{name}.png", picture // 2)
    paired = find_pairs(tmp_path / "banded", tmp_path / "clean")
    alone = {pair.name: pair.source for pair in one_source_per_picture(paired, [], tmp_path / "cache")}
    assert alone == {"shapes": "shapes", "sky_q4": "sky_q4", "sky_q5": "sky_q4"}
    keys = discover_sources([tmp_path / "clean"])
    assert sorted(keys) == ["clean-shapes", "clean-sky_q4"]  # copies are one source there already
    with_clean = one_source_per_picture(paired, [tmp_path / "clean"], tmp_path / "cache")
    both = {pair.name: pair.source for pair in with_clean}
    assert both == {"shapes": "clean-shapes", "sky_q4": "clean-sky_q4", "sky_q5": "clean-sky_q4"}
    # A wallpaper's dark version is its picture, as the cache's pairs of it are (Foo-dark is Foo).
    (tmp_path / "walls").mkdir()
    shutil.copy(tmp_path / "clean" / "shapes.png", tmp_path / "walls" / "shapes-dark.png")
    write_image(tmp_path / "walls" / "shapes.png", shapes[::-1].copy())
    dark = one_source_per_picture(paired, [tmp_path / "walls"], tmp_path / "cache")
    assert {pair.name: pair.source for pair in dark}["shapes"] == "walls-shapes"
    pytest.importorskip("torch", reason="the split lives beside the training data")  # CI's PyAV-only leg
    from bdinn.train.data import split_by_source

    _, val = split_by_source(one_source_per_picture(paired, [], tmp_path / "cache"), 0.5, 0)
    assert {pair.name for pair in val} in ({"shapes"}, {"sky_q4", "sky_q5"})  # never one sky each side


def test_two_ways_into_one_folder_give_the_same_sources_in_any_listing_order(tmp_path):
    """The first way a folder's listing reached a linked folder took it: a folder made before or
    after its link (a copy of the data) named its pictures fav-Sky or photos-Sky, and the split
    changed with the names."""
    sky = read_image(DATA / "sky-gradient.png")
    found = []
    for order in ("folder first", "link first"):
        clean = tmp_path / order / "clean"
        clean.mkdir(parents=True)
        if order == "link first":
            (clean / "fav").symlink_to("photos")
        write_image(clean / "photos" / "Sky.png", sky)
        if order == "folder first":
            (clean / "fav").symlink_to("photos")
        found.append({key: path.relative_to(clean) for key, path in discover_sources([clean]).items()})
    assert found[0] == found[1] and len(found[0]) == 1
