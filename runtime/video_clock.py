"""A source clock that restarts: MPEG-TS, MPEG-PS and Ogg may jump (recordings joined end to end,
an encoder restarted mid-broadcast, a splice). FFmpeg shifts every later packet so that the clock
runs on; without it the frames after a jump back are all squeezed onto one time, and copied
audio that goes back in time makes the muxer fail after the work."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

# FFmpeg's limits for such formats: a stream's clock may not go back by more than a tenth of a
# second, nor move by more than 10 s (-dts_delta_threshold) from where its last packet ended.
_BACK = Fraction(1, 10)
_JUMP = 10


class ClockMender:
    """Shifts packets past clock jumps, in place, before they are decoded or copied."""

    def __init__(self, source_format: Any) -> None:
        import av

        self.jumps_allowed = bool(source_format.flags & av.format.Flags.ts_discont.value)
        self.offset = Fraction(0)  # seconds added to every packet since the first jump
        self.ends: dict[int, Fraction] = {}  # audio or video stream -> where its last packet ended
        self.lasts: dict[int, Fraction] = {}  # and that packet's decode time (seconds, mended)
        self.jumps = 0

    def mend(self, packet: Any) -> None:
        """Detect a jump on an audio or video stream; move every stream's packets past it."""
        if not self.jumps_allowed or packet.dts is None or not packet.time_base:
            return
        time_base = Fraction(packet.time_base)
        at = packet.dts * time_base + self.offset
        index = packet.stream.index
        if packet.stream.type in ("audio", "video") and index in self.ends:
            delta = at - self.ends[index]
            if abs(delta) > _JUMP or at + _BACK < self.lasts[index]:
                self.offset -= delta
                at -= delta
                self.jumps += 1
        shift = round(self.offset / time_base)
        if shift:
            packet.dts += shift
            if packet.pts is not None:
                packet.pts += shift
        if packet.stream.type in ("audio", "video"):
            self.lasts[index] = at
            self.ends[index] = at + (packet.duration or 0) * time_base
