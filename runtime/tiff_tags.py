"""A TIFF's image directories: the few tags bdinn reads, its pages, and the tag OpenCV leaves out.

OpenCV decodes some TIFFs otherwise than their tags say without a word, so the reader checks
them, and reads a multi-page TIFF's first page alone, so the pages are counted here; and it
writes 4-sample TIFFs without ExtraSamples, the tag that says what the fourth sample
is. TIFF 6.0 requires it: libtiff then guesses premultiplied alpha and shows straight-alpha
colours wrong (220 levels off in half-transparent pixels, hidden colours added where alpha is 0).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

NEW_SUBFILE_TYPE, WIDTH, LENGTH, BITS_PER_SAMPLE, PHOTOMETRIC = 254, 256, 257, 258, 262
SAMPLES_PER_PIXEL, PLANAR, TILE_WIDTH, EXTRA_SAMPLES = 277, 284, 322, 338
_UNASSOCIATED_ALPHA = 2  # ExtraSamples: straight alpha, as PNG, WebP and bdinn keep it


@dataclass(frozen=True)
class _Directory:
    """Where an image directory lies and how its numbers are written."""

    order: str  # struct's byte order
    offset: str  # struct code of offsets and counts: 4 bytes in classic TIFF, 8 in BigTIFF
    count_of: str  # struct code of the directory's entry count
    entry: int  # bytes per entry: 12 or 20
    at: int  # where the directory starts
    count: int

    @property
    def first(self) -> int:
        return self.at + struct.calcsize(self.count_of)

    @property
    def next_at(self) -> int:
        """Where the offset of the next directory is written, after the entries."""
        return self.first + self.entry * self.count

    @property
    def inline(self) -> int:
        """Value bytes an entry holds itself."""
        return self.entry - 4 - struct.calcsize(self.offset)


def _directory(data: bytes, at: int | None = None) -> _Directory | None:
    """The directory at `at` (the first image's where None) of a classic TIFF or a BigTIFF; None
    for anything else, or where the directory lies outside the data."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 16:
        return None
    version = struct.unpack(order + "H", data[2:4])[0]
    if version not in (42, 43):
        return None
    offset, count_of, entry = ("I", "H", 12) if version == 42 else ("Q", "Q", 20)
    try:
        if at is None:
            at = struct.unpack(order + offset, data[4:8] if version == 42 else data[8:16])[0]
        (count,) = struct.unpack(order + count_of, data[at : at + struct.calcsize(count_of)])
    except struct.error:
        return None
    return _Directory(order, offset, count_of, entry, at, count)


def read_tags(
    data: bytes, wanted: tuple[int, ...], ifd: _Directory | None = None
) -> dict[int, tuple[int, ...]]:
    """Some integer (SHORT, LONG or LONG8) tags of a TIFF's first image, or of directory `ifd`
    ({} for anything else)."""
    found: dict[int, tuple[int, ...]] = {}
    if (ifd := ifd or _directory(data)) is None:
        return found
    order, offset = ifd.order, ifd.offset
    try:
        for at in range(ifd.first, ifd.first + ifd.entry * ifd.count, ifd.entry):
            tag, kind = struct.unpack(order + "HH", data[at : at + 4])
            (n,) = struct.unpack(order + offset, data[at + 4 : at + 4 + struct.calcsize(offset)])
            value = at + 4 + struct.calcsize(offset)
            size = {3: 2, 4: 4, 16: 8}.get(kind)  # SHORT, LONG or BigTIFF's LONG8 (a width may be any)
            if tag in wanted and size and 1 <= n <= 16:  # a few a pixel: inline or at an offset
                where = (
                    value
                    if size * n <= ifd.inline
                    else struct.unpack(order + offset, data[value : value + ifd.inline])[0]
                )
                found[tag] = struct.unpack(
                    order + {2: "H", 4: "I", 8: "Q"}[size] * n, data[where : where + size * n]
                )
    except struct.error:
        return {}
    return found


ONE, SEVERAL, CUT = "one picture", "several pictures", "cut short"


def pictures_in(data: bytes, most: int) -> str:
    """What a TIFF's chain of image directories holds: ONE picture where every directory after
    the first says it is a reduced-resolution copy (NewSubfileType bit 0: a scanner's or camera's
    preview, GDAL's overviews), SEVERAL past `most` of them or at the first that does not, CUT
    where a directory lies past the file's end or is cut short (a copy cut off: what it held is
    unknown). A chain pointing back ends the walk."""
    ifd = first = _directory(data)
    seen = {ifd.at} if ifd else set()
    for _ in range(most + 1):
        if ifd is None:
            return ONE  # not a TIFF bdinn walks: Pillow and OpenCV decide
        try:
            following = _following(data, ifd)
        except struct.error:  # the first image's own pointer may be left off: it is all there
            return ONE if ifd is first else CUT
        if not following or following in seen:
            return ONE
        seen.add(following)
        ifd = _directory(data, following)
        if ifd is None or ifd.next_at > len(data):
            return CUT
        if not read_tags(data, (NEW_SUBFILE_TYPE,), ifd).get(NEW_SUBFILE_TYPE, (0,))[0] & 1:
            return SEVERAL
    return SEVERAL


def _following(data: bytes, ifd: _Directory) -> int:
    """The offset of the directory after `ifd`; 0 for none; struct.error where the file ends first."""
    return struct.unpack(
        ifd.order + ifd.offset, data[ifd.next_at : ifd.next_at + struct.calcsize(ifd.offset)]
    )[0]


def with_straight_alpha(data: bytes) -> bytes:
    """A TIFF of 4 samples a pixel with ExtraSamples saying the fourth is straight alpha (`data`
    itself where the tag is there or the file is no TIFF). The directory grows by an entry, so it
    is copied, with the entry in its place by tag number, to the file's end, and the header points
    there; values stored elsewhere keep their offsets."""
    ifd = _directory(data)
    if ifd is None or EXTRA_SAMPLES in read_tags(data, (EXTRA_SAMPLES,)):
        return data
    order, entries_end = ifd.order, ifd.next_at
    entries = [data[at : at + ifd.entry] for at in range(ifd.first, entries_end, ifd.entry)]
    value = struct.pack(order + "H", _UNASSOCIATED_ALPHA).ljust(ifd.inline, b"\0")
    entries.append(struct.pack(order + "HH", EXTRA_SAMPLES, 3) + struct.pack(order + ifd.offset, 1) + value)
    entries.sort(key=lambda entry: struct.unpack(order + "H", entry[:2])[0])
    next_directory = data[entries_end : entries_end + struct.calcsize(ifd.offset)]
    padded = data + b"\0" * (len(data) % 2)  # a directory starts on a word boundary
    header = 4 if ifd.offset == "I" else 8
    pointer = struct.pack(order + ifd.offset, len(padded))
    directory = struct.pack(order + ifd.count_of, ifd.count + 1) + b"".join(entries) + next_directory
    return padded[:header] + pointer + padded[header + len(pointer) :] + directory
