"""Float video frames (OpenEXR's grey and RGB, FFV1's half floats) through deband_video and the
float sample checks: FFmpeg's scaler reads float grey as video range and clips float RGB to 0..1
without a word."""

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from bdinn.runtime.video import VideoError, deband_video  # noqa: E402
from bdinn.runtime.video_colour import alpha_of, decode_rgb  # noqa: E402
from bdinn.runtime.video_float import beyond_white, float_grey_rgb  # noqa: E402

RAMP = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (48, 1))


def _fill(frame: av.VideoFrame, values: list[np.ndarray]) -> av.VideoFrame:
    """Each plane's rows from `values` (line padding left as it is)."""
    for plane, samples in zip(frame.planes, values, strict=True):
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        raw = np.ascontiguousarray(samples).view(np.uint8)
        rows[:, : raw.shape[1]] = raw
    return frame


def _exr(path: Path, pix_fmt: str, planes: list[np.ndarray], half: bool = False) -> Path:
    """An OpenEXR file written by FFmpeg's own encoder, read back as a one-frame video: of float32
    samples, or of half floats (which FFmpeg's decoder gives as gbrapf16le, grayf16le...)."""
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("exr", rate=25, options={"format": "half"} if half else {})
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        frame = _fill(av.VideoFrame(64, 48, pix_fmt), planes)
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def _first_frame_rgb(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return decode_rgb(next(container.decode(video=0)), True) / 65535


@pytest.mark.parametrize("half", [True, False])
def test_float_grey_keeps_its_levels(tmp_path, half):
    """A grey EXR's 0..1 ramp came back from 0.0 to 1.0 over 0.92 of its width: swscale read it
    as video range (0.1 came back 0.044)."""
    src = _exr(tmp_path / "grey.exr", "grayf32le", [RAMP], half=half)
    dst = tmp_path / "out.mkv"
    deband_video(src, dst, lambda rgb: rgb, codec="ffv1", bit_depth=12, progress=False)
    with av.open(str(src)) as container:  # as the file holds it: FFmpeg's own float -> half
        plane = next(container.decode(video=0)).planes[0]
    held = np.frombuffer(plane, "<f2" if half else "<f4").reshape(48, -1)[:, :64].astype(np.float32)
    assert np.abs(_first_frame_rgb(dst) - held[:, :, None]).max() < 16 / 65535  # 12-bit video range: 18.7


def test_float_rgb_beyond_white_is_refused_and_nothing_is_written(tmp_path):
    """An EXR's highlights above 1.0 came back clipped to white without a word."""
    green = RAMP.copy()
    green[10, 20] = 2.5
    src = _exr(tmp_path / "bright.exr", "gbrpf32le", [green, RAMP, RAMP])
    dst = tmp_path / "out.mkv"
    said = r"bright\.exr: the frame at 0\.000 s holds a sample of 2\.5, outside 0\.\.1"
    with pytest.raises(VideoError, match=said):
        deband_video(src, dst, lambda rgb: rgb, codec="ffv1", bit_depth=12, progress=False)
    assert not dst.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bright.exr"]
    green[10, 20] = 1.0
    src = _exr(src, "gbrpf32le", [green, RAMP, RAMP])
    deband_video(src, dst, lambda rgb: rgb, codec="ffv1", progress=False)
    assert np.abs(_first_frame_rgb(dst)[:, :, 1] - green).max() < 64 / 65535  # 10-bit video range


@pytest.mark.parametrize("half", [True, False])
def test_float_alpha_keeps_its_opacity(tmp_path, half):
    """A half-float RGBA EXR's alpha was read as 16-bit integers: 1.0 (0x3C00) came out 23 %
    opaque and 0.5 as 22 %."""
    opacity = np.tile(np.linspace(0.0, 1.0, 48, dtype=np.float32)[:, None], (1, 64))
    src = _exr(tmp_path / "rgba.exr", "gbrapf32le", [RAMP, RAMP, RAMP, opacity], half=half)
    with av.open(str(src)) as container:
        assert next(container.decode(video=0)).format.name == ("gbrapf16le" if half else "gbrapf32le")
    dst = tmp_path / "out.mkv"
    deband_video(src, dst, lambda rgb: rgb, codec="ffv1", progress=False)
    with av.open(str(dst)) as container:
        frame = next(container.decode(video=0))
    assert frame.format.name.startswith("yuva")
    assert np.abs(alpha_of(frame) / 65535 - opacity).max() < 1 / 1023  # 10-bit alpha


@pytest.mark.parametrize(
    ("pix_fmt", "kind", "per_pixel"),
    [("yaf16le", "<f2", 2), ("yaf32be", ">f4", 2), ("rgbaf32le", "<f4", 4), ("rgbf16be", ">f2", 3)],
)
def test_packed_float_frames_are_read_sample_by_sample(pix_fmt, kind, per_pixel):
    """Packed float formats hold their components side by side in one plane: alpha above 1.0 is
    no colour to clip, and grey + alpha's luma is its first sample of each pair."""
    try:
        frame = av.VideoFrame(64, 48, pix_fmt)
    except ValueError:
        pytest.skip(f"this FFmpeg has no {pix_fmt}")
    packed = np.empty((48, 64, per_pixel), np.float32)
    packed[:] = RAMP[:, :, None]
    if per_pixel in (2, 4):
        packed[:, :, -1] = 1.5  # alpha
    _fill(frame, [packed.reshape(48, -1).astype(kind)])
    assert beyond_white(frame) is None
    if pix_fmt.startswith("ya"):
        luma = RAMP.astype(kind).astype(np.float32)  # as half floats hold it
        grey = float_grey_rgb(frame, True)
        assert grey.shape == (48, 64, 3) and grey.dtype == np.uint16
        assert np.array_equal(grey[:, :, 2], np.rint(luma * 65535).astype(np.uint16))
        assert np.array_equal(float_grey_rgb(frame, False)[:, :, 0], np.rint(luma * 255).astype(np.uint8))
    packed[5, 7, 0] = -0.5
    _fill(frame, [packed.reshape(48, -1).astype(kind)])
    assert beyond_white(frame) == (
        "holds a sample of -0.5, outside 0..1, which the model's 16-bit RGB would clip: "
        "tone-map it into 0..1 first"
    )


def test_integer_frames_are_not_float():
    assert beyond_white(av.VideoFrame(16, 16, "gray16le")) is None
