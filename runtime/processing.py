"""Frames to network input and back: channels, padding, tiling, and output quantisation (no torch).

Backends see only float32 [N, 3, H, W] batches in [0, 1]; everything a user hands in (gray, gray
+ alpha, RGB, RGBA, 8 or 16 bits, odd sizes) is brought to that here and restored on the way out.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from .imageio import from_float, native_order

MIN_SIDE = 16
MAX_SIDE = 16384  # the exported graphs' declared bound on height and width (engine profiles too)
_BAND_ROWS = 64  # fewer rows per band cost more in thread hand-offs than they save
LATTICE_STEPS = range(2, 19)  # 8-bit levels between those a 7- to 4-bit picture uses (255/15 = 17)
# Per depth of 4 to 7 bits, the 8-bit levels a picture quantised to it cannot hold: rounded to the
# depth and back, truncated on the way back (an 8-bit cast), or with the low bits masked (Pillow's
# posterize). A row per lattice, [k, 256] bool.
OFF_LATTICE = np.stack([
    ~np.isin(np.arange(256), levels)
    for bits in range(4, 8)
    for levels in (
        np.rint(np.arange(2**bits) * 255 / (2**bits - 1)),
        np.floor(np.arange(2**bits) * 255 / (2**bits - 1)),
        np.arange(2**bits) << (8 - bits),
    )
])  # fmt: skip
Progress = Callable[[int, int], object]  # (done, total): called as the tiles of a frame complete


def usable_cpus() -> int:
    """CPUs this process may run on: a cpuset (taskset, a batch scheduler's allocation) can hold
    far fewer than os.cpu_count() says the machine has."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


_THREADS = min(usable_cpus(), 8)
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def by_rows(work: Callable[[slice], object], height: int) -> None:
    """work(rows) over bands of rows on up to 8 threads. The per-frame casts, rounding and change
    limit are elementwise numpy passes that release the GIL, so bands give bit-identical results in
    a fraction of one core's time; with a GPU this host work took longer than the network."""
    bands = min(_THREADS, height // _BAND_ROWS)
    if bands < 2:
        work(slice(0, height))
        return
    edges = np.linspace(0, height, bands + 1).astype(int)
    futures = [_row_pool().submit(work, slice(int(a), int(b))) for a, b in itertools.pairwise(edges)]
    wait(futures)  # every band has stopped before anything is raised
    for future in futures:
        future.result()


def sampled_rows(height: int) -> tuple[slice, slice]:
    """Pairs of neighbouring rows, about 64 pairs a frame, where `posterised` looks: a ramp's
    neighbouring levels lie along a row or across a pair (whole columns took 20 ms of a 1080p
    frame, reading all of its memory)."""
    step = max(2, height // 64)
    return slice(0, None, step), slice(1, None, step)


def posterised(batch: np.ndarray) -> np.ndarray:
    """Per frame of a float [N, C, H, W] batch in [0, 1]: whether it is quantised coarser than 8
    bits (`on_a_lattice`, of the levels in `sampled_rows`).

    The served output keeps a sample at exactly 0 or 255 of a picture of 8-bit precision, whose
    true value is within half a level of it (clipped or drawn: letterbox bars, black frames,
    white backgrounds, black text), where the network lifted black and lowered white by 1-2
    levels in blotches. In a posterised picture it is not: the darkest band of a 5-bit fade to
    black holds true values up to 4 levels up, which the network rebuilds (keeping it cost that
    picture 0.6 dB)."""
    used = np.zeros((len(batch), 256), bool)
    for index, frame in enumerate(batch):
        for rows in sampled_rows(batch.shape[-2]):
            used[index, np.rint(np.clip(frame[:, rows] * 255, 0, 255)).astype(np.uint8).ravel()] = True
    return on_a_lattice(used)


def on_a_lattice(used: Any, off_lattice: Any = OFF_LATTICE) -> Any:
    """Of [..., 256] masks of the 8-bit levels a picture uses (numpy, or torch with OFF_LATTICE as
    a tensor on its device): whether all of them lie on one lattice of 4 to 7 bits (OFF_LATTICE)
    and three of them step evenly (by LATTICE_STEPS, within one level), as a ramp quantised to
    that depth does. A drawing's few flat colours are not on one such lattice (a chart's 108,
    117, 125 step evenly but are not), or do not step evenly (a title card's black, white and
    web-safe red: 0, 51, 204, 255, all 4-bit levels); a dark 5-bit fade's 0, 8, 16 do both. Grey
    charts in 4-bit levels (#ccc, #ddd, #eee) cannot be told apart, nor are posterisations to
    other level counts (an editor's 24 levels) told from 8-bit pictures."""
    even = used[..., 0] & False
    for first in LATTICE_STEPS:
        for second in (first - 1, first, first + 1):
            if second in LATTICE_STEPS:
                three = used[..., : 256 - first - second] & used[..., first : 256 - second]
                even = even | (three & used[..., first + second :]).any(-1)
    fits = ~(used[..., None, :] & off_lattice).any(-1)  # [..., lattices]
    return even & fits.any(-1)


def _row_pool() -> ThreadPoolExecutor:
    """One pool per process: a forked child (a data loader worker) has none of its parent's threads."""
    pid = os.getpid()
    with _pools_lock:
        if pid not in _pools:
            _pools[pid] = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="bdinn-rows")
        return _pools[pid]


@dataclass(frozen=True)
class Frame:
    """An input frame split into what the network sees and what it must not touch."""

    chw: np.ndarray  # float32 3 x H x W in [0, 1], C-contiguous: the network's layout
    alpha: np.ndarray | None  # the original alpha plane, returned untouched
    gray: bool  # the input had one colour channel: return one
    flat: bool  # the input was H x W: return H x W


def split_frame(image: np.ndarray) -> Frame:
    """uint8/uint16 H x W, or H x W x 1 (gray), 2 (gray + alpha), 3 or 4 -> float RGB plus untouched
    alpha. The colour planes are cast straight into the network's 3 x H x W layout: one pass."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    image = native_order(image)  # big-endian TIFF or PNG samples
    if image.dtype not in (np.uint8, np.uint16):
        hint = (
            " (float frames in [0, 1]: Debander.infer takes them as [N, 3, H, W])"
            if image.dtype.kind == "f"
            else ""
        )
        raise TypeError(f"expected uint8 or uint16 samples, got {image.dtype}{hint}")
    flat = image.ndim == 2
    if flat:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        hint = ""
        if image.ndim == 4 and image.shape[-1] in (1, 2, 3, 4):
            hint = ": for several frames pass a list of them, list(frames)"
        elif image.ndim == 4 and image.shape[1] == 3:
            hint = ": an N x 3 x H x W batch of floats in [0, 1] goes to Debander.infer"
        raise ValueError(f"expected H x W, or H x W x 1, 2, 3 or 4, got shape {image.shape}{hint}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"image is {w}x{h}; bdinn needs at least {MIN_SIDE}x{MIN_SIDE} (pad or enlarge it)")
    colours = 1 if image.shape[2] <= 2 else 3
    chw = np.empty((3, h, w), np.float32)
    top = np.float32(np.iinfo(image.dtype).max)

    def cast(rows: slice) -> None:
        chw[:, rows] = image[rows, :, :colours].transpose(2, 0, 1)  # gray: its one plane into all three
        chw[:, rows] /= top  # as imageio.to_float divides

    by_rows(cast, h)
    alpha = image[:, :, colours:] if image.shape[2] in (2, 4) else None
    return Frame(chw, alpha, colours == 1, flat)


def join_frame(
    frame: Frame, chw: np.ndarray, bit_depth: int, dither: bool, rng: np.random.Generator
) -> np.ndarray:
    """The output (float 3 x H x W) in the input's layout: gray back to one channel, alpha
    re-attached (rescaled only if the output depth differs from the input's). C-contiguous, as
    pipes and OpenCV want, written by the same pass that rounds the values."""
    colour = chw.mean(axis=0, keepdims=True, dtype=np.float32) if frame.gray else chw
    channels = colour.shape[0] + (0 if frame.alpha is None else frame.alpha.shape[2])
    out = np.empty((*chw.shape[1:], channels), np.uint8 if bit_depth == 8 else np.uint16)
    planes = out[:, :, : colour.shape[0]].transpose(2, 0, 1)
    if dither:  # one generator, drawn in order: bands would make the noise depend on timing
        from_float(colour, bit_depth, rng, out=planes)
    else:
        by_rows(lambda rows: from_float(colour[:, rows], bit_depth, out=planes[:, rows]), chw.shape[1])
    if frame.alpha is not None and frame.alpha.dtype == out.dtype:
        out[:, :, colour.shape[0] :] = frame.alpha
    elif frame.alpha is not None:  # rescaled to the output's depth, written in place
        alpha = frame.alpha.astype(np.float32) / np.float32(np.iinfo(frame.alpha.dtype).max)
        from_float(alpha, bit_depth, out=out[:, :, colour.shape[0] :])
    return out[:, :, 0] if frame.flat else out


def pad_to(chw: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad [N, C, h, w] at the bottom/right to height x width by mirroring (repeatedly if needed)."""
    h, w = chw.shape[-2:]
    return np.pad(chw, ((0, 0), (0, 0), (0, height - h), (0, width - w)), mode="symmetric")


def _ramp(length: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """Blend weights along one axis of a tile: linear ramps over the overlaps, 1 elsewhere."""
    weights = np.ones(length, np.float32)
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    if not first:
        weights[:overlap] = ramp
    if not last:
        weights[length - overlap :] = ramp[::-1]
    return weights


def _starts(size: int, tile: int, overlap: int, grid: int = 8) -> list[int]:
    """Where tiles of `tile` pixels sharing at least `overlap` start along one axis: all at
    multiples of `grid`, as the whole frame's grid is. The network halves the resolution three
    times (grid 8; with the coarse pass four, grid 16), so a tile shifted off that grid computes
    another picture (a random network's tiles 60 px apart differed from the whole frame by 0.13;
    64 px apart, by 0.006). The last tile ends at the frame's edge and may be up to grid - 1 px
    narrower."""
    if size <= tile:
        return [0]
    return [*_inner_starts(size, tile, overlap, grid), _last_start(size, tile, grid)]


def _inner_starts(size: int, tile: int, overlap: int, grid: int) -> range:
    """Every start but the last: full tiles, a multiple of `grid` apart."""
    return range(0, _last_start(size, tile, grid), max(grid, (tile - overlap) // grid * grid))


def _last_start(size: int, tile: int, grid: int) -> int:
    return -(-(size - tile) // grid) * grid  # rounded up to the grid: this tile ends at the edge


def _count(size: int, tile: int, overlap: int, grid: int) -> int:
    """len(_starts(...)) without listing them: even_tile weighs thousands of layouts."""
    return 1 if size <= tile else len(_inner_starts(size, tile, overlap, grid)) + 1


def even_tile(
    size: tuple[int, int], overlap: int, max_pixels: int | None = None,
    max_shape: tuple[int, int] | None = None, min_shape: tuple[int, int] = (MIN_SIDE, MIN_SIDE),
    grid: int = 8,
) -> tuple[int, int]:  # fmt: skip
    """The (height, width) of the fewest tiles that cover a frame, each of at most max_pixels and
    between min_shape and max_shape (an engine profile's bounds), cut evenly: tiles of the largest
    size allowed make the last row and column mostly repeat their neighbours (a 2160-row frame in
    2048-row tiles computes 1936 rows twice; an 8K frame in a 4K profile's 2160-px squares, 69 %
    more pixels than the frame, where even tiles add 5 %)."""
    h, w = size
    high, wide = max_shape or size

    def side(length: int, parts: int, least: int) -> int:  # `parts` tiles sharing `overlap`
        exact = math.ceil((length + (parts - 1) * overlap) / parts)
        return min(length, max(least, math.ceil(exact / 8) * 8))

    def fewest(length: int, bound: int, least: int) -> int | None:  # parts whose side fits bound
        if side(length, 1, least) <= bound:
            return 1
        usable = bound // 8 * 8 - overlap
        if usable < 8 or least > bound:
            return None
        parts = max(2, math.ceil((length - overlap) / usable))  # side(parts) <= bound from here on
        while side(length, parts, least) > bound:
            parts += 1
        return parts

    best: tuple[int, int, tuple[int, int]] | None = None
    for rows in range(1, h // 8 + 2):
        th = side(h, rows, min_shape[0])
        cols = fewest(w, min(wide, max_pixels // th if max_pixels else wide), min_shape[1])
        if th > high or cols is None:
            continue
        tw = side(w, cols, min_shape[1])
        count = _count(h, th, overlap, grid) * _count(w, tw, overlap, grid)
        candidate = (count, count * th * tw, (th, tw))
        best = candidate if best is None else min(best, candidate)
    if best is None:
        limits = [f"{max_pixels} pixels"] if max_pixels else []
        limits += [f"{high} x {wide}"] if max_shape else []
        raise ValueError(
            f"no tiles of at most {' and '.join(limits)} cover {h} x {w} with {overlap}-px overlaps "
            "(lower --overlap)"
        )
    return best[2]


def run_tiled(
    infer: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, tile: tuple[int, int], overlap: int,
    progress: Progress | None = None, grid: int = 8,
) -> np.ndarray:  # fmt: skip
    """Run `infer` over overlapping (height, width) windows of [N, 3, H, W] and blend them
    seamlessly, calling progress(done, total) after each.

    Neighbouring tiles share at least `overlap` pixels, where their outputs are cross-faded with
    linear weights, normalised to sum to one; the network's receptive field makes tile borders
    differ, and the fade hides that. Along an axis whose tiles are shorter than twice `overlap`
    (a strip's short side) they share half a tile; the other axis keeps the whole overlap. Tiles
    start on the whole frame's `grid` (_starts): 8 px, or the backend's tile_grid.
    """
    tile_h, tile_w = tile
    over_h, over_w = min(overlap, tile_h // 2), min(overlap, tile_w // 2)
    h, w = batch.shape[-2:]
    out = np.zeros(batch.shape, np.float32)  # in the caller's float16 the fade lost 0.2 levels
    total = np.zeros((h, w), np.float32)
    rows, cols = _starts(h, tile_h, over_h, grid), _starts(w, tile_w, over_w, grid)
    for i, top in enumerate(rows):
        th = min(tile_h, h - top)
        wy = _ramp(th, over_h, i == 0, i == len(rows) - 1) if len(rows) > 1 else np.ones(th, np.float32)
        for j, left in enumerate(cols):
            tw = min(tile_w, w - left)
            wx = _ramp(tw, over_w, j == 0, j == len(cols) - 1) if len(cols) > 1 else np.ones(tw, np.float32)
            window = np.ascontiguousarray(batch[:, :, top : top + th, left : left + tw])
            weight = wy[:, None] * wx[None, :]
            out[:, :, top : top + th, left : left + tw] += infer(window) * weight
            total[top : top + th, left : left + tw] += weight
            if progress is not None:
                progress(i * len(cols) + j + 1, len(rows) * len(cols))
    return out / total
