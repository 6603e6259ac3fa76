"""RGB <-> YUV for video frames, with the source's own matrix and range, and their colour tags.

Colour conversion is FFmpeg's swscale with accurate rounding and full chroma interpolation,
using the source's own matrix and range in both directions: the way there and back moves luma by
at most one code value except where colours clip, and chroma by a few where 4:2:0 is resampled
(full-range chroma comes back half a code low, a swscale habit), which SourceSamples mends.
swscale puts 16-bit RGB white at 65280 rather than 65535; this module measures that once per
pixel format and rescales, so `process` sees, and may return, the true 0..65535 scale. HDR (PQ,
HLG) frames are passed as their coded, non-linear values, and tagged as such again on output.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .processing import by_rows, usable_cpus
from .pyav import plane_rows
from .video_float import float_alpha, float_grey_rgb, is_float, is_float_grey

# FFmpeg's names of the colour tags (libavutil/pixdesc.c), for the options that set them.
_PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020",
              11: "smpte431", 12: "smpte432"}  # fmt: skip
_TRANSFERS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
              13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084",
              18: "arib-std-b67"}  # fmt: skip
_MATRICES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco", 9: "bt2020nc",
             10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc", 13: "chroma-derived-c",
             14: "ictcp"}  # fmt: skip
ASSUMED_TAGS = {0, 1, 2}  # reserved, BT.709, unspecified: what a reader assumes of untagged HD video
HDR_TRANSFERS = {16, 18}  # PQ and HLG

# AVColorSpace (what frames and streams are tagged with) -> swscale matrix (SWS_CS_*).
# 5 (BT.470BG) and 6 (SMPTE 170M) are the same BT.601 matrix.
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9}
_SPC_UNSPECIFIED, SPC_BT709, RANGE_MPEG, RANGE_JPEG = 2, 1, 1, 2
# Matrices swscale lacks whose tag the output keeps: YCgCo, BT.2020 constant luminance, SMPTE 2085,
# chromaticity-derived, ICtCp. Not the YCgCo-R variants (16, 17), which x265 refuses to write.
_KEPT_MATRICES = {8, 10, 11, 12, 13, 14}


def interpolation() -> Any:
    from av.video.reformatter import Interpolation

    # Without full chroma interpolation swscale's 4:2:0 <-> RGB path is off by several codes.
    return (
        Interpolation.BICUBIC
        | Interpolation.ACCURATE_RND
        | Interpolation.FULL_CHR_H_INT
        | (Interpolation.FULL_CHR_H_INP)
    )


@dataclass(frozen=True)
class Colour:
    """How the output is converted to YUV and tagged, taken from the source stream."""

    matrix: int | None  # swscale matrix; None: swscale's default (BT.601), as for untagged input
    colorspace: int
    color_range: int
    primaries: int
    trc: int

    @classmethod
    def of(cls, ctx: Any) -> Colour:
        """The colour of a stream's codec context or of a frame, for YUV made from its RGB."""
        space, rng = int(ctx.colorspace or 0), int(ctx.color_range or 0)
        if ctx.format is not None and ctx.format.is_rgb:  # RGB-coded, tagged or not: make standard HD
            matrix, space, rng = 1, SPC_BT709, RANGE_MPEG
        elif space == _SPC_UNSPECIFIED:
            matrix = None  # decoded with swscale's default; encode the same way and keep it untagged
        elif space in _SWS_MATRIX:
            matrix = _SWS_MATRIX[space]
        else:  # a matrix swscale lacks: BT.709 both ways, in its own range, so the samples come back
            # as they were; those of _KEPT_MATRICES keep their tag (players took YCgCo samples for
            # BT.709 ones), the rest (a YUV frame tagged RGB, tags x265 refuses) are made BT.709
            matrix, space = 1, space if space in _KEPT_MATRICES else SPC_BT709
        return cls(matrix, space, rng, int(ctx.color_primaries or 0), int(ctx.color_trc or 0))

    def ffmpeg_tags(self) -> str:
        """The colour tags as ffmpeg options, for formats that cannot hold them (Y4M); '' if none."""
        tags = [
            f"-{option} {names[value]}"
            for option, names, value in (
                ("color_primaries", _PRIMARIES, self.primaries),
                ("color_trc", _TRANSFERS, self.trc),
                ("colorspace", _MATRICES, self.colorspace),
            )
            if value in names
        ]
        return " ".join(tags)

    @property
    def full_range(self) -> bool:
        return self.color_range == RANGE_JPEG

    def reformat_args(self) -> dict[str, int]:
        args = {}
        if self.matrix is not None:
            args["dst_colorspace"] = self.matrix
        if self.color_range in (RANGE_MPEG, RANGE_JPEG):
            args["dst_color_range"] = self.color_range
        return args


