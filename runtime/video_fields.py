"""Interlaced video: a frame's two fields taken apart as pictures of their own and woven back.

An interlaced frame holds two pictures a field period apart, one in the even rows and one in the
odd rows; in 4:2:0 the chroma rows alternate between the fields too. Converted to RGB or debanded
as one picture, each field's colour and the model's smoothing would reach into the other field.
Split by rows in the frame's own pixel format (what FFmpeg's separatefields does), each field
converts and debands on its own, and the debanded fields are woven back the same way.
"""

from __future__ import annotations

import threading
from fractions import Fraction
from typing import Any

import numpy as np

from .pyav import plane_rows
from .video_colour import copy_colour_tags

# AVFieldOrder -> whether the top field is shown first. FFmpeg's enum calls TB (4) "top coded
# first, bottom displayed first", but the ffmpeg program tags top-field-first frames of most
# codecs TB, and players read it so: TT and TB are top first, BB and BT bottom first.
TOP_FIELD_FIRST = {2: True, 3: False, 4: True, 5: False}

# Decoders whose frames flagged interlaced are not two woven fields: HEVC hands each field over
# as a picture of its own, and PNG flags Adam7, an order of storing rows.
NOT_WOVEN = {"hevc", "png", "apng"}

# Encoders that keep fields, and the flags that ask them to (measured by decoding their output
# back: its frames say interlaced, in the order given). x265, SVT-AV1 and VP9 code progressive
# frames only.
FIELD_FLAGS = {"libx264": "+ildct+ilme", "prores_ks": "+ildct", "ffv1": "", "wrapped_avframe": ""}
# Of those, the ones that keep one field order for the whole stream (x264's is set when it opens,
# Y4M's in its header); FFV1 and ProRes keep each frame's.
ONE_FIELD_ORDER = {"libx264", "wrapped_avframe"}


def order_name(top_field_first: bool) -> str:
    return "top field first" if top_field_first else "bottom field first"


def order_of(top_field_first: bool) -> int:
    """The AVFieldOrder a container tag says for frames with this field dominance (TT or BB)."""
    return 2 if top_field_first else 3


def why_not_fields(codec: str, pix_fmt: str, height: int) -> str | None:
    """Why `codec` cannot keep the fields of a `height`-line `pix_fmt` video; None if it can."""
    if codec not in FIELD_FLAGS:
        return f"{codec} codes whole pictures only"
    import av

    vertical = 4 if av.VideoFormat(pix_fmt).chroma_height(4) == 2 else 2  # 4:2:0 (P010 too): 2 of 4 rows
    if codec == "libx264" and height % vertical:
        return f"x264 codes fields of {pix_fmt} only at heights divisible by {vertical}, not {height}"
    return None


def with_field_flags(codec: str, options: dict[str, str]) -> dict[str, str]:
    """`options` plus the flags that make `codec` code fields, ahead of the caller's own flags
    (FFmpeg applies +/- flags left to right, so the caller's still win)."""
    flags = FIELD_FLAGS.get(codec, "") + options.get("flags", "")
    return {**options, "flags": flags} if flags else options


def _fill(rows: np.ndarray, picked: np.ndarray) -> None:
    """Copy `picked` into `rows`; a field one chroma row short (4:2:0 fields of odd height) repeats
    its last row, and one a row long drops it."""
    count = min(len(rows), len(picked))
    width = min(rows.shape[1], picked.shape[1])
    rows[:count, :width] = picked[:count, :width]
    rows[count:, :width] = picked[count - 1, :width]


def split_fields(frame: Any) -> tuple[Any, Any]:
    """The top (even rows) and bottom (odd rows) fields of `frame` as frames of its pixel format,
    with its colour tags, for converting and debanding each on its own."""
    import av

    if frame.height < 4:
        raise ValueError(f"a {frame.width}x{frame.height} frame is too small to split into fields")
    fields = []
    for parity, height in ((0, (frame.height + 1) // 2), (1, frame.height // 2)):
        field = av.VideoFrame(frame.width, height, frame.format.name)
        for index in range(len(frame.planes)):
            rows = plane_rows(frame, index)
            # a plane of one row (4:1:0 chroma of a 4-row frame) has none of its own in the bottom field
            _fill(plane_rows(field, index), rows[parity::2] if len(rows) > 1 else rows)
        copy_colour_tags(frame, field)
        fields.append(field)
    return fields[0], fields[1]


def weave(top: Any, bottom: Any, height: int) -> Any:
    """One frame of `height` rows from its top and bottom fields (frames of one pixel format),
    with the top field's colour tags; not yet flagged interlaced (FieldFlags.flagged)."""
    import av

    frame = av.VideoFrame(top.width, height, top.format.name)
    for index in range(len(frame.planes)):
        rows = plane_rows(frame, index)
        _fill(rows[0::2], plane_rows(top, index))
        _fill(rows[1::2], plane_rows(bottom, index))
    copy_colour_tags(top, frame)
    return frame


_GRAPHS_KEPT = 16  # filter graphs per thread: a video has one frame size, a few kinds of frame


class FieldFlags:
    """Reads and sets a frame's field dominance, which PyAV exposes neither way: FFmpeg's select
    filter tells top-field-first frames apart and its setfield filter flags them. Graphs are not
    shared between threads: take this thread's from `field_flags()`."""

    def __init__(self) -> None:
        self._graphs: dict[tuple[Any, ...], Any] = {}

    def _graph(self, frame: Any, name: str, args: str) -> Any:
        import av.filter

        key = (frame.format.name, frame.width, frame.height, frame.colorspace, frame.color_range, args)
        if key not in self._graphs:
            graph = av.filter.Graph()
            source = graph.add(  # the frame's colour tags too, or FFmpeg logs a change on every graph
                "buffer",
                f"video_size={frame.width}x{frame.height}:pix_fmt={frame.format.name}:time_base=1/1:"
                f"colorspace={int(frame.colorspace)}:range={int(frame.color_range)}",
            )
            step, sink = graph.add(name, args), graph.add("buffersink")
            source.link_to(step)
            step.link_to(sink)
            graph.configure()
            if len(self._graphs) >= _GRAPHS_KEPT:  # the oldest goes: a caller of many sizes grew without end
                del self._graphs[next(iter(self._graphs))]
            self._graphs[key] = graph
        return self._graphs[key]

    def is_top_first(self, frame: Any) -> bool:
        """Whether an interlaced frame shows its top field first (the decoder's word)."""
        import av

        graph = self._graph(frame, "select", r"eq(interlace_type\,TOPFIRST)")
        graph.push(frame)
        try:
            graph.pull()
        except av.error.BlockingIOError:  # the filter dropped it: not top field first
            return False
        return True

    def flagged(self, frame: Any, top_field_first: bool | None) -> Any:
        """`frame` flagged interlaced with that dominance, or progressive for None; pts and time
        base unset, as on a new frame."""
        mode = "prog" if top_field_first is None else "tff" if top_field_first else "bff"
        graph = self._graph(frame, "setfield", mode)
        frame.pts = 0
        graph.push(frame)
        out = graph.pull()
        out.pts, out.time_base = None, Fraction(0, 1)  # the graph's own 1/1 would rescale pts
        return out


_local = threading.local()


def field_flags() -> FieldFlags:
    """This thread's FieldFlags."""
    if not hasattr(_local, "flags"):
        _local.flags = FieldFlags()
    return _local.flags
