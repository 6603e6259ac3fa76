"""Video files: frames, timing, audio and colour survive; errors are one line and leave nothing."""

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av", reason="needs the video extra: pip install 'bdinn[video]'")

from bdinn.runtime.files import OutputError  # noqa: E402
from bdinn.runtime.hdr10 import Hdr10  # noqa: E402
from bdinn.runtime.subtitle_text import cue_text  # noqa: E402
from bdinn.runtime.video import VideoError, VideoReport, deband_frame, deband_video, is_video  # noqa: E402

W, H, N, FPS, RATE = 64, 48, 8, 24, 48000


def _gradient(i: int) -> np.ndarray:
    """A horizontal ramp that moves 4 levels a frame, over a vertical one, on a flat blue."""
    x, y = np.arange(W)[None, :], np.arange(H)[:, None]
    red = (x * 3 + i * 4) % 256 + 0 * y
    green = 60 + y * 2 + 0 * x
    return np.stack([red, green, np.full_like(red, 128)], axis=-1).astype(np.uint8)


def make_video(
    path: Path,
    *,
    video: bool = True,
    audio: bool = True,
    rotation: int = 0,
    codec: str = "libx264",
    audio_codec: str = "aac",
    channels: int = 1,
    sar: Fraction | None = None,
) -> Path:
    """N frames of a moving gradient at FPS (BT.709, limited range) plus a 440 Hz sine."""
    with av.open(str(path), "w") as out:
        if video:
            vs = out.add_stream(codec, rate=FPS)
            vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
            ctx = vs.codec_context
            ctx.colorspace = ctx.color_range = ctx.color_primaries = ctx.color_trc = 1
            if rotation:
                vs.set_display_rotation(rotation)
            if sar:
                ctx.sample_aspect_ratio = sar
        if audio:
            aus = out.add_stream(audio_codec, rate=RATE)
            aus.codec_context.layout = "stereo" if channels == 2 else "mono"
        start = 0
        for i in range(N):
            if video:
                frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
                frame = frame.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
                frame.pts = i
                out.mux(vs.encode(frame))
            if audio:
                count = RATE // FPS
                t = np.arange(start, start + count) / RATE
                wave = np.repeat((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], channels, 0)
                sound = av.AudioFrame.from_ndarray(wave, format="fltp", layout=aus.codec_context.layout.name)
                sound.sample_rate, sound.pts = RATE, start
                out.mux(aus.encode(sound))
                start += count
        if video:
            out.mux(vs.encode(None))
        if audio:
            out.mux(aus.encode(None))
    return path


def _mux_gradient(out: av.container.OutputContainer, stream: av.VideoStream, frames: int = N) -> None:
    """`frames` of the moving gradient into a video `stream`, one per tick, then its last packets."""
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
        frame.pts = i
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _mux_silence(
    out: av.container.OutputContainer, stream: av.AudioStream, seconds: float, start: int = 0
) -> None:
    """`seconds` of silence into an audio `stream` (its own format and layout), from sample `start`;
    the encoder re-frames it to its own frame size."""
    ctx = stream.codec_context
    for k in range(0, round(seconds * ctx.sample_rate), 1024):
        sound = av.AudioFrame(format=ctx.format.name, layout=ctx.layout.name, samples=1024)
        for plane in sound.planes:
            plane.update(bytes(plane.buffer_size))
        sound.sample_rate, sound.time_base, sound.pts = (
            ctx.sample_rate,
            Fraction(1, ctx.sample_rate),
            start + k,
        )
        out.mux(stream.encode(sound))
    out.mux(stream.encode(None))


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


def _planes(path: Path) -> list[list[np.ndarray]]:
    """Every frame's Y, U, V planes as int arrays."""
    frames = []
    with av.open(str(path)) as src:
        for frame in src.decode(video=0):
            dtype = np.uint16 if frame.format.components[0].bits > 8 else np.uint8
            planes = []
            for plane in frame.planes:
                row = plane.line_size // np.dtype(dtype).itemsize
                data = np.frombuffer(plane, dtype)[: row * plane.height].reshape(plane.height, row)
                planes.append(data[:, : plane.width].astype(int))
            frames.append(planes)
    return frames


def probe(path: Path) -> dict:
    with av.open(str(path)) as src:
        vs = src.streams.video[0]
        frames = list(src.decode(vs))
        info = {
            "codec": vs.codec_context.codec.canonical_name,
            "codec_tag": vs.codec_tag,
            "pix_fmt": frames[0].format.name,
            "size": (frames[0].width, frames[0].height),
            "times": [float(f.time) for f in frames],
            "rate": vs.average_rate,
            "rgb": [f.to_ndarray(format="rgb24") for f in frames],
            "colour": (
                frames[0].colorspace,
                frames[0].color_range,
                frames[0].color_primaries,
                frames[0].color_trc,
            ),
            "rotation": frames[0].rotation,
            "audio": [],
        }
    with av.open(str(path)) as src:
        for stream in src.streams.audio:
            ctx = stream.codec_context
            samples = sum(f.samples for f in src.decode(stream))
            info["audio"].append((ctx.codec.canonical_name, samples / ctx.sample_rate))
    return info


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "source.mp4")


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_identity_keeps_frames_timing_audio_and_colour(source, tmp_path):
    seen = []
    dst = tmp_path / "out.mkv"
    report = deband_video(source, dst, lambda rgb: seen.append(rgb.dtype) or rgb, progress=False)
    before, after = probe(source), probe(dst)

    assert isinstance(report, VideoReport)
    assert (report.frames, report.width, report.height) == (N, W, H)
    assert (report.codec, report.pix_fmt, report.audio_streams) == ("libx265", "yuv420p10le", 1)
    assert report.frame_rate == pytest.approx(FPS) and report.duration == pytest.approx(N / FPS, abs=1e-3)
    assert report.fps > 0 and report.seconds > 0
    assert seen == [np.uint8] * N  # an 8-bit source is handed over as rgb24

    assert len(after["times"]) == len(before["times"]) == N
    assert after["size"] == (W, H)
    assert (after["codec"], after["pix_fmt"]) == ("hevc", "yuv420p10le")
    assert after["rate"] == FPS
    # Same timestamps within a frame (Matroska shifts everything by the AAC priming, 21 ms).
    assert np.abs(np.array(after["times"]) - before["times"]).max() < 1 / FPS
    assert after["colour"] == before["colour"] == (1, 1, 1, 1)  # BT.709 tags, limited range
    [(codec, seconds)] = after["audio"]
    assert codec == "aac" and seconds == pytest.approx(before["audio"][0][1], abs=0.03)
    assert seconds == pytest.approx(N / FPS, abs=0.05)
    # And the same pictures, up to x265 at CRF 20 on a tiny frame.
    for a, b in zip(before["rgb"], after["rgb"], strict=True):
        assert np.abs(a.astype(int) - b).mean() < 3


def test_process_changes_pixels(source, tmp_path):
    def brighter(rgb):
        return np.minimum(rgb.astype(np.uint16) * 2, 255).astype(np.uint8)

    deband_video(source, tmp_path / "bright.mkv", brighter, progress=False)
    before, after = probe(source), probe(tmp_path / "bright.mkv")
    for a, b in zip(before["rgb"], after["rgb"], strict=True):
        expected = np.minimum(a.astype(int) * 2, 255)
        assert b.mean() == pytest.approx(expected.mean(), abs=3)
        assert b.mean() > a.mean() + 40


def test_bdinn_run_debands_a_video_with_the_bundled_model(source, tmp_path):
    """The command users run, without torch: the bundled ONNX model through ONNX Runtime, 10-bit
    lossless out, every value within the change limit (2 levels) of the source's."""
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    from click.testing import CliRunner

    from bdinn.runtime.run_cli import main

    out = tmp_path / "out.mkv"
    result = CliRunner().invoke(main, [str(source), "-o", str(out), "--codec", "ffv1", "-q"])
    assert result.exit_code == 0, result.output
    after = probe(out)
    assert after["codec"] == "ffv1" and len(after["times"]) == N and after["audio"][0][0] == "aac"
    # Luma, a weighted mean of R, G and B, moves no more than they do (8-bit levels; 10-bit / 4).
    change = [np.abs(b[0] / 4 - a[0]) for a, b in zip(_planes(source), _planes(out), strict=True)]
    assert max(c.max() for c in change) <= 2.5  # the limit, plus rounding
    assert np.mean([c.mean() for c in change]) > 0.25  # the model's doing: 0.15 for an identity


def test_bdinn_run_reads_broadcast_files_and_takes_a_chroma(tmp_path):
    """MPEG program streams (.mpg), like .mxf or .m2ts, are read as video: once they were taken for
    pictures ("cannot write a picture as '.mkv'")."""
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    from click.testing import CliRunner

    from bdinn.runtime.run_cli import main

    source = make_clip(tmp_path / "in.mpg", "yuv420p", "mpeg2video", qscale=2)
    result = CliRunner().invoke(main, [str(source), "-o", str(tmp_path / "out.mkv"), "--chroma", "444"])
    assert result.exit_code == 0, result.output
    assert "in.mpg -> " in result.output and ": 3 frames at" in result.output
    assert probe(tmp_path / "out.mkv")["pix_fmt"] == "yuv444p10le"
    result = CliRunner().invoke(main, [str(source), "-o", str(tmp_path / "out.mpg")])
    assert result.exit_code == 1 and "cannot write a video as '.mpg' (use .mkv)" in result.output


def test_bdinn_run_reads_a_video_by_what_it_holds_where_its_name_says_neither(source, tmp_path):
    """An elementary stream (.h264), or a video renamed or without a suffix, was taken for a
    picture: "not an image file OpenCV can read", or "cannot write a picture as '.mkv'"."""
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    from click.testing import CliRunner

    from bdinn.runtime.run_cli import main

    elementary, bare = tmp_path / "camera.h264", tmp_path / "recording"
    with av.open(str(source)) as src, av.open(str(elementary), "w", format="h264") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    bare.write_bytes(source.read_bytes())
    result = CliRunner().invoke(main, [str(elementary), "-o", str(tmp_path / "out.mkv"), "-q"])
    assert result.exit_code == 0, result.output
    assert len(probe(tmp_path / "out.mkv")["times"]) == N
    result = CliRunner().invoke(main, [str(bare), "-q"])
    assert result.exit_code == 0, result.output
    after = probe(tmp_path / "recording.debanded.mkv")
    assert len(after["times"]) == N and after["audio"][0][0] == "aac"
    (tmp_path / "notes.txt").write_text("\x1b[31mnot a picture, nor a video\x1b[0m\n")  # FFmpeg: "tty"
    result = CliRunner().invoke(main, [str(tmp_path / "notes.txt")])
    assert result.exit_code == 1 and "notes.txt: not an image file OpenCV can read" in result.output
    # FFmpeg reads GIFs too, but they stay pictures: a still one is debanded, an animated one refused
    frames = [Image.fromarray(_gradient(i)) for i in range(3)]
    frames[0].save(tmp_path / "still.gif")
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:])
    result = CliRunner().invoke(main, [str(tmp_path / "still.gif"), "-q"])
    assert result.exit_code == 0 and (tmp_path / "still.debanded.png").is_file(), result.output
    result = CliRunner().invoke(main, [str(tmp_path / "moving.gif")])
    assert result.exit_code == 1 and "holds 3 frames" in result.output


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
        for a, b in zip(_planes(src), _planes(dst), strict=True):
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
    luma = _planes(tmp_path / "white.mkv")[0][0]
    assert np.all(luma == 940)


def test_rotation_is_kept(tmp_path):
    src = make_video(tmp_path / "portrait.mp4", audio=False, rotation=90)
    deband_video(src, tmp_path / "portrait.mkv", lambda rgb: rgb, bit_depth=8, progress=False)
    assert probe(src)["rotation"] == probe(tmp_path / "portrait.mkv")["rotation"] == 90


