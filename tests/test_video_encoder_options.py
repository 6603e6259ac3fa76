"""Encoder options: rate control, presets and codec parameters reach the encoder; checking them
leaves standard error alone."""

import os
import subprocess
import sys

import pytest

av = pytest.importorskip("av", reason="needs the video extra: pip install '.[video]'")

from video_sources import (  # noqa: E402
    N,
    probe,
    x26x_settings,
)

from bdinn.runtime.video import VideoError, deband_video  # noqa: E402


def test_a_bitrate_and_a_capped_crf_reach_the_encoder(source, tmp_path):
    """A streaming ladder's settings: b= was silently overridden by the default CRF, and x264's
    maxrate and bufsize, tried one at a time, were each refused for lacking the other."""
    target = deband_video(source, tmp_path / "abr.mp4", lambda rgb: rgb, codec="libx264",
                          codec_options={"b": "100k"}, progress=False)  # fmt: skip
    settings = x26x_settings(target.dst)
    assert (settings["rc"], settings["bitrate"]) == ("abr", "100") and "crf" not in settings
    capped = deband_video(source, tmp_path / "capped.mp4", lambda rgb: rgb, codec="libx264",
                          codec_options={"maxrate": "300k", "bufsize": "600k"}, progress=False)  # fmt: skip
    settings = x26x_settings(capped.dst)
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


@pytest.mark.parametrize("crf", [4, 63])
def test_vp8s_whole_crf_range_encodes(source, tmp_path, crf):
    """The ends of the range that libvpx (VP8) is given: below 4 it failed at the first frame."""
    report = deband_video(source, tmp_path / f"vp8-{crf}.webm", lambda rgb: rgb, codec="libvpx", crf=crf,
                          bit_depth=8, progress=False)  # fmt: skip
    assert (report.codec, report.frames, len(probe(report.dst)["times"])) == ("libvpx", N, N)


def test_preset_and_codec_options_reach_the_encoder(source, tmp_path):
    default = deband_video(source, tmp_path / "default.mp4", lambda rgb: rgb, codec="libx264", progress=False)
    fast = deband_video(
        source, tmp_path / "fast.mp4", lambda rgb: rgb, codec="libx264", preset="ultrafast",
        codec_options={"g": 6, "tune": "grain"}, progress=False,
    )  # fmt: skip
    assert default.frames == fast.frames == N
    before, after = x26x_settings(default.dst), x26x_settings(fast.dst)
    assert (before["subme"], after["subme"]) == ("7", "0")  # medium, ultrafast
    assert (before["keyint"], after["keyint"]) == ("250", "6")
    assert (before["deadzone"], after["deadzone"]) == ("21,11", "6,6")  # tune=grain
    assert before["crf"].startswith("18.0") and after["crf"].startswith("18.0")  # ours stays
    # x265-params are added to bdinn's own (log-level=error keeps x265 quiet), the caller's last
    hevc = deband_video(
        source, tmp_path / "hevc.mkv", lambda rgb: rgb, preset="superfast",
        codec_options={"x265-params": "keyint=5:min-keyint=5"}, progress=False,
    )  # fmt: skip
    settings = x26x_settings(hevc.dst)
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
