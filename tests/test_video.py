"""Video files end to end: frames, timing, audio and colour survive; bad input is one line and
leaves nothing."""

import gc
import itertools
import os
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av", reason="needs the video extra: pip install '.[video]'")

from video_sources import (  # noqa: E402
    FPS,
    H,
    N,
    W,
    flat_ts,
    gradient,
    listing,
    make_clip,
    make_video,
    mux_gradient,
    planes,
    probe,
)

from bdinn.runtime.files import OutputError  # noqa: E402
from bdinn.runtime.video import (  # noqa: E402
    VideoError,
    VideoReport,
    check_encoder,
    deband_frame,
    deband_video,
    is_video,
)


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
    change = [np.abs(b[0] / 4 - a[0]) for a, b in zip(planes(source), planes(out), strict=True)]
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
    frames = [Image.fromarray(gradient(i)) for i in range(3)]
    frames[0].save(tmp_path / "still.gif")
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:])
    result = CliRunner().invoke(main, [str(tmp_path / "still.gif"), "-q"])
    assert result.exit_code == 0 and (tmp_path / "still.debanded.png").is_file(), result.output
    result = CliRunner().invoke(main, [str(tmp_path / "moving.gif")])
    assert result.exit_code == 1 and "holds 3 frames" in result.output


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
    assert dst.read_bytes() == b"another job's output" and listing(tmp_path) == ["out.mkv"]
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


def test_output_over_the_file_on_standard_input_is_refused(source):
    """bdinn-run - -o v.mkv -f < v.mkv replaced the source it was reading."""
    kept = source.read_bytes()
    saved = os.dup(0)
    try:
        with source.open("rb") as redirected:
            os.dup2(redirected.fileno(), 0)
        with pytest.raises(VideoError, match="the output is the file on standard input"):
            deband_video("-", source, lambda rgb: rgb, force=True, progress=False)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    assert source.read_bytes() == kept