def test_audio_that_webm_cannot_hold_is_reencoded_to_opus(source, tmp_path):
    dst = tmp_path / "out.webm"
    report = deband_video(source, dst, lambda rgb: rgb, codec="libvpx-vp9", bit_depth=8, progress=False)
    assert (report.audio_streams, report.audio_transcoded) == (0, 1)
    after = probe(dst)
    assert after["codec"] == "vp9" and len(after["times"]) == N
    [(codec, seconds)] = after["audio"]
    assert codec == "opus" and seconds == pytest.approx(N / FPS, abs=0.05)


@pytest.mark.parametrize(
    ("audio_codec", "suffix", "expected"),
    [
        ("pcm_s16le", ".mp4", "aac"),  # FFmpeg takes stereo PCM into MP4, then fails at the end
        ("pcm_s16le", ".ts", "aac"),  # ... and into MPEG-TS as an unplayable data stream
        ("pcm_s16le", ".mov", "pcm_s16le"),
        ("libopus", ".mov", "aac"),  # MOV holds no Opus
        ("libopus", ".mp4", "opus"),
        ("libmp3lame", ".mp4", "mp3"),  # its decoder is "mp3float": MP3 was re-encoded everywhere
        ("libmp3lame", ".ts", "mp3"),
    ],
)
def test_stereo_audio_is_copied_where_the_container_takes_it_else_reencoded(
    tmp_path, audio_codec, suffix, expected
):
    source = make_video(tmp_path / "source.mkv", audio_codec=audio_codec, channels=2)
    report = deband_video(source, tmp_path / f"out{suffix}", lambda rgb: rgb, progress=False)
    assert report.audio_transcoded == (expected != probe(source)["audio"][0][0])
    [(codec, seconds)] = probe(tmp_path / f"out{suffix}")["audio"]
    assert codec == expected and seconds == pytest.approx(N / FPS, abs=0.05)


def test_aac_without_its_config_is_reencoded_for_avi(tmp_path):
    """AAC from an MPEG-TS is framed as ADTS, without the AudioSpecificConfig AVI's header needs:
    copied, the muxer refused it after all the work ("encoding with libx264 failed")."""
    for suffix, transcoded in ((".ts", 1), (".mp4", 0)):
        source = make_video(tmp_path / f"source{suffix}")
        report = deband_video(source, tmp_path / f"out{suffix}.avi", lambda rgb: rgb, progress=False)
        assert (report.audio_streams, report.audio_transcoded) == (1 - transcoded, transcoded)
        [(codec, seconds)] = probe(tmp_path / f"out{suffix}.avi")["audio"]
        assert codec == "aac" and seconds == pytest.approx(probe(source)["audio"][0][1], abs=0.05)


def test_a_failure_of_the_muxer_is_not_blamed_on_the_encoder(source, tmp_path, monkeypatch):
    """What the muxer refuses (it may be any stream's packet: it interleaves them) is said to be
    the muxer's, with FFmpeg's reason and no temporary file name."""
    opened = av.open

    class Refusing:  # the real output file, whose muxer refuses the first sound it is given
        def __init__(self, *args, **kwargs):
            self.container = opened(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.container, name)

        def mux(self, packets):
            if any(p.stream.type == "audio" for p in (packets if isinstance(packets, list) else [packets])):
                raise av.error.ArgumentError(22, "Invalid argument", "/somewhere/.out.mkv.1234.tmp")
            return self.container.mux(packets)

    monkeypatch.setattr(av, "open", lambda *args, **kwargs: Refusing(*args, **kwargs) if "w" in args else
                        opened(*args, **kwargs))  # fmt: skip
    with pytest.raises(VideoError, match=r"out\.mkv: FFmpeg's matroska muxer failed \(Invalid argument\)$"):
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert not list(tmp_path.iterdir())


def test_matroska_milliseconds_become_an_exact_frame_rate_in_mp4(tmp_path):
    """Matroska keeps times in milliseconds: 24 or 24000/1001 fps come out 42, 41, 42 ms apart, and
    written so into MP4 the rate read 23.983 (a Y4M piped on from it said F128000:5337). Frames
    within half a millisecond of the frame grid go on it; the sound stays where it was."""
    for rate in (Fraction(24), Fraction(24000, 1001)):
        source = tmp_path / f"{float(rate):.3f}.mkv"
        with av.open(str(source), "w") as out:
            stream = out.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            audio = out.add_stream("aac", rate=RATE)
            audio.codec_context.layout = "mono"
            stream.codec_context.time_base = Fraction(1, 1000)  # off the grid that starts at 0
            for i in range(N):  # a tenth of a second after the sound, as cameras start
                frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
                frame.pts, frame.time_base = round((Fraction(1, 10) + i / rate) * 1000), Fraction(1, 1000)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
            _mux_silence(out, audio, N / float(rate))
        for name in ("out.mp4", "out.mov"):
            deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False, force=True)
            with av.open(str(tmp_path / name)) as result:  # PyAV 19: a closed file's streams say nothing
                video = result.streams.video[0]
                average = video.average_rate
                times = sorted(p.pts * video.time_base for p in result.demux(video=0) if p.pts is not None)
            assert average == rate, (name, average)
            assert {b - a for a, b in itertools.pairwise(times)} == {1 / rate}, times
            assert probe(tmp_path / name)["audio"][0][1] == pytest.approx(
                probe(source)["audio"][0][1], abs=0.03
            )


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


SUBTITLES = "1\n00:00:00,040 --> 00:00:00,120\nHello\n\n2\n00:00:00,200 --> 00:00:00,300\nWorld\n\n"
CHAPTERS = [("Opening", 0, 4), ("Rest", 4, N)]  # titles, first and end frame
FONT = ("font.ttf", "font/ttf", b"\x00\x01\x00\x00 a font")


def make_film(path: Path) -> Path:
    """An MKV as films come: video, a French SubRip track, two chapters and an attached font."""
    srt_path = path.with_suffix(".srt")
    srt_path.write_text(SUBTITLES)
    return film_with(path, srt_path, language="fre", extras=True)


def film_with(path: Path, subtitle_file: Path, language: str | None = None, extras: bool = False) -> Path:
    """A short clip with the subtitle track of `subtitle_file` (any format FFmpeg reads) and,
    with `extras`, CHAPTERS and the FONT attached."""
    with av.open(str(subtitle_file)) as subs, av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        track = out.add_stream_from_template(subs.streams.subtitles[0])
        if language:
            track.metadata["language"] = language
        if extras:
            out.add_attachment(*FONT)
            out.set_chapters(
                [
                    {
                        "id": i + 1,
                        "start": a,
                        "end": b,
                        "time_base": Fraction(1, FPS),
                        "metadata": {"title": t},
                    }
                    for i, (t, a, b) in enumerate(CHAPTERS)
                ]
            )
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        for packet in subs.demux(subs.streams.subtitles[0]):
            if packet.dts is not None:
                packet.stream = track
                out.mux(packet)
        out.mux(vs.encode(None))
    return path


def _extras(path: Path) -> dict:
    """The subtitle cues (text, start, end in seconds), chapters and attachments of a file."""
    with av.open(str(path)) as src:
        cues = [
            (cue_text(stream.codec_context.name, bytes(p)), float(p.pts * p.time_base),
             float((p.pts + p.duration) * p.time_base))
            for stream in src.streams.subtitles
            for p in src.demux(stream)
            if p.size > (2 if stream.codec_context.name == "mov_text" else 0)  # MP4 fills gaps: empty cues
        ]  # fmt: skip
        return {
            "subtitles": [(s.codec_context.name, s.metadata.get("language")) for s in src.streams.subtitles],
            "cues": cues,
            "chapters": [
                (c["metadata"].get("title"), round(float(c["start"] * c["time_base"]), 3))
                for c in src.chapters()
            ],
            "attachments": [(a.name, a.mimetype, bytes(a.data)) for a in src.streams.attachments],
        }


