"""Training data: (banded, clean) image pairs, patches that show banding, full validation images.

Pairs come from two folders matched by file name (the Deep Image Debanding dataset's layout) or
from `pairs_cache.prepare_synthetic_pairs`. Training uses 256x256 patches at stride 128 and drops the
patches without banding (paper §4.1) unless asked to keep a share of them or of clean patches as
their own input (PatchDataset); validation uses whole images. The split is by source
picture, never by patch, so that no picture is seen on both sides.
"""

from __future__ import annotations

import hashlib
import random
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from ..runtime.imageio import ImageError, read_image, stored_size, to_float
from ..runtime.metrics import BT709_LUMA
from ..runtime.processing import MIN_SIDE
from .clean_sources import too_small
from .image_pair import ImagePair

# has_banding thresholds, in 8-bit luma code values (whatever the files' bit depth).
MIN_STEP, MAX_STEP = 1.5, 24.0  # a false contour steps by more than one code, at most a 4-bit step
FLAT = 1.25  # ... between two flat stretches: the neighbouring steps are at most this
SMOOTHING = 1.5  # sigma (pixels) that hides grain and the clean image's own 8-bit steps
MAX_ACTIVITY = 2.0  # smooth clean region: mean |gradient| of the smoothed clean luma over 7x7
MIN_CONTOUR_FRACTION = 0.005  # 330 pixels of a 256x256 patch, about one contour across it
MIN_MEAN_ERROR = 0.25  # banded and clean must differ at all (mean |difference|, code values)