def _luma_row(frame: Any) -> np.ndarray:
    """The first row of a frame's luma samples, as float64, in the format's byte order. A packed
    format (Y beside alpha or chroma: ya16, y210) is first made planar grey, which maps its
    samples linearly: read as they lay, they interleaved Y with A or chroma."""
    if sum(component.plane == 0 for component in frame.format.components) > 1:
        frame = frame.reformat(format="gray16le")
    row = _plane_samples(frame, 0, frame.format.components[0].bits)[0]
    return row.astype(np.float64)


@functools.lru_cache(maxsize=32)
def _rgb48_scales(pix_fmt: str, matrix: int | None, color_range: int) -> tuple[float, float]:
    """Factors that put swscale's 16-bit RGB for `pix_fmt` on the true 0..65535 scale.

    swscale treats 65280 (255 << 8) as 16-bit white, both ways and for most YUV formats, and
    decodes full-range 9- to 14-bit white as the code shifted up (10 bits: 1023 << 6 = 65472).
    Decoding is measured at the format's own white (black decodes to 0): a factor fitted over a
    ramp of 8-bit levels missed it (full-range 10-bit white reached 65521, so the network took it
    for a grey to smooth, not white to keep). Encoding is measured on a grey ramp against the
    8-bit rgb24 path, which is exact. (decode, encode): decoded RGB48 is multiplied by decode, and
    RGB48 to be encoded by encode; both are 1.0 once swscale gets it right.
    """
    import av

    if av.VideoFormat(pix_fmt).is_rgb:  # RGB to RGB: no matrix, and swscale scales 16 bits right
        return 1.0, 1.0
    args = Colour(matrix, _SPC_UNSPECIFIED, color_range, 0, 0).reformat_args()
    flags = interpolation()
    ramp = np.arange(256, dtype=np.uint8)
    grey = np.repeat(np.repeat(ramp[None, :, None], 3, axis=2), 2, axis=0)
    exact = av.VideoFrame.from_ndarray(grey, format="rgb24").reformat(
        format=pix_fmt, interpolation=flags, **args
    )
    inner = slice(16, 240)  # clear of clipping at both ends
    white = _white(pix_fmt, color_range).to_ndarray(
        format="rgb48le", interpolation=flags, **_decode_args(matrix)
    )
    grey16 = grey.astype(np.uint16) * 257
    coded = av.VideoFrame.from_ndarray(grey16, format="rgb48le").reformat(
        format=pix_fmt, interpolation=flags, **args
    )
    luma, exact_luma = _luma_row(coded), _luma_row(exact)
    encode_slope = np.polyfit(exact_luma[inner] - exact_luma[0], luma[inner] - exact_luma[0], 1)[0]

    def snap(slope: float) -> float:  # within 1/4 of a 16-bit code value at white: leave alone
        return 1.0 if abs(slope - 1) < 0.25 / 65535 or not 0.9 < slope < 1.1 else float(1 / slope)

    return snap(float(white.mean()) / 65535), snap(encode_slope)