def test_subtitles_chapters_and_fonts_are_kept_in_mkv(tmp_path):
    film = make_film(tmp_path / "film.mkv")
    before = _extras(film)
    assert before["cues"] == [("Hello", 0.04, 0.12), ("World", 0.2, 0.3)]  # the source is as meant
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(film, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    after = _extras(tmp_path / "out.mkv")
    assert after == before
    assert after["subtitles"] == [("srt", "fre")] and len(after["chapters"]) == 2
    assert (report.subtitle_streams, report.subtitles_dropped, report.frames) == (1, 0, N)


def test_cover_art_is_kept_in_mkv_and_warned_about_elsewhere(tmp_path):
    """FFmpeg shows an MKV's image attachment as a one-frame video stream beside the movie."""
    import cv2

    cover = cv2.imencode(".jpg", np.full((32, 32, 3), 90, np.uint8))[1].tobytes()
    source = tmp_path / "album.mkv"
    with av.open(str(source), "w") as out:
        out.add_attachment("cover.jpg", "image/jpeg", cover)
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    with av.open(str(source)) as src:
        assert sorted(s.codec_context.name for s in src.streams.video) == [
            "h264",
            "mjpeg",
        ]  # as FFmpeg shows it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert (report.frames, report.width, report.height) == (N, W, H)
    with av.open(str(tmp_path / "out.mkv")) as out:
        pictures = [s for s in out.streams.video if s.disposition & 1024]
        assert [(s.metadata["filename"], s.metadata["mimetype"]) for s in pictures] == [
            ("cover.jpg", "image/jpeg")
        ]
        assert bytes(next(p for p in out.demux(pictures[0]) if p.size)) == cover
    with pytest.warns(UserWarning, match=r"a \.mp4 file cannot hold the source's 1 cover picture\(s\)"):
        deband_video(source, tmp_path / "out.mp4", lambda rgb: rgb, progress=False)


def test_mp4_text_subtitles_become_subrip_in_mkv(tmp_path):
    """Matroska has no mov_text: MP4's cues arrive as SubRip, text and times exact, gaps left out."""
    source = tmp_path / "phone.mp4"
    with av.open(str(source), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        text = out.add_stream("mov_text")
        text.time_base = text.codec_context.time_base = Fraction(1, 1000)
        text.codec_context.subtitle_header = b"[Script Info]\nScriptType: v4.00+\n\n[Events]\n"
        text.metadata["language"] = "fra"
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        for start, length, cue in [(40, 80, "Bonjour"), (200, 100, "Monde\né")]:
            packet = av.Packet(len(cue.encode()).to_bytes(2, "big") + cue.encode())
            packet.pts = packet.dts = start
            packet.duration, packet.time_base, packet.stream = length, Fraction(1, 1000), text
            out.mux(packet)
        out.mux(vs.encode(None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    after = _extras(tmp_path / "out.mkv")
    assert after["subtitles"] == [("srt", "fra")] and report.subtitle_streams == 1
    assert after["cues"] == [("Bonjour", 0.04, 0.12), ("Monde\né", 0.2, 0.3)]


def test_what_a_container_cannot_hold_is_dropped_with_one_warning(tmp_path):
    film = make_film(tmp_path / "film.mkv")
    with pytest.warns(UserWarning) as caught:
        report = deband_video(film, tmp_path / "out.mp4", lambda rgb: rgb, progress=False)
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'out.mp4'}: a .mp4 file cannot hold the source's 1 attachment(s); dropped "
        "(write .mkv to keep them)",
    ]
    assert all(w.filename == __file__ for w in caught)
    after = _extras(tmp_path / "out.mp4")
    assert (after["subtitles"], after["attachments"]) == ([("mov_text", "fre")], [])  # rewritten, below
    assert after["chapters"] == _extras(film)["chapters"]  # MP4 has a chapter list
    assert (report.subtitle_streams, report.subtitles_dropped) == (1, 0)
    with pytest.warns(UserWarning) as caught:
        deband_video(film, tmp_path / "out.ts", lambda rgb: rgb, progress=False)
    assert [str(w.message).split(": ", 1)[1] for w in caught] == [
        "a .ts file cannot hold subtitle subrip stream 1; dropped (write .mkv to keep them)",
        "a .ts file cannot hold the source's 2 chapter(s) and 1 attachment(s); dropped "
        "(write .mkv to keep them)",
    ]
    assert _extras(tmp_path / "out.ts")["chapters"] == []


def test_a_broadcasts_dvb_subtitles_stay_in_its_transport_stream(tmp_path):
    """DVB bitmap subtitles go from MPEG-TS into MPEG-TS as they are. Their decoder is `dvbsub`,
    not the codec's name `dvb_subtitle`, and they were dropped as a codec the container refuses."""
    source = tmp_path / "capture.ts"
    with av.open(str(source), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        subtitles = out.add_stream("dvbsub")
        subtitles.metadata["language"] = "deu"
        # An empty display set (page composition, end of display set), as FFmpeg's encoder writes it.
        display_set = bytes([0x0F, 0x10, 0, 1, 0, 2, 5, 0x05, 0x0F, 0x80, 0, 1, 0, 0])
        for i in range(N):
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.full((H, W, 3), 9 * i, np.uint8))))
            cue = av.Packet(display_set)
            cue.stream, cue.time_base, cue.pts = subtitles, Fraction(1, 90000), i * 90000 // FPS
            cue.dts = cue.pts
            out.mux(cue)
        out.mux(video.encode(None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / "out.ts", lambda rgb: rgb, progress=False)
    assert (report.subtitle_streams, report.subtitles_dropped) == (1, 0)
    with av.open(str(tmp_path / "out.ts")) as out:
        [kept] = out.streams.subtitles
        assert (kept.codec_context.codec.canonical_name, kept.metadata["language"]) == ("dvb_subtitle", "deu")
        assert [bytes(packet) for packet in out.demux(kept) if packet.size] == [display_set] * N


# A P3-D65 mastering display of 1000 cd/m^2, MaxCLL 1000, MaxFALL 400, in x265's units.
MASTERING = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
HDR10 = Hdr10(
    primaries=((0.68, 0.32), (0.265, 0.69), (0.15, 0.06), (0.3127, 0.329)),
    luminance=(0.005, 1000.0),
    light=(1000, 400),
)


def make_hdr10(path: Path) -> Path:
    """A 10-bit PQ HEVC clip carrying HDR10 mastering-display and light-level SEI."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx265", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p10le"
        ctx = vs.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = 9, 16, 9, 1
        vs.options = {"x265-params": f"log-level=error:master-display={MASTERING}:max-cll=1000,400"}
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(_gradient(i).astype(np.uint16) * 257, format="rgb48le")
            frame = frame.reformat(format="yuv420p10le", dst_colorspace=9, dst_color_range=1)
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


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


@pytest.mark.parametrize(("name", "depth"), [("sdr.mp4", np.uint8), ("hdr.mkv", np.uint16)])
def test_deband_frame_returns_the_frame_as_it_came(tmp_path, name, depth):
    """For code with its own decode loop: same pixel format, tags and timing; luma within a code value."""
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
            luma = [f.to_ndarray()[:H].astype(int) for f in (frame, out)]  # YUV: the stacked planes, Y first
            assert np.abs(luma[0] - luma[1]).max() <= 1
    assert seen == {np.dtype(depth)}
    with pytest.raises(
        VideoError, match=r"deband_frame: process returned float32 \(48, 64, 3\) for the frame at 0\.292 s"
    ):
        deband_frame(frame, lambda rgb: rgb.astype(np.float32))


def _array_frame(image: np.ndarray, source: str, pix_fmt: str) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(image, format=source).reformat(format=pix_fmt)
    frame.pts, frame.time_base = 7, Fraction(1, 25)
    return frame


def _plane_bytes(frame: av.VideoFrame) -> list[bytes]:
    return [bytes(plane) for plane in frame.planes]


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
    assert _plane_bytes(out) == _plane_bytes(frame)
    alpha = [f.reformat(format="rgba64le").to_ndarray()[..., 3] for f in (frame, out)]
    assert alpha[0].min() < 300 and np.array_equal(alpha[0], alpha[1])


@pytest.mark.parametrize("pix_fmt", ["rgb48le", "bgr48le", "gbrp10le", "gbrp12le", "gbrp16le"])
def test_deband_frame_returns_deep_rgb_unchanged(pix_fmt):
    """Deep RGB frames came back 0.4 % darker: the 65280-white correction was applied one way only."""
    rgb = np.random.default_rng(0).integers(0, 65536, (32, 32, 3)).astype(np.uint16)
    frame = _array_frame(rgb, "rgb48le", pix_fmt)
    seen = []
    out = deband_frame(frame, lambda image: seen.append(image) or image)
    assert _plane_bytes(out) == _plane_bytes(frame)
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


def test_deband_frame_takes_a_frame_made_from_an_array():
    """from_ndarray frames have no time base; a numpy array is refused in one line."""
    frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 200, np.uint8), format="rgb24")
    out = deband_frame(frame, lambda rgb: rgb)
    assert (out.pts, out.time_base) == (None, None)
    assert np.array_equal(out.to_ndarray(), frame.to_ndarray())
    with pytest.raises(TypeError, match="deband_frame takes a PyAV VideoFrame, got ndarray"):
        deband_frame(frame.to_ndarray(), lambda rgb: rgb)


def make_clip(
    path: Path, pix_fmt: str, codec: str = "ffv1", size: tuple[int, int] = (W, H), frames: int = 3, **options
) -> Path:
    """Frames of the moving gradient in `pix_fmt`, losslessly unless `codec` says otherwise."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=FPS)
        (vs.width, vs.height), vs.pix_fmt = size, pix_fmt
        vs.options = {k: str(v) for k, v in options.items()}
        for i in range(frames):
            rgb = np.resize(_gradient(i), (*size[::-1], 3))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
                format=pix_fmt
            )
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


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
        for planes in (_planes(source)[0], _planes(tmp_path / "out.mkv")[0])
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
        VideoError, match=r"chroma must be one of 420, 422, 444 \(None: the source's\), got '411'"
    ):
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, chroma="411", progress=False)


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
    for name, codec in (("odd.mkv", "ffv1"), ("odd.y4m", None)):  # these code odd 4:2:0 as it comes
        report = deband_video(
            source, tmp_path / name, lambda rgb: rgb, codec=codec, chroma="420", progress=False
        )
        assert (report.width, report.height, report.pix_fmt) == (65, 49, "yuv420p10le")
        before, after = (probe(path)["rgb"][1].astype(int) for path in (source, tmp_path / name))
        assert np.abs(before - after).mean() < 4  # the same picture, its chroma halved both ways


def _alpha_clip(path: Path, codec: str, pix_fmt: str) -> Path:
    """Three frames of a grey picture whose alpha ramps from 0 to full across it."""
    rgba = np.zeros((H, W, 4), np.uint16)
    rgba[..., :3] = 30000
    rgba[..., 3] = np.linspace(0, 65535, W).astype(np.uint16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=FPS)
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
    ],
)
def test_alpha_is_kept_by_ffv1_and_prores(tmp_path, codec, pix_fmt, name, written):
    """Motion graphics with gradients and alpha: the alpha passes the RGB-only network untouched."""
    source = _alpha_clip(tmp_path / f"in{Path(name).suffix}", codec, pix_fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / name, lambda rgb: rgb, codec=codec, progress=False)
    assert report.pix_fmt == written and report.frames == 3
    before, after = _alpha(source), _alpha(tmp_path / name)
    assert before.min() == 0 and before.max() == 1
    assert np.abs(before - after).max() <= 0.5 / 1023  # rounded to the nearest 10-bit code


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
    with pytest.warns(UserWarning, match=r"Y4M carries no 90° rotation; .* \(ffmpeg: -display_rotation 90\)"):
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


def test_existing_output_needs_force(source, tmp_path):
    dst = tmp_path / "out.mkv"
    dst.write_bytes(b"keep me")
    with pytest.raises(VideoError, match=r"out\.mkv: already exists; pass force=True"):
        deband_video(source, dst, lambda rgb: rgb, progress=False)
    assert dst.read_bytes() == b"keep me"
    (tmp_path / "link.mkv").symlink_to(tmp_path / "nowhere.mkv")  # refused before the work, not after
    with pytest.raises(VideoError, match=r"link\.mkv: already exists; pass force=True"):
        deband_video(source, tmp_path / "link.mkv", lambda rgb: rgb, progress=False)
    deband_video(source, dst, lambda rgb: rgb, force=True, progress=False)
    assert len(probe(dst)["times"]) == N


def test_an_output_another_job_writes_meanwhile_is_kept_without_force(source, tmp_path):
    dst = tmp_path / "out.mkv"

    def another_job_finishes_first(rgb: np.ndarray) -> np.ndarray:
        if not dst.exists():
            dst.write_bytes(b"another job's output")
        return rgb

    with pytest.raises(OutputError, match=r"out\.mkv: appeared while this was being written and is kept"):
        deband_video(source, dst, another_job_finishes_first, progress=False)
    assert dst.read_bytes() == b"another job's output" and _listing(tmp_path) == ["out.mkv"]
    deband_video(source, dst, another_job_finishes_first, force=True, progress=False)
    assert len(probe(dst)["times"]) == N


def test_a_progress_bar_without_a_console_is_not_drawn(source, tmp_path, monkeypatch):
    """pythonw and some daemons run with sys.stderr None: tqdm's bar raised AttributeError."""
    monkeypatch.setattr(sys, "stderr", None)
    deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb)
    assert len(probe(tmp_path / "out.mkv")["times"]) == N


def test_output_over_input_is_refused(source):
    with pytest.raises(VideoError, match="the output is the input file"):
        deband_video(source, source, lambda rgb: rgb, force=True, progress=False)


def test_bad_inputs_give_one_line_errors(source, tmp_path):
    audio_only = make_video(tmp_path / "song.mp4", video=False)
    cases = [
        (tmp_path / "missing.mp4", tmp_path / "a.mkv", {}, r"missing\.mp4: no such file"),
        (audio_only, tmp_path / "b.mkv", {}, r"song\.mp4: no video stream; pass a file with video"),
        (source, tmp_path / "c.xyz", {}, r"unsupported output container '\.xyz'"),
        (source, tmp_path / "d.mkv", {"codec": "nope"}, r"unknown video encoder 'nope'; choose one of"),
        (source, tmp_path / "e.mkv", {"codec": "aac"}, r"unknown video encoder 'aac'"),
        (source, tmp_path / "f.webm", {"codec": "libx265"}, r"a \.webm file cannot hold libx265"),
        (
            source,
            tmp_path / "g.webm",
            {"codec": "libvpx-vp9"},
            # an encoder that goes into .webm: the hint was libx265, which .webm cannot hold
            r"cannot write 10-bit video; pass bit_depth=8 \(--bit-depth 8\) or use another codec "
            r"\((?!.*libx265)[^)]*libsvtav1",
        ),
        (source, tmp_path / "h.mkv", {"codec": "ffv1", "crf": 10}, r"ffv1 has no CRF setting"),
        (source, tmp_path / "i.mkv", {"bit_depth": 16}, r"bit depth must be 8, 10 or 12"),
        (
            source,
            tmp_path / "k.mp4",
            {"codec": "libx264", "crf": 60},
            r"CRF 60 is out of range for libx264; use 0 \(best\) to 51",
        ),
        # FFmpeg's own check lets these through, then fails at the end or writes a data stream
        (source, tmp_path / "l.ts", {"codec": "libsvtav1"}, r"a \.ts file cannot hold libsvtav1 video"),
        (source, tmp_path / "m.ts", {"codec": "ffv1"}, r"a \.ts file cannot hold ffv1 video"),
        (source, tmp_path / "n.mov", {"codec": "libsvtav1"}, r"a \.mov file cannot hold libsvtav1 video"),
        (source, tmp_path / "o.y4m", {"codec": "libx264"}, r"Y4M holds raw video only; leave codec"),
        (source, tmp_path / "p.y4m", {"crf": 20}, r"raw Y4M video has no CRF setting"),
        # FFmpeg ignores unknown encoder options and refuses bad values only on the first frame
        (
            source,
            tmp_path / "q.mkv",
            {"preset": "fastest"},
            r"libx265 has no preset 'fastest'; use one of ultra",
        ),
        (source, tmp_path / "r.mkv", {"codec": "libsvtav1", "preset": 14}, r"use one of 0 \(slowest\) to 13"),
        (source, tmp_path / "s.mkv", {"codec": "ffv1", "preset": "fast"}, r"ffv1 has no speed preset"),
        (
            source,
            tmp_path / "t.mkv",
            {"codec_options": {"bogus": 1}},
            r"libx265 has no option 'bogus' \(ffmpeg -h",
        ),
        (source, tmp_path / "u.mkv", {"codec_options": {"g": "abc"}}, r"libx265 refuses the option g=abc"),
        (
            source,
            tmp_path / "v.mkv",
            {"codec_options": {"crf": 3}},
            r"crf has its own setting, crf= \(--crf\)",
        ),
        (
            source,
            tmp_path / "w.mkv",
            {"codec_options": {"pixel_format": "yuv444p"}},
            r"follows from the source",
        ),
        # FFmpeg only warns about these and runs the encoder with its defaults
        (source, tmp_path / "x.mkv", {"codec_options": {"x265-params": "bad=1"}}, r"\(Unknown option: bad"),
        (
            source,
            tmp_path / "y.mkv",
            {"codec": "libx264", "codec_options": {"x264-params": "keyint=abc"}},
            r"libx264 does not take the option x264-params=keyint=abc \(Error parsing option 'keyint = abc'",
        ),
        (source, tmp_path / "z.mkv", {"crf": True}, r"crf must be a whole number, got True"),
        (source, tmp_path / "za.mkv", {"codec_options": ["g=5"]}, r"must map option names to values"),
        (
            source,
            tmp_path / "zb.mkv",
            {"codec_options": {"x265-params": "aq-mode=3:colorprim=bt2020"}},
            r"x265-params colorprim=bt2020: the colour tags follow from the source",
        ),
    ]
    garbage = tmp_path / "noise.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    cases.append((garbage, tmp_path / "j.mkv", {}, r"noise\.mp4: not a video file FFmpeg can read"))
    for src, dst, options, message in cases:
        with pytest.raises(VideoError, match=message) as caught:
            deband_video(src, dst, lambda rgb: rgb, progress=False, **options)
        assert "\n" not in str(caught.value)
        assert not dst.exists()
    assert _listing(tmp_path) == ["noise.mp4", "song.mp4"]


