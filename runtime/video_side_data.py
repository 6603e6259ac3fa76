"""Closed captions kept through debanding: frame side data that encoders write back.

ATSC A/53 captions (CEA-608/708, which US broadcast must carry) ride in H.264, HEVC and MPEG-2
pictures; the decoder hands them over as side data of each frame, and x264 and x265 write them
back (their a53cc option). PyAV reads a frame's side data but cannot attach any to a new frame,
while a reformat copies it along (FFmpeg's av_frame_copy_props): so a frame with captions is kept
as a 16 x 16 reformat, and its debanded picture goes into a reformat of that back to full size.
Both reformats only carry properties (their pixels are overwritten), so they use the cheapest
scaling, one thread and BT.709, a matrix swscale always has.
"""

from __future__ import annotations

from typing import Any

from .pyav import plane_rows, side_data_of
from .video_colour import copy_colour_tags, reformatter

CAPTIONS = "A53_CC"
# Encoders that write A/53 captions, and the options that make them.
CAPTION_OPTIONS = {"libx264": {"a53cc": "1"}, "libx265": {"a53cc": "1"}}
_FALSE = {"0", "false", "no", "off"}
_CARRIER_SIDE = 16
_ANY_MATRIX = {"src_colorspace": 1, "dst_colorspace": 1}  # ITU-R BT.709: the pixels are not kept


def has_captions(frame: Any) -> bool:
    """Whether the frame carries A/53 closed captions (its decoder exported them)."""
    return any(entry.type.name == CAPTIONS for entry in side_data_of(frame))


def writes_captions(codec: str, options: dict[str, str]) -> bool:
    """Whether `codec` with these options writes the captions it is given."""
    return codec in CAPTION_OPTIONS and str(options.get("a53cc", "1")).lower() not in _FALSE


def side_data_carrier(frame: Any) -> Any:
    """A tiny copy of `frame` that keeps its side data and flags, so that the decoded frame
    itself need not be kept (or written into) until the debanded picture is encoded."""
    # A reformat to the frame's own size hands back the frame itself, which would be written into.
    side = _CARRIER_SIDE if (frame.width, frame.height) != (_CARRIER_SIDE,) * 2 else _CARRIER_SIDE // 2
    return reformatter("carrier").reformat(
        frame, width=side, height=side, interpolation="POINT", threads=1, **_ANY_MATRIX
    )


def with_side_data_of(carrier: Any, made: Any) -> Any:
    """`made`'s samples and colour tags in a new frame that carries `carrier`'s side data (and
    its interlacing flags, which the caller sets again)."""
    from av.video.frame import PictureType

    target = reformatter("restore").reformat(
        carrier, width=made.width, height=made.height, format=made.format.name, interpolation="POINT",
        threads=1, **_ANY_MATRIX,
    )  # fmt: skip
    for index in range(len(made.planes)):
        rows, samples = plane_rows(target, index), plane_rows(made, index)
        width = min(rows.shape[1], samples.shape[1])
        rows[:, :width] = samples[:, :width]
    copy_colour_tags(made, target)
    target.pict_type = PictureType.NONE  # x264 and x265 would code the source's I/P/B types
    return target
