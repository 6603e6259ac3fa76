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


def test_posterised_frames_are_those_on_a_lattice_coarser_than_8_bits():
    """A 5-bit fade's flat run at 0 is a band to rebuild, not a bar to keep: such frames are told
    apart by their levels (none next to another, three of them stepping evenly)."""
    ramp = np.linspace(0, 1, 256, dtype=np.float32)[None, None, None, :].repeat(3, 1).repeat(40, 2)
    five_bits = np.rint(ramp * 31) / 31
    letterboxed = ramp.copy()
    letterboxed[..., :10, :] = 0
    card = np.where(ramp > 0.5, np.float32(1), np.float32(0))  # white on black: drawn, two levels
    three = np.rint(ramp * 2) / 2  # 0, 128, 255: steps too far apart for a 4-bit lattice
    red = card.copy()  # black, white and web-safe red (204, 51, 51): 0, 51, 204, 255
    red[:, :, :20, 100:150] = np.float32([204 / 255, 51 / 255, 51 / 255])[:, None, None]
    fade = np.rint(ramp * 0.07 * 31) / 31  # a dark 5-bit fade: 0, 8, 16
    chart = card.copy()  # flat bars of (13, 110, 253) and (108, 117, 125): 108, 117, 125 step evenly
    for left, colour in ((20, (13, 110, 253)), (60, (108, 117, 125))):
        chart[:, :, :20, left : left + 30] = np.float32(colour)[:, None, None] / 255
    masked = (np.rint(ramp * 255).astype(np.uint8) & 0xF8) / np.float32(255)  # Pillow's posterize(5)
    cast = (np.rint(ramp * 31) / 31 * 255).astype(np.uint8) / np.float32(255)  # truncated to 8 bits
    six_bits = np.rint(ramp * 63) / 63
    frames = [five_bits, ramp, letterboxed, card, three, red, fade, six_bits, chart, masked, cast]
    expected = [True, False, False, False, False, False, True, True, False, True, True]
    assert processing.posterised(np.concatenate(frames)).tolist() == expected
    steep = ramp.transpose(0, 1, 3, 2)[..., :40]  # one level a row: every 4th row alone is spaced by 4
    assert processing.posterised(np.concatenate([steep, np.rint(steep * 15) / 15])).tolist() == [False, True]