def test_wrong_argument_types_are_refused_up_front(source, tmp_path):
    """Each of these failed later with someone else's words, or (progress=1) not at all."""
    import io

    dst = tmp_path / "out.mkv"
    for args, options, message in [
        ((source, dst, 42), {}, r"process must be a callable, frame -> frame .*, got 42"),
        ((io.BytesIO(source.read_bytes()), dst, None), {}, r"src must be a file path .* got BytesIO"),
        ((source, dst, None), {"progress": 1}, r"progress must be True, False or a callable"),
    ]:
        with pytest.raises(TypeError, match=message):
            deband_video(*args[:2], args[2] or (lambda rgb: rgb), **options)
    with pytest.raises(VideoError, match=r"bit depth must be 8, 10 or 12, got 10\.0"):
        deband_video(source, dst, lambda rgb: rgb, bit_depth=10.0, progress=False)
    report = deband_video(source, dst, lambda rgb: rgb, bit_depth=np.int64(8), progress=False)
    assert report.pix_fmt == "yuv420p"
    frame = av.VideoFrame.from_ndarray(_gradient(0), format="rgb24")
    with pytest.raises(TypeError, match="process must be a callable"):
        deband_frame(frame, None)
    with pytest.raises(TypeError, match=r"fields must be True, False or None .*, got 'yes'"):
        deband_frame(frame, lambda rgb: rgb, fields="yes")


def _x26x_settings(path: Path) -> dict[str, str]:
    """The settings x264 and x265 write into their stream's first SEI, as key=value pairs."""
    data = path.read_bytes()
    start = max(data.find(b"x264 - core"), data.find(b"x265 (build"))
    text = data[start : data.index(b"\0", start)].decode("ascii", "replace")
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


def test_a_bitrate_and_a_capped_crf_reach_the_encoder(source, tmp_path):
    """A streaming ladder's settings: b= was silently overridden by the default CRF, and x264's
    maxrate and bufsize, tried one at a time, were each refused for lacking the other."""
    target = deband_video(source, tmp_path / "abr.mp4", lambda rgb: rgb, codec="libx264",
                          codec_options={"b": "100k"}, progress=False)  # fmt: skip
    settings = _x26x_settings(target.dst)
    assert (settings["rc"], settings["bitrate"]) == ("abr", "100") and "crf" not in settings
    capped = deband_video(source, tmp_path / "capped.mp4", lambda rgb: rgb, codec="libx264",
                          codec_options={"maxrate": "300k", "bufsize": "600k"}, progress=False)  # fmt: skip
    settings = _x26x_settings(capped.dst)
    assert (settings["rc"], settings["vbv_maxrate"], settings["vbv_bufsize"]) == ("crf", "300", "600")
    for options, named in [
        (
            {"maxrate": "300k"},
            r"does not take the option maxrate=300k \(VBV maxrate specified, but no bufsize",
        ),
        ({"maxrate": "300k", "bufsize": "600k", "g": "abc"}, r"refuses the option g=abc"),  # the culprit
        ({"x264-params": "keyint=abc"}, r"does not take the option x264-params=keyint=abc"),
        ({"x264-params": "keyint=abc"}, r"does not take the option x264-params=keyint=abc"),  # again
        ({"x264opts": "keyint=48:fullrange=on"}, r"x264opts fullrange=on: the colour tags follow from"),
    ]:
        with pytest.raises(VideoError, match=named):
            deband_video(source, tmp_path / "no.mp4", lambda rgb: rgb, codec="libx264", codec_options=options)


def test_a_crf_and_a_bitrate_together_are_refused(source, tmp_path):
    """x264 and x265 take a CRF over b=, silently: asking for both is a mistake to say."""
    with pytest.raises(VideoError, match=r"libx265 takes a CRF or a bitrate \(b=\), not both"):
        deband_video(source, tmp_path / "o.mkv", lambda rgb: rgb, crf=20, codec_options={"b": "1M"})


def test_preset_and_codec_options_reach_the_encoder(source, tmp_path):
    default = deband_video(source, tmp_path / "default.mp4", lambda rgb: rgb, codec="libx264", progress=False)
    fast = deband_video(
        source, tmp_path / "fast.mp4", lambda rgb: rgb, codec="libx264", preset="ultrafast",
        codec_options={"g": 6, "tune": "grain"}, progress=False,
    )  # fmt: skip
    assert default.frames == fast.frames == N
    before, after = _x26x_settings(default.dst), _x26x_settings(fast.dst)
    assert (before["subme"], after["subme"]) == ("7", "0")  # medium, ultrafast
    assert (before["keyint"], after["keyint"]) == ("250", "6")
    assert (before["deadzone"], after["deadzone"]) == ("21,11", "6,6")  # tune=grain
    assert before["crf"].startswith("18.0") and after["crf"].startswith("18.0")  # ours stays
    # x265-params are added to bdinn's own (log-level=error keeps x265 quiet), the caller's last
    hevc = deband_video(
        source, tmp_path / "hevc.mkv", lambda rgb: rgb, preset="superfast",
        codec_options={"x265-params": "keyint=5:min-keyint=5"}, progress=False,
    )  # fmt: skip
    settings = _x26x_settings(hevc.dst)
    assert (settings["keyint"], settings["min-keyint"], settings["log-level"]) == ("5", "5", "0")
    assert settings["rd"] == "2"  # superfast; medium is 3
    assert probe(hevc.dst)["codec"] == "hevc" and len(probe(hevc.dst)["times"]) == N


def test_encoder_checks_work_with_standard_error_closed():
    """The trial open captures file descriptor 2; a program started with it closed (2>&-) still
    gets its answers."""
    code = (
        "from bdinn.runtime.video import VideoError, check_encoder\n"
        "print(check_encoder('out.mkv', codec_options={'g': 5})[2]['g'])\n"
        "try:\n    check_encoder('out.mkv', codec='libx264', codec_options={'tune': 'nonsense'})\n"
        "except VideoError as exc:\n    print('refused:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(2),
    )
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == "5"
    assert "refused: out.mkv: libx264 refuses the option tune=nonsense" in done.stdout


def test_encoder_checks_from_several_threads_leave_standard_error_where_it_was():
    """Jobs started together in a thread pool: two overlapping trial opens each put back the
    standard error the other had set, and the process's went on into a deleted temporary file."""
    from concurrent.futures import ThreadPoolExecutor

    from bdinn.runtime.video import check_encoder

    before = os.fstat(2)

    def check(n: int) -> str:
        try:
            check_encoder("out.mkv", codec="libx264", codec_options={"tune": ("grain", "nonsense")[n % 2]})
        except VideoError as exc:
            return str(exc)
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        said = list(pool.map(check, range(32)))
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert said[0::2] == ["ok"] * 16
    assert all("libx264 refuses the option tune=nonsense" in line for line in said[1::2])


