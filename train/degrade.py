"""Synthetic banding from clean pictures: bit-depth reduction and real codec encoding.

Banded training inputs are made, not downloaded: quantisation to 4-6 bits per channel (after
optional light smoothing, so steps fall on smooth ramps rather than on noise) and single-frame
x264 / x265 / SVT-AV1 encodes at high CRF through the FFmpeg that PyAV bundles, in 8-bit 4:2:0
as real video is. Everything is seeded; `prepare_synthetic_pairs` caches its output on disk so
the encoding cost is paid once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
import zlib
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..runtime.files import atomic_write
from ..runtime.imageio import IMAGE_SUFFIXES, ImageError, from_float, read_image, to_float, write_image
from .data import ImagePair

# Encoder, decoder and private options of each codec: one thread and fixed presets keep encodes
# deterministic for a given input.
CODECS: dict[str, tuple[str, str, dict[str, str]]] = {
    "x264": ("libx264", "h264", {"preset": "medium", "threads": "1"}),
    "x265": (
        "libx265",
        "hevc",
        {"preset": "medium", "x265-params": "log-level=none:pools=1:frame-threads=1"},
    ),
    "svtav1": ("libsvtav1", "libdav1d", {"preset": "8"}),
}
# CRF ranges that leave visible contours on smooth gradients (x264 and x265 share a CRF scale;
# SVT-AV1's runs to 63).
CRF_RANGES: dict[str, tuple[int, int]] = {"x264": (30, 42), "x265": (30, 40), "svtav1": (45, 60)}
GENERATOR_VERSION = 1  # bump when the degradations change, to invalidate caches


@dataclass(frozen=True)
class Degradation:
    """One way of banding an image. kind: "bits" or a codec name from CODECS."""

    kind: str
    bits: int = 0
    blur: float = 0.0
    crf: int = 0

    @property
    def id(self) -> str:
        """Short name: q5, b1.0q6, x264crf38."""
        if self.kind == "bits":
            return (f"b{self.blur:.1f}" if self.blur else "") + f"q{self.bits}"
        return f"{self.kind}crf{self.crf}"

    @classmethod
    def parse(cls, text: str) -> Degradation:
        """Inverse of `id`, so a degradation can be named on a command line."""
        match = re.fullmatch(r"(?:b(\d+(?:\.\d+)?))?q(\d+)", text)
        if match:
            return cls("bits", bits=int(match.group(2)), blur=float(match.group(1) or 0.0))
        match = re.fullmatch(r"(x264|x265|svtav1)crf(\d+)", text)
        if match:
            return cls(match.group(1), crf=int(match.group(2)))
        raise ValueError(f"unknown degradation {text!r} (examples: q5, b1.0q6, x264crf38, svtav1crf55)")

    def apply(self, clean: np.ndarray) -> np.ndarray:
        """Band a float RGB image in [0, 1]; returns the 8-bit banded image."""
        if self.kind == "bits":
            return from_float(reduce_bit_depth(clean, self.bits, self.blur), 8)
        return codec_roundtrip(from_float(clean, 8), self.kind, self.crf)


def sample_degradation(rng: np.random.Generator) -> Degradation:
    """Half bit-depth reduction (4-6 bits, light blur first in a third of cases), half codecs."""
    if rng.random() < 0.5:
        blur = round(float(rng.uniform(0.5, 1.5)), 1) if rng.random() < 1 / 3 else 0.0
        return Degradation("bits", bits=int(rng.integers(4, 7)), blur=blur)
    kind = str(rng.choice(sorted(CODECS)))
    low, high = CRF_RANGES[kind]
    return Degradation(kind, crf=int(rng.integers(low, high + 1)))


def reduce_bit_depth(img: np.ndarray, bits: int, blur_sigma: float = 0.0) -> np.ndarray:
    """Quantise float RGB in [0, 1] to 2**bits levels per channel (values on the level grid)."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    img = np.asarray(img, np.float32)
    if blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_sigma, borderType=cv2.BORDER_REFLECT)
    levels = 2**bits - 1
    return (np.rint(np.clip(img, 0, 1) * levels) / levels).astype(np.float32)


def codec_roundtrip(img: np.ndarray, codec: str, crf: int) -> np.ndarray:
    """Encode one 8-bit RGB frame as 4:2:0 video with `codec` at `crf`, decode it back to RGB."""
    import av  # only the codec degradations need PyAV

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole config per frame otherwise

    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {sorted(CODECS)}")
    encoder_name, decoder_name, options = CODECS[codec]
    h, w = img.shape[:2]
    even = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # 4:2:0 needs even sizes
    encoder = av.CodecContext.create(encoder_name, "w")
    encoder.width, encoder.height = even.shape[1], even.shape[0]
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"crf": str(crf), **options}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(even), format="rgb24").reformat(format="yuv420p")
    packets = list(encoder.encode(frame)) + list(encoder.encode(None))
    decoder = av.CodecContext.create(decoder_name, "r")
    frames = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    if not frames:
        raise RuntimeError(f"{codec} at CRF {crf} produced no decodable frame")
    return frames[0].to_ndarray(format="rgb24")[:h, :w]


