"""Frame conversions in bands of rows on several threads give what one pass gives."""

import threading

import numpy as np
import pytest

from bdinn.runtime import processing
from bdinn.runtime.imageio import from_float
from bdinn.runtime.processing import by_rows, join_frame, split_frame


@pytest.mark.parametrize("threads", [1, 3, 8])
def test_bands_give_what_one_pass_gives(monkeypatch, threads):
    monkeypatch.setattr(processing, "_THREADS", threads)
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.uint16):
        image = rng.integers(0, np.iinfo(dtype).max, (517, 300, 4), dtype=dtype)  # bands of uneven height
        frame = split_frame(image)
        expected = np.ascontiguousarray(image[:, :, :3].transpose(2, 0, 1), np.float32) / np.iinfo(dtype).max
        np.testing.assert_array_equal(frame.chw, expected)
        noisy = np.clip(frame.chw + rng.normal(0, 0.01, frame.chw.shape).astype(np.float32), 0, 1)
        noisy[0, 0, 0] = np.nan  # NaN -> 0 in every band
        out = join_frame(frame, noisy, 16, False, rng)
        np.testing.assert_array_equal(out[:, :, :3], from_float(noisy, 16).transpose(1, 2, 0))
        assert out.flags["C_CONTIGUOUS"] and out[0, 0, 0] == 0


def test_every_band_runs_on_its_own_rows_and_errors_come_back(monkeypatch):
    monkeypatch.setattr(processing, "_THREADS", 4)
    seen, names = [], set()

    def work(rows: slice) -> None:
        seen.append((rows.start, rows.stop))
        names.add(threading.current_thread().name)

    by_rows(work, 1080)
    assert sorted(seen) == [(0, 270), (270, 540), (540, 810), (810, 1080)]
    assert all(name.startswith("bdinn-rows") for name in names)
    seen.clear()
    by_rows(work, 100)  # too few rows to split: the caller's thread, one pass
    assert seen == [(0, 100)]

    def fails(rows: slice) -> None:
        if rows.start:
            raise ValueError(f"band at row {rows.start}")

    with pytest.raises(ValueError, match="band at row"):
        by_rows(fails, 1080)


def test_a_picture_too_small_is_named_width_by_height():
    """Every other message gives sizes as width x height; this one gave 200 px wide as 8x200."""
    with pytest.raises(ValueError, match=r"^image is 200x8; bdinn needs at least 16x16"):
        split_frame(np.zeros((8, 200, 3), np.uint8))


def test_tiles_of_a_float16_batch_are_blended_in_float32():
    """The cross-fade summed in the caller's float16: 58 16-bit levels off the untiled output."""
    rng = np.random.default_rng(5)
    batch = rng.random((1, 3, 70, 90)).astype(np.float16)

    def brighten(window: np.ndarray) -> np.ndarray:  # a backend's float32 answer
        return window.astype(np.float32) * 0.9 + 0.05

    blended = processing.run_tiled(brighten, batch, (32, 32), 8)
    whole = brighten(batch)
    assert blended.dtype == np.float32 and np.abs(blended - whole).max() < 1e-6


def _flat_at_ends_one_by_one(batch: np.ndarray) -> np.ndarray:
    """The rule written out: a sample at 0 or 1 whose 3x3 window, cut at the frame's edge, is all
    that value."""
    kept = np.zeros(batch.shape, bool)
    for index in np.ndindex(batch.shape):
        *plane, y, x = index
        window = batch[(*plane, slice(max(y - 1, 0), y + 2), slice(max(x - 1, 0), x + 2))]
        kept[index] = batch[index] in (0, 1) and bool((window == batch[index]).all())
    return kept


def test_flat_range_ends_are_the_samples_whose_window_sits_at_one_end():
    rng = np.random.default_rng(3)
    batch = rng.choice(np.float32([0, 1, 0.5]), size=(2, 3, 23, 17), p=[0.6, 0.35, 0.05])
    batch[0, :, :6] = 0  # a bar at the frame's edge, in every channel
    batch[1, 2, :, -5:] = 1  # one channel only
    batch[1, 0, 10:15, 3:8] = np.float32(1e-8)  # near 0 is not 0
    expected = _flat_at_ends_one_by_one(batch)
    assert 100 < expected.sum() < expected.size // 2
    np.testing.assert_array_equal(processing.flat_range_ends(batch), expected)
    assert processing.flat_range_ends(np.full((1, 3, 8, 8), 0.5, np.float32)) is None  # nothing to keep