def test_a_file_cut_short_is_written_with_a_warning(tmp_path):
    """An MP4 with its index in front (faststart) and its last third missing still decodes."""
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with av.open(str(whole)) as source:  # cut after the 20th packet, as a copy stopped there
        end = [packet.pos + packet.size for packet in source.demux(video=0) if packet.size][19]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:end])
    with pytest.warns(
        UserWarning, match=r"cut\.mp4: decoded \d+ of the 30 frames its header lists"
    ) as caught:
        report = deband_video(cut, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert report.frames == 20 and caught[0].filename == __file__


def test_frames_an_edit_list_hides_are_not_taken_for_a_cut(tmp_path):
    """An MP4 whose edit list hides its first two frames lists six but shows four: no warning."""
    source = tmp_path / "edit-list.mp4"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
            frame.pts, frame.time_base = (i - 2) * 40, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert report.frames == 4


def test_variable_frame_rate_into_y4m_or_avi_is_warned_about(tmp_path):
    """Y4M and AVI count frames: irregular times are lost there, and kept in MKV."""
    source = tmp_path / "vfr.mkv"
    times = [0, 40, 50, 130, 140, 400]  # milliseconds
    with av.open(str(source), "w") as out:
        stream = out.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, ms in enumerate(times):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    for name, what in (("out.y4m", "Y4M"), ("out.avi", "AVI")):
        with pytest.warns(
            UserWarning, match=rf"out\.{name[4:]}: the source's frame times are irregular .* {what}"
        ):
            deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
        deband_video(source, tmp_path / "out.mp4", lambda rgb: rgb, progress=False)  # kept off the grid
    assert probe(tmp_path / "out.mkv")["times"] == pytest.approx([t / 1000 for t in times])
    assert probe(tmp_path / "out.mp4")["times"] == pytest.approx([t / 1000 for t in times], abs=1e-6)
    regular = make_clip(tmp_path / "regular.mkv", "yuv420p")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("r.y4m", "r.avi"):
            deband_video(regular, tmp_path / name, lambda rgb: rgb, progress=False)


def test_is_video():
    assert all(
        is_video(f"clip{suffix}")
        for suffix in (
            ".mp4",
            ".MKV",
            ".mov",
            ".webm",
            ".avi",
            ".m4v",
            ".ts",
            ".y4m",
            ".mpg",
            ".MXF",
            ".m2ts",
        )
    )
    assert not any(is_video(name) for name in ("frame.png", "clip", "notes.txt"))


def _threads_left_since(before: set[threading.Thread]) -> list[str]:
    """Threads started since `before` and still running, but the shared row pool's workers
    (runtime/processing.py), which stay by design. Threads of earlier tests, which may end at any
    moment (a model closed by the garbage collector), are none of this test's business."""
    started = set(threading.enumerate()) - before
    return sorted(t.name for t in started if not t.name.startswith("bdinn-rows"))


def test_error_in_process_stops_everything_and_leaves_nothing(source, tmp_path):
    baseline = set(threading.enumerate())
    calls = []

    def fails_on_frame_3(rgb):
        if len(calls) == 3:
            raise RuntimeError("inference blew up")
        calls.append(1)
        return rgb

    done = []
    with pytest.raises(RuntimeError, match="inference blew up"):
        deband_video(
            source, tmp_path / "out.mkv", fails_on_frame_3, progress=lambda n, total: done.append((n, total))
        )
    assert done == [(1, N), (2, N), (3, N)]
    assert _listing(tmp_path) == []  # no output, no temporary file
    assert _threads_left_since(baseline) == []


@pytest.mark.parametrize(("sig", "said"), [(signal.SIGTERM, "Terminated."), (signal.SIGHUP, "Hangup.")])
def test_a_stopping_signal_under_a_command_stops_cleanly(source, tmp_path, capsys, request, sig, said):
    """`timeout`, docker stop or a batch scheduler send SIGTERM, a dropped SSH session SIGHUP: the
    commands clean up as for Ctrl-C (SIGHUP left the temporary output behind)."""
    import os
    import time

    from bdinn.runtime.cli_options import stops_cleanly

    if sig == signal.SIGHUP:  # under nohup it starts ignored, and stops_cleanly rightly keeps it so
        previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
        request.addfinalizer(lambda: signal.signal(signal.SIGHUP, previous))
    before = signal.getsignal(sig)
    baseline = set(threading.enumerate())

    def terminated(rgb):
        os.kill(os.getpid(), sig)  # while decoding and encoding threads run
        time.sleep(5)  # the handler interrupts this at once
        return rgb

    command = stops_cleanly(lambda: deband_video(source, tmp_path / "out.mkv", terminated, progress=False))
    started = time.monotonic()
    with pytest.raises(SystemExit) as info:
        command()
    assert info.value.code == 128 + sig and time.monotonic() - started < 4
    assert capsys.readouterr().err.endswith(f"{said}\n")  # a log says why the run ended
    assert _listing(tmp_path) == []  # no output, no temporary file
    assert _threads_left_since(baseline) == []
    assert signal.getsignal(sig) is before

    def interrupted(rgb):
        raise KeyboardInterrupt  # Ctrl-C: the same clean-up, and the shell's status 130

    command = stops_cleanly(lambda: deband_video(source, tmp_path / "out.mkv", interrupted, progress=False))
    with pytest.raises(SystemExit) as info:
        command()
    assert info.value.code == 128 + signal.SIGINT and _listing(tmp_path) == []


def test_a_hangup_that_nohup_ignores_stays_ignored():
    from bdinn.runtime.cli_options import stops_cleanly

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert stops_cleanly(lambda: signal.getsignal(signal.SIGHUP))() is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def _noise_video(path: Path, frames: int) -> Path:
    """A lossless (FFV1) video of noise: it compresses to nothing less than itself."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        noise = np.random.default_rng(0).integers(0, 256, (H, W, 3), np.uint8)
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.roll(noise, i, axis=1))))
        out.mux(stream.encode(None))
    return path


def test_a_full_disk_is_the_outputs_problem_not_the_encoders(tmp_path):
    """ENOSPC or EFBIG while encoding said "encoding with FFV1 failed"; it is the output location's
    one-line error, as for pictures, and nothing is left behind. A real file-size limit here."""
    source = _noise_video(tmp_path / "noise.mkv", 60)
    out = tmp_path / "out"
    out.mkdir()
    child = (
        "import resource\n"
        "from bdinn.runtime.video import deband_video\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    deband_video({str(source)!r}, {str(out / 'big.mkv')!r}, lambda rgb: rgb, codec='ffv1',\n"
        "                 progress=False)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert done.stdout == (
        f"OutputError {out / 'big.mkv'}: cannot write there (File too large); choose another output or check "
        "that its folder is writable and has space\n"
    ), done.stderr
    assert _listing(out) == []


def _stopped_by(
    sig: int, child: str, feed: bytes = b"", reads_stdout: bool = True, again: float | None = None
) -> tuple[int, bytes]:
    """(exit status, stderr) of a Python `child` sent `sig` once it printed 'ready' to stderr (and
    once more `again` seconds later), with its standard input given `feed` and left open (the
    writer stalls), and its standard output read or not (the reader stalls). A child still running
    10 s after the signal fails the test."""
    process = subprocess.Popen(
        [sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdin.write(feed)
    process.stdin.flush()
    assert process.stderr.readline() == b"ready\n"
    if reads_stdout:
        threading.Thread(target=process.stdout.read, daemon=True).start()
    time.sleep(1.5)  # blocked on the pipe by now
    process.send_signal(sig)
    if again is not None:  # an impatient user
        time.sleep(again)
        process.send_signal(sig)
    try:
        process.wait(timeout=10)
    finally:
        process.kill()
    return process.returncode, process.stderr.read()


_CHILD = (
    "import signal, sys\n"
    "import av  # imported before 'ready', so that the wait is spent on the pipe\n"
    "from bdinn.runtime.video import deband_video\n"
    "signal.signal(signal.SIGTERM, lambda n, f: sys.exit(128 + n))\n"
    "print('ready', file=sys.stderr, flush=True)\n"
    "try:\n"
    "    deband_video({src!r}, {dst!r}, lambda rgb: rgb, progress=False)\n"
    "except KeyboardInterrupt:\n"
    "    sys.exit(130)\n"
)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("sent", ["nothing", "a few frames"])
def test_a_signal_while_standard_input_stalls_stops_the_job(source, tmp_path, sig, status, sent):
    """Ctrl-C or SIGTERM while the writer of standard input sends nothing (yet, or more) stops as a
    signal, at once. FFmpeg's own pipe reader retried the interrupted read until the writer closed
    the pipe (an earlier version of this test closed it, and so missed that)."""
    feed = b"" if sent == "nothing" else _y4m_of(tmp_path)[:20000]  # the header and a few frames
    dst = tmp_path / "out" / "out.mkv"
    dst.parent.mkdir()
    returncode, stderr = _stopped_by(sig, _CHILD.format(src="-", dst=str(dst)), feed)
    assert returncode == status, stderr.decode()
    assert _listing(dst.parent) == []


def _y4m_of(tmp_path: Path) -> bytes:
    """A short Y4M stream, as a pipe would carry it."""
    deband_video(make_video(tmp_path / "silent.mkv", audio=False), tmp_path / "in.y4m", lambda rgb: rgb,
                 progress=False)  # fmt: skip
    return (tmp_path / "in.y4m").read_bytes()


def test_a_signal_whose_handler_runs_inside_a_read_of_standard_input_is_not_lost(tmp_path):
    """FFmpeg probes a pipe without the interpreter lock, so a signal's handler often runs at the
    next line of Python, inside PyAV's read callback, which drops what it raises: the job then ran
    to its end. Here the handler is made to run there every time."""
    dst = tmp_path / "out" / "out.mkv"
    dst.parent.mkdir()
    child = (
        "import os, signal, sys\n"
        "from bdinn.runtime import video_source\n"
        "from bdinn.runtime.video import deband_video\n"
        "real = video_source.StandardInput.read\n"
        "def read(self, size):\n"
        "    if not hasattr(self, 'signalled'):\n"
        "        self.signalled = os.kill(os.getpid(), signal.SIGINT)  # handled before the next line\n"
        "    return real(self, size)\n"
        "video_source.StandardInput.read = read\n"
        "try:\n"
        f"    deband_video('-', {str(dst)!r}, lambda rgb: rgb, progress=False)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], input=_y4m_of(tmp_path), capture_output=True, timeout=300
    )
    assert done.returncode == 130, done.stderr.decode()
    assert _listing(dst.parent) == []


@pytest.mark.parametrize(
    ("suffix", "size", "reads"),
    [(".y4m", 8192, 2), (".ts", 400, 2), (".ts", 400, 3)],  # while decoding; while FFmpeg probes
)
def test_standard_input_that_breaks_is_an_error_not_the_end(tmp_path, suffix, size, reads):
    """A read of standard input that fails (EIO, a reset connection) ended the stream quietly: the
    job reported success and left a cut-short (here empty) output, or, where FFmpeg's probe made do
    with what it had, said the stream had no picture size."""
    silent = make_video(tmp_path / "silent.mkv", audio=False)
    deband_video(silent, tmp_path / f"in{suffix}", lambda rgb: rgb, progress=False)
    dst = tmp_path / "out" / "out.mkv"
    dst.parent.mkdir()
    child = (
        "import errno, os\n"
        "from bdinn.runtime.video import deband_video\n"
        "real, calls = os.read, []\n"
        "def read(fd, size):\n"
        "    calls.append(fd)\n"
        f"    if len(calls) > {reads}:  # then the pipe breaks\n"
        "        raise OSError(errno.EIO, os.strerror(errno.EIO))\n"
        f"    return real(fd, min(size, {size}))\n"
        "os.read = read\n"
        "try:\n"
        f"    deband_video('-', {str(dst)!r}, lambda rgb: rgb, progress=False)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    feed = (tmp_path / f"in{suffix}").read_bytes()
    done = subprocess.run([sys.executable, "-c", child], input=feed, capture_output=True, timeout=300)
    assert done.stdout.decode() == "VideoError <stdin>: cannot read standard input (Input/output error)\n"
    assert _listing(dst.parent) == []


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("again", [None, 0.3])
def test_a_signal_while_the_reader_of_standard_output_stalls_stops_the_job(tmp_path, sig, status, again):
    """The encode thread is blocked inside FFmpeg writing to a pipe nobody reads: the job waited for
    it forever and swallowed every further Ctrl-C. It is now left behind after a moment, also when
    a second signal comes while it is waited for (Python's Thread.join, interrupted, then called
    the thread ended, and the output was closed under it: that hung)."""
    long = _noise_video(tmp_path / "long.mkv", 200)  # far more Y4M than a pipe holds
    child = _CHILD.format(src=str(long), dst="-")
    returncode, stderr = _stopped_by(sig, child, reads_stdout=False, again=again)
    assert returncode == status, stderr.decode()


def test_a_signal_while_a_named_pipe_source_stalls_stops_the_job(tmp_path):
    """A named pipe given by its path is read by FFmpeg's own reader, which a signal does not
    interrupt: the decode thread is left behind as a stalled standard output's encode thread is."""
    fifo = tmp_path / "feed.y4m"
    os.mkfifo(fifo)
    feed = _y4m_of(tmp_path)[:20000]
    writer_done = threading.Event()

    def write_and_stall() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(feed)
            pipe.flush()
            writer_done.wait(30)

    threading.Thread(target=write_and_stall, daemon=True).start()
    dst = tmp_path / "out" / "out.mkv"
    dst.parent.mkdir()
    try:
        returncode, stderr = _stopped_by(signal.SIGINT, _CHILD.format(src=str(fifo), dst=str(dst)))
    finally:
        writer_done.set()
    assert returncode == 130, stderr.decode()
    assert _listing(dst.parent) == []


def test_a_signal_handler_that_returns_does_not_disturb_opening_standard_input(tmp_path):
    """A program whose SIGINT handler only sets a flag (a notebook's "cancel") got a probe cut
    short ("not a video stream") when the signal came while standard input was opened."""
    child = (
        "import os, signal\n"
        "from bdinn.runtime import video_source\n"
        "from bdinn.runtime.video import deband_video\n"
        "flags = []\n"
        "signal.signal(signal.SIGINT, lambda n, f: flags.append(n))\n"
        "real = video_source.StandardInput.read\n"
        "def read(self, size):\n"
        "    if not flags:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(self, size)\n"
        "video_source.StandardInput.read = read\n"
        f"report = deband_video('-', {str(tmp_path / 'out.mkv')!r}, lambda rgb: rgb, progress=False)\n"
        "print(report.frames, flags)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], input=_y4m_of(tmp_path), capture_output=True, timeout=300
    )
    assert done.stdout.decode() == f"{N} [{int(signal.SIGINT)}]\n", done.stderr.decode()


@pytest.mark.parametrize("stage", ["decode_rgb", "encode_frame"])
def test_error_in_the_decode_or_encode_thread_is_raised(source, tmp_path, monkeypatch, stage):
    from bdinn.runtime import video_frames

    baseline = set(threading.enumerate())
    real, calls = getattr(video_frames, stage), []

    def fails_on_call_3(*args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(f"{stage} blew up")
        return real(*args)

    monkeypatch.setattr(video_frames, stage, fails_on_call_3)
    with pytest.raises(OSError, match=f"{stage} blew up"):
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert _listing(tmp_path) == []
    assert _threads_left_since(baseline) == []


def test_wrong_process_output_is_a_video_error(source, tmp_path):
    with pytest.raises(
        VideoError, match=r"process returned float32 \(48, 64, 3\) for frame 0; return 48 x 64 x 3"
    ):
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb.astype(np.float32), progress=False)
    assert _listing(tmp_path) == []


def test_frame_rate_and_time_base_of_a_25_fps_source(tmp_path):
    # A Matroska source (1 ms time base) at 25 fps: timestamps come through unchanged.
    src = tmp_path / "pal.mkv"
    with av.open(str(src), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.codec_context.time_base = Fraction(1, 25)
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(src, tmp_path / "out.mp4", lambda rgb: rgb, progress=False)
    after = probe(tmp_path / "out.mp4")
    assert report.frame_rate == 25 and after["rate"] == 25
    assert after["times"] == pytest.approx([i / 25 for i in range(6)], abs=1e-3)
    assert after["audio"] == [] and report.audio_streams == 0


ASS_FILE = """[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, Bold, Italic, Alignment, MarginL, MarginR, MarginV
Style: Default,Arial,16,&Hffffff,0,0,2,10,10,10

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:00.04,0:00:00.12,Default,,0,0,0,,{\\i1}Hello{\\i0}, you\\Nthere
Dialogue: 0,0:00:00.12,0:00:00.20,Default,,0,0,0,,{\\p1}m 0 0 l 100 0 100 100{\\p0}
Dialogue: 0,0:00:00.20,0:00:00.30,Default,,0,0,0,,World
"""


@pytest.mark.parametrize(
    ("subtitles", "dst", "written", "cues"),
    [
        ("srt", "out.mp4", "mov_text", [("Hello", 0.04, 0.12), ("World", 0.2, 0.3)]),
        ("srt", "out.mov", "mov_text", [("Hello", 0.04, 0.12), ("World", 0.2, 0.3)]),
        ("srt", "out.webm", "webvtt", [("Hello", 0.04, 0.12), ("World", 0.2, 0.3)]),
        ("ass", "out.mp4", "mov_text", [("Hello, you\nthere", 0.04, 0.12), ("World", 0.2, 0.3)]),
        ("vtt", "out.mp4", "mov_text", [("Hello & you", 0.04, 0.12), ("World", 0.2, 0.3)]),
    ],
)
def test_text_subtitles_are_rewritten_into_the_containers_own_text_codec(
    tmp_path, subtitles, dst, written, cues
):
    """MP4/MOV hold mov_text only and WebM WebVTT only: a film's SubRip, ASS or WebVTT cues are
    rewritten as plain text (styling and ASS drawings left out), times exact."""
    texts = {"srt": SUBTITLES.replace("Hello", "<i>Hello</i>"), "ass": ASS_FILE,
             "vtt": "WEBVTT\n\n00:00:00.040 --> 00:00:00.120\n<v Bob><b>Hello</b> &amp; you\n\n"
                    "00:00:00.200 --> 00:00:00.300 align:start\nWorld\n\n"}  # fmt: skip
    subtitle_file = tmp_path / f"cues.{subtitles}"
    subtitle_file.write_text(texts[subtitles])
    source = film_with(tmp_path / "film.mkv", subtitle_file)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / dst, lambda rgb: rgb, progress=False)
    after = _extras(tmp_path / dst)
    assert [name for name, _ in after["subtitles"]] == [written] and report.subtitle_streams == 1
    if written == "webvtt":
        cues = [(text.replace("&", "&amp;"), start, end) for text, start, end in cues]  # WebVTT escapes
    assert after["cues"] == cues


def test_overlapping_cues_keep_their_times_in_mp4_and_show_white(tmp_path):
    """MP4's text samples cannot overlap (its muxer would shift every later cue): a sign on screen
    while a line comes and goes is written as three back-to-back samples. The track's default
    style is white text."""
    srt = tmp_path / "cues.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,300\nSIGN\n\n2\n00:00:00,100 --> 00:00:00,200\nLine\n\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deband_video(
            film_with(tmp_path / "film.mkv", srt), tmp_path / "out.mp4", lambda rgb: rgb, progress=False
        )
    assert _extras(tmp_path / "out.mp4")["cues"] == [
        ("SIGN", 0.0, 0.1),
        ("SIGN\nLine", 0.1, 0.2),
        ("SIGN", 0.2, 0.3),
    ]
    with av.open(str(tmp_path / "out.mp4")) as out:
        sample_entry = out.streams.subtitles[0].codec_context.extradata
    assert sample_entry[26:30] == b"\xff\xff\xff\xff"  # tx3g default style: text colour RGBA