# ---------------------------------------------------------------------------------------------
# Clean pictures on disk -> cached (banded, clean) pairs.
# ---------------------------------------------------------------------------------------------

_SIZE_IN_NAME = re.compile(r"[_-]?(\d{3,5})x(\d{3,5})$")


def source_key(path: Path) -> str | None:
    """The picture a file shows, so several resolutions of one picture count as one source.

    Plasma wallpapers are <Name>/contents/images[_dark]/<W>x<H>.ext plus a preview
    contents/screenshot.png (skipped: None); elsewhere a trailing _WxH in the file name is
    dropped (Elephants_3840x2160.jpg and Elephants.jpg are one picture).
    """
    if "contents" in path.parts[:-1]:
        at = len(path.parts) - 1 - path.parts[::-1].index("contents")
        if at + 1 == len(path.parts) - 1:  # a file directly in contents/: the preview
            return None
        dark = path.parts[at + 1] == "images_dark"
        return path.parts[at - 1] + ("-dark" if dark else "")
    stem = _SIZE_IN_NAME.sub("", path.stem) or path.stem
    return f"{path.parent.name}-{stem}" if path.parent.name else stem


def picture_of(key: str) -> str:
    """Dark and light variants of one wallpaper are one picture for the train/val split."""
    return key.removesuffix("-dark")


def _pixels_in_name(path: Path) -> int:
    match = _SIZE_IN_NAME.search(path.stem)
    return int(match.group(1)) * int(match.group(2)) if match else 0


def discover_sources(clean_dirs: list[Path]) -> dict[str, Path]:
    """One file per source picture, the largest resolution (by the WxH in its name, else bytes)."""
    groups: dict[str, list[Path]] = {}
    for folder in clean_dirs:
        for path in sorted(Path(folder).rglob("*")):
            key = source_key(path)
            if key is not None and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                groups.setdefault(key, []).append(path)
    return {
        key: max(files, key=lambda p: (_pixels_in_name(p), p.stat().st_size))
        for key, files in sorted(groups.items())
    }


def _entry_key(path: Path, seed: int, max_side: int | None, variant: int | str) -> str:
    stat = path.stat()
    text = (
        f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{seed}|{max_side}|{variant}|{GENERATOR_VERSION}"
    )
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _load_clean(path: Path, max_side: int | None) -> np.ndarray:
    img = to_float(read_image(path))
    h, w = img.shape[:2]
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return img


def prepare_synthetic_pairs(
    clean_dirs: list[Path],
    cache_dir: Path,
    variants_per_image: int = 3,
    seed: int = 0,
    max_side: int | None = 1920,
) -> list[ImagePair]:
    """Banded/clean PNG pairs for every source picture, made once and cached in cache_dir.

    Each source gets `variants_per_image` random degradations drawn from (seed, source,
    variant). A manifest keyed by source file (path, size, mtime) and settings makes a second
    call with the same arguments read the cache and do no image work.
    """
    cache_dir = Path(cache_dir)
    manifest_path = cache_dir / "manifest.json"
    manifest: dict[str, dict] = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    sources = discover_sources(clean_dirs)
    if not sources:
        raise ValueError(f"no images found in {', '.join(map(str, clean_dirs))}")
    pairs: list[ImagePair] = []
    skipped: list[str] = []
    changed = False
    for key, path in tqdm(sources.items(), desc="banded pairs", unit="image", leave=False):
        clean_img = None
        clean_rel = f"clean/{key}_{_entry_key(path, 0, max_side, 'clean')}.png"
        for variant in range(variants_per_image):
            entry_key = _entry_key(path, seed, max_side, variant)
            entry = manifest.get(entry_key)
            if entry and (cache_dir / entry["banded"]).is_file() and (cache_dir / entry["clean"]).is_file():
                pairs.append(
                    ImagePair(
                        entry["name"],
                        cache_dir / entry["banded"],
                        cache_dir / entry["clean"],
                        picture_of(key),
                    )
                )
                continue
            try:
                if clean_img is None:
                    clean_img = _load_clean(path, max_side)
            except ImageError as exc:
                skipped.append(str(exc))
                break
            if not (cache_dir / clean_rel).is_file():
                write_image(cache_dir / clean_rel, from_float(clean_img, 8))
            degradation = sample_degradation(np.random.default_rng([seed, zlib.crc32(key.encode()), variant]))
            banded_rel = f"banded/{key}_{entry_key}.png"
            write_image(cache_dir / banded_rel, degradation.apply(clean_img))
            name = f"{key}__v{variant}_{degradation.id}"
            manifest[entry_key] = {
                "name": name,
                "banded": banded_rel,
                "clean": clean_rel,
                "source": key,
                "degradation": asdict(degradation),
            }
            pairs.append(ImagePair(name, cache_dir / banded_rel, cache_dir / clean_rel, picture_of(key)))
            changed = True
    if changed:
        atomic_write(
            manifest_path, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        )
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable clean images, e.g. {skipped[0]}", stacklevel=2)
    return pairs
