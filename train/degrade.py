"""Synthetic banding from clean pictures: bit-depth reduction and real codec encoding.

No banded dataset can be downloaded here, so banded inputs are made from clean wallpapers:
quantisation to 4-6 bits per channel (sometimes after light smoothing, so that the steps fall on
smooth ramps instead of on noise) and single-frame x264 / x265 / SVT-AV1 encodes at high CRF
through the FFmpeg that PyAV bundles, in 8-bit 4:2:0 BT.709 as real video is. Everything is
seeded and deterministic; `prepare_synthetic_pairs` caches its PNGs so the cost is paid once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import warnings
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from ..runtime.files import atomic_write_text
from ..runtime.imageio import (
    IMAGE_SUFFIXES,
    ImageError,
    from_float,
    read_image,
    stored_size,
    to_float,
    write_image,
)
from ..runtime.pyav import MissingPackage, require_pyav
from .image_pair import ImagePair

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
MANIFEST_KIND = "bdinn-synthetic-pairs/"  # any version of the format
MANIFEST_FORMAT = MANIFEST_KIND + "1"


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


# ---------------------------------------------------------------------------------------------
# Clean pictures on disk -> cached (banded, clean) PNG pairs.
# ---------------------------------------------------------------------------------------------

_SIZE_IN_NAME = re.compile(r"[_-]?(\d{3,5})x(\d{3,5})$")


def source_key(path: Path) -> str | None:
    """The picture a file shows, so that several resolutions of it count as one source.

    Plasma wallpapers are <Name>/contents/images[_dark]/<W>x<H>.ext plus a preview
    <Name>/contents/screenshot.* (skipped: None); elsewhere a trailing _<W>x<H> in the file name
    is dropped (mate-backgrounds' Elephants_3840x2160.jpg and Elephants.jpg are one picture).
    """
    parts = path.parts
    if _in_plasma_package(path):
        return parts[-4] + ("-dark" if parts[-2] == "images_dark" else "")
    if parts[-2:-1] == ("contents",) and path.stem == "screenshot" and (path.parent / "images").is_dir():
        return None  # the package's preview
    stem = _SIZE_IN_NAME.sub("", path.stem) or path.stem
    return f"{path.parent.name}-{stem}" if path.parent.name else stem


def _in_plasma_package(path: Path) -> bool:
    """Whether path is one resolution of a Plasma wallpaper package: <Name>/contents/images[_dark]/.
    Only that shape: any folder named contents above a user's pictures made them all one picture."""
    parts = path.parts
    return len(parts) > 3 and parts[-3] == "contents" and parts[-2] in ("images", "images_dark")


def picture_of(key: str) -> str:
    """The split unit: a wallpaper's dark and light versions are one picture."""
    return key.removesuffix("-dark")


def _pixels_in_name(path: Path) -> int:
    match = _SIZE_IN_NAME.search(path.stem)
    return int(match.group(1)) * int(match.group(2)) if match else 0


def _size_rank(path: Path) -> tuple[int, int, int, str]:
    """Largest first: pixels from the header (a Name.png beside its Name_128x100.png thumbnail
    has no size in its name), then the name's WxH (Plasma's 800x600.jpg and the other names are
    links to one 2560x1600.jpg, which stays the one named), bytes, the path."""
    size = stored_size(path)
    return (size[0] * size[1] if size else 0, _pixels_in_name(path), path.stat().st_size, str(path))


def discover_sources(clean_dirs: list[Path], exclude: Path | None = None) -> dict[str, Path]:
    """One file per source picture: its largest version (in pixels, else bytes).

    Searches the folders recursively for .png .jpg .jpeg .webp .tif(f) .bmp files, skipping
    hidden files, anything under `exclude` (a cache kept inside a clean folder) and any other
    pairs cache found there (an earlier run's banded pictures are not clean ones). Pictures whose
    names make one key but that lie in different folders (x/img.png under two roots) are
    different pictures unless their files are the same bytes: their keys get a mark of their
    folder, relative to its root, so that moving the data keeps the keys (and the split).
    """
    groups: dict[tuple[str, str], list[Path]] = {}
    excluded = [exclude.resolve()] if exclude else []
    for position, folder in enumerate(map(Path, clean_dirs)):
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such folder of clean images")
        found = sorted(folder.rglob("*"))
        excluded += [p.parent.resolve() for p in found if p.name == "manifest.json" and _is_pairs_manifest(p)]
        for path in found:
            if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith(".") or not path.is_file():
                continue
            resolved = path.resolve()
            if any(resolved.is_relative_to(cache) for cache in excluded):
                continue
            key = source_key(path.absolute())
            if key is not None:  # a wallpaper's resolutions lie in one folder, or in one contents/
                in_package = _in_plasma_package(path.absolute())
                home = "" if in_package else f"{position}:{path.parent.relative_to(folder)}"
                groups.setdefault((key, home), []).append(path)
    largest = {group: max(files, key=_size_rank) for group, files in sorted(groups.items())}
    shared = Counter(key for key, _ in largest)
    copies: dict[tuple[str, str], str] = {}  # one file per key and content: copies of one picture merge
    for (key, home), path in largest.items():
        content = _content(path) if shared[key] > 1 else ""
        copies.setdefault((key, content), home)
    homes = Counter(key for key, _ in copies)
    named = {(key if homes[key] == 1 else f"{key}-{_hash(home)[:6]}"): (key, home)
             for (key, _), home in copies.items()}  # fmt: skip
    return _without_copies({name: largest[group] for name, group in named.items()},
                           {name: groups[group] for name, group in named.items()})  # fmt: skip


def _without_copies(named: dict[str, Path], members: dict[str, list[Path]]) -> dict[str, Path]:
    """One key per picture: a link to any version of a picture, or a copy of one, under another
    name was a second source, which the split could put on the other side (validation scored what
    training saw). The largest picture is kept, and the file itself rather than a link to it."""
    files_of = {key: {path.resolve() for path in files} for key, files in members.items()}
    sizes = Counter(path.stat().st_size for path in set().union(*files_of.values()))

    def identities(key: str) -> set[str]:  # a link is its file; only files of one size are read
        found = files_of[key]
        same_size = [path for path in found if sizes[path.stat().st_size] > 1]
        return {str(path) for path in found} | {_content(path) for path in same_size}

    claimed: set[str] = set()
    kept = {}
    for key in sorted(
        named, key=lambda k: (_size_rank(named[k])[:2], not named[k].is_symlink()), reverse=True
    ):
        own = identities(key)
        if not own & claimed:
            kept[key] = named[key]
        claimed |= own
    return dict(sorted(kept.items()))


def _content(path: Path) -> str:
    """What tells copies of a picture apart: its bytes' hash, or for a file that cannot be read its
    own path (a copy of nothing, then skipped with a warning where it is loaded, as damaged ones
    are; a permission-denied wallpaper stopped the run)."""
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return f"unreadable {path.resolve()}"


def _is_pairs_manifest(path: Path) -> bool:
    """Whether `path` is a bdinn pairs cache's manifest, of any version (its format comes first)."""
    try:
        with path.open("rb") as file:
            return MANIFEST_KIND.encode() in file.read(256)
    except OSError:
        return False


def _hash(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:12]


def _file_id(path: Path) -> str:
    """Identity of a source file's content as far as the cache cares: path, size and mtime."""
    stat = path.stat()
    return _hash(path.resolve(), stat.st_size, stat.st_mtime_ns)


def _safe(key: str) -> str:
    """A key as part of a cache file name: at most 100 characters (the names carry a hash too), so
    that a long folder and picture name stay within the file system's 255."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:100]


def _variants(key: str, seed: int, count: int) -> list[Degradation]:
    """`count` different degradations for one source, drawn from (seed, source name)."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    chosen: list[Degradation] = []
    for _ in range(100 * count):
        if len(chosen) == count:
            break
        candidate = sample_degradation(rng)
        if candidate not in chosen:
            chosen.append(candidate)
    return chosen


def _background(key: str, h: int, w: int) -> np.ndarray:
    """A vertical two-colour gradient, fixed per source, to put under transparent wallpapers."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    top, bottom = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top + (bottom - top) * t, (h, w, 3)).astype(np.float32)


def load_clean(path: Path, key: str, max_side: int | None) -> np.ndarray:
    """The clean 8-bit RGB picture: composited if transparent, long side shrunk to max_side.

    Several mate-backgrounds (Silk, Waves, ...) are overlays whose RGB is one flat colour and
    whose picture is in the alpha channel, so alpha is composited over a smooth gradient rather
    than dropped.
    """
    rgba = to_float(read_image(path, keep_alpha=True))
    img, alpha = rgba[:, :, :3], rgba[:, :, 3:]
    if float(alpha.min()) < 1.0:
        img = img * alpha + _background(key, *img.shape[:2]) * (1 - alpha)
    h, w = img.shape[:2]
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return from_float(img, 8)


def _read_manifest(path: Path) -> dict[str, Any]:
    empty: dict[str, Any] = {"format": MANIFEST_FORMAT, "pairs": {}, "skipped": {}}
    if not path.is_file():
        return empty
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        manifest = None
    if not _well_formed(manifest):
        warnings.warn(f"{path}: unreadable cache manifest, remaking the pairs", stacklevel=3)
        return empty
    return manifest if manifest.get("format") == MANIFEST_FORMAT else empty


_ENTRY_FIELDS = ("name", "banded", "clean", "source")


def _well_formed(manifest: Any) -> bool:
    """Whether a manifest has the shape bdinn writes, every path in it inside the cache folder: a
    cache is a folder people copy between machines, and a crafted manifest wrote pictures
    wherever its paths pointed (absolute, or climbing out with "..")."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("pairs", {}), dict):
        return False
    if not isinstance(manifest.get("skipped", {}), dict):
        return False
    for entry in manifest.get("pairs", {}).values():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(f), str) for f in _ENTRY_FIELDS):
            return False
        for field in ("banded", "clean"):
            inside = Path(entry[field])
            if inside.is_absolute() or ".." in inside.parts or not inside.parts:
                return False
    preparations = manifest.get("preparations", {})
    if not isinstance(preparations, dict):
        return False
    for record in preparations.values():
        fields = (*SETTINGS, "order")
        if not isinstance(record, dict) or not all(isinstance(record.get(f), int) for f in fields):
            return False
        ids = record.get("pairs")
        if not isinstance(ids, list) or not all(isinstance(i, str) and i in manifest["pairs"] for i in ids):
            return False
    return True