def _white(pix_fmt: str, color_range: int) -> Any:
    """A frame of `pix_fmt`'s white: full-scale (or 235 in limited range) luma, neutral chroma;
    made at 16 bits and moved to `pix_fmt` without a matrix. Grey formats are full range to swscale."""
    import av

    grey = sum(not component.is_alpha for component in av.VideoFormat(pix_fmt).components) == 1
    made = av.VideoFrame(2, 2, "gray16le" if grey else "yuv444p16le")
    held = RANGE_JPEG if grey or color_range == RANGE_JPEG else RANGE_MPEG
    values = (65535 if held == RANGE_JPEG else 235 << 8, 1 << 15, 1 << 15)[: len(made.planes)]
    for plane, value in zip(made.planes, values, strict=True):
        plane.update(np.full(plane.buffer_size // 2, value, "<u2").tobytes())
    frame = made.reformat(format=pix_fmt, **samples_kept(held))
    frame.color_range = color_range
    return frame


def samples_kept(color_range: int) -> dict[str, int]:
    """swscale arguments that move YUV samples into another YUV format keeping their meaning: the
    range both ways (limited unless full) and one matrix both ways (any: YUV to YUV applies none),
    named, since swscale refuses a frame's own where it lacks it (YCgCo)."""
    held = RANGE_JPEG if color_range == RANGE_JPEG else RANGE_MPEG
    return {
        "src_color_range": held,
        "dst_color_range": held,
        "src_colorspace": SPC_BT709,
        "dst_colorspace": SPC_BT709,
    }


def _decode_args(matrix: int | None) -> dict[str, int]:
    """decode_rgb's matrix for reformat: the frame's own, or swscale's default where it has none."""
    return {} if matrix is None else {"src_colorspace": matrix}


@functools.lru_cache(maxsize=32)
def _gain_lut(factor: float) -> np.ndarray | None:
    """uint16 -> uint16 table for x * factor, rounded and clipped; None for the identity."""
    if factor == 1.0:
        return None
    scaled = np.rint(np.arange(65536, dtype=np.float64) * factor)
    return np.clip(scaled, 0, 65535).astype(np.uint16)


_THREADS = min(4, usable_cpus())  # swscale slices: bit-identical, 1.3x faster on 2 cores
_local = threading.local()


def reformatter(direction: str) -> Any:
    """This thread's VideoReformatter for `direction`. A frame's own reformat() builds a new
    swscale context for every frame: 11 ms of a 1080p RGB48 -> YUV frame's 21 ms."""
    from av.video.reformatter import VideoReformatter

    if not hasattr(_local, direction):
        setattr(_local, direction, VideoReformatter())
    return getattr(_local, direction)


def _look_up(lut: np.ndarray, rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """lut[rgb] in bands of rows on several threads (14 ms of a 1080p frame on one core), into
    `out` (which may be rgb itself: each band reads its rows before writing them)."""
    if out is None:
        out = np.empty(rgb.shape, lut.dtype)

    def band(rows: slice) -> None:
        out[rows] = lut[rgb[rows]]

    by_rows(band, rgb.shape[0])
    return out


def copy_colour_tags(src: Any, dst: Any) -> None:
    """Matrix, range, primaries and transfer of frame `src` onto frame `dst`."""
    dst.colorspace, dst.color_range = src.colorspace, src.color_range
    dst.color_primaries, dst.color_trc = src.color_primaries, src.color_trc


def decode_rgb(frame: Any, deep: bool) -> np.ndarray:
    """A decoded frame as H x W x 3 RGB: uint8 (rgb24), or uint16 on 0..65535 when deep. The matrix
    is Colour.of(frame)'s, the one encode_frame uses: swscale refuses the ones it lacks. Always a
    buffer of its own: a frame already in that format comes back as itself, and a `process` that
    works in place would change the caller's frame (deband_frame's). Float grey is read here, not
    by swscale (video_float)."""
    if is_float_grey(frame.format.name):
        return float_grey_rgb(frame, deep)
    to, flags = ("rgb48le" if deep else "rgb24"), interpolation()
    matrix = None if frame.format.is_rgb else Colour.of(frame).matrix
    converted = reformatter("decode").reformat(
        frame, format=to, interpolation=flags, threads=_THREADS, **_decode_args(matrix)
    )
    rgb = converted.to_ndarray()
    if converted is frame:
        rgb = rgb.copy()
    if not deep:
        return rgb
    lut = _gain_lut(_rgb48_scales(frame.format.name, matrix, frame.color_range)[0])
    return rgb if lut is None else _look_up(lut, rgb, out=rgb)  # a fresh buffer: rescaled in place


@functools.cache
def swscale_writes(pix_fmt: str) -> bool:
    """Whether FFmpeg's scaler can make `pix_fmt` frames: it reads some it cannot write (pal8,
    Bayer, packed float RGB), and finding out at encode_frame wastes the frame's whole `process`."""
    import av

    try:
        av.VideoFrame(16, 16, "rgb24").reformat(format=pix_fmt)
    except (av.FFmpegError, ValueError):
        return False
    return True


def encode_frame(rgb: np.ndarray, pix_fmt: str, colour: Colour) -> Any:
    """H x W x 3 uint8/uint16 RGB -> a VideoFrame in pix_fmt, converted and tagged per `colour`."""
    import av

    args = colour.reformat_args()
    if rgb.dtype == np.uint16:
        lut = _gain_lut(_rgb48_scales(pix_fmt, colour.matrix, colour.color_range)[1])
        lent, rgb_format = np.ascontiguousarray(rgb if lut is None else _look_up(lut, rgb)), "rgb48le"
    else:
        lent, rgb_format = np.ascontiguousarray(rgb), "rgb24"
    # from_numpy_buffer lends the array to swscale; from_ndarray's copy took 14 ms of a 1080p
    # RGB48 frame, as long as the conversion itself.
    frame = av.VideoFrame.from_numpy_buffer(lent, format=rgb_format)
    out = reformatter("encode").reformat(
        frame, format=pix_fmt, interpolation=interpolation(), threads=_THREADS, **args
    )
    if out is frame:  # already in pix_fmt: the lent frame came back, and its memory is the caller's
        out = av.VideoFrame.from_ndarray(lent, format=rgb_format)
    out.colorspace, out.color_range = colour.colorspace, colour.color_range
    out.color_primaries, out.color_trc = colour.primaries, colour.trc
    return out


@functools.lru_cache(maxsize=64)
def _alpha_layout(pix_fmt: str) -> tuple[int, tuple[int, ...], int] | None:
    """Where a pixel format keeps alpha: (plane, byte offsets within a pixel, bytes per pixel);
    None without alpha. Packed formats are probed: the bytes that change when only alpha does."""
    import av

    fmt = av.VideoFormat(pix_fmt)
    alpha = _alpha_component(fmt)
    if alpha is None:
        return None
    if fmt.is_planar:
        size = (alpha.bits + 7) // 8
        return alpha.plane, tuple(range(size)), size
    probes = []
    for value in (0, 0x5555):  # 0x5555: every byte of it nonzero in each depth, float included
        rgba = np.zeros((2, 2, 4), np.uint16)
        rgba[..., 3] = value
        probes.append(
            bytes(av.VideoFrame.from_ndarray(rgba, format="rgba64le").reformat(format=pix_fmt).planes[0])
        )
    step = fmt.padded_bits_per_pixel // 8
    return 0, tuple(i for i in range(step) if probes[0][i] != probes[1][i]), step


def copy_alpha(src: Any, dst: Any) -> None:
    """Copy src's alpha samples into dst (the same format and size) bit for bit; the RGB path
    drops alpha, and swscale's own alpha conversions are off by one here and there."""
    layout = _alpha_layout(src.format.name)
    if layout is None:
        return
    index, offsets, step = layout
    end = src.planes[index].width * step
    read, write = plane_rows(src, index), plane_rows(dst, index)
    for offset in offsets:
        write[:, offset:end:step] = read[:, offset:end:step]


def _alpha_component(fmt: Any) -> Any:
    return next((c for c in fmt.components if c.is_alpha), None)


def alpha_of(frame: Any) -> np.ndarray | None:
    """A frame's alpha as H x W uint16 on 0..65535 (None without alpha), to carry it past the
    RGB-only network into an output of another depth."""
    fmt = frame.format
    alpha = _alpha_component(fmt)
    if alpha is None:
        return None
    if is_float(fmt.name):
        return float_alpha(frame)
    if not fmt.is_planar:  # packed: let swscale unpack it
        return frame.to_ndarray(format="rgba64le")[..., 3].copy()
    top = (1 << alpha.bits) - 1
    samples = _plane_samples(frame, alpha.plane, alpha.bits).astype(np.uint32)
    return ((samples * 65535 + top // 2) // top).astype(np.uint16)


def put_alpha(frame: Any, alpha: np.ndarray) -> None:
    """Write H x W uint16 alpha on 0..65535 into a planar frame's alpha plane, at its depth."""
    component = _alpha_component(frame.format)
    top = (1 << component.bits) - 1
    samples = _plane_samples(frame, component.plane, component.bits)
    samples[:] = (alpha.astype(np.uint32) * top + 32767) // 65535


def _plane_samples(frame: Any, index: int, bits: int) -> np.ndarray:
    """A writable H x W view of one plane's samples."""
    plane = frame.planes[index]
    dtype = (
        np.dtype(np.uint8) if bits <= 8 else np.dtype(">u2" if frame.format.name.endswith("be") else "<u2")
    )
    return np.frombuffer(plane, dtype).reshape(plane.height, -1)[:, : plane.width]
