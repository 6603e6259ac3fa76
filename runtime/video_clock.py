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
# How close in time muxers interleave the streams (MPEG-TS: 0.7 s): a track silent across a join
# that comes back this near the video's time is on the video's clock.
_NEAR = 1
_MOST_HELD = 5000  # sound packets held for one stream at most (a minute or two); then a pause


class ClockMender:
    """Shifts packets past clock jumps, in place, before they are decoded or copied.

    The clock is taken as stretches, each with one shift for every stream, so that a recording
    keeps its own timing between sound and pictures. Each stream moves to the next stretch when
    its own clock jumps: packets from before a join that the file interleaves after another
    stream's first packets from after it keep the old shift. The first stream to jump starts a
    stretch that runs on from where it was: for a jump back (never real), or the video's jump
    ahead by more than 10 s (joined recordings whose clock runs ahead; a signal lost that long is
    closed up too, as FFmpeg does). Sound that jumps ahead first is held back until the video
    tells: it jumps too (the same join), or reaches that time (a pause, as a second track gone
    quiet has). Subtitles and other streams take the newest stretch."""

    def __init__(self, source_format: Any, frame: Fraction) -> None:
        import av

        self.jumps_allowed = bool(source_format.flags & av.format.Flags.ts_discont.value)
        self.frame = frame  # a video packet's length where it gives none (H.264 in MPEG-TS)
        self.shifts = [Fraction(0)]  # seconds added in each stretch of the clock, in the order met
        self.stretch: dict[int, int] = {}  # audio or video stream -> the stretch it is in
        self.ends: dict[int, Fraction] = {}  # where its last packet ended (shifted)
        self.lasts: dict[int, Fraction] = {}  # and that packet's decode time (shifted)
        self.video: tuple[int, Fraction] | None = None  # the video's stretch and unshifted time
        self.held: dict[int, list[Any]] = {}  # sound that jumped ahead, until the video tells

    @property
    def jumps(self) -> int:
        return len(self.shifts) - 1

    def packets(self, demuxed: Iterable[Any]) -> Iterator[Any]:
        """The demuxed packets, shifted; sound held back comes once the video has told."""
        for packet in demuxed:
            if not self.jumps_allowed or packet.dts is None or not packet.time_base:
                yield packet
            elif packet.stream.index in self.held:
                self.held[packet.stream.index].append(packet)
                if len(self.held[packet.stream.index]) > _MOST_HELD:
                    yield from self._release(pause=packet.stream.index)
            elif packet.stream.type not in ("audio", "video"):
                self._shift(packet, self.shifts[-1])
                yield packet
            elif self._place(packet):
                yield packet
                if packet.stream.type == "video":
                    yield from self._release()
        for index in list(self.held):
            yield from self._release(pause=index)

    def _place(self, packet: Any) -> bool:
        """Shift an audio or video packet; False where it is sound held back instead."""
        index, raw, video = packet.stream.index, self._raw(packet), packet.stream.type == "video"
        newest = len(self.shifts) - 1
        stretch = self.stretch.get(index, newest)
        if index in self.ends:
            at = raw + self.shifts[stretch]
            back, far = at + _BACK < self.lasts[index], abs(at - self.ends[index]) > _JUMP
            if (back or far) and stretch < newest:
                stretch = newest  # the jump another stream met first
            elif back or (far and video):
                self.shifts.append(self.ends[index] - raw)
                stretch = newest + 1
            elif far:
                self.held[index] = [packet]
                return False
            elif stretch < newest and not video and self._near_video(raw, newest):
                stretch = newest  # silent across a join, back on the new clock
        self._follow(packet, stretch)
        if video:
            self.video = (stretch, raw)
        return True

    def _near_video(self, raw: Fraction, stretch: int) -> bool:
        return self.video is not None and self.video[0] == stretch and abs(raw - self.video[1]) <= _NEAR

    def _release(self, pause: int | None = None) -> Iterator[Any]:
        """Held sound the video has told about: into a stretch it started since, or, where it
        has reached that time in the same stretch (or `pause` names the stream), as a pause."""
        for index, waiting in list(self.held.items()):
            stretch, first = self.stretch[index], self._raw(waiting[0])
            if stretch < len(self.shifts) - 1:
                stretch = len(self.shifts) - 1
            elif index != pause and not (self.video and self.video[0] == stretch and self.video[1] >= first):
                continue
            del self.held[index]
            for packet in waiting:
                self._follow(packet, stretch)
            yield from waiting

    def _follow(self, packet: Any, stretch: int) -> None:
        """Shift an audio or video packet into `stretch`, which is now its stream's."""
        index, raw = packet.stream.index, self._raw(packet)
        self.stretch[index] = stretch
        self._shift(packet, self.shifts[stretch])
        length = packet.duration * Fraction(packet.time_base) if packet.duration else Fraction(0)
        if not length and packet.stream.type == "video":
            length = self.frame
        self.lasts[index] = raw + self.shifts[stretch]
        self.ends[index] = self.lasts[index] + length

    @staticmethod
    def _raw(packet: Any) -> Fraction:
        return packet.dts * Fraction(packet.time_base)

    @staticmethod
    def _shift(packet: Any, offset: Fraction) -> None:
        shift = round(offset / Fraction(packet.time_base))
        if shift:
            packet.dts += shift
            if packet.pts is not None:
                packet.pts += shift
