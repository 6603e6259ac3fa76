"""cut_box: whether an MP4/MOV ends inside one of its top-level boxes, judged from the box sizes."""

import os
import struct

import pytest

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


def test_a_cut_that_loses_nothing_is_not_called_cut(tmp_path):
    """Padding, or a fragmented file's random-access index (mfra), which FFmpeg does not need: the
    output held every frame and packet, and the warning said what was missing was lost."""
    path = tmp_path / "c.mp4"
    for spare in (b"mfra", b"free", b"skip", b"wide"):
        path.write_bytes((_box(b"ftyp", 8) + _box(b"moov", 20) + _box(spare, 100))[:-30])
        assert cut_box(path) is None


@pytest.mark.timeout(20)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_not_opened_again(tmp_path):
    """Opened again after its writer closed it, a FIFO waits for another writer forever: a job
    reading an MP4 from one wrote its output and never returned."""
    fifo = tmp_path / "in.mp4"
    os.mkfifo(fifo)
    assert cut_box(fifo) is None