def test_names_that_look_like_ffmpeg_protocols_are_files(tmp_path, monkeypatch):
    """FFmpeg reads "NAME:" at the start of a relative name as a protocol: a file called
    concat:a.mkv played a.mkv (2 frames) instead of itself (1), and an output x:y.mkv failed with
    "Protocol not found" (its temporary file, .x:y.mkv...tmp, named protocol ".x")."""
    monkeypatch.chdir(tmp_path)
    make_clip(tmp_path / "a.mkv", "yuv420p", frames=2)
    make_clip(tmp_path / "concat:a.mkv", "yuv420p", frames=1)
    assert deband_video("concat:a.mkv", "out.mkv", lambda rgb: rgb, progress=False).frames == 1
    assert deband_video("a.mkv", "x:y.mkv", lambda rgb: rgb, progress=False).frames == 2
    assert len(probe(tmp_path / "x:y.mkv")["times"]) == 2


def test_a_crowd_of_overlapping_cues_is_capped_in_mp4_with_a_warning(tmp_path):
    """Each MP4 sample repeats every text on screen: 10,000 cues over one another in a 722 KB file
    became a 1.2 GB MP4, in time and memory growing with their square. A screenful is kept."""
    srt = tmp_path / "crowd.srt"
    srt.write_text("".join(f"{i + 1}\n00:00:00,{i:03d} --> 00:00:00,300\ncue {i}\n\n" for i in range(200)))
    source = film_with(tmp_path / "film.mkv", srt)
    with pytest.warns(UserWarning, match=r"subtitle stream 1: 192 cues dropped, each shown while 8 others"):
        deband_video(source, tmp_path / "out.mp4", lambda rgb: rgb, progress=False)
    cues = _extras(tmp_path / "out.mp4")["cues"]
    assert max(len(text.splitlines()) for text, _, _ in cues) == 8
    assert [text.splitlines()[-1] for text, _, _ in cues[:8]] == [f"cue {i}" for i in range(8)]


def test_subtitles_that_are_not_utf8_are_read_as_windows_1252_with_a_warning(tmp_path):
    srt = tmp_path / "old.srt"
    srt.write_bytes("1\n00:00:00,040 --> 00:00:00,120\nÇa va, café crème\n\n".encode("cp1252"))
    film = film_with(tmp_path / "film.mkv", srt)
    with pytest.warns(UserWarning, match=r"film\.mkv: subtitle stream 1 is not UTF-8; its text was read as"):
        deband_video(film, tmp_path / "out.mp4", lambda rgb: rgb, progress=False)
    assert _extras(tmp_path / "out.mp4")["cues"] == [("Ça va, café crème", 0.04, 0.12)]


def _timecoded(path: Path, timecode: str, rate: Fraction = Fraction(FPS)) -> Path:
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.metadata["timecode"] = timecode  # MOV and MP4 write it as a tmcd track
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def _timecodes(path: Path) -> list[str | None]:
    with av.open(str(path)) as src:
        return [
            next((v for k, v in s.metadata.items() if k.lower() == "timecode"), None) for s in src.streams
        ]


@pytest.mark.parametrize("source", ["in.mov", "in.mkv"])
def test_the_start_timecode_is_kept_where_the_container_holds_one(tmp_path, source):
    """Masters carry the timecode of their first frame (a MOV tmcd track, a Matroska tag)."""
    film = _timecoded(tmp_path / source, "01:02:03:04")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("out.mov", "out.mp4", "out.mkv", "out.webm"):
            deband_video(film, tmp_path / name, lambda rgb: rgb, progress=False)
            assert "01:02:03:04" in _timecodes(tmp_path / name)
    with pytest.warns(
        UserWarning, match=r"out\.ts: a \.ts file cannot hold the source's timecode 01:02:03:04"
    ):
        deband_video(film, tmp_path / "out.ts", lambda rgb: rgb, progress=False)
    drop_frame = _timecoded(tmp_path / "ntsc.mov", "00:59:59;28", Fraction(30000, 1001))
    deband_video(drop_frame, tmp_path / "ntsc-out.mov", lambda rgb: rgb, progress=False)
    assert _timecodes(tmp_path / "ntsc-out.mov")[0] == "00:59:59;28"


def test_a_second_video_stream_is_dropped_with_a_warning(tmp_path):
    """A multi-angle or picture-in-picture file: only the first video stream is debanded."""
    source = tmp_path / "angles.mkv"
    with av.open(str(source), "w") as out:
        streams = [out.add_stream("libx264", rate=FPS) for _ in range(2)]
        for stream in streams:
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(N):
            for stream in streams:
                frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
        for stream in streams:
            out.mux(stream.encode(None))
    with pytest.warns(
        UserWarning, match=r"angles\.mkv: 2 video streams; the first is debanded and the other is dropped "
    ):
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert report.frames == N and probe(tmp_path / "out.mkv")["size"] == (W, H)
    with av.open(str(tmp_path / "out.mkv")) as out:
        assert len(out.streams.video) == 1


