"""PNG chunks: walking them, adding them after the header, and the ones that say how to show the
colours. A debanded PNG carries its source's colour chunks, ICC profile and metadata this way,
since OpenCV, which writes the pixels, writes none of them."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# PNG chunks that say how to show the colours (gamma, primaries, sRGB intent, HDR's coding-
# independent code points and mastering display): carried from a PNG source into a PNG output.
_PNG_COLOUR_CHUNKS = (b"gAMA", b"cHRM", b"sRGB", b"cICP", b"mDCV", b"cLLI")
_SRGB_GAMMA = 45455  # gAMA of sRGB (1 / 2.2, times 100000): what viewers assume anyway


_MAX_COLOUR_CHUNK = 1 << 16  # the largest holds a few dozen bytes: a longer length is damage
_MAX_EXIF_CHUNK = 1 << 20  # EXIF blocks are tens of kilobytes (a JPEG's holds at most 64 KB)


def read_png_colour(path: str | os.PathLike) -> bytes:
    """A PNG's colour chunks (each whole: length, type, data, CRC) before its pixels; b"" for
    other files. Without them a viewer takes linear or HDR (PQ) values for sRGB. The file is
    walked chunk by chunk to the pixels, however far text or XMP put them, and a chunk is kept
    only whole, with its CRC right: a cut one would make the output a broken PNG."""
    found = []
    try:
        with open(path, "rb") as file:
            if file.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                return b""
            while len(head := file.read(8)) == 8:
                length, kind = struct.unpack(">I4s", head)
                if kind in (b"IDAT", b"IEND"):  # the colour chunks come before the pixels
                    break
                if kind not in _PNG_COLOUR_CHUNKS or length > _MAX_COLOUR_CHUNK:
                    file.seek(length + 4, os.SEEK_CUR)  # its data and CRC
                    continue
                rest = file.read(length + 4)
                if len(rest) == length + 4 and struct.unpack(">I", rest[-4:])[0] == zlib.crc32(
                    kind + rest[:-4]
                ):
                    found.append(head + rest)
    except OSError:
        return b""
    return b"".join(found)


def late_exif(file: BinaryIO) -> bytes | None:
    """The body of a PNG's eXIf chunk that follows its pixels (some writers put it there; Pillow
    reads such a chunk only once it has decoded the whole picture), found by walking the chunks'
    lengths; None where there is none. The file's position is kept."""
    at = file.tell()
    try:
        file.seek(len(PNG_SIGNATURE))
        while len(head := file.read(8)) == 8:
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IEND":
                return None
            if kind == b"eXIf" and length <= _MAX_EXIF_CHUNK:
                body = file.read(length)
                return body if len(body) == length else None
            file.seek(length + 4, os.SEEK_CUR)  # its data and CRC
        return None
    finally:
        file.seek(at)


def walk_chunks(chunks: bytes | memoryview) -> Iterator[tuple[bytes, bytes | memoryview]]:
    """(type, the whole chunk: length, type, data, CRC) of each chunk in a run of them, walked by
    their length fields; the last may be cut short. A memoryview walks a file without copying it."""
    at = 0
    while at + 8 <= len(chunks):
        length, kind = struct.unpack(">I4s", chunks[at : at + 8])
        yield kind, chunks[at : at + 12 + length]
        at += 12 + length


def after_ihdr(png: bytes, chunks: bytes) -> bytes:
    """The PNG with `chunks` right after IHDR, where colour chunks belong (before the pixels)."""
    at = len(PNG_SIGNATURE) + 8 + 13 + 4  # the IHDR chunk: length, type, 13 bytes, CRC
    return png[:at] + chunks + png[at:]


def with_icc_profile(png: bytes, profile: bytes) -> bytes:
    """The PNG with an iCCP chunk right after IHDR, where the format wants it (before the pixels)."""
    body = b"ICC Profile\0\0" + zlib.compress(profile)  # name, NUL, compression method 0 (deflate)
    return after_ihdr(png, png_chunk(b"iCCP", body))


# cHRM of sRGB: white, red, green and blue x, y times 100000 (D65, BT.709 primaries).
_SRGB_CHROMATICITIES = (31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)
_SRGB_CICP = (1, 13)  # cICP colour primaries BT.709, transfer IEC 61966-2-1 (sRGB)


def srgb_like(kind: bytes, chunk: bytes) -> bool:
    """Whether a PNG colour chunk says no more than sRGB, which a file without it is taken for:
    an sRGB chunk, a gAMA of 1/2.2, a cHRM of sRGB's primaries and white point (as ImageMagick
    writes beside sRGB), a cICP of BT.709 primaries with the sRGB transfer (RGB, any range)."""
    body = chunk[8:-4]
    if kind == b"gAMA" and len(body) == 4:
        return abs(struct.unpack(">I", body)[0] - _SRGB_GAMMA) <= 500
    if kind == b"cHRM" and len(body) == 32:
        return all(
            abs(a - b) <= 100 for a, b in zip(struct.unpack(">8I", body), _SRGB_CHROMATICITIES, strict=True)
        )
    if kind == b"cICP" and len(body) == 4:
        return tuple(body[:2]) == _SRGB_CICP and body[2] == 0
    return kind == b"sRGB"


def more_than_srgb(chunks: list[tuple[bytes, bytes]]) -> list[str]:
    """The kinds of those colour chunks that say more than sRGB, what a format without them loses.
    Beside an sRGB chunk, gAMA and cHRM are what readers that know sRGB ignore (PNG spec)."""
    beside_srgb = any(kind == b"sRGB" for kind, _ in chunks)
    return [
        kind.decode()
        for kind, chunk in chunks
        if not srgb_like(kind, chunk) and not (beside_srgb and kind in (b"gAMA", b"cHRM"))
    ]