def test_bad_inputs_give_one_line_errors(source, tmp_path):
    audio_only = make_video(tmp_path / "song.mp4", video=False)
    cases = [
        (tmp_path / "missing.mp4", tmp_path / "a.mkv", {}, r"missing\.mp4: no such file"),
        (audio_only, tmp_path / "b.mkv", {}, r"song\.mp4: no video stream; pass a file with video"),
        (source, tmp_path / "c.xyz", {}, r"unsupported output container '\.xyz'"),
        (
            source,
            tmp_path / "d.mkv",
            {"codec": "nope"},
            # the encoders a user can pass: Y4M's raw one takes no codec, ProRes does
            r"unknown video encoder 'nope'; choose one of (?!.*wrapped_avframe).*libx265, prores_ks \(or",
        ),
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
        # an RGB-only encoder was said to lack the bit depth asked for
        (
            source,
            tmp_path / "kb.mov",
            {"codec": "png", "bit_depth": 8},
            r"kb\.mov: png writes RGB or grey video only, and bdinn writes YUV; use another codec \(",
        ),
        # SVT-AV1 takes CRF 0 and encodes as its default 35: the best quality asked got the default
        (
            source,
            tmp_path / "kc.mkv",
            {"codec": "libsvtav1", "crf": 0},
            r"CRF 0 is out of range for libsvtav1; use 1 \(best\) to 63",
        ),
        # VP8 below its qmin: accepted, then 'Invalid argument' at the first frame's encode
        (
            source,
            tmp_path / "ka.webm",
            {"codec": "libvpx", "crf": 3, "bit_depth": 8},
            r"CRF 3 is out of range for libvpx; use 4 \(best\) to 63",
        ),
        # FFmpeg's own check lets these through, then fails at the end or writes a data stream
        (source, tmp_path / "l.ts", {"codec": "libsvtav1"}, r"a \.ts file cannot hold libsvtav1 video"),
        (source, tmp_path / "m.ts", {"codec": "ffv1"}, r"a \.ts file cannot hold ffv1 video"),
        (
            source,
            tmp_path / "n.mov",
            {"codec": "libsvtav1"},
            r"a \.mov file cannot hold libsvtav1 video; write \.mp4, \.m4v, \.mkv, \.webm or pass codec= "
            r"one of",
        ),
        # the hint named .mkv for a .mkv output
        (
            source,
            tmp_path / "na.mp4",
            {"codec": "prores_ks"},
            r"a \.mp4 file cannot hold prores_ks video; write \.mov, \.mkv or pass codec= one of",
        ),
        # an encoder VIDEO_CODECS has not measured is tried: raw video passed FFmpeg's own check,
        # then .mov could not be read, .avi played noise (exit 0) and .mkv failed after the work
        (
            source,
            tmp_path / "nb.mov",
            {"codec": "rawvideo"},
            r"nb\.mov: rawvideo yuv420p10le video in a \.mov file failed a trial encode \(.*\); use another "
            r"container or one of ffv1",
        ),
        (source, tmp_path / "nc.avi", {"codec": "rawvideo"}, r"trial encode \(read back \d+ levels off\)"),
        (source, tmp_path / "nd.mkv", {"codec": "rawvideo"}, r"rawvideo yuv420p10le video in a \.mkv file"),
        (source, tmp_path / "ne.mkv", {"codec": "dnxhd"}, r"trial encode \('matroska' format does not"),
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
    assert listing(tmp_path) == ["noise.mp4", "song.mp4"]


def test_hardware_h264_is_not_given_10_bit_p010(tmp_path):
    """NVENC and AMF list P010 for H.264 too (one list for all their codecs), but their H.264 codes
    8 bits: the trial encode failed, advising another container instead of 8 bits."""
    for codec in ("h264_nvenc", "h264_amf"):
        if codec in av.codecs_available:
            with pytest.raises(VideoError, match=rf"{codec} cannot write 10-bit video; pass bit_depth=8"):
                check_encoder(tmp_path / "out.mkv", codec, 10)


@pytest.mark.parametrize(
    ("codec", "bit_depth", "chroma", "written"),
    [
        ("h264_qsv", 8, None, "nv12"),  # QSV's H.264 takes NV12 alone
        ("hevc_nvenc", 10, None, "p010le"),  # NVENC, QSV and AMF take 10 bits as P010 alone
        ("hevc_nvenc", 8, "444", "yuv444p"),  # not NV16 for 4:2:2 sources: few cards code 4:2:2
        ("hevc_nvenc", 8, None, "yuv420p"),  # planar where the encoder takes it
        ("hevc_amf", 10, None, "p010le"),
    ],
)
def test_hardware_encoders_get_the_semi_planar_yuv_they_take(tmp_path, codec, bit_depth, chroma, written):
    """Hardware encoders take 10-bit video only as P010 (QSV's H.264 only NV12): they were refused
    ("cannot write 10-bit video; pass --bit-depth 8"), QSV's H.264 at any depth. Without the device
    FFmpeg cannot open them, which the trial encode says naming the format chosen."""
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    try:
        chosen = check_encoder(tmp_path / "out.mkv", codec, bit_depth, chroma=chroma)[1]
    except VideoError as exc:
        assert f"{codec} {written} video in a .mkv file failed a trial encode" in str(exc)
    else:
        assert chosen == written


def test_an_encoder_outside_the_measured_table_runs_if_its_trial_encode_reads_back(source, tmp_path):
    """MPEG-4 Part 2 into .mkv and 8-bit raw video into .avi read back, so they run. Refused once
    the source is open: raw video from a 4:4:4 source (.avi mislabels it), and MPEG-2 in the MP4
    source's time base (it failed on the first frame)."""

    def keep(rgb: np.ndarray) -> np.ndarray:
        return rgb

    for codec, name in (("mpeg4", "out.mkv"), ("rawvideo", "out.avi")):
        report = deband_video(source, tmp_path / name, keep, codec=codec, bit_depth=8, progress=False)
        written = probe(tmp_path / name)
        assert (report.codec, written["codec"], len(written["times"])) == (codec, codec, N)
        assert np.abs(written["rgb"][3].astype(int) - gradient(3)).mean() < 8  # noise: 50-100
    full = tmp_path / "full.mkv"
    with av.open(str(full), "w") as out:
        stream = out.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv444p"
        mux_gradient(out, stream)
    with pytest.raises(VideoError, match=r"raw\.avi: rawvideo yuv444p video in a \.avi file failed a trial"):
        deband_video(full, tmp_path / "raw.avi", keep, codec="rawvideo", bit_depth=8, progress=False)
    with pytest.raises(VideoError, match=r"m2v\.mkv: mpeg2video yuv420p video .* failed a trial encode"):
        deband_video(source, tmp_path / "m2v.mkv", keep, codec="mpeg2video", bit_depth=8, progress=False)
    assert listing(tmp_path) == ["full.mkv", "out.avi", "out.mkv"]


def test_a_trial_encode_needs_no_temporary_folder(source, tmp_path, monkeypatch):
    """In a read-only container (no writable /tmp) the trial encode's capture of the encoder's
    printing failed, and the encoder was refused as if it could not write the container."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    report = deband_video(
        source, tmp_path / "out.mkv", lambda rgb: rgb, codec="mpeg4", bit_depth=8, progress=False
    )
    assert report.codec == "mpeg4" and len(probe(tmp_path / "out.mkv")["times"]) == N


def test_a_failed_or_watched_job_is_freed_without_the_cycle_collector(source, tmp_path):
    """A failed job (its exception held the pipeline, which held the exception) and one watched by
    a progress callable (job -> callback -> job) lived on, containers, encoder and its threads
    with them, until Python's cycle collector ran: a service's memory and threads grew per job."""
    from bdinn.runtime.video_job import VideoJob

    def jobs_alive() -> int:
        return sum(type(thing) is VideoJob for thing in gc.get_objects())  # isinstance woke torch's shims

    def broken(rgb: np.ndarray) -> np.ndarray:
        raise RuntimeError("the model failed")

    gc.collect()
    before = jobs_alive()  # another test's job left running on a stalled pipe, say
    gc.disable()
    try:
        with pytest.raises(RuntimeError, match="the model failed"):
            deband_video(source, tmp_path / "failed.mkv", broken, progress=False)
        assert jobs_alive() == before
        deband_video(source, tmp_path / "watched.mkv", lambda rgb: rgb, progress=lambda done, total: None)
        assert jobs_alive() == before
    finally:
        gc.enable()


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
    with pytest.raises(VideoError, match=r"bit depth must be 8, 10 or 12, got '10'"):
        deband_video(source, dst, lambda rgb: rgb, bit_depth="10", progress=False)  # it read "got 10"
    with pytest.raises(VideoError, match=r"bit depth must be 8, 10 or 12, got 10\.0"):
        deband_video(source, dst, lambda rgb: rgb, bit_depth=10.0, progress=False)
    report = deband_video(source, dst, lambda rgb: rgb, bit_depth=np.int64(8), progress=False)
    assert report.pix_fmt == "yuv420p"
    frame = av.VideoFrame.from_ndarray(gradient(0), format="rgb24")
    with pytest.raises(TypeError, match="process must be a callable"):
        deband_frame(frame, None)
    with pytest.raises(TypeError, match=r"fields must be True, False or None .*, got 'yes'"):
        deband_frame(frame, lambda rgb: rgb, fields="yes")


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


def test_wrong_process_output_is_a_video_error(source, tmp_path):
    with pytest.raises(
        VideoError, match=r"process returned float32 \(48, 64, 3\) for frame 0; return 48 x 64 x 3"
    ):
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb.astype(np.float32), progress=False)
    assert listing(tmp_path) == []
    # big-endian uint16, as Debander returns for such input, was refused as ">u2 ... return uint16"
    big_endian = lambda rgb: (rgb * np.uint16(257)).astype(">u2")  # noqa: E731
    deband_video(source, tmp_path / "big.mkv", big_endian, progress=False)
    assert (tmp_path / "big.mkv").is_file()


def test_a_closed_debander_is_refused_before_the_output_is_set_up(source, tmp_path):
    """It was noticed at the first frame, after the source, the output and the encoder's trial were
    set up: now before any file is looked at (a missing source is not even reached)."""
    from bdinn.runtime import BackendError, Debander

    deband = Debander.open()
    deband.close()
    with pytest.raises(BackendError, match="this Debander is closed; open the model again"):
        deband_video(tmp_path / "missing.mp4", tmp_path / "out.mkv", deband, progress=False)
    assert listing(tmp_path) == []


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
        assert listing(tmp_path) == []

    slots = itertools.count()  # a slot of its own for every frame shares no memory
    report = deband_video(source, tmp_path / "pool.mkv", into(lambda: pool[next(slots)]), progress=False)
    assert report.frames == N
    report = deband_video(source, tmp_path / "same.mkv", lambda rgb: np.add(rgb, 0, out=rgb), progress=False)
    assert report.frames == N


@pytest.mark.filterwarnings("ignore:.*joined.ts. damaged")
def test_bdinn_run_names_the_video_whose_frames_shrink_below_what_it_debands(tmp_path):
    """Its error was the model's alone ("image is 8x8; bdinn needs at least 16x16"), naming no file."""
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    from click.testing import CliRunner

    from bdinn.runtime.run_cli import main

    joined = tmp_path / "joined.ts"
    joined.write_bytes(flat_ts(tmp_path / "a.ts", (W, H), 0) + flat_ts(tmp_path / "b.ts", (8, 8), 4))
    result = CliRunner().invoke(main, [str(joined), "-o", str(tmp_path / "out.mkv"), "-q"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"bdinn-run: error: {joined}: image is 8x8; bdinn needs at least 16x16 (pad or enlarge it)\n"
    )
    assert not (tmp_path / "out.mkv").exists()


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


@pytest.mark.parametrize("name", ["outdir", "dir.mkv"])
def test_a_folder_as_the_output_is_one_line_saying_so(source, tmp_path, name):
    """A folder without a suffix was 'unsupported output container (no suffix)'."""
    (tmp_path / name).mkdir()
    with pytest.raises(VideoError, match=rf"{name}: is a folder; give an output file name$"):
        deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False)
