"""The source's own YUV samples where `process` leaves them: what RGB cannot hold comes back."""

import warnings
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
        ("gray14le", 2),  # deep grey came back 1-3 codes off
        ("gray16be", 2),
    ],
)
def test_an_identity_process_gives_back_the_frames_samples(pix_fmt, color_range):
    frame = _frame(pix_fmt, color_range)
    out = deband_frame(frame, lambda rgb: rgb)
    assert plane_samples(out) == plane_samples(frame)


def test_fields_come_back_as_they_were():
    frame = _frame()
    assert plane_samples(deband_frame(frame, lambda rgb: rgb, fields=True)) == plane_samples(frame)


@pytest.mark.parametrize("pix_fmt", ["yuyv422", "uyvy422", "y210le", "xv30le", "vuya"])
def test_packed_yuv_gives_back_its_samples(pix_fmt):
    """Capture cards' yuyv422 and hardware decoders' Y210 went the RGB way alone: super-whites
    came back at 235 and sub-blacks at 16."""
    frame = _frame(pix_fmt)
    out = deband_frame(frame, lambda rgb: rgb)
    assert out.format.name == pix_fmt
    assert plane_samples(out) == plane_samples(frame)


_PACKED_ORDER = {"yuyv422": "YUYV", "uyvy422": "UYVY", "y210le": "YUYV"}  # one pair of pixels