SETTINGS = ("seed", "variants", "max_side")  # what a preparation's pairs depend on


def _preparation_flags(settings: dict[str, Any]) -> str:
    return " ".join(f"--{name.replace('_', '-')} {settings[name]}" for name in SETTINGS if name in settings)


def _record_preparation(manifest: dict[str, Any], settings: dict[str, int], entry_ids: list[str]) -> bool:
    """Remember which pairs a finished preparation with these settings used, as the latest one.

    A cache outlives its pictures: an edited wallpaper or another seed adds pairs beside the old
    ones, and a run from the cache alone must train on the pairs the run that made it did, not on
    everything the cache ever held. Returns whether the manifest changed.
    """
    if not entry_ids:  # nothing could be read: the run fails, and an earlier record stays good
        return False
    preparations = manifest.setdefault("preparations", {})
    key = _preparation_flags(settings)
    latest = max((record["order"] for record in preparations.values()), default=0)
    record = {**settings, "pairs": sorted(entry_ids)}
    old = preparations.get(key)
    if old is not None and old["order"] == latest and {**old, "order": 0} == {**record, "order": 0}:
        return False
    preparations[key] = {**record, "order": latest + 1}
    return True


def _chosen_record(manifest: dict[str, Any], manifest_path: Path, wanted: dict[str, Any]) -> dict | None:
    """The latest preparation whose settings match `wanted`; None in a cache made before
    preparations were recorded."""
    preparations = manifest.get("preparations")
    if not preparations:
        return None
    if "max_side" in wanted and wanted["max_side"] is None:  # the Python API's "no limit", recorded as 0
        wanted = {**wanted, "max_side": 0}
    matching = [r for r in preparations.values() if all(r[name] == value for name, value in wanted.items())]
    if not matching:
        made = "; ".join(
            _preparation_flags(r) for r in sorted(preparations.values(), key=lambda r: r["order"])
        )
        raise ValueError(
            f"{manifest_path}: the cache holds no pairs made with {_preparation_flags(wanted)}; it holds "
            f"pairs made with {made} (pass those, or make the pairs with --clean DIR)"
        )
    return max(matching, key=lambda record: record["order"])


