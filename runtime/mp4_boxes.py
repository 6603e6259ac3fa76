"""Whether an MP4 or MOV file ends inside one of its top-level boxes: a recording that stopped
while writing its index (which FFmpeg's muxer writes last) leaves it so, and FFmpeg then lists
what it could read of the index, silently short of tracks or frames."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

_MAX_BOXES = 10_000  # a file of more top-level boxes than this is not walked to its end
# Boxes found at the top of MP4 and QuickTime files; anything else (trailing data) is not judged.
_TOP_LEVEL = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"moof", b"mfra", b"styp",
              b"sidx", b"ssix", b"pdin", b"meta", b"emsg", b"prft", b"pnot"}  # fmt: skip
# Boxes nothing is lost with: padding, and the random-access index of a fragmented file.
_SPARE = {b"free", b"skip", b"wide", b"mfra"}


class CutBox(NamedTuple):
    kind: str  # the box's four-letter type: "moov" (the index), "mdat" (the media), "free"
    declared: int  # bytes its header says it holds
    present: int  # bytes of it the file holds


def cut_box(path: Path) -> CutBox | None:
    """The top-level box a regular file ends inside, or None where every box ends within the file
    (or the one it ends in holds nothing needed), or it is no regular file (opening a named pipe
    again waits for a writer forever), or it cannot be read (FFmpeg says why)."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as file:
            size = path.stat().st_size
            start = 0
            for _ in range(_MAX_BOXES):
                if start >= size:
                    return None
                file.seek(start)
                header = file.read(16)
                length, kind = struct.unpack(">I4s", header[:8]) if len(header) >= 8 else (0, b"")
                if kind not in _TOP_LEVEL:
                    return None  # a few bytes, or trailing data that is no box: not ours to judge
                if length == 1 and len(header) == 16:  # a 64-bit size follows the type
                    length = struct.unpack(">Q", header[8:])[0]
                elif length == 0:  # to the end of the file
                    return None
                if length < 8:  # not a box header: not ours to judge
                    return None
                if start + length > size:
                    return None if kind in _SPARE else CutBox(kind.decode("latin-1"), length, size - start)
                start += length
    except OSError:
        return None
    return None
