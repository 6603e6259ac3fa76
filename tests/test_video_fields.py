"""Interlaced video: fields are converted and debanded one by one and written back interlaced."""

import warnings
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="needs the video extra: pip install '.[video]'")

from video_sources import plane_samples  # noqa: E402

from bdinn.runtime.video import deband_frame, deband_video  # noqa: E402
from bdinn.runtime.video_fields import FieldFlags, split_fields, weave  # noqa: E402

W, H, N = 64, 48, 3
# Two flat colours as BT.709 limited-range Y, Cb, Cr: the top field shows one, the bottom field
# the other, as a frame of fast motion does.
TOP, BOTTOM = (63, 102, 240), (32, 240, 118)  # red, blue
RED, BLUE = (255, 0, 0), (0, 0, 255)


def interlaced_clip(
    path: Path,
    codec: str = "ffv1",
    field_order: int = 2,
    height: int = H,
    orders: list[bool | None] | None = None,
    **options: str,
) -> Path:
    """N 4:2:0 frames whose even rows (luma and chroma) hold TOP and odd rows BOTTOM, flagged with
    the field order (`orders`: each frame's, top first or not; None for a frame not flagged)."""
    planes = np.empty((height * 3 // 2, W), np.uint8)
    quarter, chroma = height // 4, (height // 2, W // 2)
    luma = planes[:height]
    cb = planes[height : height + quarter].reshape(chroma)
    cr = planes[height + quarter :].reshape(chroma)
    for plane, index in ((luma, 0), (cb, 1), (cr, 2)):
        plane[0::2], plane[1::2] = TOP[index], BOTTOM[index]
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=25)
        vs.width, vs.height, vs.pix_fmt = W, height, "yuv420p"
        ctx = vs.codec_context
        ctx.colorspace = ctx.color_range = ctx.color_primaries = ctx.color_trc = 1
        ctx.field_order = field_order
        vs.options = options
        flags = FieldFlags()
        for i, top_first in enumerate(orders or [field_order in (2, 4)] * N):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.colorspace, frame.color_range = 1, 1
            if top_first is not None:
                frame = flags.flagged(frame, top_field_first=top_first)
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def decoded(path: Path) -> tuple[int, list]:
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        return stream.codec_context.field_order, list(src.decode(stream))


def field_colours(frame) -> list[np.ndarray]:
    """Each field's mean RGB, each field converted on its own (as BT.709: Y4M has no matrix tag)."""
    rgb = [f.reformat(format="rgb24", src_colorspace=1, src_color_range=1) for f in split_fields(frame)]
    return [f.to_ndarray().reshape(-1, 3).mean(0) for f in rgb]


def column_mean(rgb: np.ndarray) -> np.ndarray:
    """A process that mixes every row of what it is given: it shows which rows went in together."""
    return np.broadcast_to(rgb.mean(0, keepdims=True).round().astype(rgb.dtype), rgb.shape).copy()


def test_split_and_weave_give_the_frame_back():
    sizes = (("yuv420p", 48), ("yuv422p10le", 486), ("nv12", 20), ("yuyv422", 30), ("yuv410p", 4))
    for pix_fmt, height in sizes:
        rgb = np.random.default_rng(0).integers(0, 256, (height, W, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
        top, bottom = split_fields(frame)
        assert (top.height, bottom.height) == ((height + 1) // 2, height // 2)
        woven = weave(top, bottom, height)
        flagged = FieldFlags().flagged(woven, top_field_first=False)
        assert flagged.interlaced_frame and not FieldFlags().is_top_first(flagged)
        assert FieldFlags().is_top_first(FieldFlags().flagged(woven, top_field_first=True))
        assert plane_samples(frame) == plane_samples(woven)


def test_fields_are_debanded_apart_and_written_interlaced(tmp_path):
    """Lossless FFV1 out: each field keeps its own colour through a process that mixes all rows it
    sees; debanded as one picture, red and blue would have come out as one purple."""
    shapes = []

    def process(rgb: np.ndarray) -> np.ndarray:
        shapes.append(rgb.shape)
        return column_mean(rgb)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source = interlaced_clip(tmp_path / "in.mkv")
        report = deband_video(
            source, tmp_path / "out.mkv", process, codec="ffv1", bit_depth=8, progress=False
        )
    assert shapes == [(H // 2, W, 3)] * (2 * N)
    assert report.frames == N and report.fields == "top field first"
    order, frames = decoded(tmp_path / "out.mkv")
    assert order == 2 and len(frames) == N
    for frame in frames:
        assert frame.interlaced_frame
        top, bottom = field_colours(frame)
        assert np.abs(top - RED).max() <= 2 and np.abs(bottom - BLUE).max() <= 2


@pytest.mark.parametrize(
    ("codec", "name", "field_order", "bit_depth"),
    [
        ("libx264", "out.mkv", 2, 8),
        ("libx264", "out.mp4", 3, 10),
        ("prores_ks", "out.mov", 3, 10),
        ("wrapped_avframe", "out.y4m", 3, 8),
    ],
)
def test_encoders_that_code_fields_keep_the_field_order(tmp_path, codec, name, field_order, bit_depth):
    source = interlaced_clip(tmp_path / "in.mkv", field_order=field_order)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / name, lambda rgb: rgb, codec=codec, crf=None, progress=False,
                              bit_depth=bit_depth)  # fmt: skip
    assert report.fields == ("top field first" if field_order == 2 else "bottom field first")
    order, frames = decoded(tmp_path / name)
    flags = FieldFlags()
    assert all(f.interlaced_frame and flags.is_top_first(f) == (field_order == 2) for f in frames)
    if name != "out.mp4":  # MP4 has no field order tag: FFmpeg's H.264 parser guesses top first
        assert order == field_order
    top, bottom = field_colours(frames[-1])
    assert np.abs(top - RED).max() <= 6 and np.abs(bottom - BLUE).max() <= 6


def test_the_frames_field_order_wins_over_the_streams_guess(tmp_path):
    """Bottom-field-first H.264 in MP4: the stream says top first, its frames say bottom first."""
    source = interlaced_clip(tmp_path / "in.mp4", "libx264", field_order=3, flags="+ildct+ilme")
    assert decoded(source)[0] == 2
    report = deband_video(source, tmp_path / "out.mkv", column_mean, codec="ffv1", progress=False)
    assert report.fields == "bottom field first"
    order, frames = decoded(tmp_path / "out.mkv")
    assert order == 3 and not any(FieldFlags().is_top_first(f) for f in frames)
    top, bottom = field_colours(frames[-1])
    assert np.abs(top - RED).max() <= 8 and np.abs(bottom - BLUE).max() <= 8


def test_x265_warns_that_it_codes_progressive_frames(tmp_path):
    source = interlaced_clip(tmp_path / "in.mkv", field_order=2)
    message = (
        r"in\.mkv: tagged interlaced; its interlaced frames are debanded field by field, but libx265 codes "
        r"whole pictures only, so they are coded as progressive frames, which players do not deinterlace: "
        r"use libx264"
    )
    with pytest.warns(UserWarning, match=message):
        deband_video(source, tmp_path / "out.mkv", column_mean, progress=False)
    order, frames = decoded(tmp_path / "out.mkv")
    assert order == 2 and not frames[0].interlaced_frame  # the container says it; the stream cannot
    top, bottom = field_colours(frames[-1])
    assert np.abs(top - RED).max() <= 8 and np.abs(bottom - BLUE).max() <= 8  # the fields stayed apart


def test_deband_frame_debands_an_interlaced_frames_fields_apart(tmp_path):
    frame = decoded(interlaced_clip(tmp_path / "in.mkv", field_order=3))[1][0]
    shapes = []

    def process(rgb: np.ndarray) -> np.ndarray:
        shapes.append(rgb.shape)
        return column_mean(rgb)

    out = deband_frame(frame, process)
    assert shapes == [(H // 2, W, 3)] * 2
    assert out.interlaced_frame and not FieldFlags().is_top_first(out)
    assert out.format.name == "yuv420p" and out.pts == frame.pts and out.time_base == frame.time_base
    top, bottom = field_colours(out)
    assert np.abs(top - RED).max() <= 2 and np.abs(bottom - BLUE).max() <= 2


def test_x264_keeps_fields_only_at_heights_it_can_code(tmp_path):
    """x264 codes 4:2:0 fields at heights divisible by 4: a 482-line 4:2:2 master written as 4:2:0
    is coded progressive, said up front, its fields still debanded apart."""
    rgb = np.empty((482, W, 3), np.uint8)
    rgb[0::2], rgb[1::2] = RED, BLUE
    with av.open(str(tmp_path / "in.mkv"), "w") as out:
        vs = out.add_stream("ffv1", rate=25)
        vs.width, vs.height, vs.pix_fmt = W, 482, "yuv422p"
        vs.codec_context.field_order = 2
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv422p")
            frame = FieldFlags().flagged(frame, top_field_first=True)
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    message = (
        r"but x264 codes fields of yuv420p only at heights divisible by 4, not 482, so they are coded as"
    )
    with pytest.warns(UserWarning, match=message):
        deband_video(tmp_path / "in.mkv", tmp_path / "out.mkv", column_mean, codec="libx264", chroma="420",
                     bit_depth=8, progress=False)  # fmt: skip
    frames = decoded(tmp_path / "out.mkv")[1]
    assert len(frames) == N and not frames[0].interlaced_frame
    top, bottom = [f.to_ndarray(format="rgb24").reshape(-1, 3).mean(0) for f in split_fields(frames[-1])]
    assert np.abs(top - RED).max() <= 8 and np.abs(bottom - BLUE).max() <= 8


def test_the_frames_flags_decide_not_the_streams_tag(tmp_path):
    """A stream tagged top first whose frames say progressive is debanded whole; one tagged
    progressive whose frames turn interlaced after the first is debanded field by field, with a
    warning that the encoder, set up by the first frame, coded them progressive."""
    shapes = []

    def process(rgb: np.ndarray) -> np.ndarray:
        shapes.append(rgb.shape[0])
        return rgb

    tagged = interlaced_clip(tmp_path / "tagged.mkv", field_order=2, orders=[None] * N)
    for name, codec in (("a.mkv", "ffv1"), ("a.mp4", "libx264")):
        report = deband_video(tagged, tmp_path / name, process, codec=codec, progress=False)
        assert report.fields is None and not any(f.interlaced_frame for f in decoded(tmp_path / name)[1])
    assert shapes == [H] * 2 * N
    assert decoded(tmp_path / "a.mkv")[0] == 2  # the container's tag is kept as it was

    shapes.clear()
    late = interlaced_clip(tmp_path / "late.mkv", field_order=1, orders=[None, False, False])
    with pytest.warns(
        UserWarning, match="the video began with progressive frames, so libx264 was set up for those"
    ):
        report = deband_video(late, tmp_path / "b.mkv", process, codec="libx264", progress=False)
    assert shapes == [H, H // 2, H // 2, H // 2, H // 2] and report.fields == "bottom field first"


def test_a_callers_flags_add_to_the_field_flags(tmp_path):
    source = interlaced_clip(tmp_path / "in.mkv", field_order=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, flags in (("cgop.mp4", "+cgop"), ("own.mp4", "+ildct+ilme")):
            deband_video(source, tmp_path / name, lambda rgb: rgb, codec="libx264", progress=False,
                         codec_options={"flags": flags})  # fmt: skip
            frames = decoded(tmp_path / name)[1]
            assert all(f.interlaced_frame and not FieldFlags().is_top_first(f) for f in frames)


def test_a_field_order_that_changes_is_warned_about_where_it_is_lost(tmp_path):
    source = interlaced_clip(tmp_path / "in.mkv", orders=[True, True, False])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, codec="ffv1", progress=False)
    flags = FieldFlags()
    assert [flags.is_top_first(f) for f in decoded(tmp_path / "out.mkv")[1]] == [True, True, False]
    with pytest.warns(UserWarning, match="field order changes between frames, and libx264 keeps one order"):
        deband_video(source, tmp_path / "out.mp4", lambda rgb: rgb, codec="libx264", progress=False)


def test_hevc_field_pictures_are_not_split_again(tmp_path):
    """x265 codes interlaced video as field pictures: FFmpeg decodes each field as a picture of its
    own, flagged interlaced; it is one picture, not two fields."""
    source = interlaced_clip(
        tmp_path / "in.mkv", "libx265", **{"x265-params": "interlace=tff:log-level=error"}
    )
    pictures = decoded(source)[1]
    assert pictures[0].interlaced_frame
    shapes = []
    deband_video(source, tmp_path / "out.mkv", lambda rgb: shapes.append(rgb.shape[0]) or rgb, codec="ffv1",
                 progress=False)  # fmt: skip
    assert shapes == [p.height for p in pictures]


def test_field_flags_keep_a_bounded_number_of_filter_graphs():
    """One graph per frame size was kept for good: deband_frame(..., fields=True) over 400 sizes
    held 400 graphs (12 MB) on each thread."""
    flags = FieldFlags()
    for width in range(16, 16 + 2 * 40, 2):
        frame = av.VideoFrame.from_ndarray(np.zeros((16 * 3 // 2, width), np.uint8), format="yuv420p")
        flagged = flags.flagged(frame, top_field_first=True)
        assert flagged.interlaced_frame and flags.is_top_first(flagged)  # the latest size's still work
    assert len(flags._graphs) <= 16
