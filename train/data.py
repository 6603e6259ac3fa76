"""Training data: (banded, clean) image pairs, patches with banding, full-image validation.

Pairs come from two folders matched by file name (the Deep Image Debanding dataset's layout) or
from `degrade.prepare_synthetic_pairs`. Training uses 256x256 patches at stride 128 and drops
patches that show no banding (paper §4.1); validation uses whole images. The split is by source
picture, never by patch, so no picture is seen on both sides.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..runtime.imageio import IMAGE_SUFFIXES, ImageError, read_image, to_float

# has_banding thresholds, in 8-bit code values and patch fractions.
MIN_STEP, MAX_STEP = 2, 24  # a contour step: 2 code values up to a 4-bit quantisation step (17)
MAX_CLEAN_STEP = 1  # ... where the clean image moves by at most one code value
MAX_ACTIVITY = 1.5  # ... inside a smooth clean region (mean |luma gradient| over 5x5)
MIN_CONTOUR_FRACTION = 0.002  # ~130 contour pixels in a 256x256 patch


@dataclass(frozen=True)
class ImagePair:
    name: str
    banded: Path
    clean: Path
    source: str  # the picture it shows; splits never separate pairs of one source


def _images_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def find_pairs(banded_dir: Path, clean_dir: Path) -> list[ImagePair]:
    """Pairs of files with the same name (any image suffix) in a banded and a clean folder."""
    banded = _images_by_stem(Path(banded_dir))
    clean = _images_by_stem(Path(clean_dir))
    names = sorted(banded.keys() & clean.keys())
    if not names:
        raise ValueError(f"{banded_dir} and {clean_dir}: no image names in common, so no pairs")
    lonely = len(banded) + len(clean) - 2 * len(names)
    if lonely:
        warnings.warn(
            f"{lonely} images in {banded_dir} or {clean_dir} have no partner and are ignored", stacklevel=2
        )
    return [ImagePair(n, banded[n], clean[n], n) for n in names]


def split_by_source(
    pairs: Sequence[ImagePair], val_fraction: float, seed: int
) -> tuple[list[ImagePair], list[ImagePair]]:
    """(train, val) with whole source pictures on one side; at least one val source if >= 2."""
    sources = sorted({p.source for p in pairs})
    random.Random(seed).shuffle(sources)
    n_val = round(len(sources) * val_fraction)
    if val_fraction > 0 and len(sources) >= 2:
        n_val = min(max(n_val, 1), len(sources) - 1)
    val_sources = set(sources[:n_val])
    return [p for p in pairs if p.source not in val_sources], [p for p in pairs if p.source in val_sources]


def has_banding(banded: np.ndarray, clean: np.ndarray) -> bool:
    """Whether a float RGB patch shows contours that its clean version does not have.

    A contour pixel is where the banded image steps by 2 to 24 code values (in some channel)
    between neighbours while the clean image moves by at most one there, inside a smooth clean
    region (mean absolute luma gradient over 5x5 below 1.5 code values): a staircase on a smooth
    ramp. Texture and noise have no smooth region; identical inputs have no such step.
    """
    b = np.rint(banded * 255)
    c = np.rint(clean * 255)
    luma = c.mean(axis=2).astype(np.float32)
    contours = 0
    for axis in (0, 1):
        step = np.abs(np.diff(b, axis=axis)).max(axis=2)
        clean_step = np.abs(np.diff(c, axis=axis)).max(axis=2)
        activity = cv2.blur(np.abs(np.diff(luma, axis=axis)), (5, 5))
        contour = (
            (step >= MIN_STEP)
            & (step <= MAX_STEP)
            & (clean_step <= MAX_CLEAN_STEP)
            & (activity < MAX_ACTIVITY)
        )
        contours += int(np.count_nonzero(contour))
    return contours >= MIN_CONTOUR_FRACTION * luma.size


def _load_pair(pair: ImagePair) -> tuple[np.ndarray, np.ndarray]:
    banded = read_image(pair.banded)
    clean = read_image(pair.clean)
    if banded.shape != clean.shape:
        (hb, wb), (hc, wc) = banded.shape[:2], clean.shape[:2]
        raise ValueError(
            f"{pair.banded} is {wb}x{hb} but {pair.clean} is {wc}x{hc}: a pair must have one size"
        )
    return banded, clean


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(to_float(img).transpose(2, 0, 1)))


class PatchDataset(torch.utils.data.Dataset):
    """Patches (banded, clean) as float32 [3,P,P] tensors in [0, 1], banding-free ones dropped.

    Images are decoded once and kept as integer arrays. Augmentation (mirror, quarter turns,
    the same for both images) is drawn from (seed, index, epoch): reproducible, and independent
    of the order in which patches are asked for.
    """

    def __init__(
        self,
        pairs: Sequence[ImagePair],
        patch_size: int = 256,
        stride: int = 128,
        augment: bool = False,
        seed: int = 0,
        filter_banding: bool = True,
    ) -> None:
        self.patch_size = patch_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.images: list[tuple[np.ndarray, np.ndarray]] = []
        self.index: list[tuple[int, int, int]] = []
        self.skipped_images = 0
        self.patches_total = 0
        for pair in pairs:
            try:
                banded, clean = _load_pair(pair)
            except ImageError as exc:
                warnings.warn(f"skipping pair {pair.name}: {exc}", stacklevel=2)
                self.skipped_images += 1
                continue
            h, w = banded.shape[:2]
            image_id = len(self.images)
            self.images.append((banded, clean))
            for y in range(0, h - patch_size + 1, stride):
                for x in range(0, w - patch_size + 1, stride):
                    self.patches_total += 1
                    window = np.s_[y : y + patch_size, x : x + patch_size]
                    if not filter_banding or has_banding(to_float(banded[window]), to_float(clean[window])):
                        self.index.append((image_id, y, x))

    @property
    def patches_kept(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_id, y, x = self.index[i]
        banded, clean = self.images[image_id]
        p = self.patch_size
        b = _to_tensor(banded[y : y + p, x : x + p])
        c = _to_tensor(clean[y : y + p, x : x + p])
        if self.augment:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + i)
            # One of the 8 symmetries of the square: an optional mirror, then 0-3 quarter turns.
            k = int(torch.randint(0, 8, (1,), generator=g))
            if k >= 4:
                b, c = b.flip(-1), c.flip(-1)
            b, c = torch.rot90(b, k % 4, (-2, -1)), torch.rot90(c, k % 4, (-2, -1))
        return b.contiguous(), c.contiguous()


class FullImageDataset(torch.utils.data.Dataset):
    """Whole validation images: (name, banded [3,H,W], clean [3,H,W]), loaded when asked for."""

    def __init__(self, pairs: Sequence[ImagePair]) -> None:
        self.pairs = list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor, torch.Tensor]:
        banded, clean = _load_pair(self.pairs[i])
        return self.pairs[i].name, _to_tensor(banded), _to_tensor(clean)
