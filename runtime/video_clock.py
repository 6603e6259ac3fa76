"""A source clock that restarts: MPEG-TS, MPEG-PS and Ogg may jump (recordings joined end to end,
an encoder restarted mid-broadcast, a splice). FFmpeg shifts later packets so that the clock runs
on; without it the frames after a jump back are all squeezed onto one time, and copied audio that
goes back in time makes the muxer fail after the work."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

# FFmpeg's limits for such formats: a stream's clock may not go back by more than a tenth of a
# second, nor move by more than 10 s (-dts_delta_threshold) from where its last packet ended.
_BACK = Fraction(1, 10)
_JUMP = 10
# How near the last correction must bring a stream that jumped for it to take that one: streams
# end and begin a recording some tens of milliseconds apart.
_SAME_JUMP = 1


class ClockMender:
    """Shifts packets past clock jumps, in place, before they are decoded or copied.

    Each audio and video stream keeps its own shift, changed when its own clock jumps, so that
    its packets from before a join that the file interleaves after another stream's first
    packets from after it keep theirs. A stream that jumps takes the correction another stream
    made if that one brings it back to where it was (the streams stay in step); else a jump back
    (never real) or the video's jump ahead by more than 10 s (joined recordings whose clock runs
    ahead; a signal lost that long is closed up too, as FFmpeg does) makes a new correction.
    Sound that jumps ahead is held back until the video says which it is: the same jump (the
    sound's packets came first), or a pause (a second track gone quiet), kept as it is.
    Subtitles and other streams follow the last correction."""

    def __init__(self, source_format: Any) -> None:
        import av

        self.jumps_allowed = bool(source_format.flags & av.format.Flags.ts_discont.value)
        self.shared = Fraction(0)  # seconds added by the last correction
        self.offsets: dict[int, Fraction] = {}  # audio or video stream -> its own shift (seconds)
        self.ends: dict[int, Fraction] = {}  # where its last packet ended (shifted)
        self.lasts: dict[int, Fraction] = {}  # and that packet's decode time (shifted)
        self.held: dict[int, list[Any]] = {}  # sound that jumped ahead, until the video tells
        self.jumps = 0

    def packets(self, demuxed: Iterable[Any]) -> Iterator[Any]:
        """The demuxed packets, shifted; sound held back comes once the video has told."""
        for packet in demuxed:
            if not self.jumps_allowed or packet.dts is None or not packet.time_base:
                yield packet
            elif packet.stream.index in self.held:
                self.held[packet.stream.index].append(packet)
            elif packet.stream.type not in ("audio", "video"):
                self._shift(packet, self.shared)
                yield packet
            elif self._mend(packet):
                yield packet
                if packet.stream.type == "video":
                    yield from self._release(self.lasts[packet.stream.index])
        yield from self._release(None)

    def _mend(self, packet: Any) -> bool:
        """Shift an audio or video packet; False where it is sound held back instead."""
        index, raw = packet.stream.index, packet.dts * Fraction(packet.time_base)
        offset = self.offsets.get(index, self.shared)
        if index in self.ends:
            back = raw + offset + _BACK < self.lasts[index]
            far = abs(raw + offset - self.ends[index]) > _JUMP
            if back or far:
                if self._fits(index, raw):
                    offset = self.shared  # the jump another stream made already
                elif back or packet.stream.type == "video":
                    offset = self.shared = self.ends[index] - raw
                    self.jumps += 1
                else:
                    self.held[index] = [packet]
                    return False
        self._follow(packet, offset)
        return True

    def _release(self, video_at: Fraction | None) -> Iterator[Any]:
        """Held sound the video has told about by reaching `video_at` (None: the end): shifted
        by the video's correction where that brings it back in step, else kept as a pause."""
        for index, waiting in list(self.held.items()):
            first = waiting[0].dts * Fraction(waiting[0].time_base)
            same = self._fits(index, first)
            if same or video_at is None or video_at >= first + self.offsets[index]:
                del self.held[index]
                if same:
                    self.offsets[index] = self.shared
                for packet in waiting:
                    self._follow(packet, self.offsets[index])
                yield from waiting

    def _fits(self, index: int, raw: Fraction) -> bool:
        """Whether the last correction, which is not this stream's yet, brings a packet of it at
        decode time `raw` (unshifted) back to where the stream was."""
        at = raw + self.shared
        return (
            self.shared != self.offsets[index]
            and at + _BACK >= self.lasts[index]
            and abs(at - self.ends[index]) <= _SAME_JUMP
        )

    def _follow(self, packet: Any, offset: Fraction) -> None:
        """Shift an audio or video packet by `offset`, which is now its stream's."""
        index, time_base = packet.stream.index, Fraction(packet.time_base)
        raw = packet.dts * time_base
        self.offsets[index] = offset
        self._shift(packet, offset)
        self.lasts[index] = raw + offset
        self.ends[index] = raw + offset + (packet.duration or 0) * time_base

    @staticmethod
    def _shift(packet: Any, offset: Fraction) -> None:
        shift = round(offset / Fraction(packet.time_base))
        if shift:
            packet.dts += shift
            if packet.pts is not None:
                packet.pts += shift
