"""What a video's pixels keep: bit depth, chroma, alpha, rotation, aspect ratio, HDR10 and colour matrices."""

import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="needs the video extra: pip install '.[video]'")

from video_sources import (  # noqa: E402
    FPS,
    MASTERING,
    H,
    N,
    W,
    gradient,
    make_clip,
    make_hdr10,
    make_video,
    planes,
    probe,
)

from bdinn.runtime.hdr10 import Hdr10  # noqa: E402
from bdinn.runtime.video import VideoError, deband_video  # noqa: E402


def make_10bit(path: Path, color_range: int = 1) -> Path:
    """A lossless (FFV1) 10-bit 4:2:0 video of smooth colour ramps."""
    y, x = np.mgrid[0:H, 0:W]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("ffv1", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p10le"
        vs.codec_context.colorspace, vs.codec_context.color_range = 1, color_range
        for i in range(3):
            rgb = np.stack([x / (W - 1), y / (H - 1), 0.5 + 0.4 * np.sin(x / 9 + y / 13 + i)], axis=-1)
            frame = av.VideoFrame.from_ndarray(np.rint(rgb * 65535).astype(np.uint16), format="rgb48le")
            frame = frame.reformat(format="yuv420p10le", dst_colorspace=1, dst_color_range=color_range)
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def test_8_bit_mp4_with_hevc_tag(source, tmp_path):
    report = deband_video(source, tmp_path / "out.mp4", lambda rgb: rgb, bit_depth=8, progress=False)
    after = probe(tmp_path / "out.mp4")
    assert report.pix_fmt == after["pix_fmt"] == "yuv420p"
    assert after["codec_tag"] == "hvc1"  # Apple players refuse HEVC tagged hev1
    assert len(after["times"]) == N and after["times"][0] == pytest.approx(0, abs=1e-6)
    assert [c for c, _ in after["audio"]] == ["aac"]


def test_10_bit_source_keeps_its_precision(tmp_path):
    for color_range in (1, 2):  # limited and full range
        src = make_10bit(tmp_path / f"deep{color_range}.mkv", color_range)
        seen = []

        def keep(rgb, seen=seen):
            seen.append((rgb.dtype, int(rgb.max())))
            return rgb

        dst = tmp_path / f"deep{color_range}-out.mkv"
        deband_video(src, dst, keep, codec="ffv1", progress=False)  # lossless: only colour conversion
        assert all(dtype == np.uint16 for dtype, _ in seen)
        assert max(top for _, top in seen) > 65000  # white near 65535, not 65280 (swscale's 16-bit white)
        # In 10-bit code values. Off by more than one only where the ramps clip at a corner; chroma
        # is resampled to 4:4:4 and back, and swscale puts full-range neutral chroma half a code low.
        for a, b in zip(planes(src), planes(dst), strict=True):
            luma = b[0] - a[0]
            assert np.abs(luma).max() <= 6 and (np.abs(luma) > 1).mean() < 0.005 and abs(luma.mean()) < 0.05
            for chroma in (b[1] - a[1], b[2] - a[2]):
                assert np.abs(chroma).max() <= 6 and (np.abs(chroma) > 1).mean() < 0.1
                assert abs(chroma.mean()) < (0.1 if color_range == 1 else 0.75)


def test_uint16_output_from_an_8_bit_source_is_on_the_full_scale(source, tmp_path):
    # A network returns 16 bits: white must still be Y 940 (not 943, as swscale alone gives).
    white = np.full((H, W, 3), 65535, np.uint16)
    white.flags.writeable = False  # one constant picture for every frame: nothing can overwrite it
    deband_video(source, tmp_path / "white.mkv", lambda rgb: white, codec="ffv1", progress=False)
    luma = planes(tmp_path / "white.mkv")[0][0]
    assert np.all(luma == 940)


def test_rotation_is_kept(tmp_path):
    src = make_video(tmp_path / "portrait.mp4", audio=False, rotation=90)
    deband_video(src, tmp_path / "portrait.mkv", lambda rgb: rgb, bit_depth=8, progress=False)
    assert probe(src)["rotation"] == probe(tmp_path / "portrait.mkv")["rotation"] == 90


@pytest.mark.parametrize(("rotation", "suffix"), [(0, ".mp4"), (90, ".mkv"), (180, ".mov")])
def test_a_mirrored_display_is_kept_whole(tmp_path, rotation, suffix):
    """Only the display matrix's rotation was kept: a horizontally mirrored source (ffmpeg
    -display_hflip, some front cameras) came out turned by 180°, upside down, and a mirror with a
    rotation lost its mirror."""
    src = make_video(tmp_path / "selfie.mp4", audio=False, rotation=rotation, hflip=True)
    source = probe(src)["display"]
    assert source.mirrored and source.rotation == rotation
    deband_video(src, tmp_path / f"out{suffix}", lambda rgb: rgb, bit_depth=8, progress=False)
    assert probe(tmp_path / f"out{suffix}")["display"] == source
    with pytest.warns(UserWarning, match=rf"a \.ts file cannot hold the source's {source.describe()}"):
        deband_video(src, tmp_path / "out.ts", lambda rgb: rgb, bit_depth=8, progress=False)
    told = " ".join([f"-display_rotation {rotation}"] * bool(rotation) + ["-display_hflip"])
    with pytest.warns(UserWarning, match=rf"Y4M carries no .*mirror; .* \(ffmpeg: {told}\)"):
        deband_video(src, tmp_path / "out.y4m", lambda rgb: rgb, progress=False)


def test_a_degenerate_display_matrix_tells_no_rotation():
    from bdinn.runtime.display_matrix import DisplayMatrix

    assert DisplayMatrix((0,) * 8 + (1 << 30,)).rotation == 0 and DisplayMatrix((0,) * 9).describe() == ""


def test_rotation_a_container_cannot_hold_is_warned_about(tmp_path):
    """MPEG-TS and AVI have no display matrix: a phone's portrait video came out lying on its side
    with no word, where every other loss is named."""
    src = make_video(tmp_path / "portrait.mp4", audio=False, rotation=90)
    for suffix in (".ts", ".avi"):
        with pytest.warns(
            UserWarning, match=rf"a \{suffix} file cannot hold the source's 90° display rotation"
        ):
            deband_video(src, tmp_path / f"out{suffix}", lambda rgb: rgb, bit_depth=8, progress=False)
        assert probe(tmp_path / f"out{suffix}")["rotation"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MP4 keeps it, so says nothing
        deband_video(src, tmp_path / "out.mp4", lambda rgb: rgb, bit_depth=8, progress=False)
    assert probe(tmp_path / "out.mp4")["rotation"] == 90


def test_full_range_into_avi_is_warned_about_unless_the_codec_carries_it(tmp_path):
    """AVI has no colour tags: FFV1 there came back untagged, which players take for limited range
    (contrast stretched), with no word; x264 writes the range into its own stream."""
    src = tmp_path / "full.mkv"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.color_range = 2
        for i in range(2):
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(gradient(i)), format="rgb24")
            frame = rgb.reformat(format="yuv420p", dst_color_range=2)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.warns(UserWarning, match=r"out\.avi: AVI keeps no colour range and ffv1 writes none into"):
        deband_video(src, tmp_path / "out.avi", lambda rgb: rgb, codec="ffv1", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deband_video(
            src, tmp_path / "x264.avi", lambda rgb: rgb, codec="libx264", bit_depth=8, progress=False
        )
    for name, kept in (("out.avi", 0), ("x264.avi", 2)):
        with av.open(str(tmp_path / name)) as done:
            assert next(done.decode(video=0)).color_range == kept


def test_sample_aspect_ratio_is_kept_by_x265_and_warned_about_elsewhere(tmp_path):
    source = make_video(tmp_path / "anamorphic.mp4", audio=False, sar=Fraction(4, 3))
    deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    with av.open(str(tmp_path / "out.mkv")) as out:
        assert out.streams.video[0].sample_aspect_ratio == Fraction(4, 3)
    with pytest.warns(
        UserWarning, match="libvpx-vp9 does not keep the source's sample aspect ratio 4/3"
    ) as caught:
        deband_video(
            source, tmp_path / "out.webm", lambda rgb: rgb, codec="libvpx-vp9", bit_depth=8, progress=False
        )
    assert caught[0].filename == __file__
    with pytest.warns(UserWarning) as caught:  # Y4M: no codec to choose, so the reader is told
        deband_video(source, tmp_path / "out.y4m", lambda rgb: rgb, progress=False)
    assert [str(w.message).split(": ", 1)[1] for w in caught] == [
        "Y4M carries no sample aspect ratio 4/3; tell the program reading it (ffmpeg: -vf setsar=4/3)"
    ]


def test_a_sample_aspect_ratio_only_the_container_holds_is_kept(tmp_path):
    """Y4M's A field and MOV's pasp box (ProRes has no field of its own) were never read: the
    output of an anamorphic source was square-pixelled, without a word. And MP4 and MOV write
    pasp for any encoder, which was warned about as lost."""
    y4m = tmp_path / "anamorphic.y4m"
    frame = b"FRAME\n" + bytes(range(256)) * (W * H * 3 // 2 // 256)
    y4m.write_bytes(f"YUV4MPEG2 W{W} H{H} F25:1 Ip A16:11 C420jpeg\n".encode() + frame * 3)
    deband_video(y4m, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    with av.open(str(tmp_path / "out.mkv")) as out:
        assert out.streams.video[0].sample_aspect_ratio == Fraction(16, 11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # kept: nothing to say
        deband_video(y4m, tmp_path / "out.mp4", lambda rgb: rgb, codec="ffv1", progress=False)
    with av.open(str(tmp_path / "out.mp4")) as out:
        assert out.streams.video[0].sample_aspect_ratio == Fraction(16, 11)
    with pytest.warns(
        UserWarning, match=r"ffv1\)? does not keep the source's sample aspect ratio 16/11 in \.mkv"
    ):
        deband_video(y4m, tmp_path / "lossless.mkv", lambda rgb: rgb, codec="ffv1", progress=False)


HDR10 = Hdr10(
    primaries=((0.68, 0.32), (0.265, 0.69), (0.15, 0.06), (0.3127, 0.329)),
    luminance=(0.005, 1000.0),
    light=(1000, 400),
)


def _hdr10_of(path: Path) -> Hdr10 | None:
    with av.open(str(path)) as src:
        return Hdr10.of(next(src.decode(video=0)))


def test_hdr10_encoder_parameters():
    assert HDR10.encoder_params("libx265") == f"master-display={MASTERING}:max-cll=1000,400"
    assert HDR10.encoder_params("libx264") == f"mastering-display={MASTERING}:cll=1000,400"
    assert HDR10.encoder_params("libsvtav1") == (
        "mastering-display=G(0.26500,0.69000)B(0.15000,0.06000)R(0.68000,0.32000)"
        "WP(0.31270,0.32900)L(1000.0000,0.0050):content-light=1000,400"
    )
    assert Hdr10(light=(500, 100)).encoder_params("libx265") == "max-cll=500,100"
    assert HDR10.encoder_params("libvpx-vp9") is None


@pytest.mark.parametrize("codec", ["libx265", "libx264", "libsvtav1"])
def test_hdr10_metadata_is_kept(tmp_path, codec):
    source = make_hdr10(tmp_path / "hdr.mkv")
    assert _hdr10_of(source) == HDR10  # the source is as meant
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, codec=codec, progress=False)
    after = _hdr10_of(tmp_path / "out.mkv")
    assert report.hdr10 and after is not None and after.light == HDR10.light
    # AV1 stores chromaticity in 1/65536 and luminance in fixed point: equal to 1e-4
    assert np.allclose(after.primaries, HDR10.primaries, atol=1e-4)
    assert np.allclose(after.luminance, HDR10.luminance, rtol=1e-4, atol=1e-4)
    assert probe(tmp_path / "out.mkv")["colour"] == (9, 1, 9, 16)


def test_hdr10_metadata_an_encoder_cannot_write_is_warned_about(tmp_path):
    source = make_hdr10(tmp_path / "hdr.mkv")
    message = r"ffv1 cannot carry the source's HDR10 metadata \(mastering display and light levels\)"
    with pytest.warns(UserWarning, match=message) as caught:
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, codec="ffv1", progress=False)
    assert not report.hdr10 and caught[0].filename == __file__
    assert Hdr10(light=(500, 100)).parts() == "light levels"
    assert _hdr10_of(make_video(tmp_path / "sdr.mp4", audio=False)) is None


@pytest.mark.parametrize(
    ("pix_fmt", "dst", "chroma", "written"),
    [
        ("yuv422p10le", "out.mkv", None, "yuv422p10le"),  # ProRes/DNxHR-style mezzanine, through x265
        ("yuv444p", "out.mkv", None, "yuv444p10le"),
        ("bgr0", "out.mp4", None, "yuv444p10le"),  # RGB keeps full chroma
        ("yuv440p", "out.mkv", None, "yuv444p10le"),
        ("yuv411p", "out.mkv", None, "yuv422p10le"),
        ("gray", "out.mkv", None, "yuv420p10le"),
        ("yuv422p10le", "out.y4m", None, "yuv422p10le"),
        ("yuv420p", "out.mkv", "444", "yuv444p10le"),
        ("yuv444p", "out.mkv", "420", "yuv420p10le"),
    ],
)
def test_chroma_resolution_follows_the_source(tmp_path, pix_fmt, dst, chroma, written):
    source = make_clip(tmp_path / "in.mkv", pix_fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / dst, lambda rgb: rgb, chroma=chroma, progress=False)
    assert report.pix_fmt == written and probe(tmp_path / dst)["pix_fmt"] == written
    if pix_fmt == "bgr0":  # untagged RGB: converted with BT.709 and tagged so, as HD players assume
        assert probe(tmp_path / dst)["colour"][:2] == (1, 1)
    before, after = (probe(path)["rgb"][1].astype(int) for path in (source, tmp_path / dst))
    assert np.abs(before - after).mean() < 2.5  # the same picture through x265 at CRF 20


def test_12_bit_output_keeps_a_12_bit_master(tmp_path):
    """ProRes 4444 and DNxHR 444 decode as 12-bit: x265 and FFV1 write it on request."""
    y, x = np.mgrid[0:H, 0:W]
    ramp = np.rint(np.stack([0.1 + 0.8 * x / (W - 1)] * 3, axis=-1) * 65535).astype(np.uint16) + 0 * y[
        ..., None
    ].astype(np.uint16)
    source = tmp_path / "master.mkv"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv444p12le"
        frame = av.VideoFrame.from_ndarray(ramp, format="rgb48le").reformat(format="yuv444p12le")
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    seen = []
    report = deband_video(source, tmp_path / "out.mkv", lambda rgb: seen.append(rgb) or rgb, bit_depth=12,
                          codec="ffv1", progress=False)  # fmt: skip
    assert report.pix_fmt == probe(tmp_path / "out.mkv")["pix_fmt"] == "yuv444p12le"
    assert seen[0].dtype == np.uint16 and len(np.unique(seen[0][0, :, 0])) == W  # no level lost on the way in
    luma = [
        np.frombuffer(planes[0].tobytes(), np.int64)
        for planes in (planes(source)[0], planes(tmp_path / "out.mkv")[0])
    ]
    assert np.abs(luma[0] - luma[1]).max() <= 1  # 12-bit codes, through the RGB round trip
    message = r"libx264 cannot write 12-bit video; pass bit_depth=10 \(--bit-depth 10\)"
    with pytest.raises(VideoError, match=message):
        deband_video(
            source, tmp_path / "o.mkv", lambda rgb: rgb, bit_depth=12, codec="libx264", progress=False
        )


def test_chroma_an_encoder_cannot_keep_is_warned_about(tmp_path):
    source = make_clip(tmp_path / "in.mkv", "yuv422p10le")
    message = r"out\.webm: libsvtav1 writes 4:2:0 at most, so in\.mkv's 4:2:2 chroma is reduced; use libx265"
    with pytest.warns(UserWarning, match=message) as caught:
        report = deband_video(source, tmp_path / "out.webm", lambda rgb: rgb, progress=False)
    assert report.pix_fmt == "yuv420p10le" and caught[0].filename == __file__
    with pytest.raises(
        VideoError,
        match=r"out\.webm: no built-in encoder writes yuv444p10le video into \.webm; write \.mkv \(libx265\)",
    ):
        deband_video(source, tmp_path / "out.webm", lambda rgb: rgb, chroma="444", progress=False)
    with pytest.raises(
        VideoError, match=r"out\.webm: libsvtav1 cannot write yuv444p10le video; ask for chroma 420"
    ):
        deband_video(
            source, tmp_path / "out.webm", lambda rgb: rgb, codec="libsvtav1", chroma="444", progress=False
        )
    with pytest.raises(
        VideoError, match=r"chroma must be one of '420', '422', '444' \(None: the source's\), got '411'"
    ):
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, chroma="411", progress=False)
    with pytest.raises(VideoError, match=r"chroma must be one of '420', .*, got 444$"):  # a string, quoted
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, chroma=444, progress=False)


def test_prores_follows_the_source_or_says_which_chroma_it_writes(tmp_path):
    """ProRes writes 4:2:2 and 4:4:4 only: a 4:2:0 source gets 4:2:2, and asking for 4:2:0 says so."""
    source = make_clip(tmp_path / "in.mkv", "yuv420p")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(
            source, tmp_path / "out.mov", lambda rgb: rgb, codec="prores_ks", progress=False
        )
    assert probe(tmp_path / "out.mov")["pix_fmt"] == report.pix_fmt == "yuv422p10le"
    message = r"o\.mov: prores_ks cannot write yuv420p10le video; ask for chroma 422 \(--chroma 422\)"
    with pytest.raises(VideoError, match=message):
        deband_video(
            source, tmp_path / "o.mov", lambda rgb: rgb, codec="prores_ks", chroma="420", progress=False
        )


@pytest.mark.parametrize("frames", [1, 2])
def test_a_clip_of_one_or_two_frames_goes_into_mov_and_mp4(tmp_path, frames):
    """libx265 gives such a clip's packets garbage decode times, which MP4 and MOV refused at the end."""
    source = make_clip(tmp_path / "in.mp4", "yuv420p", "libx264", size=(160, 90), frames=frames)
    for name in ("out.mov", "out.mp4"):
        report = deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False)
        assert report.frames == frames and report.codec == "libx265"
        assert probe(tmp_path / name)["times"] == pytest.approx([i / FPS for i in range(frames)])