def _cache_manifest(cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """A pairs cache's manifest path and its content, checked; ValueError saying what is wrong."""
    manifest_path = Path(cache_dir) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{manifest_path}: no pairs cache here (make one with --clean DIR --cache-dir {cache_dir})"
        ) from None
    except (OSError, ValueError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"{manifest_path}: no readable pairs cache here ({reason})") from None
    if not _well_formed(manifest):
        raise ValueError(
            f"{manifest_path}: damaged pairs cache manifest (each pair needs a name, a source and banded "
            "and clean paths inside the cache folder); make the cache again"
        )
    if manifest.get("format") != MANIFEST_FORMAT or not manifest.get("pairs"):
        raise ValueError(f"{manifest_path}: not a bdinn pairs cache, or it lists no pairs")
    return manifest_path, manifest


def cache_preparation(cache_dir: Path, **wanted: Any) -> dict[str, int] | None:
    """The settings (seed, variants, max_side) of the cache's preparation `pairs_from_cache` takes
    with `wanted`: a run from the cache alone records and resumes with those, not its defaults.
    None for a cache made before preparations were recorded."""
    manifest_path, manifest = _cache_manifest(cache_dir)
    record = _chosen_record(manifest, manifest_path, wanted)
    return None if record is None else {name: record[name] for name in SETTINGS}


