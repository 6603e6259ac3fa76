"""What a picture says of itself besides its pixels and colours: its EXIF block (camera, exposure,
date, GPS, orientation) and resolution, read from the source and written into a PNG or JPEG
output. The pixels are written upright, so the EXIF block is changed to describe them so."""

from __future__ import annotations

import math
import os
import struct
import warnings
from dataclasses import dataclass
from numbers import Real

from PIL import Image, UnidentifiedImageError

from .png_chunks import late_exif, png_chunk

# What Pillow raises on EXIF it cannot follow (a crafted or damaged block): nothing to read then.
_PILLOW_METADATA_ERRORS = (
    SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error, ZeroDivisionError
)  # fmt: skip


def orientation(header: Image.Image | None) -> int:
    """The EXIF orientation tag (1 when there is none), without decoding a PNG to find it.

    From the EXIF block (a TIFF's own tag) only: Pillow's getexif() takes an XMP orientation where
    EXIF has none, which browsers, OpenCV and bdinn's JPEG reader ignore, so such a PNG or WebP
    was turned while the same picture as JPEG was not."""
    if header is None:
        return 1
    if header.format == "TIFF":
        value = header.tag_v2.get(_ORIENTATION, 1)
        return value if isinstance(value, int) and 1 <= value <= 8 else 1
    raw = header.info.get("exif")
    if raw is None and header.format == "PNG":  # after the pixels: Pillow would decode it all to look
        raw = _late_png_exif(header)
    return exif_orientation(raw.removeprefix(b"Exif\x00\x00")) if isinstance(raw, bytes) else 1


def _late_png_exif(header: Image.Image) -> bytes | None:
    """A PNG's EXIF block after its pixels, which OpenCV honours too (read_image turned such a
    picture, bdinn-run did not, and dropped the block)."""
    if header.format != "PNG" or header.fp is None:
        return None
    try:
        return late_exif(header.fp)
    except (OSError, ValueError, struct.error):
        return None


@dataclass(frozen=True)
class Metadata:
    """What a picture says of itself besides its pixels and colours, kept by a debanded copy."""

    exif: bytes | None = None  # TIFF-structured (II* or MM*), orientation 1: the pixels are upright
    dpi: tuple[float, float] | None = None  # horizontal, vertical, as the upright picture shows them


# A JPEG's APP1 segment holds at most 65,533 bytes, "Exif\0\0" and the TIFF structure.
MAX_JPEG_EXIF = 65_527
_ORIENTATION = 0x0112
_X_RESOLUTION, _Y_RESOLUTION = 0x011A, 0x011B
_INTEGER_SIZES = {1: 1, 3: 2, 4: 4, 6: 1, 8: 2, 9: 4, 13: 4}  # TIFF types: BYTE, SHORT, LONG, signed, IFD


def read_metadata(path: str | os.PathLike) -> Metadata:
    """The EXIF block (camera, exposure, date, GPS) and resolution of a picture, for write_image
    to carry into a PNG or JPEG. A TIFF's EXIF is left: its tags are that file's own layout. A
    resolution is the file's own (JFIF, pHYs, TIFF tags), never one a reader assumes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own doubts about odd headers: nothing to carry then
            with Image.open(path) as header:
                raw = (header.info.get("exif") or _late_png_exif(header)) if header.format != "TIFF" else None
                raw = raw.removeprefix(b"Exif\0\0") if isinstance(raw, bytes) else None
                if header.format in ("JPEG", "MPO"):  # Pillow's dpi falls back on EXIF's, then an assumed 72
                    unit, density = header.info.get("jfif_unit"), header.info.get("jfif_density")
                    dpi = tuple(d * (1 if unit == 1 else 2.54) for d in density) if unit in (1, 2) else None
                    dpi = dpi or _exif_dpi(raw)
                    turned = exif_orientation(raw) in (5, 6, 7, 8)  # as read_image turns it
                else:
                    dpi, turned = header.info.get("dpi"), orientation(header) in (5, 6, 7, 8)
                    if header.format == "TIFF" and not {_X_RESOLUTION, _Y_RESOLUTION} <= header.tag_v2.keys():
                        dpi = None  # Pillow says 1 dpi where a TIFF has no resolution tags
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, EOFError, ValueError, SyntaxError):
        return Metadata()
    exif = upright_exif(raw) if raw else None
    if not (
        isinstance(dpi, tuple) and len(dpi) == 2 and all(math.isfinite(d) and 1 <= d < 65536 for d in dpi)
    ):
        dpi = None
    elif turned:
        dpi = (dpi[1], dpi[0])
    return Metadata(exif, dpi)


def _exif_dpi(tiff: bytes | None) -> tuple[float, float] | None:
    """The resolution an EXIF block records (cameras write it there, without a JFIF segment)."""
    exif = Image.Exif()
    try:
        exif.load(b"Exif\0\0" + (tiff or b""))
        unit, x, y = exif.get(0x0128, 2), exif.get(_X_RESOLUTION), exif.get(_Y_RESOLUTION)
        per_inch = {2: 1, 3: 2.54}.get(unit)  # ResolutionUnit 2: inch, 3: centimetre, 1: none
        if per_inch is None or not isinstance(x, Real) or not isinstance(y, Real):
            return None
        return float(x) * per_inch, float(y) * per_inch  # read_metadata keeps sane ones only
    except _PILLOW_METADATA_ERRORS:
        return None  # not readable: nothing to carry


def _first_directory(tiff: bytes) -> tuple[str, int, int] | None:
    """(byte order, offset, entry count) of an EXIF block's first directory; None without one."""
    order = {b"II*\0": "<", b"MM\0*": ">"}.get(tiff[:4])
    if order is None or len(tiff) < 8:
        return None
    (first,) = struct.unpack(order + "I", tiff[4:8])
    if first + 2 > len(tiff):
        return None
    return order, first, struct.unpack(order + "H", tiff[first : first + 2])[0]