def test_odd_sizes_need_only_what_the_output_chroma_needs(tmp_path):
    """4:4:4 has no subsampled plane, so 65x49 is fine; 4:2:0 output of it is refused in one line."""
    source = make_clip(tmp_path / "in.mkv", "yuv444p", size=(65, 49))
    report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert (report.width, report.height, report.pix_fmt) == (65, 49, "yuv444p10le")
    said = r"in\.mkv: 65x49 has an odd side, which libx265 cannot code in 4:2:0: write 4:4:4 \(chroma='444'"
    with pytest.raises(VideoError, match=said + r", --chroma 444\), use ffv1, or crop it"):
        deband_video(source, tmp_path / "o.mkv", lambda rgb: rgb, chroma="420", progress=False)
    # VP8 writes 4:2:0 alone: it was told to write 4:4:4 too, which it then refused
    said = r"65x49 has an odd side, which libvpx cannot code in 4:2:0: use ffv1, or crop it"
    with pytest.raises(VideoError, match=said):
        deband_video(
            source, tmp_path / "o.webm", lambda rgb: rgb, codec="libvpx", bit_depth=8, progress=False
        )
    for name, codec in (("odd.mkv", "ffv1"), ("odd.y4m", None)):  # these code odd 4:2:0 as it comes
        report = deband_video(
            source, tmp_path / name, lambda rgb: rgb, codec=codec, chroma="420", progress=False
        )
        assert (report.width, report.height, report.pix_fmt) == (65, 49, "yuv420p10le")
        before, after = (probe(path)["rgb"][1].astype(int) for path in (source, tmp_path / name))
        assert np.abs(before - after).mean() < 4  # the same picture, its chroma halved both ways