def split_by_source(
    pairs: Sequence[ImagePair], val_fraction: float, seed: int
) -> tuple[list[ImagePair], list[ImagePair]]:
    """(train, val) with every source picture wholly on one side, the same for the same seed.

    About val_fraction of the sources go to validation, at least one when there are two or more
    sources and val_fraction > 0, never all of them.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    sources = sorted({p.source for p in pairs})
    random.Random(seed).shuffle(sources)
    n_val = round(len(sources) * val_fraction)
    if val_fraction > 0 and len(sources) >= 2:
        n_val = min(max(n_val, 1), len(sources) - 1)
    val_sources = set(sources[:n_val])
    return [p for p in pairs if p.source not in val_sources], [p for p in pairs if p.source in val_sources]


def stratified_order(pairs: Sequence[ImagePair]) -> list[ImagePair]:
    """The pairs reordered so that every prefix holds each degradation family in proportion.

    Validation scores the first --max-val-images pairs; in the order pairs are made, the first
    few can all be codec encodes of one picture, leaving bit-depth banding (half the data)
    unmeasured. Within a family the order is a fixed shuffle by name, except that a picture not
    yet in the prefix comes before a second pair of one that is: the sample spans pictures.
    """
    by_family: dict[str, list[ImagePair]] = {}
    for pair in sorted(pairs, key=lambda p: zlib.crc32(p.name.encode())):  # sources mixed, repeatably
        by_family.setdefault(pair.family, []).append(pair)
    ranked = sorted(((i + 0.5) / len(g), family) for family, g in by_family.items() for i in range(len(g)))
    ordered: list[ImagePair] = []
    scored: set[str] = set()
    for _, family in ranked:
        waiting = by_family[family]
        pick = next((i for i, pair in enumerate(waiting) if pair.source not in scored), 0)
        ordered.append(waiting.pop(pick))
        scored.add(ordered[-1].source)
    return ordered


def holding_every_family(ordered: Sequence[ImagePair]) -> int:
    """How many of stratified_order's first pairs hold every family: more than the number of
    families where they differ in size (5 families of 30, 30, 10, 10, 10 pairs need 7)."""
    first = {}
    for index, pair in enumerate(ordered):
        first.setdefault(pair.family, index)
    return 1 + max(first.values(), default=-1)


def _luma(img: np.ndarray) -> np.ndarray:
    return (np.asarray(img, np.float32) @ BT709_LUMA) * np.float32(255)


def banding_contours(banded: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Boolean H x W map of false-contour pixels (see has_banding) for float RGB images."""
    b, c = _luma(banded), _luma(clean)
    c_smooth = cv2.GaussianBlur(c, (0, 0), SMOOTHING, borderType=cv2.BORDER_REFLECT)
    grad = np.abs(np.diff(c_smooth, axis=1, append=c_smooth[:, -1:]))
    grad += np.abs(np.diff(c_smooth, axis=0, append=c_smooth[-1:]))
    smooth = cv2.blur(grad, (7, 7), borderType=cv2.BORDER_REFLECT) < MAX_ACTIVITY
    contours = np.zeros(b.shape, np.uint8)
    for axis in (0, 1):  # steps between vertical, then horizontal neighbours: work along rows
        bt, ct, st = (b, c, c_smooth) if axis == 1 else (b.T, c.T, c_smooth.T)
        step = np.abs(np.diff(bt, axis=1))
        flat = step <= FLAT
        isolated = np.zeros_like(flat)
        isolated[:, 1:-1] = flat[:, :-2] & flat[:, 2:]
        false_step = (
            (step >= MIN_STEP)
            & (step <= MAX_STEP)
            & isolated
            & (step > np.abs(np.diff(ct, axis=1)))  # more than the clean image steps there
            & (step > 2 * np.abs(np.diff(st, axis=1)))  # ... and than its smooth ramp moves
        )
        full = np.zeros(bt.shape, np.uint8)
        full[:, :-1] = false_step
        contours |= full if axis == 1 else full.T
    # A contour is a line: keep pixels with at least two contour neighbours (noise is dots).
    neighbours = cv2.boxFilter(contours, cv2.CV_16U, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return contours.astype(bool) & (neighbours >= 3) & smooth


def has_banding(banded: np.ndarray, clean: np.ndarray) -> bool:
    """Whether a float RGB patch in [0, 1] shows false contours that its clean version lacks.

    Heuristic, in 8-bit luma code values: a false-contour pixel is where the banded image steps
    by 1.5 to 24 codes between neighbours with flat stretches on both sides (a staircase, not
    noise), the step is larger than the clean image's step at that place and more than twice the
    slope of the clean image smoothed with sigma 1.5 (no real edge there), the smoothed clean image
    is smooth around it (mean |gradient| over 7x7 below 2 codes, so no texture), and the pixel has
    two contour neighbours (contours are lines). The patch has banding when at least 0.5 % of
    its pixels are such contours and the images differ by at least 0.25 codes on average.
    Identical images have no larger step; texture and noise fail the flat and smooth tests.
    """
    if banded.shape != clean.shape:
        raise ValueError(f"banded {banded.shape} and clean {clean.shape} patches differ in shape")
    if float(np.mean(np.abs(np.asarray(banded, np.float32) - clean))) * 255 < MIN_MEAN_ERROR:
        return False
    return float(banding_contours(banded, clean).mean()) >= MIN_CONTOUR_FRACTION


def large_enough(pairs: Sequence[ImagePair]) -> list[ImagePair]:
    """The pairs whose clean picture is at least MIN_SIDE on each side (from its header), said of
    the others. Before the split: a picture too small to use took a validation place and, where it
    was the only one, left the run without best.safetensors."""
    kept = []
    for pair in pairs:
        size = stored_size(pair.clean)
        if size is not None and min(size) < MIN_SIDE:  # unreadable ones are said where they are read
            warnings.warn(f"skipping pair {pair.name}: {too_small(pair.clean, *size)}", stacklevel=2)
        else:
            kept.append(pair)
    return kept


def _load_pair(pair: ImagePair) -> tuple[np.ndarray, np.ndarray]:
    banded = read_image(pair.banded)
    clean = read_image(pair.clean)
    if min(clean.shape[:2]) < MIN_SIDE:  # the network's smallest input; SSIM's window is 11 px
        raise ImageError(too_small(pair.clean, *clean.shape[:2]))
    if banded.shape[:2] != clean.shape[:2]:
        (hb, wb), (hc, wc) = banded.shape[:2], clean.shape[:2]
        raise ValueError(
            f"{pair.banded} is {wb}x{hb} but {pair.clean} is {wc}x{hc} "
            "(the two images of a pair must have the same size)"
        )
    return banded, clean


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(to_float(img).transpose(2, 0, 1)))