def test_a_damaged_recording_is_debanded_as_far_as_it_decodes_with_a_warning(tmp_path):
    """Broadcast captures lose packets: FFmpeg conceals the errors, and the user is told."""
    clip = make_clip(tmp_path / "capture.ts", "yuv420p", "libx264", size=(160, 120), frames=60, threads=1)
    data = bytearray(clip.read_bytes())
    for offset in range(len(data) // 3, len(data) // 3 + 3000, 97):  # a burst of flipped bytes
        data[offset] ^= 0x5A
    clip.write_bytes(bytes(data))
    with pytest.warns(
        UserWarning,
        match=r"capture\.ts: damaged \(\d+ broken video packet\(s\), \d+ frame\(s\) decoded with errors\)",
    ):
        report = deband_video(clip, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    # How much is found broken and how many frames are lost, the demuxer's resync and the threaded
    # decoder's concealment decide: some packets (refused ones too), 1 to 6 frames, 55 to 59 of 60
    # frames kept, seen.
    assert 50 <= report.frames <= 60 and probe(tmp_path / "out.mkv")["size"] == (160, 120)


def test_a_packet_the_decoder_refuses_is_skipped_with_a_warning(tmp_path):
    """FFmpeg's own program goes on past a packet its decoder refuses; deband_video stopped with
    "cannot decode the file". With H.264 the refusal comes or not by thread timing (the test
    above failed so once under PyAV 19); an FFV1 frame's refusal is certain."""
    clip = make_clip(tmp_path / "damaged.mkv", "yuv420p", "ffv1", frames=6)
    with av.open(str(clip)) as src:
        pos, size = [(p.pos, p.size) for p in src.demux(src.streams.video[0]) if p.size][2]
    data = bytearray(clip.read_bytes())
    for offset in range(pos + size // 3, pos + size - 4, 3):
        data[offset] ^= 0xFF
    clip.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"damaged\.mkv: damaged \(1 broken video packet\(s\), 0 frame\(s\)"):
        report = deband_video(clip, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert report.frames == 5 and len(probe(tmp_path / "out.mkv")["times"]) == 5


def _torch_buffer():
    try:
        import torch
    except ImportError:
        return None
    return torch.empty((H, W, 3), dtype=torch.uint8)


def test_one_buffer_handed_back_for_every_frame_is_refused(source, tmp_path):
    """Frames wait in a queue to be encoded: a process that wrote each frame into one buffer of its
    own came out as repeated frames and lost ones, without a word. A ring of buffers, views of
    one and a torch tensor's memory are caught as well; a new array or the input itself is fine."""
    buffers = [np.empty((H, W, 3), np.uint8) for _ in range(3)]
    pool = np.empty((N, H, W, 3), np.uint8)

    def into(target):
        def process(rgb):
            out = target()
            np.copyto(out, rgb)
            return out

        return process

    count = itertools.count()
    for process, earlier in [
        (into(lambda: buffers[0]), "frame 0"),
        (into(lambda: buffers[next(count) % 3]), "frame 0"),
        (into(lambda: buffers[0][:, :]), "frame 0"),
        *([(into(tensor.numpy), "frame 0")] if (tensor := _torch_buffer()) is not None else []),
    ]:
        said = rf"source\.mp4: process returned, for frame \d, memory it returned for {earlier}: "
        with pytest.raises(VideoError, match=said + r".* return a new array for each frame \(or a copy\)"):
            deband_video(source, tmp_path / "out.mkv", process, progress=False)
        assert _listing(tmp_path) == []

    slots = itertools.count()  # a slot of its own for every frame shares no memory
    report = deband_video(source, tmp_path / "pool.mkv", into(lambda: pool[next(slots)]), progress=False)
    assert report.frames == N
    report = deband_video(source, tmp_path / "same.mkv", lambda rgb: np.add(rgb, 0, out=rgb), progress=False)
    assert report.frames == N


def _flat_ts(path: Path, size: tuple[int, int], start: int, frames: int = 4) -> bytes:
    """MPEG-TS of flat grey frames 30 levels apart, numbered from `start`."""
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(start, start + frames):
            grey = np.full((size[1], size[0], 3), 30 * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(grey, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path.read_bytes()


@pytest.mark.filterwarnings("ignore:.*joined.ts. damaged")  # two TS files joined: a continuity break
def test_a_change_of_picture_size_is_scaled_to_the_first_with_a_warning(tmp_path):
    """A capture that switches format mid-stream (two TS segments joined): its later frames were
    scaled to the first size by PyAV's encoder without a word; now scaled by us, and said."""
    joined = tmp_path / "joined.ts"
    joined.write_bytes(_flat_ts(tmp_path / "a.ts", (W, H), 0) + _flat_ts(tmp_path / "b.ts", (48, 32), 4))
    with pytest.warns(
        UserWarning,
        match=rf"joined\.ts: the picture size changes from {W}x{H} to 48x32 at frame 4; a video keeps one "
        rf"size, so 4 frame\(s\) were scaled to {W}x{H} .*cut the source at the change first",
    ):
        report = deband_video(joined, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    after = probe(tmp_path / "out.mkv")
    assert report.frames == 8 and after["size"] == (W, H)
    assert [round(float(rgb.mean()) / 30) for rgb in after["rgb"]] == list(range(8))


@pytest.mark.filterwarnings("ignore:.*joined.ts. damaged")
def test_bdinn_run_names_the_video_whose_frames_shrink_below_what_it_debands(tmp_path):
    """Its error was the model's alone ("image is 8x8; bdinn needs at least 16x16"), naming no file."""
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    from click.testing import CliRunner

    from bdinn.runtime.run_cli import main

    joined = tmp_path / "joined.ts"
    joined.write_bytes(_flat_ts(tmp_path / "a.ts", (W, H), 0) + _flat_ts(tmp_path / "b.ts", (8, 8), 4))
    result = CliRunner().invoke(main, [str(joined), "-o", str(tmp_path / "out.mkv"), "-q"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"bdinn-run: error: {joined}: image is 8x8; bdinn needs at least 16x16 (pad or enlarge it)\n"
    )
    assert not (tmp_path / "out.mkv").exists()


def test_a_matroska_file_cut_short_is_written_with_a_warning(tmp_path):
    """Matroska lists no frame count, so a file cut in half (a copy stopped there) was written
    short without a word; its header's duration of the video track says what should have been
    there (the file's own would take audio that runs on after the pictures for a cut)."""
    whole = tmp_path / "whole.mkv"
    with av.open(str(whole), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        audio = out.add_stream("flac", rate=RATE)
        audio.codec_context.layout = "mono"
        noise = np.random.default_rng(0)
        for i in range(50):
            picture = noise.integers(0, 256, (H, W, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        _mux_silence(out, audio, 4.0)  # 4 s of sound under 2 s of pictures
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert deband_video(whole, tmp_path / "a.mkv", lambda rgb: rgb, progress=False).frames == 50
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    said = r"cut\.mkv: decoded 0\.\d\d s of video, but its header says its video lasts 2\.00 s; .* cut short"
    with pytest.warns(UserWarning, match=said):
        report = deband_video(cut, tmp_path / "b.mkv", lambda rgb: rgb, progress=False)
    assert 10 < report.frames < 40
    # A tenth of a file missing is a cut too (that threshold let an hour lose six minutes unsaid).
    with av.open(str(whole)) as source:
        end = [packet.pos for packet in source.demux(video=0) if packet.size][34]
    cut.write_bytes(whole.read_bytes()[:end])
    with pytest.warns(UserWarning, match=r"cut\.mkv: decoded 1\.\d\d s of video, but .* lasts 2\.00 s"):
        report = deband_video(cut, tmp_path / "c.mkv", lambda rgb: rgb, progress=False)
    assert 30 <= report.frames <= 36


def test_a_capture_from_mid_broadcast_starts_at_zero_with_its_streams_in_step(tmp_path):
    """A TS cut from a broadcast starts hours into its clock, or just before it wraps at 2^33:
    kept as they were, an MP4 began with 10 hours of nothing, AVI failed, and the frames before
    the wrap (negative after FFmpeg unwraps) were hidden by MP4's edit list. Every stream's clock
    now starts where the file starts, as FFmpeg's do, the audio still as far behind the video
    (within AAC's priming, 21 ms, where MP4 re-encodes it)."""
    for start in (10 * 3600 * 90000, 2**33 - 45000):
        source = tmp_path / f"capture-{start}.ts"
        with av.open(str(source), "w") as out:
            video = out.add_stream("libx264", rate=FPS)
            video.width, video.height, video.pix_fmt = W, H, "yuv420p"
            audio = out.add_stream("mp2", rate=RATE)
            audio.codec_context.layout = "mono"
            for i in range(N):
                frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
                frame.pts, frame.time_base = start + i * 90000 // FPS, Fraction(1, 90000)
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
            _mux_silence(out, audio, 0.5, start=round((start / 90000 + 0.2) * RATE))
        with av.open(str(source)) as probe_:
            late = float((probe_.streams.audio[0].start_time - probe_.streams.video[0].start_time) / 90000)
        assert abs(late - 0.2) < 0.03
        for name in ("out.mp4", "out.mkv", "out.avi"):
            dst = tmp_path / name
            report = deband_video(source, dst, lambda rgb: rgb, progress=False, force=True)
            with av.open(str(dst)) as result:
                firsts = {
                    s.type: float(s.start_time * s.time_base)
                    for s in result.streams
                    if s.start_time is not None
                }
                frames = sum(1 for _ in result.decode(video=0))
            assert report.frames == frames == N
            assert firsts["video"] < 1 / FPS, firsts
            if name != "out.avi":  # AVI's audio has no start time of its own
                assert abs(firsts["audio"] - firsts["video"] - late) < 0.03, firsts


def test_recordings_joined_end_to_end_run_on_past_the_clock_jump(tmp_path):
    """Two MPEG-TS recordings joined byte for byte (as `cat` joins captures) restart the clock
    halfway. The frames after the jump all came out at one time, and the copied sound, going back
    in time, made the muxer fail after the work; every stream now runs on past it, as in FFmpeg."""
    segment = make_video(tmp_path / "segment.ts")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(segment.read_bytes() * 2)
    with av.open(str(segment)) as one:
        sound = float(one.streams.audio[0].duration * one.streams.audio[0].time_base)
    for name in ("out.mkv", "out.mp4"):
        with pytest.warns(UserWarning, match=r"joined\.ts: its clock jumps 1 time\(s\)"):
            report = deband_video(joined, tmp_path / name, lambda rgb: rgb, progress=False)
        info = probe(tmp_path / name)
        times = info["times"]
        assert report.frames == len(times) == 2 * N
        assert all(b - a > 0.5 / FPS for a, b in itertools.pairwise(times)), times
        assert abs(times[-1] - times[0] - (2 * N - 1) / FPS) < 1.5 / FPS, times
        assert abs(info["audio"][0][1] - 2 * sound) < 0.05, (info["audio"], sound)


def _capture_streams(out: av.container.OutputContainer, tracks: int) -> tuple[av.VideoStream, list]:
    """The streams of the captures below: 5 fps H.264 without B-frames (cut in display order as in
    decode order) and `tracks` mono AAC tracks."""
    video = out.add_stream("libx264", rate=5)
    video.width, video.height, video.pix_fmt = W, H, "yuv420p"
    video.options = {"bf": "0"}
    sound = [out.add_stream("aac", rate=RATE) for _ in range(tracks)]
    for track in sound:
        track.codec_context.layout = "mono"
    return video, sound


def _ts_with_gaps(path: Path, seconds: int, video_gap: float, track_gaps: tuple[float, ...]) -> Path:
    """An MPEG-TS of `seconds` of 5 fps video and one AAC track per entry of `track_gaps`: from
    1 s on, the video's packets are `video_gap` s later and each track's its own gap later."""
    with av.open(str(path), "w") as out:
        video, tracks = _capture_streams(out, len(track_gaps))
        packets = []
        for i in range(seconds * 5):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
            frame.pts = i
            packets += video.encode(frame)
        shifted = [(p, video_gap) for p in [*packets, *video.encode(None)]]
        for track, gap in zip(tracks, track_gaps, strict=True):
            sound = []
            for k in range(0, seconds * RATE, 1024):
                frame = av.AudioFrame.from_ndarray(
                    np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
                )
                frame.sample_rate, frame.pts = RATE, k
                sound += track.encode(frame)
            shifted += [(p, gap) for p in [*sound, *track.encode(None)]]
        for packet, gap in shifted:
            if packet.pts * packet.time_base >= 1:
                step = round(gap / packet.time_base)
                packet.pts, packet.dts = packet.pts + step, packet.dts + step
        for packet, _ in sorted(shifted, key=lambda item: item[0].dts * item[0].time_base):
            out.mux(packet)
    return path


def _stream_times(path: Path, index: int) -> list[float]:
    with av.open(str(path)) as src:
        return [float(p.pts * p.time_base) for p in src.demux(src.streams[index]) if p.pts is not None]


@pytest.mark.parametrize("later", [0, 0.3])
def test_a_signal_lost_for_long_is_closed_up_with_the_sound_in_step(tmp_path, later):
    """A capture that lost the signal for 12 s jumps ahead: closed up as FFmpeg does (over 10 s),
    the sound with the pictures, though its first packet after the gap comes before theirs, and
    where the pictures come back `later` than the sound (the sound stayed 12 s behind)."""
    source = _ts_with_gaps(tmp_path / "loss.ts", 3, 12 + later, (12,))
    with pytest.warns(UserWarning, match=r"loss\.ts: its clock jumps 1 time\(s\)"):
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    times = probe(tmp_path / "out.mkv")["times"]
    assert len(times) == 15 and max(b - a for a, b in itertools.pairwise(times)) < 0.25, times
    sound = _stream_times(tmp_path / "out.mkv", 1)
    assert max(b - a for a, b in itertools.pairwise(sound)) < 0.05
    # the sound ends where it ended beside the pictures in the source
    before = max(_stream_times(source, 1)) - max(_stream_times(source, 0))
    assert max(sound) - max(times) == pytest.approx(before, abs=0.03)


def test_joined_recordings_keep_each_ones_sound_with_its_pictures(tmp_path):
    """Sound that runs on 1.5 s past the pictures, joined to itself: each stream made its own
    correction at the join, and the second recording's sound came 1.5 s after its pictures. One
    correction for both keeps them together: the pictures wait while the first one's sound ends."""
    one = tmp_path / "one.ts"
    with av.open(str(one), "w") as out:
        video, [sound] = _capture_streams(out, 1)
        _mux_silence(out, sound, 3.5)
        _mux_gradient(out, video, 10)  # 2 s
    joined = tmp_path / "joined.ts"
    joined.write_bytes(one.read_bytes() * 2)
    with pytest.warns(UserWarning, match=r"joined\.ts: its clock jumps 1 time\(s\)"):
        deband_video(joined, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    times = probe(tmp_path / "out.mkv")["times"]
    assert len(times) == 20 and times[10] - times[0] == pytest.approx(3.5, abs=0.05), times
    before = max(_stream_times(one, 1)) - max(_stream_times(one, 0))
    assert max(_stream_times(tmp_path / "out.mkv", 1)) - max(times) == pytest.approx(before, abs=0.03)


def test_a_second_sound_track_that_pauses_long_keeps_its_pause(tmp_path):
    """Broadcasts send no packets for a track gone quiet (a commentary): a pause of over 10 s is
    no clock jump, and moved the pictures and the other track about with it."""
    source = _ts_with_gaps(tmp_path / "quiet.ts", 14, 0, (0, 11))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    times = probe(tmp_path / "out.mkv")["times"]
    assert len(times) == 70 and {round(b - a, 3) for a, b in itertools.pairwise(times)} == {0.2}
    assert max(b - a for a, b in itertools.pairwise(_stream_times(tmp_path / "out.mkv", 1))) < 0.05
    paused = _stream_times(tmp_path / "out.mkv", 2)
    assert [round(b - a) for a, b in itertools.pairwise(paused) if b - a > 1] == [11]


def test_a_track_silent_across_a_join_comes_back_on_the_new_clock(tmp_path):
    """A second sound track that stops before a join and comes back after it never jumps on its
    own clock: it landed on top of the first recording instead of in the second."""
    parts = []
    for k, (start, end) in enumerate(((0, 1), (1.5, 3))):  # the quiet track's sound in each
        part = tmp_path / f"part{k}.ts"
        with av.open(str(part), "w") as out:
            video, tracks = _capture_streams(out, 2)
            _mux_silence(out, tracks[0], 3)
            _mux_silence(out, tracks[1], end - start, start=round(start * RATE))
            _mux_gradient(out, video, 15)
        parts.append(part.read_bytes())
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(parts))
    with pytest.warns(UserWarning, match=r"joined\.ts: its clock jumps 1 time\(s\)"):
        deband_video(joined, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    times = probe(tmp_path / "out.mkv")["times"]
    quiet = _stream_times(tmp_path / "out.mkv", 2)
    assert len(times) == 30 and max(quiet) == pytest.approx(times[15] + 3, abs=0.1), (times, quiet)
    assert [round(b - a, 1) for a, b in itertools.pairwise(quiet) if b - a > 0.5] == [3.5]


def test_chapters_move_with_the_streams_clock(tmp_path):
    """A file whose clock starts at 10 s has its chapters there too; they start with the output."""
    source = tmp_path / "late.mkv"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        out.set_chapters([{"id": 1, "start": 10 * FPS, "end": 10 * FPS + 4, "time_base": Fraction(1, FPS),
                           "metadata": {"title": "second"}}])  # fmt: skip
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24").reformat(format="yuv420p")
            frame.pts = 10 * FPS + i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with warnings.catch_warnings():  # its header's DURATION is where it ends (10.33 s): not cut short
        warnings.simplefilter("error")
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    with av.open(str(tmp_path / "out.mkv")) as result:
        [chapter] = result.chapters()
        assert float(result.streams.video[0].start_time * result.streams.video[0].time_base) < 1 / FPS
    seconds = [float(chapter[key] * chapter["time_base"]) for key in ("start", "end")]
    assert seconds == pytest.approx([0, 4 / FPS], abs=1e-3) and chapter["metadata"]["title"] == "second"


def test_an_audio_stream_without_sound_is_dropped_with_a_warning(tmp_path):
    """DVB/ATSC captures list audio streams that are not on air (0 channels, 0 Hz): every output
    failed after the first frames, the error naming the video encoder."""
    source = tmp_path / "capture.ts"
    with av.open(str(source), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        spoken = out.add_stream("mp2", rate=RATE)
        out.add_stream("ac3", rate=RATE)  # listed, never a packet
        _mux_gradient(out, video)
        _mux_silence(out, spoken, 0.5)
    for name in ("out.mkv", "out.mp4", "out.webm"):
        with pytest.warns(UserWarning, match=r"capture\.ts: audio stream 2 shows no sound .*; dropped"):
            report = deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False)
        assert (report.frames, report.audio_dropped) == (N, 1)
        with av.open(str(tmp_path / name)) as result:
            assert [s.type for s in result.streams] == ["video", "audio"]


def test_surround_audio_in_ac3_order_goes_into_webm(tmp_path):
    """AC-3, E-AC-3 and DTS carry 5.1 with side channels, a layout libopus refuses: a film's
    soundtrack into .webm failed after the first frame."""
    source = tmp_path / "film.mkv"
    with av.open(str(source), "w") as out:
        video = out.add_stream("ffv1", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = out.add_stream("ac3", rate=RATE)
        audio.codec_context.layout = "5.1(side)"
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        _mux_silence(out, audio, 1 / 3)
    report = deband_video(source, tmp_path / "out.webm", lambda rgb: rgb, progress=False)
    assert (report.frames, report.audio_transcoded) == (N, 1)
    with av.open(str(tmp_path / "out.webm")) as result:
        [sound] = result.streams.audio
        assert (sound.codec_context.name, sound.codec_context.layout.nb_channels) == ("opus", 6)
        assert sum(frame.samples for frame in result.decode(audio=0)) >= RATE // 3 - 1536


@pytest.mark.parametrize("b_frames", [0, 3])
def test_an_avi_keeps_its_frames_evenly_timed_and_late_video_late(tmp_path, b_frames):
    """AVI stores no presentation times, and FFmpeg numbers its frames in decode order: with
    B-frames they came out shuffled, and the clip was retimed, the first frame held 120 ms and
    the rest 80 ms late. Frames are timed by their decode times (carried through reordering) from
    the first frame's time: a video that starts 0.4 s after its sound still does, give or take
    the slot FFmpeg's AVI reader itself is off by."""
    source = tmp_path / "old.avi"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.max_b_frames = b_frames
        sound = out.add_stream("pcm_s16le", rate=RATE)
        sound.codec_context.layout = "mono"
        _mux_silence(out, sound, 2.0)
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), 10 * i, np.uint8), format="rgb24")
            frame.pts = 10 + i  # 0.4 s after the sound starts
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with av.open(str(source)) as check:
        read = [f.pts for f in check.decode(video=0)][:5]
    assert (read == sorted(read)) == (b_frames == 0)  # shuffled as read where there are B-frames
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FFmpeg's AVI muxer lists the skipped slots as frames
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    with av.open(str(tmp_path / "out.mkv")) as result:
        frames = [(float(f.time), f.to_ndarray(format="gray").mean()) for f in result.decode(video=0)]
    start = frames[0][0]
    assert abs(start - 0.4) <= 0.041  # the sound starts at 0
    assert [t for t, _ in frames] == pytest.approx([start + i / 25 for i in range(25)], abs=1e-3)
    assert [round(level / 10) for _, level in frames] == list(range(25))  # in display order


def test_an_elementary_stream_keeps_its_own_frame_rate(tmp_path):
    """A .m2v holds no container timing; FFmpeg's raw demuxer says 25 frames a second where the
    stream's header says 29.97, and a Y4M of it played 20 % slow with a false VFR warning."""
    rate = Fraction(30000, 1001)
    source = tmp_path / "clip.m2v"
    with av.open(str(source), "w", format="mpeg2video") as out:
        stream = out.add_stream("mpeg2video", rate=rate)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    for name in ("out.y4m", "out.mkv"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            report = deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False)
        assert report.frame_rate == pytest.approx(float(rate)) and report.duration == pytest.approx(12 / rate)


def test_an_mp4_tracks_title_survives_another_pass(tmp_path):
    """A title written into MP4 reads back as its `name`, which was not carried: an MP4 made by
    bdinn lost its "Director commentary" label on the next pass."""
    source = tmp_path / "titled.mp4"
    with av.open(str(source), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = out.add_stream("aac", rate=RATE)
        audio.metadata["title"] = "Director commentary"
        _mux_gradient(out, video)
        _mux_silence(out, audio, 0.25)
    for name, key in (("out.mkv", "title"), ("out.mp4", "name")):
        deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False)
        with av.open(str(tmp_path / name)) as result:
            assert result.streams.audio[0].metadata[key] == "Director commentary"


def test_bdinn_run_says_when_audio_was_re_encoded(tmp_path):
    """Re-encoding PCM, FLAC or AC-3 for a container that cannot hold it is lossy: the summary
    line says so, where it said nothing."""
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    from click.testing import CliRunner

    from bdinn.runtime.run_cli import main

    source = make_video(tmp_path / "in.mov", audio_codec="pcm_s16le", channels=2)
    result = CliRunner().invoke(main, [str(source), "-o", str(tmp_path / "out.mp4")])
    assert result.exit_code == 0, result.output
    assert f": {N} frames at " in result.output and ", 1 audio stream re-encoded" in result.output


def test_frames_too_large_to_decode_are_refused_at_open(tmp_path):
    """A Y4M header of a few bytes claiming 16000 x 16000 frames: the decoder and the frame queues
    reached 12 GB before the first frame was debanded."""
    src = tmp_path / "huge.y4m"
    src.write_bytes(b"YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\n")
    with pytest.raises(VideoError, match=r"huge\.y4m: 16000x16000 frames are over 179 megapixels"):
        deband_video(src, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.y4m"]


def test_video_starting_between_two_frame_times_is_not_called_irregular(tmp_path):
    """Regular 25 fps video 21 ms after its audio (as bdinn-run's own MKV of an MP4 with AAC is):
    Y4M and AVI outputs warned that its frame times were irregular and had been retimed."""
    source = tmp_path / "late.mkv"
    with av.open(str(source), "w") as out:
        video = out.add_stream("ffv1", rate=25)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        audio = out.add_stream("aac", rate=RATE)
        audio.codec_context.layout = "mono"
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(_gradient(i), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = 21 + 40 * i, Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        _mux_silence(out, audio, N / 25)
    for name in ("out.y4m", "out.avi"):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            report = deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False)
        assert report.frames == N
        assert not [w for w in said if "irregular" in str(w.message)], name  # Y4M: "audio dropped"


@pytest.mark.filterwarnings("ignore:.*joined.ts. damaged")
def test_a_frame_too_large_to_decode_mid_stream_is_refused(tmp_path, monkeypatch):
    """The first frame's size passed; a later, larger one (182 megapixels in a crafted MJPEG) was
    converted to RGB and debanded at full size. The limit is lowered here to keep the test small."""
    from bdinn.runtime import video_source

    joined = tmp_path / "joined.ts"
    joined.write_bytes(_flat_ts(tmp_path / "a.ts", (W, H), 0) + _flat_ts(tmp_path / "b.ts", (96, 64), 4))
    monkeypatch.setattr(video_source, "MAX_PIXELS", W * H)
    seen = []
    with pytest.raises(VideoError, match=r"joined\.ts: 96x64 frames are over 0 megapixels"):
        deband_video(joined, tmp_path / "out.mkv", lambda rgb: seen.append(rgb.shape) or rgb, progress=False)
    assert (64, 96, 3) not in seen and _listing(tmp_path) == ["a.ts", "b.ts", "joined.ts"]  # no output


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
