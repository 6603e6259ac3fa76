"""Closed captions kept through debanding: frame side data that encoders write back.

ATSC A/53 captions (CEA-608/708, which US broadcast must carry) ride in H.264, HEVC and MPEG-2
pictures; the decoder hands them over as side data of each frame, and x264 and x265 write them
back (their a53cc option). PyAV reads a frame's side data but cannot attach any to a new frame,
while a reformat copies it along (FFmpeg's av_frame_copy_props): so a frame with captions is kept
as a 16 x 16 reformat, and its debanded picture goes into a reformat of that back to full size.
"""

from __future__ import annotations

from typing import Any

from .pyav import plane_rows, side_data_of

CAPTIONS = "A53_CC"
# Encoders that write A/53 captions, and the options that make them.
CAPTION_OPTIONS = {"libx264": {"a53cc": "1"}, "libx265": {"a53cc": "1"}}


def has_captions(frame: Any) -> bool:
    return any(entry.type.name == CAPTIONS for entry in side_data_of(frame))


def side_data_carrier(frame: Any) -> Any:
    """A 16 x 16 copy of `frame` that keeps its side data and flags, so that the decoded frame
    itself need not be kept (or written into) until the debanded picture is encoded."""
    return frame.reformat(width=16, height=16)


def with_side_data_of(carrier: Any, made: Any) -> Any:
    """`made`'s samples and colour tags in a new frame that carries `carrier`'s side data and
    interlacing flags."""
    from av.video.frame import PictureType

    target = carrier.reformat(width=made.width, height=made.height, format=made.format.name)
    for index in range(len(made.planes)):
        rows, samples = plane_rows(target, index), plane_rows(made, index)
        width = min(rows.shape[1], samples.shape[1])
        rows[:, :width] = samples[:, :width]
    target.colorspace, target.color_range = made.colorspace, made.color_range
    target.color_primaries, target.color_trc = made.color_primaries, made.color_trc
    target.pict_type = PictureType.NONE  # x264 and x265 would code the source's I/P/B types
    return target