def _alpha_clip(path: Path, codec: str, pix_fmt: str, rotation: int = 0) -> Path:
    """Three frames of a grey picture whose alpha ramps from 0 to full across it."""
    rgba = np.zeros((H, W, 4), np.uint16)
    rgba[..., :3] = 30000
    rgba[..., 3] = np.linspace(0, 65535, W).astype(np.uint16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=FPS)
        if rotation:
            stream.set_display_rotation(rotation)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(rgba, format="rgba64le").reformat(format=pix_fmt)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _alpha(path: Path) -> np.ndarray:
    """Every frame's alpha plane on 0..1, read from the plane itself (swscale scales 8-bit alpha
    to 65280, 10-bit to 65472)."""
    frames = []
    with av.open(str(path)) as source:
        for frame in source.decode(video=0):
            bits = frame.format.components[3].bits
            plane = frame.planes[3]
            samples = np.frombuffer(plane, np.uint8 if bits == 8 else np.uint16).reshape(plane.height, -1)
            frames.append(samples[:, : plane.width] / ((1 << bits) - 1))
    return np.stack(frames)


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "name", "written"),
    [
        ("ffv1", "yuva420p", "out.mkv", "yuva420p10le"),
        ("prores_ks", "yuva444p10le", "out.mov", "yuva444p10le"),  # ProRes 4444 (decodes as 12-bit)
        # ProRes keeps alpha at 4:4:4 only: chosen over 4:2:2, which dropped it and said "prores_ks do"
        ("prores_ks", "yuva420p", "out.mov", "yuva444p10le"),
    ],
)
def test_alpha_is_kept_by_ffv1_and_prores(tmp_path, codec, pix_fmt, name, written):
    """Motion graphics with gradients and alpha: the alpha passes the RGB-only network untouched."""
    source = _alpha_clip(tmp_path / "in.mkv", "ffv1", pix_fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / name, lambda rgb: rgb, codec=codec, progress=False)
    assert report.pix_fmt == written and report.frames == 3
    before, after = _alpha(source), _alpha(tmp_path / name)
    assert before.min() == 0 and before.max() == 1
    assert np.abs(before - after).max() <= 1 / 1023  # within a 10-bit code (8-bit alpha into ProRes: 0.6)