def _packed(pix_fmt: str, planes: dict[str, np.ndarray]) -> av.VideoFrame:
    """A packed 4:2:2 frame written by numpy (swscale's writer is what is under test)."""
    luma = planes["Y"]
    height, width = luma.shape
    frame = av.VideoFrame(width, height, pix_fmt)
    kind = np.uint8 if pix_fmt != "y210le" else np.dtype("<u2")
    pairs = (width + 1) // 2
    words = np.frombuffer(frame.planes[0], kind).reshape(height, -1)[:, : 4 * pairs].reshape(height, pairs, 4)
    wide = np.concatenate([luma, luma[:, -1:]], axis=1) if width % 2 else luma
    for slot, name in enumerate(_PACKED_ORDER[pix_fmt]):
        words[:, :, slot] = planes[name] if name != "Y" else wide[:, slot // 2 :: 2]
    return frame


def _unpacked(frame: av.VideoFrame) -> dict[str, np.ndarray]:
    kind = np.uint8 if frame.format.name != "y210le" else np.dtype("<u2")
    pairs = (frame.width + 1) // 2
    words = np.frombuffer(frame.planes[0], kind)[
        : frame.planes[0].line_size * frame.height // np.dtype(kind).itemsize
    ]
    words = words.reshape(frame.height, -1)[:, : 4 * pairs].reshape(frame.height, pairs, 4)
    order = _PACKED_ORDER[frame.format.name]
    luma = np.stack([words[:, :, order.index("Y")], words[:, :, order.rindex("Y")]], axis=2)
    return {
        "Y": luma.reshape(frame.height, -1)[:, : frame.width],
        "U": words[:, :, order.index("U")],
        "V": words[:, :, order.index("V")],
    }


@pytest.mark.parametrize("pix_fmt", ["yuyv422", "uyvy422", "y210le"])
@pytest.mark.parametrize("width", [17, 33, 35])
def test_packed_yuv_at_an_odd_width_keeps_its_last_column(pix_fmt, width):
    """swscale's yuyv422 and uyvy422 writers got the last pixel wrong at widths of 16k + 1."""
    rng = np.random.default_rng(width)
    top, shift = (235, 0) if pix_fmt != "y210le" else (940, 6)
    samples = {
        "Y": rng.integers(16, top + 1, (6, width)),
        "U": rng.integers(16, top + 1, (6, (width + 1) // 2)),
        "V": rng.integers(16, top + 1, (6, (width + 1) // 2)),
    }
    stored = {name: values << shift for name, values in samples.items()}
    frame = _packed(pix_fmt, stored)
    frame.colorspace, frame.color_range = 1, 1
    out = deband_frame(frame, lambda rgb: rgb)
    assert (out.format.name, out.width) == (pix_fmt, width)
    back = _unpacked(out)
    assert all(np.array_equal(back[name], stored[name]) for name in "YUV")


def test_a_packed_source_keeps_its_super_whites_in_a_planar_output(tmp_path):
    src = tmp_path / "in.mkv"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("rawvideo", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuyv422"
        stream.codec_context.colorspace, stream.codec_context.color_range = 1, 1
        for i in range(2):
            frame = _frame("yuyv422")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    report = deband_video(
        src, tmp_path / "out.mkv", lambda rgb: rgb, codec="ffv1", bit_depth=8, progress=False
    )
    assert report.pix_fmt == "yuv422p"
    moved = _frame("yuyv422").reformat(
        format="yuv422p", interpolation="POINT", src_color_range=1, dst_color_range=1
    )
    chroma = [np.frombuffer(p, np.uint8).reshape(p.height, -1)[:, : p.width] for p in moved.planes[1:]]
    for luma, *colour in planes(tmp_path / "out.mkv"):
        assert np.array_equal(luma, _yuv_planes()[0])  # 1..254: sub-blacks and super-whites kept
        assert all(np.array_equal(got, wanted) for got, wanted in zip(colour, chroma, strict=True))


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


def _part(space: int, color_range: int, picture: np.ndarray) -> bytes:
    """Four losslessly coded MPEG-TS frames of `picture`, converted and tagged with that matrix and range."""
    import io

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.colorspace, stream.codec_context.color_range = space, color_range
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(
                format="yuv420p", dst_colorspace={1: 1, 6: 5}[space], dst_color_range=color_range
            )
            frame.colorspace, frame.color_range, frame.pts = space, color_range, i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


@pytest.mark.parametrize(("space", "color_range"), [(6, 1), (1, 2)])
def test_frames_tagged_unlike_their_stream_keep_their_colours(tmp_path, space, color_range):
    """Captures joined end to end (BT.709, then BT.601 or full range): the output is coded and
    tagged as the stream says, so a frame tagged otherwise must be converted, not kept as its
    numbers (an RGB error of 19-25 levels where the round trip gives 6)."""
    picture = np.zeros((H, W, 3), np.uint8)
    picture[..., 0], picture[..., 1], picture[..., 2] = (
        np.linspace(30, 220, W),
        np.linspace(40, 200, H)[:, None],
        100,
    )
    source = tmp_path / "joined.ts"
    source.write_bytes(_part(1, 1, picture) + _part(space, color_range, picture))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the clock restarts where the captures meet
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, codec="ffv1", bit_depth=8, progress=False)
    with av.open(str(tmp_path / "out.mkv")) as result:
        for frame in result.decode(video=0):
            shown = frame.to_ndarray(
                format="rgb24",
                src_colorspace={1: 1, 6: 5}[frame.colorspace],
                src_color_range=frame.color_range,
            )
            assert np.abs(shown.astype(int) - picture).max() <= 8


def test_a_grade_crossing_the_edit_limit_leaves_no_step():
    """A smooth darkening over super-white luma: where the change passed 16 levels the output fell
    16 codes from one pixel to the next (kept source, then as coded)."""
    frame = av.VideoFrame(W, 8, "yuv444p")
    for plane, value in zip(frame.planes, (250, 128, 128), strict=True):
        np.frombuffer(plane, np.uint8).reshape(8, -1)[:, :W] = value
    frame.colorspace, frame.color_range = 1, 1
    ramp = np.linspace(0, 40, W)[None, :, None]  # 0 to 40 levels darker, left to right
    out = deband_frame(frame, lambda rgb: np.clip(rgb - ramp, 0, 255).round().astype(np.uint8))
    luma = np.frombuffer(out.planes[0], np.uint8).reshape(8, -1)[0, :W].astype(int)
    assert luma[0] == 250 and luma[-1] < 235 - 30 and np.abs(np.diff(luma)).max() <= 2


@pytest.mark.parametrize("pix_fmt", ["rgb24", "rgb48le"])
def test_a_returned_rgb_frame_owns_its_memory(pix_fmt):
    """An RGB frame comes back in its own format, which swscale hands back as the very frame it was
    lent: the frame shared the array `process` returned, and changed with it."""
    buffer = np.zeros((16, 16, 3), np.uint8 if pix_fmt == "rgb24" else np.uint16)

    def into_one_buffer(rgb: np.ndarray) -> np.ndarray:
        buffer[:] = rgb
        return buffer

    frames = [
        av.VideoFrame.from_ndarray(np.full((16, 16, 3), v, buffer.dtype), format=pix_fmt) for v in (10, 200)
    ]
    first, _ = (deband_frame(frame, into_one_buffer) for frame in frames)
    assert (first.to_ndarray() == 10).all()


def test_a_deep_grey_source_reaches_a_yuv_output_as_it_was(tmp_path):
    """Grey to YUV is no copy in swscale (it takes grey for full range and scales deep grey): put
    back, a 10-bit grey ramp came out 2-3 codes high."""
    src = tmp_path / "grey.mkv"
    ramp = np.tile(np.linspace(100, 920, W).round(), (H, 1)).astype(np.uint16)
    with av.open(str(src), "w") as out:
        stream = out.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "gray10le"
        stream.codec_context.color_range = 2
        frame = av.VideoFrame(W, H, "gray10le")
        np.frombuffer(frame.planes[0], np.uint16).reshape(H, -1)[:, :W] = ramp
        frame.pts, frame.color_range = 0, 2
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    report = deband_video(src, tmp_path / "out.mkv", lambda rgb: rgb, codec="ffv1", progress=False)
    [[luma, *_]] = planes(tmp_path / "out.mkv")
    assert report.pix_fmt == "yuv420p10le" and np.array_equal(luma, ramp)


def test_palette_xyz_and_1_bit_sources_go_the_rgb_way(tmp_path):
    """Taken for YUV or grey samples: a palette video failed as undecodable, a DCP's XYZ came out
    33 levels off, and a 1-bit frame came back with 44 % of its pixels changed."""
    src = tmp_path / "pal8.avi"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("rawvideo", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "pal8"
        frame = av.VideoFrame(W, H, "pal8")
        np.frombuffer(frame.planes[0], np.uint8).reshape(H, -1)[:, :W] = np.arange(W, dtype=np.uint8) * 4
        palette = np.zeros((256, 4), np.uint8)
        palette[:, 0], palette[:, 2], palette[:, 3] = np.arange(256), 90, 255
        frame.planes[1].update(palette.tobytes())
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert deband_video(src, tmp_path / "out.mkv", lambda rgb: rgb, codec="ffv1", progress=False).frames == 1
    x = np.linspace(0, 1, W)[None, :] * np.ones((H, 1))
    rgb = (np.stack([x, x.T[:H, :1] * np.ones((1, W)), 0.3 + 0.4 * x], -1) * 65535).astype(np.uint16)
    xyz = av.VideoFrame.from_ndarray(rgb, format="rgb48le").reformat(format="xyz12le")
    with av.open(str(tmp_path / "xyz.nut"), "w") as out:
        stream = out.add_stream("rawvideo", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "xyz12le"
        xyz.pts = 0
        out.mux(stream.encode(xyz))
        out.mux(stream.encode(None))
    deband_video(tmp_path / "xyz.nut", tmp_path / "xyz.mkv", lambda rgb: rgb, codec="ffv1", progress=False)
    with av.open(str(tmp_path / "xyz.mkv")) as made:
        got = next(made.decode(video=0)).to_ndarray(format="rgb48le").astype(int)
    assert np.abs(got - xyz.to_ndarray(format="rgb48le").astype(int)).max() / 257 < 5  # the RGB way: 3.5
    mono = av.VideoFrame.from_ndarray(
        np.random.default_rng(2).integers(0, 2, (H, W), np.uint8) * 255, format="gray"
    )
    mono = mono.reformat(format="monow")
    bits = [
        np.frombuffer(f.planes[0], np.uint8).reshape(H, -1)[:, : W // 8]
        for f in (mono, deband_frame(mono, lambda rgb: rgb))
    ]
    assert np.array_equal(*bits)  # 8 pixels a byte