def _load_pairs(pairs: Sequence[ImagePair]) -> tuple[list[tuple[ImagePair, np.ndarray, np.ndarray]], int]:
    """Decoded pairs, skipping (with a warning each) the unreadable ones; and how many those were."""
    loaded, skipped = [], 0
    for pair in pairs:
        try:
            banded, clean = _load_pair(pair)
        except ImageError as exc:
            warnings.warn(f"skipping pair {pair.name}: {exc}", stacklevel=3)
            skipped += 1
            continue
        loaded.append((pair, banded, clean))
    return loaded, skipped


def pixels_digest(loaded: Sequence[tuple[ImagePair, np.ndarray, np.ndarray]]) -> str:
    """What the decoded pairs hold, pixel for pixel, by name: a resume compares it, as a picture
    edited since the run started (its pairs made again under the same names) was trained on
    without a word. Pixels, not files: a cache moved and recompressed is the same data."""
    digest = hashlib.sha1()
    for pair, banded, clean in sorted(loaded, key=lambda item: item[0].name):
        digest.update(f"{pair.name}|{banded.shape}|{banded.dtype}|{clean.shape}|{clean.dtype}".encode())
        digest.update(np.ascontiguousarray(banded).data)
        digest.update(np.ascontiguousarray(clean).data)
    return digest.hexdigest()[:16]


def _share_sizes(banded: int, shares: dict[str, tuple[float, int]]) -> tuple[dict[str, int], dict[str, int]]:
    """How many patches each share asks for, and how many to take: a share with fewer patches to
    draw than it asks leaves the set smaller, and the others are sized to the set that makes (as if
    it were there, one came out at 48 % of the set for 30 %). `shares`: kind -> (share, there)."""
    rest = 1.0
    for share, _ in shares.values():
        rest -= share  # so, not 1 - sum(): the float that earlier runs rounded, ties and all
    asked = {kind: round(banded / rest * share) for kind, (share, _) in shares.items()}
    take = {kind: min(asked[kind], there) for kind, (_, there) in shares.items()}
    if take == asked:
        return asked, take
    for _ in range(20):  # each its share of the set the others make: a few rounds settle it
        for kind, (share, there) in shares.items():
            take[kind] = min(there, _part(share, banded, take, kind))
    # what each asks for of the set made: a share short of patches is warned about
    return {
        kind: max(take[kind], _part(share, banded, take, kind)) for kind, (share, _) in shares.items()
    }, take


def _part(share: float, banded: int, take: dict[str, int], kind: str) -> int:
    """Patches `share` of a set of `banded` and the other shares' patches comes to."""
    others = sum(n for other, n in take.items() if other != kind)
    return round(share * (banded + others) / (1 - share))


