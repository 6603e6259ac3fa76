"""deband_frame: one PyAV frame through `process`, returned as it came."""

from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av", reason="needs the video extra: pip install '.[video]'")

from video_sources import (  # noqa: E402
    make_hdr10,
    make_video,
    plane_samples,
)

from bdinn.runtime.video import VideoError, deband_frame  # noqa: E402


@pytest.mark.parametrize(("name", "depth"), [("sdr.mp4", np.uint8), ("hdr.mkv", np.uint16)])
def test_deband_frame_returns_the_frame_as_it_came(tmp_path, name, depth):
    """For code with its own decode loop: same pixel format, tags, timing and samples."""
    path = make_hdr10(tmp_path / name) if name == "hdr.mkv" else make_video(tmp_path / name, audio=False)
    seen = set()

    def identity(rgb):
        seen.add(rgb.dtype)
        return rgb

    with av.open(str(path)) as source:
        for frame in source.decode(video=0):
            out = deband_frame(frame, identity)
            assert (out.format.name, out.pts, out.time_base) == (
                frame.format.name,
                frame.pts,
                frame.time_base,
            )
            tags = ("colorspace", "color_range", "color_primaries", "color_trc")
            assert [getattr(out, t) for t in tags] == [getattr(frame, t) for t in tags]
            assert plane_samples(out) == plane_samples(frame)  # the source's samples, where untouched
    assert seen == {np.dtype(depth)}
    with pytest.raises(
        VideoError, match=r"deband_frame: process returned float32 \(48, 64, 3\) for the frame at 0\.292 s"
    ):
        deband_frame(frame, lambda rgb: rgb.astype(np.float32))


def _array_frame(image: np.ndarray, source: str, pix_fmt: str) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(image, format=source).reformat(format=pix_fmt)
    frame.pts, frame.time_base = 7, Fraction(1, 25)
    return frame


@pytest.mark.parametrize(
    "pix_fmt", ["rgba", "argb", "ya8", "rgba64le", "yuva420p", "yuva444p10le", "gbrap10le", "vuya"]
)
def test_deband_frame_keeps_alpha_bit_for_bit(pix_fmt):
    """ProRes 4444 decodes with alpha, PNG as rgba: the RGB path would make every pixel opaque."""
    rgba = np.zeros((48, 64, 4), np.uint16)
    rgba[..., :3] = 30000
    rgba[..., 3] = np.linspace(0, 65535, 64).astype(np.uint16)
    frame = _array_frame(rgba, "rgba64le", pix_fmt)
    out = deband_frame(frame, lambda rgb: rgb)
    assert plane_samples(out) == plane_samples(frame)
    alpha = [f.reformat(format="rgba64le").to_ndarray()[..., 3] for f in (frame, out)]
    assert alpha[0].min() < 300 and np.array_equal(alpha[0], alpha[1])


@pytest.mark.parametrize("pix_fmt", ["rgb48le", "bgr48le", "gbrp10le", "gbrp12le", "gbrp16le"])
def test_deband_frame_returns_deep_rgb_unchanged(pix_fmt):
    """Deep RGB frames came back 0.4 % darker: the 65280-white correction was applied one way only."""
    rgb = np.random.default_rng(0).integers(0, 65536, (32, 32, 3)).astype(np.uint16)
    frame = _array_frame(rgb, "rgb48le", pix_fmt)
    seen = []
    out = deband_frame(frame, lambda image: seen.append(image) or image)
    assert plane_samples(out) == plane_samples(frame)
    assert seen[0].dtype == np.uint16 and seen[0].max() > 65000  # the true 0..65535 scale


