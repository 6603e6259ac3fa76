"""Damaged and odd sources: broken packets, size changes mid-stream, frames too large to decode."""

import warnings

import pytest

av = pytest.importorskip("av", reason="needs the video extra: pip install '.[video]'")

from video_sources import (  # noqa: E402
    H,
    W,
    flat_ts,
    listing,
    make_clip,
    probe,
)

from bdinn.runtime.video import VideoError, deband_video  # noqa: E402


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


@pytest.mark.filterwarnings("ignore:.*joined.ts. damaged")  # two TS files joined: a continuity break
def test_a_change_of_picture_size_is_scaled_to_the_first_with_a_warning(tmp_path):
    """A capture that switches format mid-stream (two TS segments joined): its later frames were
    scaled to the first size by PyAV's encoder without a word; now scaled by us, and said."""
    joined = tmp_path / "joined.ts"
    joined.write_bytes(flat_ts(tmp_path / "a.ts", (W, H), 0) + flat_ts(tmp_path / "b.ts", (48, 32), 4))
    with pytest.warns(
        UserWarning,
        match=rf"joined\.ts: the picture size changes from {W}x{H} to 48x32 at frame 4; a video keeps one "
        rf"size, so 4 frame\(s\) were scaled to {W}x{H} .*cut the source at the change first",
    ):
        report = deband_video(joined, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    after = probe(tmp_path / "out.mkv")
    assert report.frames == 8 and after["size"] == (W, H)
    assert [round(float(rgb.mean()) / 30) for rgb in after["rgb"]] == list(range(8))


def y4m(frames: int, cut: int = 0) -> bytes:
    """A 64x48 4:2:0 Y4M of `frames` flat frames, less its last `cut` bytes (a writer that died)."""
    whole = b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\n" + b"".join(
        b"FRAME\n" + bytes([40 + 30 * i]) * (64 * 48 * 3 // 2) for i in range(frames)
    )
    return whole[: len(whole) - cut]


def test_a_y4m_that_ends_inside_a_frame_keeps_the_whole_frames_with_a_warning(tmp_path):
    """FFmpeg's Y4M reader drops a frame cut short without a word, so a producer that died
    mid-frame looked like a clean end (exit 0); the bytes past the last whole frame tell it."""
    src = tmp_path / "cut.y4m"
    src.write_bytes(y4m(3, cut=1000))
    with pytest.warns(
        UserWarning, match=r"cut\.y4m: ends inside a frame \(3614 bytes after the last whole one"
    ):
        report = deband_video(src, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert report.frames == 2 and len(probe(tmp_path / "out.mkv")["times"]) == 2
    (tmp_path / "whole.y4m").write_bytes(y4m(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole stream is not warned about
        assert (
            deband_video(
                tmp_path / "whole.y4m", tmp_path / "whole.mkv", lambda rgb: rgb, progress=False
            ).frames
            == 3
        )


def test_an_mp4_cut_inside_its_index_is_called_cut_short_not_videoless(tmp_path):
    """A copy or recording cut short inside an MP4's index (written last) opens in FFmpeg with no
    streams, or a data stream only: it was refused as "no video stream; pass a file with video".
    Cut inside the video track's description, it has a stream with no codec, and a traceback
    (AttributeError) came out. Every cut is now one clear error, or debanded as far as it goes."""
    clip = make_clip(tmp_path / "clip.mp4", "yuv420p", "libx264", size=(96, 64), frames=30, threads=1)
    data = clip.read_bytes()
    index = data.index(b"moov") - 4  # the box's size field
    assert index > len(data) // 2  # at the end, as a recording writes it
    cut = tmp_path / "cut.mp4"
    said = set()
    for end in range(index + 8, len(data) - 8, 97):
        cut.write_bytes(data[:end])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # cut near its end: written as far as it goes
                deband_video(cut, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
        except VideoError as refused:
            said.add(str(refused).split(": ", 1)[1].split(";")[0])
    assert "no video stream" not in said
    assert "FFmpeg finds no video or audio stream in it" in said
    assert any(s.startswith("FFmpeg cannot decode its video stream") for s in said)


def test_frames_too_large_to_decode_are_refused_at_open(tmp_path):
    """A Y4M header of a few bytes claiming 16000 x 16000 frames: the decoder and the frame queues
    reached 12 GB before the first frame was debanded."""
    src = tmp_path / "huge.y4m"
    src.write_bytes(b"YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\n")
    with pytest.raises(VideoError, match=r"huge\.y4m: 16000x16000 frames are over 179 megapixels"):
        deband_video(src, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.y4m"]


@pytest.mark.filterwarnings("ignore:.*joined.ts. damaged")
def test_a_frame_too_large_to_decode_mid_stream_is_refused(tmp_path, monkeypatch):
    """The first frame's size passed; a later, larger one (182 megapixels in a crafted MJPEG) was
    converted to RGB and debanded at full size. The limit is lowered here to keep the test small."""
    from bdinn.runtime import video_source

    joined = tmp_path / "joined.ts"
    joined.write_bytes(flat_ts(tmp_path / "a.ts", (W, H), 0) + flat_ts(tmp_path / "b.ts", (96, 64), 4))
    monkeypatch.setattr(video_source, "MAX_PIXELS", W * H)
    seen = []
    with pytest.raises(VideoError, match=r"joined\.ts: 96x64 frames are over 0 megapixels"):
        deband_video(joined, tmp_path / "out.mkv", lambda rgb: seen.append(rgb.shape) or rgb, progress=False)
    assert (64, 96, 3) not in seen and listing(tmp_path) == ["a.ts", "b.ts", "joined.ts"]  # no output
