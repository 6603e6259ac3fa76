"""Image files in and out as numpy arrays, keeping 16-bit precision (no torch).

OpenCV reads and writes 48-bit RGB PNG; Pillow silently drops it to 8 bits, which would destroy
exactly the smooth gradients a debander produces. Pillow only reads headers (frame count, colour
mode, EXIF, ICC profile), decodes the one case OpenCV gets wrong: 8-bit TIFF with alpha, whose
colours OpenCV returns multiplied by alpha, and writes WebP with alpha, whose hidden colours
OpenCV's encoder drops. TurboJPEG decodes JPEG, because it says when the
data is damaged. Arrays are RGB(A), H x W x C, in the file's own
integer dtype (uint8 or uint16). A bad file raises ImageError with a one-line message; writes are
atomic, so a crash never leaves a half-written image. What a picture carries besides its pixels
(EXIF, resolution, PNG colour chunks) is read and written by picture_metadata and png_chunks.
"""

from __future__ import annotations

import functools
import io
import os
import re
import stat
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from .files import OutputError, atomic_write_bytes
from .picture_metadata import (
    MAX_JPEG_EXIF,
    Metadata,
    exif_orientation,
    jpeg_with_metadata,
    orientation,
    png_metadata,
)
from .picture_metadata import read_metadata as read_metadata  # beside read_image: the documented API
from .png_chunks import PNG_SIGNATURE, after_ihdr, more_than_srgb, walk_chunks, with_icc_profile
from .png_chunks import read_png_colour as read_png_colour  # beside read_image: the documented API
from .tiff_tags import (
    BITS_PER_SAMPLE,
    CUT,
    EXTRA_SAMPLES,
    LENGTH,
    ONE,
    PHOTOMETRIC,
    PLANAR,
    SAMPLES_PER_PIXEL,
    TILE_WIDTH,
    WIDTH,
    pictures_in,
    read_tags,
    with_straight_alpha,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
# The longest side an encoder takes (libwebp's; libjpeg's JPEG_MAX_DIMENSION), and the format's name.
MAX_SIDE_OF_FORMAT = {".webp": (16383, "WebP"), ".jpg": (65500, "JPEG"), ".jpeg": (65500, "JPEG")}
# The largest picture or video frame bdinn decodes: Pillow's decompression-bomb limit (179
# megapixels, 13,377 px square; beyond any camera), where a few bytes of a crafted header would
# otherwise make it allocate tens of GB (a frame's float copies take 12 bytes a pixel).
MAX_PIXELS = 2 * 89_478_485
_PAGES_LOOKED_AT = 32  # a pyramid of previews halving each time is done by then
MAX_FILE_BYTES = 4 << 30  # a 179-megapixel 16-bit RGBA TIFF stored uncompressed is 1.4 GB
# Leading bytes of the formats we name in error messages (WebP is RIFF....WEBP, checked apart).
_SIGNATURES = (
    (PNG_SIGNATURE, "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
    (b"P5", "PGM"),
    (b"P6", "PPM"),
    (b"P2", "PGM"),  # the plain (ASCII) kinds: a 16-bit one is scaled to full range here, as the
    (b"P3", "PPM"),  # binary ones are; OpenCV stretches an 8-bit one itself
)


# libjpeg's warnings that lose no pixels (bytes between segments or after a scan: some cameras
# and editors write them). Its others (a cut, a bad Huffman code, a lost restart marker) and its
# errors that a lenient decode gets past (a bad table in a later scan of a progressive JPEG, a
# stray marker inside a scan) mean pixels were lost: libjpeg decodes what follows as flat gray
# or leaves the later scans out, and OpenCV and Pillow return that picture without a word.
# Errors that stop even a lenient decode are left to OpenCV, which reports them.
_JPEG_HARMLESS = (
    "extraneous bytes before marker",
    "bad icc marker",
    "invalid sos parameters for sequential jpeg",
    "unknown jfif revision",
    "unknown adobe color transform",
)
# Pillow's modes of pictures with alpha (lower-case a: colours premultiplied by it).
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La")


class ImageError(ValueError):
    """A bad image file; the message is one line: the file, the problem and what to do."""


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs decoder failures itself; ImageError already says it in one line. Its log level
    is `cv2.utils.logging` from 4.13 (5.1 has only that), `cv2.setLogLevel` before (numpy 1 users
    stay there); 0 is silent in both."""
    logging = getattr(cv2.utils, "logging", cv2)
    if not hasattr(logging, "setLogLevel"):
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(0)
    try:
        yield
    finally:
        logging.setLogLevel(level)


def _sniff(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


def _png_damage(data: bytes) -> str | None:
    """What is wrong with the PNG's chunks, walked by their length fields, or None: cut short
    before IEND, or a chunk libpng refuses for a failed CRC (IHDR, IDAT, a palette picture's PLTE;
    of IEND and a suggested palette it only warns). OpenCV does reject both, but libpng first
    prints its own error to stderr; walking the chunks (no decompression) says it in one line.
    Bytes after IEND are allowed."""
    checked = {b"IHDR", b"IDAT"} | ({b"PLTE"} if len(data) > 25 and data[25] == 3 else set())
    for kind, chunk in walk_chunks(memoryview(data)[len(PNG_SIGNATURE) :]):
        if len(chunk) < 12 + struct.unpack(">I", chunk[:4])[0]:  # a chunk cut short is the last one walked
            break
        if kind in checked and zlib.crc32(chunk[4:-4]) != struct.unpack(">I", chunk[-4:])[0]:
            return f"damaged PNG, its {kind.decode()} chunk fails its checksum (copy it again)"
        if kind == b"IEND":
            return None
    return "truncated PNG, the file ends early (re-export or copy it again)"


def _read(path: Path) -> tuple[bytes, str | None]:
    """The file's bytes and format name, after the checks that need no decoding."""
    if not path.exists():
        raise ImageError(f"{path}: no such file (check the path)")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    try:
        status = refuse_device(path)
        regular = stat.S_ISREG(status.st_mode)
        if regular and status.st_size > MAX_FILE_BYTES:  # said before reading it
            raise ImageError(f"{path}: over {MAX_FILE_BYTES >> 30} GB, too large for a picture bdinn reads")
        data = path.read_bytes() if regular else _read_pipe(path)  # a pipe: <(cat a.png), /dev/stdin
    except OSError as exc:
        raise ImageError(f"{path}: cannot read the file ({exc.strerror})") from None
    if len(data) > MAX_FILE_BYTES:  # a pipe, read up to one byte past the cap
        raise ImageError(f"{path}: over {MAX_FILE_BYTES >> 30} GB, too large for a picture bdinn reads")
    if not data:
        raise ImageError(f"{path}: empty file, 0 bytes (re-export or copy it again)")
    kind = _sniff(data)
    if kind == "PNG" and (damage := _png_damage(data)) is not None:
        raise ImageError(f"{path}: {damage}")
    return data, kind


def refuse_device(path: Path) -> os.stat_result:
    """`path`'s status, for a file or a pipe; an ImageError for a device: /dev/zero never ends."""
    status = path.stat()
    if stat.S_ISCHR(status.st_mode) or stat.S_ISBLK(status.st_mode):
        raise ImageError(f"{path}: is a device, not an image file")
    return status


def _read_pipe(path: Path) -> bytes:
    """A pipe's bytes to its end, a megabyte at a time, stopping one byte past MAX_FILE_BYTES."""
    chunks, total = [], 0
    with path.open("rb", buffering=0) as stream:
        while total <= MAX_FILE_BYTES and (chunk := stream.read(1 << 20)):
            chunks.append(chunk)
            total += len(chunk)
    return b"".join(chunks)


def _several(path: Path, frames: object) -> ImageError:
    return ImageError(f"{path}: holds {frames} frames; bdinn debands single pictures (save one frame, or "
                      "convert an animation to a video)")  # fmt: skip


def _views_of_their_own(header: Image.Image) -> bool:
    """Whether a JPEG's further MPF images are views (stereo, multi-angle, panorama) rather than what
    cameras and phones add to one picture: a large preview, a gain or depth map. Viewers show the
    first image alone, and Pillow calls every such JPEG animated."""
    entries = getattr(header, "mpinfo", {}).get(0xB002) or []
    return any("Multi-Frame" in str(entry.get("Attribute", {}).get("MPType")) for entry in entries[1:])


def _header(path: Path, data: bytes) -> Image.Image | None:
    """Pillow's lazy view of the file (nothing decoded yet), or None where Pillow cannot tell.

    A file of several frames (animated PNG/WebP/GIF, multi-page TIFF) is refused: OpenCV would
    silently return the first, and the rest would be lost without a word.
    """
    # A TIFF's pages are walked in the file itself: Pillow fails on some (JPEG XL, damage), opens
    # no big-endian BigTIFF, and counted 40,000 pages in 15 s
    tiff = _sniff(data) == "TIFF"
    if tiff and (held := pictures_in(data, _PAGES_LOOKED_AT)) != ONE:
        if held == CUT:
            raise ImageError(
                f"{path}: truncated or damaged TIFF, a page's directory lies past the file's end (copy it "
                "again)"
            )
        raise _several(path, "several")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # "Corrupt EXIF data"
            header = Image.open(io.BytesIO(data))
            # seeks to a second frame, not to the last
            several = not tiff and getattr(header, "is_animated", False)
            if several and header.format == "MPO":  # a JPEG with a preview or a map of the picture
                several = _views_of_their_own(header)
            frames = getattr(header, "n_frames", 1) if several else 1
    except Image.DecompressionBombError:
        raise _too_large(path) from None
    except (UnidentifiedImageError, OSError, EOFError, ValueError, TypeError, SyntaxError):
        return None  # OpenCV decides: it reads a few formats Pillow does not, and reports the rest
    if several and header.format == "MPO":
        raise ImageError(f"{path}: holds {frames} views (a stereo, multi-angle or panorama MPO); bdinn "
                         "debands single pictures (save each view as a JPEG of its own)")  # fmt: skip
    if several:
        raise _several(path, frames)
    if header.width * header.height > MAX_PIXELS:
        raise _too_large(path)
    return header


def _declared_pixels(data: bytes, kind: str | None) -> int:
    """Width x height as a PNG's or TIFF's own header says (0 where it says nothing). Pillow gives
    up on some files OpenCV decodes (a chunk with a bad CRC, an ICC profile over Pillow's cap, float
    TIFFs), and OpenCV's own limit is 2^30 pixels, six times bdinn's: checked before it decodes."""
    if kind == "PNG" and data[12:16] == b"IHDR" and len(data) >= 24:  # IHDR: first, by the format's rule
        width, height = struct.unpack(">II", data[16:24])
        return width * height if max(width, height) < 1 << 31 else 0  # beyond: OpenCV calls it corrupt
    if kind == "TIFF":
        tags = read_tags(data, (WIDTH, LENGTH))
        return tags[WIDTH][0] * tags[LENGTH][0] if len(tags) == 2 else 0
    return 0


def _too_large(path: Path) -> ImageError:
    return ImageError(
        f"{path}: over {MAX_PIXELS / 1e6:.0f} megapixels, more than bdinn decodes (a damaged or crafted "
        "header, or a picture to split into smaller ones)"
    )


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an array as the EXIF orientation tag (1-8) says a viewer shows it."""
    if orientation in (5, 6, 7, 8):
        img = img.swapaxes(0, 1)  # transposed: 5 as is, the others flipped below
    flip_rows = orientation in (3, 4, 7, 8)
    flip_cols = orientation in (2, 3, 6, 7)
    return img[:: -1 if flip_rows else 1, :: -1 if flip_cols else 1]


def _decode_jpeg(path: Path, data: bytes) -> np.ndarray | None:
    """A YCbCr or gray JPEG decoded by TurboJPEG (through simplejpeg), as OpenCV's BGR or gray,
    upright; None for the kinds left to OpenCV (CMYK, 12-bit, lossless).

    TurboJPEG reports libjpeg's warnings per call, where OpenCV only prints them to the process's
    stderr and returns the picture, part of it flat gray: a damaged scan is refused here. Both
    use libjpeg-turbo's default (accurate) DCT and upsampling, and the orientation is read from
    the first EXIF segment, as OpenCV reads a sound one: the pixels are OpenCV's, bit for bit.
    (Unlike Pillow, neither takes an orientation from XMP, which browsers ignore too.)
    """
    # libjpeg skips bytes between the header's segments with a warning, and a strict decode stops
    # at the first warning: left in, they would hide damage further on.
    data = _without_stray_bytes(data)
    try:
        height, width, colour, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if height * width > MAX_PIXELS:  # said before any decoder allocates it
        raise _too_large(path)
    if colour not in ("YCbCr", "Gray"):
        return None
    space = "GRAY" if colour == "Gray" else "BGR"
    try:  # stopped by libjpeg's first warning
        img = simplejpeg.decode_jpeg(data, colorspace=space, strict=True)
    except ValueError as exc:
        reason = str(exc).removeprefix("Corrupt JPEG data: ")
        try:
            img = simplejpeg.decode_jpeg(data, colorspace=space, strict=False)
        except ValueError:
            return None  # nothing TurboJPEG decodes: OpenCV decides, and says what is wrong
        if not any(harmless in reason.lower() for harmless in _JPEG_HARMLESS):
            raise ImageError(
                f"{path}: truncated or corrupt JPEG data ({reason}), part of the picture may be lost "
                "(re-export or copy it again)"
            ) from None
    return _orient(img, exif_orientation(_jpeg_exif(data)))


# Markers that stand alone, without a length: TEM, RST0-7, SOI, EOI.
_STANDALONE = {0x01, *range(0xD0, 0xDA)}
# A marker: 0xFF and a byte other than 0x00 (a stuffed 0xFF) and 0xFF (fill before a marker).
_MARKER = re.compile(rb"\xff[\x01-\xfe]")


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of each segment of a JPEG's header, up to and with its first scan's
    (SOS), as libjpeg finds them: bytes between segments are skipped, as are fill bytes."""
    at = 2  # after SOI
    while (found := _MARKER.search(data, at)) is not None:  # in C: megabytes of stray bytes take no time
        at = found.start()
        marker = data[at + 1]
        end = at + 2 if marker in _STANDALONE else at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        yield marker, at, min(end, len(data))
        if marker == 0xDA:
            return
        at = end


def _without_stray_bytes(data: bytes) -> bytes:
    """The JPEG with only its header's segments before the scan, and the scan on as it was (the
    same bytes, not a copy, where nothing lies between them)."""
    kept, end = [data[:2]], 2
    for _, start, end in _jpeg_segments(data):
        kept.append(data[start:end])
    return data if sum(map(len, kept)) == end else b"".join(kept) + data[end:]


def _jpeg_exif(data: bytes) -> bytes | None:
    """The first EXIF segment of a JPEG (as OpenCV and Pillow take it), without "Exif\\0\\0"."""
    for marker, start, end in _jpeg_segments(data):
        if marker == 0xE1 and data[start + 4 : start + 10] == b"Exif\0\0":
            return data[start + 10 : end]
    return None


def _decode(path: Path, data: bytes, kind: str | None, flags: int) -> np.ndarray:
    if kind == "BMP" and _bmp_bits(data) == 16:
        return _bmp_with_full_levels(path, data)
    try:
        with _quiet_opencv():
            img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):  # over OpenCV's own limit, 2^30 pixels
            raise _too_large(path) from None
        raise ImageError(f"{path}: cannot decode this {kind or 'file'} (re-export it as PNG)") from None
    if img is None:
        if kind is None:
            raise ImageError(f"{path}: not an image file OpenCV can read (use PNG, JPEG, WebP, TIFF or BMP)")
        if kind == "TIFF":  # OpenCV refuses some valid ones just as it refuses broken ones
            raise ImageError(
                f"{path}: truncated or corrupt TIFF data, or a kind OpenCV does not read (16-bit CMYK, more "
                "than 4 samples, 16-bit floats, small tiles); re-export it as PNG or 8/16-bit RGB TIFF"
            )
        raise ImageError(f"{path}: truncated or corrupt {kind} data (re-export or copy it again)")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:  # a header Pillow could not read said less than this
        raise _too_large(path)
    if img.size == 0:
        raise ImageError(f"{path}: image has zero width or height (re-export it)")
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{path}: {img.dtype} samples are not supported (save it as 8- or 16-bit)")
    top = _pnm_maxval(data) if kind in ("PGM", "PPM") else None
    if data[:2] in (b"P2", b"P3") and img.dtype == np.uint8:
        top = None  # OpenCV stretches a plain (ASCII) 8-bit one itself, not a binary one
    if top is not None and top != np.iinfo(img.dtype).max:  # OpenCV keeps a 10-bit PGM's 0..1023
        img = np.rint(img * (np.iinfo(img.dtype).max / top)).astype(img.dtype)
    return img


def _bmp_bits(data: bytes) -> int:
    """Bits per pixel of a BMP (its OS/2 header keeps them 4 bytes earlier)."""
    if len(data) < 30:
        return 0
    at = 24 if struct.unpack("<I", data[14:18])[0] == 12 else 28
    return struct.unpack("<H", data[at : at + 2])[0]


def _bmp_with_full_levels(path: Path, data: bytes) -> np.ndarray:
    """A 16-bit (RGB565/555/444) BMP through Pillow, which spreads each 4- to 6-bit value over
    0..255: OpenCV only shifts it, so white came out (248, 252, 248) and every colour up to 7
    levels dark (and it refuses RGB444)."""
    header_size = struct.unpack("<I", data[14:18])[0]
    if header_size >= 56 and struct.unpack("<I", data[66:70])[0]:  # an alpha mask (A1R5G5B5, A4R4G4B4)
        raise ImageError(f"{path}: a 16-bit BMP with alpha, whose alpha no reader here keeps; save it as PNG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS was checked
            with Image.open(io.BytesIO(data)) as picture:
                return np.asarray(picture.convert("RGB"))[:, :, ::-1].copy()
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot decode this 16-bit BMP ({exc}); re-export it as PNG") from None


def _pnm_maxval(data: bytes) -> int | None:
    """A PGM/PPM's maximum sample value (its header: magic, width, height, maxval, with
    # comments between); None if unreadable (OpenCV will have refused it)."""
    fields: list[bytes] = []
    for line in data[:1024].split(b"\n"):
        fields += line.split(b"#", 1)[0].split()
        if len(fields) >= 4:
            return int(fields[3]) if fields[3].isdigit() and int(fields[3]) > 0 else None
    return None


def _decode_as_stored(path: Path, data: bytes, kind: str | None, header: Image.Image | None) -> np.ndarray:
    """The file's own channels as OpenCV's BGR(A) (gray + alpha as two), turned upright.

    Keeping alpha, OpenCV applies the EXIF orientation only to TIFF (always), so it is applied
    here to the rest, and to 8-bit TIFF with alpha, which Pillow decodes: OpenCV would return its
    colours multiplied by alpha.
    """
    img = _decode(path, data, kind, cv2.IMREAD_UNCHANGED)
    if kind == "BMP" and header is not None and header.mode not in _ALPHA_MODES and img.ndim == 3:
        img = img[:, :, :3]  # OpenCV takes the pad byte of 32-bit BMPs with colour masks for alpha (0)
    if kind != "TIFF":
        img = _orient(img, orientation(header))
    elif header is not None and header.mode in _ALPHA_MODES and img.dtype == np.uint8:
        straight = header.convert("LA") if header.mode == "La" else header  # Pillow has no La to RGBA
        img = _orient(np.asarray(straight.convert("RGBA"))[:, :, [2, 1, 0, 3]], orientation(header))
    elif (
        header is not None
        and img.dtype == np.uint8
        and TILE_WIDTH in header.tag_v2
        and orientation(header) != 1
    ):
        # OpenCV turns each tile of an 8-bit tiled TIFF, but not where the tiles lie: a mirrored
        # one came out scrambled
        pixels = np.asarray(header.convert("L" if img.ndim == 2 else "RGB"))
        img = _orient(pixels if pixels.ndim == 2 else pixels[:, :, ::-1], orientation(header))
    else:
        img = _checked_tiff(path, data, img, header)
    gray_alpha = (header is not None and header.mode in ("LA", "La")) or (kind == "PNG" and data[25] == 4)
    if gray_alpha and img.ndim == 3 and img.shape[2] == 4:  # Pillow calls 16-bit LA "RGBA"
        img = img[:, :, [0, 3]]  # OpenCV spreads gray + alpha over four channels
    key = _png_transparency(header) if kind == "PNG" and data[25] == 0 and img.ndim == 2 else None
    return img if key is None else _keyed_gray_alpha(img, key, bits=data[24])


def _png_transparency(header: Image.Image | None) -> object:
    """A PNG's tRNS entry as Pillow read it (a colour key, or a palette's alphas), else None."""
    return None if header is None or header.format != "PNG" else header.info.get("transparency")


def _keyed_gray_alpha(gray: np.ndarray, key: object, bits: int) -> np.ndarray:
    """Gray + alpha from a gray PNG's transparent colour key, which OpenCV ignores (the picture
    came back opaque). 2- and 4-bit gray is decoded scaled up to 8 bits and Pillow gives their key
    unscaled; a 1-bit white key Pillow 12.1 gives as 255, older ones as 1 (white came out opaque)."""
    if not isinstance(key, int):
        return gray
    if bits == 1:
        key = 255 if key else 0
    elif bits in (2, 4):
        key = key * 255 // (2**bits - 1)
    opaque = np.iinfo(gray.dtype).max
    return np.stack((gray, np.where(gray == key, 0, opaque).astype(gray.dtype)), axis=2)


def _checked_tiff(path: Path, data: bytes, img: np.ndarray, header: Image.Image | None) -> np.ndarray:
    """A TIFF as OpenCV decoded it, checked against its own tags: OpenCV reads 16-bit gray + alpha
    as 8-bit gray, returns 16-bit premultiplied colours as they are, and gives CMYK an alpha."""
    tags = read_tags(data, (BITS_PER_SAMPLE, PHOTOMETRIC, SAMPLES_PER_PIXEL, PLANAR, EXTRA_SAMPLES))
    channels = 1 if img.ndim == 2 else img.shape[2]
    samples = tags.get(SAMPLES_PER_PIXEL, (channels,))[0]
    bits = max(tags.get(BITS_PER_SAMPLE, (8 * img.itemsize,)))
    if samples == 2 and (channels != 2 or bits != 8 * img.itemsize):
        raise ImageError(f"{path}: a {bits}-bit gray + alpha TIFF, which OpenCV misreads; save it as PNG")
    if tags.get(PLANAR, (1,))[0] == 2 and samples > 1 and img.dtype == np.uint16:
        raise ImageError(  # 8-bit planes it reads right
            f"{path}: a 16-bit TIFF with separate colour planes, which OpenCV misreads; save it with "
            "interleaved (contiguous) samples, or as PNG"
        )
    if tags.get(PHOTOMETRIC) == (0,) and img.dtype == np.uint16:  # MinIsWhite: OpenCV inverts 8-bit only
        img = np.iinfo(np.uint16).max - img
    if header is not None and header.mode == "CMYK" and channels == 4:
        return img[:, :, :3]  # converted to BGR, with an opaque alpha of its own
    if tags.get(EXTRA_SAMPLES, (0,))[0] == 1 and channels == 4 and img.dtype == np.uint16:
        colour, alpha = img[:, :, :3].astype(np.float64), img[:, :, 3:].astype(np.float64)
        straight = np.divide(colour * 65535, alpha, out=np.zeros_like(colour), where=alpha > 0)
        img = np.concatenate((np.clip(np.rint(straight), 0, 65535).astype(np.uint16), img[:, :, 3:]), axis=2)
    return img


def read_image(path: str | os.PathLike, keep_alpha: bool = False, as_file: bool = False) -> np.ndarray:
    """H x W x 3 RGB, or H x W x 4 RGBA with keep_alpha, as uint8 or uint16 like the file.

    Grayscale is repeated into three channels and palettes are expanded; alpha is dropped (not
    composited) unless keep_alpha, in which case images without alpha get an opaque one. as_file
    keeps the file's own layout instead, so that a result can be written back like its source:
    gray as H x W, gray with alpha as H x W x 2, RGB as 3 channels, RGB with alpha as RGBA. The
    EXIF orientation is applied as viewers do.
    """
    path = Path(path)
    data, kind = _read(path)
    header = _header(path, data)
    if _declared_pixels(data, kind) > MAX_PIXELS:
        raise _too_large(path)
    img = _decode_jpeg(path, data) if kind == "JPEG" else None
    if img is None and kind != "JPEG" and (keep_alpha or as_file or kind == "TIFF"):  # TIFF: its tags
        img = _decode_as_stored(path, data, kind, header)
    elif img is None:  # OpenCV drops alpha, expands gray and palettes, and turns the picture upright
        img = _decode(path, data, kind, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels in (1, 2) and as_file:
        return np.ascontiguousarray(img[:, :, 0] if channels == 1 else img)
    if channels == 1:
        rgb, alpha = np.repeat(img, 3, axis=2), None
    elif channels == 2:  # gray + alpha
        rgb, alpha = np.repeat(img[:, :, :1], 3, axis=2), img[:, :, 1:]
    elif channels in (3, 4):
        rgb, alpha = img[:, :, 2::-1], (img[:, :, 3:] if channels == 4 else None)  # OpenCV is BGR(A)
    else:
        raise ImageError(f"{path}: {channels}-channel images are not supported (use gray, RGB or RGBA)")
    if not (keep_alpha or as_file) or (alpha is None and as_file):
        return np.ascontiguousarray(rgb)
    if alpha is None:
        alpha = np.full((*rgb.shape[:2], 1), np.iinfo(rgb.dtype).max, rgb.dtype)
    return np.ascontiguousarray(np.concatenate((rgb, alpha), axis=2))


def stored_layout(path: str | os.PathLike) -> tuple[int, bool] | None:
    """(bits per sample, has alpha) from the file's header, without decoding it; None where that
    cannot be told. Lets a command refuse an output format before the work, not after it."""
    try:
        data, kind = _read(Path(path))
        header = _header(Path(path), data)
    except ImageError:
        return None  # reading it will say what is wrong
    if kind == "PNG" and len(data) > 25:  # IHDR's bit depth and colour type
        return (16 if data[24] == 16 else 8), data[25] in (4, 6) or _png_transparency(header) is not None
    if kind == "TIFF":
        tags = read_tags(data, (BITS_PER_SAMPLE, SAMPLES_PER_PIXEL, PHOTOMETRIC))
        samples = tags.get(SAMPLES_PER_PIXEL, (1,))[0]
        cmyk = tags.get(PHOTOMETRIC, (0,))[0] == 5
        return max(tags.get(BITS_PER_SAMPLE, (8,))), samples == 2 or (samples >= 4 and not cmyk)
    if header is None:
        return None
    return 8, header.mode in _ALPHA_MODES or (header.mode == "P" and "transparency" in header.info)


def check_side_for(path: str | os.PathLike, height: int, width: int) -> None:
    """A picture larger than `path`'s format holds is refused up front: the encoder refused it
    after the work, and the error read as a suffix never written at all."""
    side, name = MAX_SIDE_OF_FORMAT.get(Path(path).suffix.lower(), (0, ""))
    if side and max(height, width) > side:
        raise ImageError(
            f"{path}: {width}x{height} is past {name}'s {side}-pixel limit on a side; write .png"
        )


def stored_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) of the picture read_image returns (EXIF orientation applied), from the
    header alone; None where that cannot be told (TIFF). Lets a command check many files before
    the work."""
    return _header_size(path, turned=True)


def sides(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) as the header has them, TIFF too: before EXIF orientation, which does not
    change the longer side, for checks on it alone (a format's side limit)."""
    return _header_size(path, turned=False)


def _header_size(path: str | os.PathLike, turned: bool) -> tuple[int, int] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as header:
                if turned and header.format == "TIFF":  # OpenCV turns TIFFs itself, by rules of its own
                    return None
                height, width = header.height, header.width
                turned = turned and orientation(header) in (5, 6, 7, 8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, EOFError, ValueError):
        return None  # reading it will say what is wrong
    return (width, height) if turned else (height, width)


def read_icc_profile(path: str | os.PathLike) -> bytes | None:
    """The picture's embedded ICC colour profile, if any: a wide-gamut picture written back
    without it changes colour in every colour-managed viewer."""
    try:
        with Image.open(path) as header:
            return header.info.get("icc_profile") or None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, EOFError, ValueError):
        return None


def native_order(img: np.ndarray) -> np.ndarray:
    """`img` with its samples in this machine's byte order: big-endian uint16 (a TIFF or PGM read
    as stored, or what Debander returns for one) is no np.uint16 to a dtype check."""
    return img if img.dtype.isnative else img.astype(img.dtype.newbyteorder("="))


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 / uint16 (either byte order) -> float32 in [0, 1] (divided by 255 or 65535)."""
    img = native_order(img)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535)
    raise TypeError(f"expected a uint8 or uint16 image, got {img.dtype}")


def from_float(
    arr: np.ndarray, bit_depth: int, dither: np.random.Generator | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """float in [0, 1] -> uint8 (bit_depth 8) or uint16 (16), rounded to nearest and clipped.

    NaN becomes 0, so a diverged network gives black pixels rather than undefined integers.
    With a generator, triangular (TPDF) dither of +-1 LSB is added first: a debanded gradient
    rounded back to 8 bits can band again, and dither turns those steps into fine noise. Values at
    exactly 0 or full scale get none (letterbox bars stay uniform, black stays black).
    float32 frames are computed in float32 (half float64's memory at 1080p); others in float64,
    in place on one scaled copy. `out` (an integer array of arr's shape in any layout, such as a
    transposed view of an H x W x C frame) receives the result in the same pass that casts it.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, got {bit_depth}")
    arr = np.asarray(arr)
    kind = np.float32 if arr.dtype == np.float32 else np.float64
    top = kind(255 if bit_depth == 8 else 65535)
    scaled = np.multiply(arr, top, dtype=kind)
    if dither is not None:
        noise = dither.random(scaled.shape, kind) - dither.random(scaled.shape, kind)
        noise[(scaled == 0) | (scaled == top)] = 0  # a clip keeps half the noise: black up 1/8 level
        scaled += noise
    np.rint(scaled, out=scaled)
    np.fmax(scaled, 0, out=scaled)  # fmax/fmin drop NaN for the other operand: NaN -> 0
    np.fmin(scaled, top, out=scaled)
    if out is None:
        return scaled.astype(np.uint8 if bit_depth == 8 else np.uint16)
    np.copyto(out, scaled, casting="unsafe")
    return out


# Colours to compare a profile with sRGB on: every mix of six levels per channel.
_LEVELS = np.linspace(0, 255, 6).round().astype(np.uint8)
_PROBE = np.stack(np.meshgrid(_LEVELS, _LEVELS, _LEVELS, indexing="ij"), axis=-1).reshape(1, -1, 3)


@functools.lru_cache(maxsize=16)  # every picture of a batch brings the same profile
def _is_srgb(profile: bytes) -> bool:
    """Whether an ICC profile gives colours sRGB's own, within 3 levels of 255: only such a profile
    may be left out of a file, since viewers assume sRGB. Compared through Little CMS (a profile
    named "Linear sRGB" is not sRGB); one it cannot read counts as not sRGB."""
    try:
        from PIL import ImageCms  # Little CMS; a Pillow built without it says the profile is not sRGB
    except ImportError:
        return False
    try:
        transform = ImageCms.buildTransform(
            ImageCms.ImageCmsProfile(io.BytesIO(profile)), ImageCms.createProfile("sRGB"), "RGB", "RGB",
            renderingIntent=1,  # relative colorimetric (an enum only in newer Pillow)
        )  # fmt: skip
        mapped = np.asarray(ImageCms.applyTransform(Image.fromarray(_PROBE), transform))
    except (ImageCms.PyCMSError, OSError, ValueError):
        return False
    return int(np.abs(mapped.astype(np.int16) - _PROBE).max()) <= 3


def _lossless_webp_with_alpha(path: Path, bgra: np.ndarray) -> bytes:
    """Lossless WebP that keeps the colour under fully transparent pixels (libwebp's `exact`):
    OpenCV's lossless WebP set it to 0, losing what compositing and texture work keep there."""
    buffer = io.BytesIO()
    try:
        Image.fromarray(np.ascontiguousarray(bgra[:, :, [2, 1, 0, 3]]), "RGBA").save(
            buffer, "WEBP", lossless=True, exact=True, quality=100
        )
    except (ValueError, OSError) as exc:  # beyond WebP's 16383 px, a libwebp without lossless
        raise ImageError(f"{path}: cannot write it as WebP ({exc}); write .png") from None
    return buffer.getvalue()


def write_image(
    path: str | os.PathLike,
    img: np.ndarray,
    icc_profile: bytes | None = None,
    png_colour: bytes = b"",
    replace: bool = True,
    metadata: Metadata | None = None,
) -> Path:
    """Write a uint8/uint16 gray, gray + alpha, RGB or RGBA array; the suffix picks the format
    (16-bit: PNG/TIFF). An ICC profile, and a PNG source's colour chunks (`read_png_colour`), are
    embedded in PNG files (OpenCV's other writers take none: said, unless they are sRGB's); the
    source's EXIF and resolution (`read_metadata`) in PNG and JPEG files.

    Encoded in memory, written to a temporary file in the same folder and renamed over `path`:
    a failure or crash leaves either the old file or none, never a partial one. Without
    `replace`, an existing file at `path` is kept and an OutputError raised.
    """
    path = Path(path)
    img = native_order(img)
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{path}: cannot write {img.dtype} samples (convert to uint8 or uint16 first)")
    if img.ndim in (2, 3) and 0 in img.shape[:2]:  # OpenCV's refusal read as a bad suffix
        raise ImageError(f"{path}: the image is {img.shape[0]}x{img.shape[1]}; there is nothing to write")
    if not replace and (path.exists() or path.is_symlink()):  # before the encoding, not after it
        raise OutputError(
            f"{path}: already exists and is kept (pass --force to overwrite it; in Python, replace=True)"
        )
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[:, :, [2, 1, 0, 3][: img.shape[2]]]  # RGB(A) -> OpenCV's BGR(A)
    elif img.ndim == 3 and img.shape[2] == 2:
        img = img[:, :, [0, 0, 0, 1]]  # gray + alpha: OpenCV writes no such PNG, so equal-channel RGBA
    elif not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1)):
        raise ImageError(f"{path}: cannot write an array of shape {img.shape} (want H x W x 1, 2, 3 or 4)")
    suffix = path.suffix.lower()
    if img.dtype == np.uint16 and suffix not in (".png", ".tif", ".tiff"):
        raise ImageError(f"{path}: 16-bit images can only be written as .png or .tif")
    if img.ndim == 3 and img.shape[2] == 4 and suffix in (".jpg", ".jpeg"):
        raise ImageError(f"{path}: JPEG has no alpha channel; write .png to keep it")
    check_side_for(path, *img.shape[:2])
    data = _with_colour(path, _encoded(path, img), img, icc_profile, png_colour)
    if metadata and suffix == ".png":
        data = after_ihdr(data, png_metadata(metadata))
    elif metadata and suffix in (".jpg", ".jpeg"):
        if metadata.exif and len(metadata.exif) > MAX_JPEG_EXIF:
            message = (
                f"{path}: the source's EXIF ({len(metadata.exif):,} bytes) is more than a JPEG holds; "
                "not written (write .png for it)"
            )
            warnings.warn(message, stacklevel=2)
        data = jpeg_with_metadata(data, metadata)
    if suffix in (".tif", ".tiff") and img.ndim == 3 and img.shape[2] == 4:
        data = with_straight_alpha(data)
    atomic_write_bytes(path, data, replace=replace)
    return path