class PatchDataset(torch.utils.data.Dataset):
    """(banded, clean) patches as float32 [3,P,P] tensors in [0, 1]; banding-free ones dropped.

    Each pair is decoded once and kept as integer arrays (uint8 or uint16); patches are
    (image, y, x) on a grid of `stride`. Unreadable images are skipped with a warning and counted
    in `skipped_images`; `patches_total` counts the grid, `patches_banded` what passed has_banding.
    With augment, each patch gets one of the 8 symmetries of the square (mirror, quarter turns),
    the same for both images, drawn from (seed, epoch, index): reproducible, and independent of
    the order or the worker in which patches are read. Call set_epoch at each epoch.

    The paper drops every patch without banding, and a model trained so never sees detail it
    should keep: the bundled one smoothed the grain out of clean pictures (47 dB copies of
    themselves). Two seeded additions, each up to its share of the final set (as far as there
    are patches to draw): `unbanded_share` of the banding-free patches of the banded images
    (`patches_unbanded`), and `identity_share` of clean patches as their own input
    (`patches_identity`, drawn from every clean image once however many variants it has).
    """

    def __init__(
        self,
        pairs: Sequence[ImagePair],
        patch_size: int = 256,
        stride: int = 128,
        augment: bool = False,
        seed: int = 0,
        filter_banding: bool = True,
        unbanded_share: float = 0.0,
        identity_share: float = 0.0,
    ) -> None:
        if patch_size < 1 or stride < 1:
            raise ValueError(f"patch_size and stride must be positive, got {patch_size} and {stride}")
        if min(unbanded_share, identity_share) < 0 or unbanded_share + identity_share >= 1:
            raise ValueError(
                f"unbanded_share and identity_share must be >= 0 with a sum below 1, "
                f"got {unbanded_share} and {identity_share}"
            )
        self.patch_size, self.stride = patch_size, stride
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.images: list[tuple[np.ndarray, np.ndarray]] = []
        self.index: list[tuple[int, int, int]] = []
        self.patches_total = 0
        self.smaller_than_patch = 0  # pairs that give no patch at all: counted, not trained on
        loaded, self.skipped_images = _load_pairs(pairs)
        self.pairs = [pair for pair, _, _ in loaded]  # what it trains on: the records count these
        self.pixels = pixels_digest(loaded)
        p = patch_size
        unbanded: list[tuple[int, int, int]] = []
        identity: dict[Path, list[tuple[int, int, int]]] = {}
        for pair, banded, clean in loaded:
            h, w = banded.shape[:2]
            grid = [(y, x) for y in range(0, h - p + 1, stride) for x in range(0, w - p + 1, stride)]
            self.patches_total += len(grid)
            self.smaller_than_patch += not grid
            if identity_share and grid and pair.clean not in identity:
                identity[pair.clean] = [(len(self.images), y, x) for y, x in grid]
                self.images.append((clean, clean))
            plain: list[tuple[int, int]] = []
            if filter_banding and grid:
                b, c = to_float(banded), to_float(clean)
                shows = [has_banding(b[y : y + p, x : x + p], c[y : y + p, x : x + p]) for y, x in grid]
                plain = [yx for yx, s in zip(grid, shows, strict=True) if not s] if unbanded_share else []
                grid = [yx for yx, s in zip(grid, shows, strict=True) if s]
            if grid or plain:  # images without a usable patch are not held in memory
                self.index += [(len(self.images), y, x) for y, x in grid]
                unbanded += [(len(self.images), y, x) for y, x in plain]
                self.images.append((banded, clean))
        self.patches_banded = len(self.index)
        identity_patches = [patch for patches in identity.values() for patch in patches]
        shares = {
            "unbanded": (unbanded_share, len(unbanded)),
            "identity": (identity_share, len(identity_patches)),
        }
        self.patches_asked, take = _share_sizes(self.patches_banded, shares)
        rng = np.random.default_rng([seed, 1])
        self.patches_unbanded = self._add_some(unbanded, take["unbanded"], rng)
        self.patches_identity = self._add_some(identity_patches, take["identity"], rng)

    def _add_some(self, candidates: list[tuple[int, int, int]], wanted: int, rng: np.random.Generator) -> int:
        """Add a random `wanted` of the candidate patches (all, if fewer); how many were added."""
        chosen = rng.choice(len(candidates), min(wanted, len(candidates)), replace=False)
        self.index += [candidates[i] for i in sorted(chosen)]
        return len(chosen)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of this epoch (the same epoch gives the same patches)."""
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
            state = np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(2, np.uint32)
            g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
            k = int(torch.randint(0, 8, (1,), generator=g))
            if k >= 4:
                b, c = b.flip(-1), c.flip(-1)
            b, c = torch.rot90(b, k % 4, (-2, -1)), torch.rot90(c, k % 4, (-2, -1))
        return b.contiguous(), c.contiguous()


class FullImageDataset(torch.utils.data.Dataset):
    """Whole validation images: (name, banded [3,H,W], clean [3,H,W]) float32 tensors in [0, 1].

    The pairs are decoded up front, so a bad file is reported (skipped and counted in
    `skipped_images`, or a size mismatch raised) before training starts, not at the first
    validation; they are kept as integer arrays.
    """

    def __init__(self, pairs: Sequence[ImagePair]) -> None:
        loaded, self.skipped_images = _load_pairs(pairs)
        self.pairs = [pair for pair, _, _ in loaded]
        self.pixels = pixels_digest(loaded)
        self.names = [pair.name for pair in self.pairs]
        self.images = [(banded, clean) for _, banded, clean in loaded]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor, torch.Tensor]:
        banded, clean = self.images[i]
        return self.names[i], _to_tensor(banded), _to_tensor(clean)