def _entries(tiff: bytes, order: str, offset: int) -> dict[int, int]:
    """Where each tag's 12-byte entry starts in the directory at `offset` (the first of a tag
    written twice; entries past the block's end left out)."""
    if offset + 2 > len(tiff):
        return {}
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    found: dict[int, int] = {}
    for at in range(offset + 2, min(offset + 2 + 12 * count, len(tiff) - 11), 12):
        found.setdefault(struct.unpack(order + "H", tiff[at : at + 2])[0], at)
    return found


def _inline_value(tiff: bytes, order: str, at: int | None) -> tuple[int, int] | None:
    """(offset, size) of the first integer value held in the entry at `at` (BYTE, SHORT, LONG,
    their signed kinds, or IFD; of several that fit in the entry, the first, as Pillow and OpenCV
    read it); None for other types or values stored at an offset."""
    if at is None:
        return None
    kind, count = struct.unpack(order + "HI", tiff[at + 2 : at + 8])
    size = _INTEGER_SIZES.get(kind)
    return (at + 8, size) if size and 1 <= count * size <= 4 else None


def _integer(tiff: bytes, order: str, at: int, size: int) -> int:
    """The unsigned integer of `size` bytes at `at`, in the block's byte order."""
    return int.from_bytes(tiff[at : at + size], "little" if order == "<" else "big")


def exif_orientation(tiff: bytes | None) -> int:
    """The orientation (1-8; 1 where there is none) an EXIF block gives its picture, from its first
    directory (cameras write one SHORT; other integer types are read, and reset, alike)."""
    directory = _first_directory(tiff) if tiff else None
    if directory is None:
        return 1
    order, offset, _ = directory
    value = _inline_value(tiff, order, _entries(tiff, order, offset).get(_ORIENTATION))
    return 1 if value is None else _integer(tiff, order, *value)


def upright_exif(tiff: bytes) -> bytes | None:
    """The EXIF block of a picture written upright, changed in place so that everything else
    (maker notes, found by offsets) stays as it was; None where it is not sound. The orientation
    becomes 1; a quarter turn swaps the X and Y resolutions and pixel dimensions; the thumbnail
    (the second directory), still in the old orientation, is unlinked, as viewers would show it so."""
    directory = _first_directory(tiff)
    if directory is None or directory[1] + 2 + 12 * directory[2] > len(tiff):
        return None  # its first directory runs past its end
    order, offset, count = directory
    first = _entries(tiff, order, offset)
    found = _inline_value(tiff, order, first.get(_ORIENTATION))
    if found is None:
        return tiff
    at, size = found
    turned = _integer(tiff, order, at, size)
    block = bytearray(tiff)
    block[at : at + size] = (1).to_bytes(size, "little" if order == "<" else "big")
    if turned in (5, 6, 7, 8):
        _swap_entries(block, first, 0x011A, 0x011B)  # XResolution, YResolution
        sub = _inline_value(tiff, order, first.get(0x8769))  # the Exif sub-directory's offset
        if sub is not None:
            _swap_entries(block, _entries(tiff, order, _integer(tiff, order, *sub)), 0xA002, 0xA003)
    if turned in range(2, 9):  # the pixels were turned or mirrored
        following = offset + 2 + 12 * count  # the link to the second directory
        block[following : following + 4] = bytes(len(block[following : following + 4]))
    return bytes(block)


def _swap_entries(block: bytearray, entries: dict[int, int], one: int, other: int) -> None:
    """Swap the type, count and value of two tags' entries in place, where both are there: the
    tags keep their places, so the directory stays sorted."""
    a, b = entries.get(one), entries.get(other)
    if a is not None and b is not None:
        block[a + 2 : a + 12], block[b + 2 : b + 12] = block[b + 2 : b + 12], block[a + 2 : a + 12]


def png_metadata(metadata: Metadata) -> bytes:
    """eXIf and pHYs chunks (pixels per metre) to stand after IHDR."""
    chunks = png_chunk(b"eXIf", metadata.exif) if metadata.exif else b""
    if metadata.dpi:
        per_metre = [round(d / 0.0254) for d in metadata.dpi]
        chunks += png_chunk(b"pHYs", struct.pack(">IIB", *per_metre, 1))
    return chunks


def jpeg_with_metadata(jpeg: bytes, metadata: Metadata) -> bytes:
    """OpenCV's JPEG with the resolution in its JFIF segment and an EXIF segment after it."""
    if jpeg[2:4] != b"\xff\xe0" or jpeg[6:11] != b"JFIF\0":
        return jpeg  # not the layout OpenCV writes: leave it whole
    if metadata.dpi:
        density = struct.pack(">BHH", 1, *(min(round(d), 65535) for d in metadata.dpi))  # 1: dots per inch
        jpeg = jpeg[:13] + density + jpeg[18:]
    if metadata.exif and len(metadata.exif) <= MAX_JPEG_EXIF:  # larger: write_image says it is left out
        after_jfif = 4 + struct.unpack(">H", jpeg[4:6])[0]
        body = b"Exif\0\0" + metadata.exif
        jpeg = jpeg[:after_jfif] + b"\xff\xe1" + struct.pack(">H", 2 + len(body)) + body + jpeg[after_jfif:]
    return jpeg