@pytest.mark.parametrize(
    ("pix_fmt", "colorspace", "color_range"),
    [
        ("rgb24", 0, 2),  # PNG, FFV1 RGB and libx264rgb frames are tagged RGB
        ("yuv420p", 0, 2),  # a YUV frame tagged RGB, full range
        ("yuvj420p", 0, 0),
        ("yuv420p10le", 14, 1),  # matrices swscale lacks: ICtCp, YCgCo, BT.2020 constant luminance
        ("yuv420p10le", 8, 2),
        ("yuv420p", 10, 1),
    ],
)
def test_deband_frame_keeps_odd_tags_and_samples(pix_fmt, colorspace, color_range):
    """Tags the converter does not know are kept, and the samples come back as they were."""
    rgb = np.tile(np.linspace(40, 200, 64).astype(np.uint8), (48, 1))[..., None].repeat(3, axis=2)
    frame = _array_frame(rgb, "rgb24", pix_fmt)
    frame.colorspace, frame.color_range = colorspace, color_range
    frame.color_primaries, frame.color_trc = 9, 18
    out = deband_frame(frame, lambda image: image)
    tags = ("colorspace", "color_range", "color_primaries", "color_trc")
    assert [getattr(out, t) for t in tags] == [colorspace, color_range, 9, 18]
    bits = np.uint16 if frame.format.components[0].bits > 8 else np.uint8
    luma = [np.frombuffer(f.planes[0], bits).astype(int) for f in (frame, out)]
    assert np.abs(luma[0] - luma[1]).max() <= 1


@pytest.mark.parametrize(
    "pix_fmt",
    ["yuv420p10le", "yuv420p10be", "p010be", "gray16be", "ya16le", "ya16be", "y210le", "yuv444p16be"],
)
def test_deband_frame_keeps_the_level_of_deep_frames_in_any_byte_order_and_packing(pix_fmt):
    """The encode-side gain was measured on luma read as native-endian and planar: big-endian and
    packed frames (yuv420p10be: +1950 of 65535 on average, 12 8-bit levels at most) came back
    brighter from an identity round trip."""
    x = np.linspace(30, 220, 96)
    rgb = np.stack([x, x * 0.8 + 20, x * 0.6 + 40], -1)[None].repeat(64, 0)
    frame = av.VideoFrame.from_ndarray((rgb * 257).astype(np.uint16), format="rgb48le").reformat(
        format=pix_fmt
    )
    frame.colorspace, frame.color_range = 1, 1
    out = deband_frame(frame, lambda image: image)
    assert out.format.name == pix_fmt
    luma = [f.reformat(format="gray16le").to_ndarray().astype(int) for f in (frame, out)]
    assert np.abs(luma[0] - luma[1]).max() <= 4  # of 65535


def test_deband_frame_takes_a_frame_made_from_an_array():
    """from_ndarray frames have no time base; a numpy array is refused in one line."""
    frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 200, np.uint8), format="rgb24")
    out = deband_frame(frame, lambda rgb: rgb)
    assert (out.pts, out.time_base) == (None, None)
    assert np.array_equal(out.to_ndarray(), frame.to_ndarray())
    with pytest.raises(TypeError, match="deband_frame takes a PyAV VideoFrame, got ndarray"):
        deband_frame(frame.to_ndarray(), lambda rgb: rgb)


@pytest.mark.parametrize("pix_fmt", ["rgb24", "rgb48le"])
def test_deband_frame_leaves_the_callers_frame_as_it_was(pix_fmt):
    """A frame already in the scaler's RGB came back as itself, and a `process` working in place
    (deband_video's contract allows it) changed the caller's frame and the buffer under it."""
    rgb = np.random.default_rng(0).integers(0, 200, (16, 24, 3), dtype=np.uint8)
    kept = rgb.copy()
    frame = av.VideoFrame.from_numpy_buffer(rgb, format="rgb24")  # the caller's buffer under it
    if pix_fmt != "rgb24":
        frame = frame.reformat(format=pix_fmt)
    before = [bytes(plane) for plane in frame.planes]
    step = 10 if pix_fmt == "rgb24" else 10 * 257  # ten 8-bit levels
    out = deband_frame(frame, lambda picture: np.add(picture, step, out=picture))
    assert [bytes(plane) for plane in frame.planes] == before and np.array_equal(rgb, kept)
    levels = out.to_ndarray().astype(int) >> (8 if pix_fmt == "rgb48le" else 0)
    assert np.abs(levels - kept - 10).max() <= 1


