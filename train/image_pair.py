"""One training or evaluation pair, without torch: the synthetic-pair cache (pairs_cache.py) makes
them, `find_pairs` finds them in a banded and a clean folder, and the data loader (data.py) and
bdinn-eval (which runs without torch) read them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from ..runtime.imageio import IMAGE_SUFFIXES


@dataclass(frozen=True)
class ImagePair:
    """A banded image and its clean version; `source` is the picture both come from."""

    name: str
    banded: Path
    clean: Path
    source: str  # split unit: every pair of one source lands on the same side
    family: str = ""  # degradation stratum (bits, blur-bits, a codec); "" when unknown


def _images_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
            if path.stem in found:
                raise ValueError(f"{found[path.stem]} and {path}: two images with one name (keep one)")
            found[path.stem] = path
    return found


def find_pairs(banded_dir: Path, clean_dir: Path) -> list[ImagePair]:
    """Pairs of images with the same file name (any image suffix) in a banded and a clean folder.

    Images present on one side only are ignored and counted in one warning.
    """
    banded = _images_by_stem(Path(banded_dir))
    clean = _images_by_stem(Path(clean_dir))
    names = sorted(banded.keys() & clean.keys())
    if not names:
        raise ValueError(
            f"{banded_dir} ({len(banded)} images) and {clean_dir} ({len(clean)} images): "
            "no image names in common, so no pairs (a banded image and its clean one share a name)"
        )
    only_banded = sorted(banded.keys() - clean.keys())
    only_clean = sorted(clean.keys() - banded.keys())
    if only_banded or only_clean:
        example = (only_banded or only_clean)[0]
        warnings.warn(
            f"{len(only_banded) + len(only_clean)} images have no partner and are ignored "
            f"({len(only_banded)} only in {banded_dir}, {len(only_clean)} only in {clean_dir}; "
            f"e.g. {example})",
            stacklevel=2,
        )
    return [ImagePair(n, banded[n], clean[n], n) for n in names]
