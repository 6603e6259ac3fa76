"""Interlaced video: a frame's two fields taken apart as pictures of their own and woven back.

An interlaced frame holds two pictures a field period apart, one in the even rows and one in the
odd rows; in 4:2:0 the chroma rows alternate between the fields too. Converted to RGB or debanded
as one picture, each field's colour and the model's smoothing would reach into the other field.
Split by rows in the frame's own pixel format (what FFmpeg's separatefields does), each field
converts and debands on its own, and the debanded fields are woven back the same way.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

# AVFieldOrder values of interlaced streams and the field shown first, as FFmpeg's own encoder
# setup reads them (it writes TB for top-field-first frames of most codecs).
FIELD_ORDERS = {2: "top field first", 3: "bottom field first", 4: "top field first", 5: "bottom field first"}

# Encoders that code interlaced pictures, and the options that ask them to (measured by decoding
# their output back: its frames say interlaced). x265, SVT-AV1 and VP9 code progressive frames only.
INTERLACED_ENCODERS: dict[str, dict[str, str]] = {
    "libx264": {"flags": "+ildct+ilme"},
    "prores_ks": {"flags": "+ildct"},
    "ffv1": {},
    "wrapped_avframe": {},  # Y4M
}


def top_first(field_order: int) -> bool:
    return FIELD_ORDERS[field_order] == "top field first"


def order_of(top_field_first: bool) -> int:
    """The AVFieldOrder a container tag says for frames with this field dominance (TT or BB)."""
    return 2 if top_field_first else 3


def _rows(frame: Any, index: int) -> np.ndarray:
    """Plane `index` as rows of bytes (padding included), writable where the frame is."""
    plane = frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)


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

    fields = []
    for parity, height in ((0, (frame.height + 1) // 2), (1, frame.height // 2)):
        field = av.VideoFrame(frame.width, height, frame.format.name)
        for index in range(len(frame.planes)):
            _fill(_rows(field, index), _rows(frame, index)[parity::2])
        field.colorspace, field.color_range = frame.colorspace, frame.color_range
        field.color_primaries, field.color_trc = frame.color_primaries, frame.color_trc
        fields.append(field)
    return fields[0], fields[1]


def weave(top: Any, bottom: Any, height: int) -> Any:
    """One frame of `height` rows from its top and bottom fields (frames of one pixel format),
    with the top field's colour tags; not yet flagged interlaced (FieldFlags.flagged)."""
    import av

    frame = av.VideoFrame(top.width, height, top.format.name)
    for index in range(len(frame.planes)):
        rows = _rows(frame, index)
        _fill(rows[0::2], _rows(top, index))
        _fill(rows[1::2], _rows(bottom, index))
    frame.colorspace, frame.color_range = top.colorspace, top.color_range
    frame.color_primaries, frame.color_trc = top.color_primaries, top.color_trc
    return frame


class FieldFlags:
    """Reads and sets a frame's field dominance, which PyAV exposes neither way: FFmpeg's select
    filter tells top-field-first frames apart and its setfield filter flags them. Encoders that
    code fields (x264, ProRes) and Y4M take the order from each frame. One per thread: filter
    graphs are not shared."""

    def __init__(self) -> None:
        self._graphs: dict[tuple[str, int, int, str], Any] = {}

    def _graph(self, frame: Any, name: str, args: str) -> Any:
        import av.filter

        key = (frame.format.name, frame.width, frame.height, args)
        if key not in self._graphs:
            graph = av.filter.Graph()
            source = graph.add_buffer(
                width=frame.width, height=frame.height, format=frame.format.name, time_base=Fraction(1, 1)
            )
            step, sink = graph.add(name, args), graph.add("buffersink")
            source.link_to(step)
            step.link_to(sink)
            graph.configure()
            self._graphs[key] = graph
        return self._graphs[key]

    def top_first(self, frame: Any) -> bool:
        """Whether an interlaced frame shows its top field first (the decoder's word)."""
        import av

        graph = self._graph(frame, "select", r"eq(interlace_type\,TOPFIRST)")
        graph.push(frame)
        try:
            graph.pull()
        except av.error.BlockingIOError:  # the filter dropped it: not top field first
            return False
        return True

    def flagged(self, frame: Any, top_field_first: bool) -> Any:
        """`frame` flagged interlaced with that dominance; pts and time base unset, as on a new frame."""
        graph = self._graph(frame, "setfield", "tff" if top_field_first else "bff")
        frame.pts = 0
        graph.push(frame)
        out = graph.pull()
        out.pts, out.time_base = None, Fraction(0, 1)  # the graph's own 1/1 would rescale pts
        return out
