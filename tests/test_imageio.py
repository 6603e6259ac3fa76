"""Image files: 16-bit survives, bad files give one-line errors, writes are atomic."""

from pathlib import Path

import numpy as np
import pytest

from bdinn.runtime.imageio import ImageError, from_float, read_image, to_float, write_image

DATA = Path(__file__).parent / "data"


def test_48_bit_rgb_png_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 65536, (37, 53, 3), dtype=np.uint16)
    write_image(tmp_path / "deep.png", img)
    back = read_image(tmp_path / "deep.png")
    assert back.dtype == np.uint16
    assert np.array_equal(back, img)


def test_rgba_gray_and_8_bit(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    write_image(tmp_path / "a.png", rgba)
    assert np.array_equal(read_image(tmp_path / "a.png"), rgba[..., :3])
    assert np.array_equal(read_image(tmp_path / "a.png", keep_alpha=True), rgba)
    gray = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    write_image(tmp_path / "g.png", gray)
    back = read_image(tmp_path / "g.png")
    assert back.shape == (20, 30, 3) and back.dtype == np.uint16
    assert all(np.array_equal(back[..., c], gray) for c in range(3))
    rgb = read_image(DATA / "sky-gradient.png")
    assert rgb.shape == (192, 320, 3) and rgb.dtype == np.uint8
    # Channel order: the sky is more blue than red at the top.
    assert rgb[:20, :, 2].mean() > rgb[:20, :, 0].mean()


def test_float_conversions():
    assert to_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert to_float(np.array([65535], np.uint16)).tolist() == [1.0]
    assert from_float(np.array([-0.2, 0.5, 1.7]), 8).tolist() == [0, 128, 255]
    assert from_float(np.array([0.5]), 16).tolist() == [32768]
    with pytest.raises(ValueError, match="8 or 16"):
        from_float(np.zeros(1), 10)


def test_truncated_png_is_a_one_line_error(tmp_path):
    data = (DATA / "soft-shapes.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated") as info:
        read_image(cut)
    assert str(cut) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"", "empty file"), (b"this is not an image", "not a readable image")],
)
def test_bad_inputs(tmp_path, content, message):
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        read_image(path)


def test_truncated_jpeg(tmp_path):
    import cv2

    ok, data = cv2.imencode(".jpg", read_image(DATA / "leaf-texture.png"))
    assert ok
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data.tobytes()[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated/corrupt"):
        read_image(cut)


def test_write_refuses_bad_arrays_and_leaves_nothing(tmp_path):
    with pytest.raises(ImageError, match="float32"):
        write_image(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageError, match="16-bit output needs"):
        write_image(tmp_path / "f.jpg", np.zeros((4, 4, 3), np.uint16))
    assert list(tmp_path.iterdir()) == []