def _find_image(path: Path) -> Path | None:
    """`path`, or the same name with another image suffix (a cache recompressed for transfer)."""
    for candidate in (path, *(path.with_suffix(suffix) for suffix in IMAGE_SUFFIXES)):
        if candidate.is_file():
            return candidate
    return None


def pairs_from_cache(cache_dir: Path, **wanted: int) -> list[ImagePair]:
    """The pairs a synthetic-pairs cache's latest preparation used, without its clean sources.

    For training on another machine, such as a GPU server without the wallpapers or FFmpeg's
    encoders: copy the cache folder. Its pictures may be recompressed to another lossless format
    (found by name), and banded ones may be left behind: they are remade here from their clean
    picture exactly as the generator made them (codec ones need PyAV). A cache that several
    preparations shared holds the pairs of all of them: `wanted` (seed, variants, max_side, any of
    them) picks the latest preparation made with those settings.
    """
    cache_dir = Path(cache_dir)
    manifest_path, manifest = _cache_manifest(cache_dir)
    record = _chosen_record(manifest, manifest_path, wanted)
    if record is None:
        warnings.warn(
            f"{manifest_path}: the cache does not record which pairs a run used (made by an earlier "
            f"bdinn): training on all {len(manifest['pairs'])} pairs it holds",
            stacklevel=2,
        )
        entries = list(manifest["pairs"].values())
    else:
        entries = [manifest["pairs"][entry_id] for entry_id in record["pairs"]]
    pairs = []
    for entry in sorted(entries, key=lambda e: e["name"]):
        try:
            degradation = Degradation(**entry["degradation"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{manifest_path}: pair {entry.get('name')!r}: bad degradation ({exc})") from exc
        clean = _find_image(cache_dir / entry["clean"])
        if clean is None:
            raise ValueError(
                f"{cache_dir / entry['clean']}: missing from the pairs cache "
                "(copy the clean pictures with the manifest; only banded ones can be remade)"
            )
        banded = _find_image(cache_dir / entry["banded"])
        if banded is None:
            banded = cache_dir / entry["banded"]
            if not banded.resolve().is_relative_to(cache_dir.resolve()):  # a link inside leads out
                raise ValueError(
                    f"{banded}: missing, and its folder leads out of the pairs cache through a link; "
                    "copy the banded picture too, or the cache without links"
                )
            try:
                write_image(banded, degradation.apply(read_image(clean)))
            except MissingPackage as exc:
                raise ValueError(
                    f"{banded}: missing, and remaking a codec encode needs PyAV ({exc}); "
                    "copy the banded picture too"
                ) from exc
        pairs.append(ImagePair(entry["name"], banded, clean, entry["source"], degradation.family))
    return pairs


def _update_manifest(cache_dir: Path, added: dict[str, dict], preparation: tuple | None = None) -> None:
    """Add this run's new entries (and its finished preparation) to the manifest on disk, under a
    lock: two runs preparing one cache at once each rewrote the manifest they had read, and the
    last to write lost the other's pairs and preparation."""
    path = cache_dir / "manifest.json"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".manifest.lock").open("a") as lock:  # "a": an unchanged cache stays untouched
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = _read_manifest(path)
        for part, entries in added.items():
            manifest[part].update(entries)
        recorded = preparation is not None and _record_preparation(manifest, *preparation)
        if any(added.values()) or recorded:
            text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
            atomic_write_text(path, text)


def prepare_synthetic_pairs(
    clean_dirs: list[Path],
    cache_dir: Path,
    variants_per_image: int = 3,
    seed: int = 0,
    max_side: int | None = 1920,
    record: bool = True,
) -> list[ImagePair]:
    """Banded/clean 8-bit PNG pairs for every source picture in clean_dirs, cached in cache_dir.

    Each source (several resolutions of one picture count once, the largest is used) gets
    `variants_per_image` different degradations drawn from (seed, source name). The files are
    written once; manifest.json maps a hash of (source path, size, mtime, max_side, degradation)
    to them, so a second call with the same arguments reads the cache and decodes nothing.
    Unreadable sources are skipped, remembered in the manifest, and reported in one warning. Once
    done, the manifest records which pairs it used, for `pairs_from_cache` (not with record=False:
    a look at a run's pairs, as validation_split.py takes, is not a preparation).
    """
    if variants_per_image < 1:
        raise ValueError(f"variants_per_image must be at least 1, got {variants_per_image}")
    cache_dir = Path(cache_dir)
    for folder in clean_dirs:  # its pictures would all be skipped as the cache's own
        if Path(folder).resolve().is_relative_to(cache_dir.resolve()):
            raise ValueError(
                f"{cache_dir}: the pairs cache would hold the clean folder {folder}; give it its own"
            )
    sources = discover_sources(list(clean_dirs), exclude=cache_dir)
    if not sources:
        raise ValueError(f"no images found in {', '.join(map(str, clean_dirs))}")
    manifest_path = cache_dir / "manifest.json"
    manifest = _read_manifest(manifest_path)
    added: dict[str, dict] = {"pairs": {}, "skipped": {}}  # saved into the manifest on disk as made
    pairs: list[ImagePair] = []
    used: list[str] = []
    skipped: list[str] = []
    for key, path in tqdm(sources.items(), desc="banded pairs", unit="picture", disable=None):
        file_id = _file_id(path)
        if file_id in manifest["skipped"]:
            skipped.append(manifest["skipped"][file_id])
            continue
        clean_rel = f"clean/{_safe(key)}_{_hash(file_id, max_side, GENERATOR_VERSION)}.png"
        clean: np.ndarray | None = None
        made: list[ImagePair] = []
        made_ids: list[str] = []
        changed = False
        for degradation in _variants(key, seed, variants_per_image):
            entry_id = _hash(file_id, max_side, degradation.id, GENERATOR_VERSION)
            entry = manifest["pairs"].get(entry_id)
            if not (entry and (cache_dir / entry["banded"]).is_file() and (cache_dir / clean_rel).is_file()):
                if clean is None:
                    try:
                        clean = load_clean(path, key, max_side)
                    except ImageError as exc:
                        manifest["skipped"][file_id] = added["skipped"][file_id] = str(exc)
                        skipped.append(str(exc))
                        made, made_ids, changed = [], [], True
                        break
                if not (cache_dir / clean_rel).is_file():
                    write_image(cache_dir / clean_rel, clean)
                entry = {
                    "name": f"{key}__{degradation.id}",
                    "banded": f"banded/{_safe(key)}__{degradation.id}_{entry_id}.png",
                    "clean": clean_rel,
                    "source": picture_of(key),
                    "file": str(path),
                    "degradation": asdict(degradation),
                }
                write_image(cache_dir / entry["banded"], degradation.apply(clean))
                manifest["pairs"][entry_id] = added["pairs"][entry_id] = entry
                changed = True
            made_ids.append(entry_id)
            made.append(
                ImagePair(
                    entry["name"],
                    cache_dir / entry["banded"],
                    cache_dir / clean_rel,
                    entry["source"],
                    degradation.family,
                )
            )
        pairs += made
        used += made_ids
        if changed:  # saved per picture, so an interrupted run keeps what it made
            _update_manifest(cache_dir, added)
            added = {"pairs": {}, "skipped": {}}
    if record:  # only once whole: a cut run is not a preparation
        settings = {"seed": seed, "variants": variants_per_image, "max_side": max_side or 0}
        _update_manifest(cache_dir, added, (settings, used))
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} unreadable clean image(s) of {len(sources)}, e.g. {skipped[0]}",
            stacklevel=2,
        )
    return pairs