def test_deband_frame_refuses_a_format_it_cannot_give_back_before_the_work():
    """A palette PNG decodes as pal8, which swscale reads but cannot write: an OSError came after
    `process` had run."""
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).convert("P").save(png, format="PNG")
    png.seek(0)
    with av.open(png) as container:
        frame = next(container.decode(video=0))
    assert frame.format.name == "pal8"
    calls = []
    with pytest.raises(VideoError, match=r"cannot give back a pal8 frame .*frame.reformat\(format='rgb24'\)"):
        deband_frame(frame, lambda picture: calls.append(1) or picture)
    assert calls == []


@pytest.mark.parametrize(
    ("pix_fmt", "color_range", "white"),
    [
        ("yuv420p10le", 2, 1023),  # reached `process` as 65521: not white to the Debander's rule
        ("yuv420p12le", 2, 4095),  # as 65520
        ("yuv420p9le", 2, 511),
        ("yuv422p10le", 1, 940),
        ("gray10le", 2, 1023),  # as 65524
        ("gray12le", 2, 4095),
    ],
)
def test_deep_white_reaches_process_as_white(pix_fmt, color_range, white):
    """The format's own white, full scale or 235, is 65535 to `process`, and black is 0."""
    frame = av.VideoFrame(32, 32, pix_fmt)
    for index, plane in enumerate(frame.planes):
        samples = np.frombuffer(plane, np.uint16).reshape(plane.height, -1)
        samples[:] = white if index == 0 else 1 << (frame.format.components[0].bits - 1)
        if index == 0:
            samples[:, :16] = 0 if color_range == 2 else 64
    frame.colorspace, frame.color_range = 1, color_range
    seen = []
    deband_frame(frame, lambda rgb: seen.append(rgb.copy()) or rgb)
    assert seen[0][:, 16:].min() == seen[0][:, 16:].max() == 65535
    assert seen[0][:, :16].max() == 0


@pytest.mark.parametrize("pix_fmt", ["gbrpf32le", "gbrapf32be"])
def test_a_float_frame_beyond_white_is_refused_and_one_within_is_kept(pix_fmt):
    """EXR's decoder gives planar float RGB with scene light above 1.0, which came back clipped
    to 1.0 without a word; NaN came back as 0."""
    frame = av.VideoFrame(32, 24, pix_fmt)
    kind = "<f4" if pix_fmt.endswith("le") else ">f4"
    rng = np.random.default_rng(5)
    for index, plane in enumerate(frame.planes):
        samples = np.frombuffer(plane, kind)
        samples[:] = rng.uniform(0.05, 0.95, samples.shape) if index < 3 else 1.0
    out = deband_frame(frame, lambda rgb: rgb)
    given, back = (
        [np.frombuffer(p, kind).reshape(p.height, -1)[:, : p.width] for p in f.planes] for f in (frame, out)
    )
    assert all(np.abs(a - b).max() < 1e-3 for a, b in zip(given, back, strict=True))
    for value, said in (
        (3.5, r"a sample of 3\.5, outside 0\.\.1, .* tone-map it"),
        (-0.25, r"a sample of -0\.25, outside 0\.\.1"),
        (np.nan, r"NaN samples, which have no picture to deband: replace them first"),
    ):
        np.frombuffer(frame.planes[1], kind)[7] = value
        with pytest.raises(VideoError, match=rf"this {pix_fmt} frame holds {said}"):
            deband_frame(frame, lambda rgb: rgb)


@pytest.mark.parametrize("pix_fmt", ["grayf32le", "grayf32be"])
def test_float_grey_is_refused(pix_fmt):
    """FFmpeg's scaler reads float grey as video range: black came back 0.0625, 0.9999 as 0.92."""
    frame = av.VideoFrame(32, 24, pix_fmt)
    with pytest.raises(VideoError, match=rf"deband_frame cannot take float grey \({pix_fmt}\)"):
        deband_frame(frame, lambda rgb: rgb)