def _encoded(path: Path, img: np.ndarray) -> bytes:
    """The file's bytes for an array in OpenCV's channel order, in the format its suffix names."""
    suffix = path.suffix.lower()
    if suffix == ".webp" and img.ndim == 3 and img.shape[2] == 4:
        return _lossless_webp_with_alpha(path, img)
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if suffix == ".webp" else []  # above 100: lossless
    try:
        ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(img), params)
    except cv2.error:
        ok = False
    if not ok:
        raise ImageError(f"{path}: cannot write images with suffix {suffix!r} (use .png)")
    return encoded.tobytes()


def _with_colour(
    path: Path, data: bytes, img: np.ndarray, icc_profile: bytes | None, png_colour: bytes
) -> bytes:
    """A PNG's bytes with the source's ICC profile and colour chunks (other formats: `data` as it is,
    with a warning, to write_image's caller, of what it cannot hold)."""
    suffix = path.suffix.lower()
    carried = False  # an ICC profile went into the file
    if icc_profile and suffix == ".png":
        wanted = b"GRAY" if img.ndim == 2 or img.shape[2] == 1 else b"RGB "
        carried = icc_profile[16:20] == wanted  # the profile's colour space: a CMYK one is invalid in a PNG
        if carried:
            data = with_icc_profile(data, icc_profile)
        elif not _is_srgb(icc_profile):  # sRGB on a gray picture: what a viewer assumes anyway
            space = icc_profile[16:20].decode("latin-1").strip() or "unknown"
            message = f"{path}: the source's {space} colour profile does not fit this picture; not carried"
            warnings.warn(message, stacklevel=3)
    elif icc_profile and not _is_srgb(icc_profile):  # OpenCV writes none; sRGB is what viewers assume
        message = f"{path}: the source's ICC colour profile is not written into {suffix}; write .png for it"
        warnings.warn(message, stacklevel=3)
    chunks = list(walk_chunks(png_colour))
    if suffix == ".png":  # an sRGB chunk must not stand beside an ICC profile
        data = after_ihdr(
            data, b"".join(chunk for kind, chunk in chunks if not (kind == b"sRGB" and carried))
        )
    elif lost := more_than_srgb(chunks):
        message = (
            f"{path}: the source's PNG colour chunks ({', '.join(lost)}) are not written into {suffix}; "
            "write .png for them"
        )
        warnings.warn(message, stacklevel=3)
    return data