def test_vp9_alpha_in_webm_is_decoded_and_kept(tmp_path):
    """FFmpeg's own VP9 decoder ignores the alpha layer WebM carries beside the picture: transparent
    web video came out opaque without a word, even into FFV1. libvpx decodes it."""
    if "libvpx-vp9" not in av.codecs_available:
        pytest.skip("this PyAV has no libvpx")
    source = _alpha_clip(tmp_path / "in.webm", "libvpx-vp9", "yuva420p", rotation=90)
    with av.open(str(source)) as probe_it:
        assert probe_it.streams.video[0].metadata.get("alpha_mode") == "1"
        assert next(probe_it.decode(video=0)).format.name == "yuv420p"  # what FFmpeg's decoder gives
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, codec="ffv1", progress=False)
    assert report.pix_fmt == "yuva420p10le" and report.frames == 3
    assert probe(tmp_path / "out.mkv")["rotation"] == 90  # the container's, which libvpx's frames lack
    before = _vp9_alpha(source)
    assert before.min() < 0.01 and before.max() > 0.99  # transparent to opaque
    assert np.abs(before - _alpha(tmp_path / "out.mkv")).max() <= 1 / 1023


def _vp9_alpha(path: Path) -> np.ndarray:
    """Every frame's alpha on 0..1 as libvpx decodes it (FFmpeg's own VP9 decoder has none)."""
    decoder = av.CodecContext.create("libvpx-vp9", "r")
    with av.open(str(path)) as source:
        frames = [frame for packet in source.demux(video=0) for frame in decoder.decode(packet)]
    planes = [frame.planes[3] for frame in frames]
    return np.stack([np.frombuffer(p, np.uint8).reshape(p.height, -1)[:, : p.width] / 255 for p in planes])


