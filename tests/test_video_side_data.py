"""Closed captions (A/53) go through debanding into encoders that write them."""

import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="needs the video extra: pip install '.[video]'")

from bdinn.runtime.pyav import side_data_of  # noqa: E402
from bdinn.runtime.video import deband_frame, deband_video  # noqa: E402

W, H, N = 64, 48, 30  # MPEG-TS needs a few packets before FFmpeg's probe recognises it


def _caption_sei(pairs: list[tuple[int, int]]) -> bytes:
    """An H.264 SEI NAL unit with CEA-608 byte pairs as ATSC A/53 cc_data (ITU-T T.35, 'GA94')."""
    cc_data = bytes([0x40 | len(pairs), 0xFF]) + b"".join(bytes([0xFC, a, b]) for a, b in pairs) + b"\xff"
    payload = b"\xb5\x00\x31GA94\x03" + cc_data
    raw = bytes([4, len(payload)]) + payload + b"\x80"  # payload type 4: registered user data
    escaped, zeros = bytearray(), 0
    for byte in raw:  # emulation prevention: no 00 00 0x (x <= 3) inside a NAL unit
        if zeros >= 2 and byte <= 3:
            escaped.append(3)
            zeros = 0
        escaped.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return b"\x00\x00\x00\x01\x06" + bytes(escaped)


def captioned_clip(path: Path, matrix: int = 1) -> tuple[Path, list[bytes]]:
    """N frames of H.264 in MPEG-TS, each with two caption byte pairs, tagged with the colour
    `matrix`; and each frame's cc_data."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt, encoder.time_base = W, H, "yuv420p", Fraction(1, 25)
    encoder.colorspace = matrix
    packets = []
    for i in range(N):
        rgb = np.full((H, W, 3), 60 + 4 * i, np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("h264", rate=25)
        stream.width, stream.height = W, H
        for packet in sorted(packets, key=lambda p: p.dts):
            pts = packet.pts  # captions in display order: the frame's own
            data = _caption_sei([(0x94, 0x20 + pts % 8), (0x80, 0x80)]) + bytes(packet)
            captioned = av.Packet(data)
            captioned.pts, captioned.dts, captioned.time_base = packet.pts, packet.dts, packet.time_base
            captioned.is_keyframe, captioned.stream = packet.is_keyframe, stream
            out.mux(captioned)
    return path, [bytes([0xFC, 0x94, 0x20 + i % 8, 0xFC, 0x80, 0x80]) for i in range(N)]


def captions_of(path: Path) -> list[bytes]:
    with av.open(str(path)) as src:
        return [
            next((bytes(e) for e in side_data_of(frame) if e.type.name == "A53_CC"), b"")
            for frame in src.decode(video=0)
        ]


@pytest.mark.parametrize(("name", "codec", "bit_depth"), [("out.mkv", None, 10), ("out.mp4", "libx264", 8)])
def test_captions_are_written_back_frame_for_frame(tmp_path, name, codec, bit_depth):
    source, captions = captioned_clip(tmp_path / "news.ts")
    assert captions_of(source) == captions  # the decoder hands them over
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(
            source, tmp_path / name, lambda rgb: 255 - rgb, codec=codec, bit_depth=bit_depth, progress=False
        )
    assert report.captions and report.frames == N
    assert captions_of(tmp_path / name) == captions
    with av.open(str(tmp_path / name)) as out:  # the pictures are the debanded ones, not the source's
        first = next(out.decode(video=0)).to_ndarray(format="rgb24")
    assert abs(float(first.mean()) - (255 - 60)) < 3


def test_an_encoder_without_captions_says_they_are_dropped(tmp_path):
    source, _ = captioned_clip(tmp_path / "news.ts")
    with pytest.warns(
        UserWarning, match=r"news\.ts: its closed captions \(A/53: CEA-608/708\) are dropped: "
    ):
        report = deband_video(source, tmp_path / "out.webm", lambda rgb: rgb, progress=False)
    assert not report.captions and captions_of(tmp_path / "out.webm") == [b""] * N


def test_deband_frame_keeps_a_frames_captions_and_leaves_it_alone(tmp_path):
    source, captions = captioned_clip(tmp_path / "news.ts")
    with av.open(str(source)) as src:
        frame = next(src.decode(video=0))
        before = [bytes(plane) for plane in frame.planes]
        out = deband_frame(frame, lambda rgb: 255 - rgb)
        assert [bytes(plane) for plane in frame.planes] == before
    assert [bytes(e) for e in side_data_of(out) if e.type.name == "A53_CC"] == captions[:1]
    assert abs(float(out.to_ndarray(format="rgb24").mean()) - (255 - 60)) < 3 and out.pts == frame.pts


def test_captions_of_a_source_with_a_matrix_swscale_lacks_are_kept(tmp_path):
    """YCgCo (matrix 8) is converted as BT.709 for the model; carrying captions converts nothing."""
    source, captions = captioned_clip(tmp_path / "ycgco.ts", matrix=8)
    report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert report.captions and captions_of(tmp_path / "out.mkv") == captions


def test_a53cc_off_drops_the_captions_and_says_so(tmp_path):
    source, _ = captioned_clip(tmp_path / "news.ts")
    with pytest.warns(
        UserWarning, match=r"closed captions \(A/53: CEA-608/708\) are dropped: a53cc=0 turns them"
    ):
        report = deband_video(source, tmp_path / "out.mp4", lambda rgb: rgb, codec="libx264", progress=False,
                              codec_options={"a53cc": "0"})  # fmt: skip
    assert not report.captions and captions_of(tmp_path / "out.mp4") == [b""] * N


def test_deband_frame_flags_fields_alike_with_and_without_captions(tmp_path):
    """The output's field flags follow `fields`, whatever the frame's captions bring along."""
    from bdinn.runtime.video_fields import FieldFlags

    source, _ = captioned_clip(tmp_path / "news.ts")
    with av.open(str(source)) as src:
        captioned = next(src.decode(video=0))
    plain = av.VideoFrame.from_ndarray(captioned.to_ndarray(format="rgb24"), format="rgb24").reformat(
        format="yuv420p"
    )
    flags = FieldFlags()
    for frame in (captioned, plain):
        as_fields = deband_frame(frame, lambda rgb: rgb, fields=True)  # unflagged: top field first
        assert as_fields.interlaced_frame and flags.is_top_first(as_fields)
        interlaced = flags.flagged(frame, top_field_first=False)
        whole = deband_frame(interlaced, lambda rgb: rgb, fields=False)
        assert not whole.interlaced_frame


def test_a_tiny_captioned_frame_is_left_alone(tmp_path):
    source, captions = captioned_clip(tmp_path / "news.ts")
    with av.open(str(source)) as src:
        frame = next(src.decode(video=0)).reformat(width=16, height=16)  # reformat keeps side data
    before = [bytes(plane) for plane in frame.planes]
    out = deband_frame(frame, lambda rgb: 255 - rgb)
    assert out is not frame and [bytes(plane) for plane in frame.planes] == before
    assert [bytes(e) for e in side_data_of(out) if e.type.name == "A53_CC"] == captions[:1]
