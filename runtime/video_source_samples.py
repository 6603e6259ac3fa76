"""The source's own YUV samples, kept wherever `process` left them as they were.

`process` sees RGB, and YUV -> RGB -> YUV is not exact: limited-range luma above 235
(super-whites) or below 16 and colours outside the RGB cube are clipped, 4:2:0 chroma is
resampled twice (a few codes at colour edges), and swscale brings full-range chroma back low.
So the frame that is encoded is the source converted straight to the output's pixel format
(YUV to YUV keeps all of that) plus the change `process` made, measured in that format: its
pictures coded as the output is, minus the pictures it was given coded the same way. An
identity `process` gives back the source's samples exactly. A sample that `process` moved by
more than EDIT_LIMIT replaced what was there rather than edited it: the source counts for less
and less beyond it, and not at all from twice it (an edge there left steps in a smooth grade).
A frame tagged with another matrix or range than the output is converted through RGB alone.
Packed YUV (yuyv422 from capture cards, Y210, VUYA) is worked on in its planar twin, which holds
the same samples (swscale converts between them exactly).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .processing import by_rows
from .pyav import plane_rows
from .video_colour import RANGE_JPEG, Colour, copy_colour_tags, interpolation, samples_kept
from .video_fields import split_fields, weave
from .video_float import is_float
from .video_frames import coded_frame

EDIT_LIMIT = 16  # 8-bit levels; a debander moves a sample by a band step at most (17 at 4 bits: 8-9)


@dataclass(frozen=True)
class _Layout:
    """How a planar YUV or grey format stores its samples: what numpy reads them as, and where."""

    dtype: np.dtype
    planes: tuple[tuple[int, int], ...]  # (plane index, samples per pixel of that plane)
    shift: int  # how far a sample's value sits above bit 0 (P010 keeps 10 bits at the top of 16)
    bits: int

    @property
    def top(self) -> int:
        """The largest sample value (not its stored bits: P010's 1023 is stored as 65472)."""
        return (1 << self.bits) - 1

    @property
    def grey(self) -> bool:
        return self.planes == ((0, 1),)

    def edit_limit(self) -> int:
        return EDIT_LIMIT << max(0, self.bits - 8)

    def samples(self, frame: Any, plane: int, per_pixel: int) -> np.ndarray:
        data = frame.planes[plane]
        return np.frombuffer(data, self.dtype).reshape(data.height, -1)[:, : data.width * per_pixel]


def _integer_yuv(fmt: Any) -> bool:
    """Whether a format's colour samples are YUV or grey integers of 8 to 16 bits, of one depth:
    not RGB, palette, 1-bit, float (grey float is 32 "bits") or XYZ (a DCP's 12 bits a sample)."""
    colour = [c for c in fmt.components if not c.is_alpha]
    depths = {c.bits for c in colour}
    return (
        not (fmt.is_rgb or fmt.has_palette or fmt.is_bit_stream or fmt.name.startswith("xyz"))
        and not is_float(fmt.name)
        and len(colour) in (1, 3)
        and len(depths) == 1
        and 8 <= min(depths) <= 16
    )


@functools.lru_cache(maxsize=32)
def _layout(pix_fmt: str) -> _Layout | None:
    """The layout of a planar YUV format (planar or semi-planar, one depth) or of grey; None for
    the rest: RGB, palette, float and packed formats, whose samples numpy cannot read one by one
    as integers or the RGB path leaves as they were."""
    import av

    fmt = av.VideoFormat(pix_fmt)
    if not _integer_yuv(fmt):
        return None
    colour = [c for c in fmt.components if not c.is_alpha]
    planes = [c.plane for c in fmt.components]
    if planes.count(colour[0].plane) > 1 or any(
        c.is_alpha and planes.count(c.plane) > 1 for c in fmt.components
    ):
        return None  # packed: luma interleaved with chroma or alpha (chroma may share a plane: NV12)
    bits = colour[0].bits
    dtype = np.dtype(np.uint8) if bits <= 8 else np.dtype(">u2" if pix_fmt.endswith("be") else "<u2")
    planes = tuple(sorted({(c.plane, sum(o.plane == c.plane for o in colour)) for c in colour}))
    noise = np.random.default_rng(0).integers(0, 65536, (8, 8, 3), dtype=np.uint16)
    probe = av.VideoFrame.from_ndarray(noise, format="yuv444p16le").reformat(
        format=pix_fmt, src_color_range=RANGE_JPEG, dst_color_range=RANGE_JPEG
    )
    luma = probe.planes[0]  # its samples alone: PyAV 18.1.1 leaves garbage in a converted frame's row padding
    samples = np.frombuffer(luma, dtype).reshape(luma.height, -1)[:, : luma.width]
    used = int(np.bitwise_or.reduce(samples, axis=None))
    shift = (used & -used).bit_length() - 1 if used else 0
    return _Layout(dtype, planes, shift, bits)


_SUBSAMPLING = {(1, 1): "444", (2, 1): "422", (2, 2): "420", (4, 1): "411", (4, 4): "410", (1, 2): "440"}


@functools.lru_cache(maxsize=32)
def _planar_twin(pix_fmt: str) -> str | None:
    """The planar YUV format holding a packed YUV format's samples (same chroma, depth and alpha),
    between which swscale moves random samples there and back exactly; `pix_fmt` itself if it is
    planar YUV or grey; None for the rest (RGB, palette, grey with alpha, XYZ; 4:1:1 packed, which
    swscale reads but does not write)."""
    import av

    if _layout(pix_fmt) is not None:
        return pix_fmt
    fmt = av.VideoFormat(pix_fmt)
    colour = [c for c in fmt.components if not c.is_alpha]
    sub = _SUBSAMPLING.get((8 // fmt.chroma_width(8), 8 // fmt.chroma_height(8)))
    if not _integer_yuv(fmt) or len(colour) != 3 or sub is None:
        return None
    alpha = "a" if len(colour) < len(fmt.components) else ""
    twin = f"yuv{alpha}{sub}p" + ("" if colour[0].bits == 8 else f"{colour[0].bits}le")
    if (layout := _layout(twin)) is None:
        return None
    made = av.VideoFrame(8, 8, twin)
    for plane in made.planes:  # random samples of the depth, at the bits they are stored in
        held = np.frombuffer(plane, layout.dtype)
        held[:] = np.random.default_rng(1).integers(0, layout.top + 1, held.shape) << layout.shift
    try:
        back = _in_format(_in_format(made, pix_fmt), twin)
    except (ValueError, OSError):  # swscale does not write the packed format
        return None
    same = all(np.array_equal(layout.samples(made, *at), layout.samples(back, *at)) for at in layout.planes)
    return twin if same else None


def _in_format(frame: Any, pix_fmt: str) -> Any:
    """`frame` in `pix_fmt`, its twin: its samples moved, not converted."""
    if frame.format.name == pix_fmt:
        return frame
    if (
        frame.width % 2 and _layout(pix_fmt) is None and _layout(frame.format.name) is not None
    ):  # planar to packed
        return _packed_at_odd_width(frame, pix_fmt)
    moved = frame.reformat(format=pix_fmt, interpolation="POINT", **samples_kept(frame.color_range))
    copy_colour_tags(frame, moved)
    return moved


def _packed_at_odd_width(frame: Any, pix_fmt: str) -> Any:
    """_in_format from a planar frame into a packed format at an odd width. swscale's yuyv422 and
    uyvy422 writers get the last pixel wrong at widths of 16k + 1 (17, 33, ...): the frame goes
    one pixel wider (its last luma column twice; chroma planes are that wide already) and its
    packed rows are cut back."""
    import av

    size = _layout(frame.format.name).dtype.itemsize  # bytes a sample
    wider = av.VideoFrame(frame.width + 1, frame.height, frame.format.name)
    for index, plane in enumerate(frame.planes):
        given, room = plane_rows(frame, index), plane_rows(wider, index)
        used = plane.width * size
        room[:, :used] = given[:, :used]
        if wider.planes[index].width > plane.width:
            room[:, used : used + size] = given[:, used - size : used]
    copy_colour_tags(frame, wider)
    packed = _in_format(wider, pix_fmt)
    out = av.VideoFrame(frame.width, frame.height, pix_fmt)
    for index in range(len(out.planes)):
        made, cut = plane_rows(packed, index), plane_rows(out, index)
        span = min(made.shape[1], cut.shape[1])
        cut[:, :span] = made[:, :span]
    copy_colour_tags(frame, out)
    return out


@dataclass(frozen=True)
class SourceSamples:
    """A source frame's samples in the output's pixel format, and what the RGB path makes of the
    pictures `process` was given: taken before `process` runs (it may work in place)."""

    source: Any  # VideoFrame: the source converted to the output's pixel format (its twin), YUV to YUV
    unprocessed: Any  # VideoFrame: `process`'s input pictures coded as its output will be, in that twin

    @classmethod
    def of(
        cls, frame: Any, pictures: tuple[np.ndarray, ...], pix_fmt: str, colour: Colour,
        top_field_first: bool | None,
    ) -> SourceSamples | None:  # fmt: skip
        """None where there is nothing to keep: RGB, palette, float or XYZ on either side, or grey
        and YUV (swscale's grey to YUV is no copy)."""
        twin, source_twin = _planar_twin(pix_fmt), _planar_twin(frame.format.name)
        # grey to YUV is no copy: swscale takes grey for full range whatever its tag, and scales deep grey
        if source_twin is None or twin is None or _layout(source_twin).grey != _layout(twin).grey:
            return None
        tagged = Colour.of(frame)  # a stream's tags may not be its frames' (retagged, joined captures)
        if (tagged.matrix, tagged.full_range) != (colour.matrix, colour.full_range):
            return None
        unprocessed = _in_format(coded_frame(pictures, pix_fmt, colour, top_field_first), twin)
        return cls(_converted(frame, twin, top_field_first), unprocessed)

    def put_back(self, made: Any) -> Any:
        """`made` (coded from what `process` returned) made the source plus `process`'s change,
        wherever that change is an edit: `made` itself, changed in place, or for packed YUV a new
        frame with its tags."""
        worked = _in_format(made, self.source.format.name)
        self._put_back(worked)
        return _in_format(worked, made.format.name)

    def _put_back(self, made: Any) -> None:
        layout = _layout(made.format.name)
        limit, top, shift = layout.edit_limit(), layout.top, layout.shift
        work = np.int16 if top < 1 << 14 else np.int32  # room for -top..2 * top
        for plane, per_pixel in layout.planes:
            out, before, source = (
                layout.samples(f, plane, per_pixel) for f in (made, self.unprocessed, self.source)
            )

            def band(rows: slice, out: np.ndarray = out, before: np.ndarray = before,
                     source: np.ndarray = source) -> None:  # fmt: skip
                coded, unprocessed, kept = ((f[rows] >> shift if shift else f[rows]).astype(work)
                                            for f in (out, before, source))  # fmt: skip
                lost = kept - unprocessed  # what the way through RGB lost of the source
                change = coded - unprocessed  # what `process` did
                result = coded + lost
                far = np.abs(change) > limit  # few or none: where `process` replaced more than edited
                if far.any():  # the source counts less and less, not at all from twice the limit
                    trust = np.clip(2 * limit - np.abs(change[far].astype(np.int32)), 0, limit)
                    result[far] = coded[far] + (lost[far].astype(np.int32) * trust + limit // 2) // limit
                np.clip(result, 0, top, out=result)
                out[rows] = result.astype(np.int32) << shift if shift else result

            by_rows(band, out.shape[0])


def _converted(frame: Any, pix_fmt: str, top_field_first: bool | None) -> Any:
    """`frame` in `pix_fmt` with its samples' meaning unchanged (no matrix, the range kept), each
    field on its own where it has fields (4:2:0 chroma rows belong to one field)."""
    args = {"format": pix_fmt, "interpolation": interpolation(), **samples_kept(frame.color_range)}
    if top_field_first is None:
        return frame.reformat(**args)
    top, bottom = (field.reformat(**args) for field in split_fields(frame))
    return weave(top, bottom, frame.height)