def test_vp9_writes_alpha_into_webm_at_8_bits(tmp_path):
    """Transparent web video back into WebM: libvpx-vp9 codes the alpha layer (at 8 bits only: it
    was dropped, with advice naming FFV1 and ProRes, which WebM cannot hold); the default AV1
    cannot, and its warning names the encoder that can."""
    if "libvpx-vp9" not in av.codecs_available:
        pytest.skip("this PyAV has no libvpx")
    source = _alpha_clip(tmp_path / "in.webm", "libvpx-vp9", "yuva420p")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(
            source, tmp_path / "out.webm", lambda rgb: rgb, codec="libvpx-vp9", bit_depth=8, progress=False
        )
    assert report.pix_fmt == "yuva420p" and report.frames == 3
    with av.open(str(tmp_path / "out.webm")) as written:
        assert written.streams.video[0].metadata.get("alpha_mode") == "1"
    before, after = _vp9_alpha(source), _vp9_alpha(tmp_path / "out.webm")
    assert before.max() - before.min() > 0.98 and np.abs(before - after).max() <= 3 / 255  # coded lossily
    advice = r"yuv420p10le; ffv1 \(\.mkv\) and .* libvpx-vp9 at 8 bits \(\.webm, --codec libvpx-vp9 --bit"
    with pytest.warns(UserWarning, match=advice):
        deband_video(source, tmp_path / "av1.webm", lambda rgb: rgb, progress=False)


