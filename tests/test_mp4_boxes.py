"""cut_box: whether an MP4/MOV ends inside one of its top-level boxes, judged from the box sizes."""

import struct

from bdinn.runtime.mp4_boxes import CutBox, cut_box


def _box(kind: bytes, body: int, large: bool = False) -> bytes:
    if large:  # size 1: a 64-bit size after the type
        return struct.pack(">I4sQ", 1, kind, 16 + body) + bytes(body)
    return struct.pack(">I4s", 8 + body, kind) + bytes(body)


def test_a_whole_file_and_one_cut_inside_its_index(tmp_path):
    whole = _box(b"ftyp", 8) + _box(b"mdat", 100, large=True) + _box(b"moov", 60)
    path = tmp_path / "a.mp4"
    path.write_bytes(whole)
    assert cut_box(path) is None
    path.write_bytes(whole[:-25])
    assert cut_box(path) == CutBox("moov", 68, 43)
    path.write_bytes(whole[:40])  # inside the media, whose 64-bit size says 116 bytes
    assert cut_box(path) == CutBox("mdat", 116, 24)


def test_what_it_cannot_judge_is_not_called_cut(tmp_path):
    """Media to the end of the file (size 0), trailing data that is no box, a few stray bytes."""
    path = tmp_path / "b.mp4"
    for tail in (struct.pack(">I4s", 0, b"mdat") + bytes(50), b"\xff\xfe\x01\x02garbage!", b"\x00" * 5):
        path.write_bytes(_box(b"ftyp", 8) + _box(b"moov", 20) + tail)
        assert cut_box(path) is None
    assert cut_box(tmp_path / "missing.mp4") is None
