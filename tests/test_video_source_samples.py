"""The source's own YUV samples where `process` leaves them: what RGB cannot hold comes back."""

from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av", reason="needs the video extra: pip install '.[video]'")

from video_sources import plane_samples, planes  # noqa: E402

from bdinn.runtime.video import deband_frame, deband_video  # noqa: E402

W, H = 64, 48


def _yuv_planes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Limited-range 8-bit 4:2:0 samples the RGB round trip loses: luma from 1 to 254 (sub-blacks,
    super-whites), chroma at the ends of its range (outside the RGB cube) and a sharp chroma edge."""
    luma = np.tile(np.linspace(1, 254, W).round().astype(np.uint8), (H, 1))
    u = np.full((H // 2, W // 2), 128, np.uint8)
    v = u.copy()
    u[:, : W // 4], v[:, : W // 4] = 16, 240  # a red beyond what RGB holds, beside neutral grey
    u[: H // 4, W // 4 :] = 90
    return luma, u, v


def _frame(pix_fmt: str = "yuv420p", color_range: int = 1) -> av.VideoFrame:
    frame = av.VideoFrame(W, H, "yuv420p")
    for plane, samples in zip(frame.planes, _yuv_planes(), strict=True):
        np.frombuffer(plane, np.uint8).reshape(plane.height, -1)[:, : plane.width] = samples
    frame.colorspace, frame.color_range = 1, color_range
    if pix_fmt != "yuv420p":
        frame = frame.reformat(format=pix_fmt, src_color_range=color_range, dst_color_range=color_range)
        frame.colorspace, frame.color_range = 1, color_range
    frame.pts, frame.time_base = 0, Fraction(1, 24)
    return frame


def _clip(path, frames: int = 3):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.colorspace, stream.codec_context.color_range = 1, 1
        for i in range(frames):
            frame = _frame()
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(
    ("pix_fmt", "color_range"),
    [
        ("yuv420p", 1),
        ("yuv420p", 2),  # swscale brought full-range chroma back half a code low
        ("yuv420p10le", 1),
        ("yuv422p10le", 2),
        ("yuv444p16be", 1),
        ("nv12", 1),  # what hardware decoders give
        ("p010le", 1),  # 10 bits at the top of 16
    ],
)
def test_an_identity_process_gives_back_the_frames_samples(pix_fmt, color_range):
    frame = _frame(pix_fmt, color_range)
    out = deband_frame(frame, lambda rgb: rgb)
    assert plane_samples(out) == plane_samples(frame)


def test_fields_come_back_as_they_were():
    frame = _frame()
    assert plane_samples(deband_frame(frame, lambda rgb: rgb, fields=True)) == plane_samples(frame)


def test_packed_yuv_still_goes_the_rgb_way():
    """yuyv422 interleaves luma and chroma, which are not read sample by sample: converted as before."""
    frame = _frame("yuyv422")
    out = deband_frame(frame, lambda rgb: rgb)
    luma = [f.reformat(format="yuv420p").to_ndarray()[:H].astype(int) for f in (frame, out)]
    assert luma[1].max() <= 236 < luma[0].max()  # super-whites clipped by the RGB path


@pytest.mark.parametrize(("bit_depth", "scale"), [(8, 1), (10, 4)])
def test_super_whites_sub_blacks_and_colours_outside_rgb_reach_the_output(tmp_path, bit_depth, scale):
    """They were clipped: luma 236..254 came back at 235 and 1..15 at 16."""
    src = _clip(tmp_path / "in.mkv")
    deband_video(
        src, tmp_path / "out.mkv", lambda rgb: rgb, codec="ffv1", bit_depth=bit_depth, progress=False
    )
    for made in planes(tmp_path / "out.mkv"):
        for got, wanted in zip(made, _yuv_planes(), strict=True):
            assert np.array_equal(got, wanted.astype(int) * scale)


def test_an_edit_is_added_to_the_source_and_a_replacement_is_kept():
    """Two levels up (a debander's size of change) lands on the source's own samples, super-whites
    held where RGB had no room to move; an inverted picture is taken as `process` returned it."""
    frame = _frame()
    source = [samples.astype(int) for samples in _yuv_planes()]
    lifted = deband_frame(frame, lambda rgb: np.minimum(rgb.astype(int) + 2, 255).astype(np.uint8))
    luma = lifted.to_ndarray()[:H].astype(int)
    grey = np.zeros((H, W), bool)
    grey[H // 2 + 4 :, W // 2 + 4 :] = True  # clear of the chroma edges (a red beyond RGB clips)
    inside = grey & (source[0] >= 20) & (source[0] <= 230)
    assert np.abs(luma - source[0] - 2 * 219 / 255)[inside].max() <= 1  # 2 RGB levels: 1.7 codes
    white = grey & (source[0] >= 236)
    assert white.sum() > 50 and np.array_equal(luma[white], source[0][white])
    inverted = deband_frame(frame, lambda rgb: 255 - rgb)
    luma = inverted.to_ndarray()[:H].astype(int)
    assert np.abs(luma[white] - 16).max() <= 1  # white made black, not 250 - 219