def test_vp9_keeps_alpha_at_4_2_0_in_matroska_and_webm_only(tmp_path):
    """libvpx lists 4:2:2 and 4:4:4 alpha formats but opens with 4:2:0 alone: a ProRes 4444 source
    into VP9 failed at its first frame. Its alpha layer has no place in MP4: it was lost unsaid."""
    if "libvpx-vp9" not in av.codecs_available:
        pytest.skip("this PyAV has no libvpx")
    source = _alpha_clip(tmp_path / "in.mov", "prores_ks", "yuva444p10le")
    vp9 = {"codec": "libvpx-vp9", "bit_depth": 8, "progress": False}
    with pytest.warns(
        UserWarning, match=r"keeps alpha at 4:2:0 only, so its chroma is reduced .*--chroma 444"
    ):
        report = deband_video(source, tmp_path / "out.webm", lambda rgb: rgb, **vp9)
    assert (
        report.pix_fmt == "yuva420p"
        and np.abs(_vp9_alpha(tmp_path / "out.webm") - _alpha(source)).max() < 0.02
    )
    with pytest.warns(UserWarning, match=r"dropped: libvpx-vp9 does not keep it in yuv444p; with chroma 420"):
        assert (
            deband_video(source, tmp_path / "c.webm", lambda rgb: rgb, chroma="444", **vp9).pix_fmt
            == "yuv444p"
        )
    with pytest.warns(UserWarning, match=r"dropped: libvpx-vp9 does not keep it in mp4 files, only in \.mkv"):
        assert deband_video(source, tmp_path / "out.mp4", lambda rgb: rgb, **vp9).pix_fmt == "yuv444p"


def test_alpha_and_interlacing_are_warned_about(tmp_path):
    message = r"in\.mkv: its alpha channel is dropped: libx265 does not keep it in yuv420p10le; ffv1"
    with pytest.warns(UserWarning, match=message):
        report = deband_video(
            _alpha_clip(tmp_path / "in.mkv", "ffv1", "yuva420p"),
            tmp_path / "out.mkv",
            lambda rgb: rgb,
            progress=False,
        )
    assert report.pix_fmt == "yuv420p10le"
    message = (
        r"in\.mkv: its alpha channel is dropped: prores_ks .* yuv422p10le; with chroma 444 \(--chroma 444\)"
    )
    with pytest.warns(UserWarning, match=message):  # asked for 4:2:2, where ProRes has no alpha
        report = deband_video(
            tmp_path / "in.mkv",
            tmp_path / "out.mov",
            lambda rgb: rgb,
            codec="prores_ks",
            chroma="422",
            progress=False,
        )
    assert report.pix_fmt == "yuv422p10le"
    interlaced = make_clip(
        tmp_path / "tff.mkv", "yuv420p", "libx264", flags="+ilme+ildct", **{"x264-params": "tff=1"}
    )
    message = r"tff\.mkv: tagged interlaced; its interlaced frames are debanded field by field, but libx265"
    with pytest.warns(UserWarning, match=message):
        deband_video(interlaced, tmp_path / "i.mkv", lambda rgb: rgb, progress=False)


def test_y4m_says_what_its_reader_must_be_told(tmp_path):
    """Y4M has no colour tags or rotation: an HDR or rotated source warns with the ffmpeg options."""
    with pytest.warns(UserWarning) as caught:
        deband_video(make_hdr10(tmp_path / "hdr.mkv"), tmp_path / "hdr.y4m", lambda rgb: rgb, progress=False)
    told = "(ffmpeg: -color_primaries bt2020 -color_trc smpte2084 -colorspace bt2020nc)"
    messages = [str(w.message).split(": ", 1)[1] for w in caught]
    assert f"Y4M carries no colour tags but the range; tell the program reading it {told}" in messages
    assert (
        "raw Y4M video cannot carry the source's HDR10 metadata (mastering display and light levels); "
        f"dropped (give it to the encoder reading the stream: x265-params {HDR10.encoder_params('libx265')})"
    ) in messages
    rotated = make_video(tmp_path / "phone.mp4", audio=False, rotation=90)
    told = r"Y4M carries no 90° display rotation; .* \(ffmpeg: -display_rotation 90\)"
    with pytest.warns(UserWarning, match=told):
        deband_video(rotated, tmp_path / "phone.y4m", lambda rgb: rgb, progress=False)
    with warnings.catch_warnings():  # BT.709 is what readers assume of untagged HD video: no warning
        warnings.simplefilter("error")
        deband_video(
            make_video(tmp_path / "hd.mp4", audio=False), tmp_path / "hd.y4m", lambda rgb: rgb, progress=False
        )


def test_8_bit_output_of_hdr_is_warned_about(tmp_path):
    with pytest.warns(UserWarning, match="8-bit output of an HDR .PQ or HLG. source bands visibly"):
        deband_video(
            make_hdr10(tmp_path / "hdr.mkv"),
            tmp_path / "out.mkv",
            lambda rgb: rgb,
            bit_depth=8,
            progress=False,
        )


def test_y4m_is_raw_10_bit_and_drops_audio_with_a_warning(source, tmp_path):
    with pytest.warns(UserWarning, match="Y4M holds no audio") as caught:
        report = deband_video(source, tmp_path / "out.y4m", lambda rgb: rgb, progress=False)
    assert caught[0].filename == __file__  # points at the caller of deband_video
    assert (report.codec, report.audio_dropped) == ("wrapped_avframe", 1)
    after = probe(tmp_path / "out.y4m")
    assert (after["pix_fmt"], after["rate"], len(after["times"]), after["audio"]) == (
        "yuv420p10le",
        FPS,
        N,
        [],
    )


@pytest.mark.parametrize(
    ("space", "kept", "codec"),
    [(8, 8, "ffv1"), (10, 10, "ffv1"), (14, 14, "ffv1"), (16, 1, "ffv1"), (16, 1, "libx265")],
)  # YCgCo, BT.2020 constant luminance, ICtCp; YCgCo-Re, which x265 refuses, is made BT.709
def test_a_matrix_swscale_lacks_keeps_its_tag(tmp_path, space, kept, codec):
    """Such sources are converted as BT.709 both ways, so their samples come back as they were;
    but the output was tagged BT.709, and players decoded YCgCo samples as BT.709 colours."""
    src = tmp_path / "odd.mkv"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.colorspace, stream.codec_context.color_range = space, 1
        for i in range(3):
            muted = gradient(i) // 2 + 64  # no colour that BT.709 read back would clip
            frame = av.VideoFrame.from_ndarray(muted, format="rgb24").reformat(format="yuv420p")
            frame.colorspace, frame.color_range, frame.pts = space, 1, i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    deband_video(src, tmp_path / "out.mkv", lambda rgb: rgb, codec=codec, bit_depth=8, progress=False)
    with av.open(str(src)) as a, av.open(str(tmp_path / "out.mkv")) as b:
        pairs = list(zip(a.decode(video=0), b.decode(video=0), strict=True))
    assert {(int(f.colorspace), int(g.colorspace)) for f, g in pairs} == {(space, kept)}
    if codec != "ffv1":
        return
    luma = [[np.frombuffer(f.planes[0], np.uint8).astype(int) for f in pair] for pair in pairs]
    assert max(np.abs(x - y).max() for x, y in luma) <= 1


@pytest.mark.parametrize(("space", "kr", "kb"), [(6, 0.299, 0.114), (5, 0.299, 0.114), (1, 0.2126, 0.0722)])
def test_yuv_is_read_with_the_matrix_its_tags_name(space, kr, kb):
    """Standard-definition video (SMPTE 170M / BT.470BG: the BT.601 matrix) and HD (BT.709), each
    decoded with its own matrix: a round trip through one wrong matrix both ways looks right, so
    the YUV here is made by hand from the standard's equations."""
    from bdinn.runtime.video_colour import decode_rgb

    rgb = np.array([200.0, 30.0, 60.0]) / 255
    luma = kr * rgb[0] + (1 - kr - kb) * rgb[1] + kb * rgb[2]
    cb, cr = (rgb[2] - luma) / (2 * (1 - kb)), (rgb[0] - luma) / (2 * (1 - kr))
    frame = av.VideoFrame(32, 32, "yuv420p")
    for plane, value in zip(frame.planes, (16 + 219 * luma, 128 + 224 * cb, 128 + 224 * cr), strict=True):
        plane.update(np.full(plane.buffer_size, round(value), np.uint8).tobytes())
    frame.colorspace, frame.color_range = space, 1  # limited range
    out = decode_rgb(frame, False).reshape(-1, 3).astype(int)
    assert np.abs(out - [200, 30, 60]).max() <= 2, out[0]
