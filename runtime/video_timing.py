"""Timestamp arithmetic of a video job: FFmpeg's rounding, the source's start in a stream's time
base, Matroska's clock strings, and frame times for an AVI, which stores none."""

from __future__ import annotations

import functools
from fractions import Fraction


@functools.lru_cache(maxsize=64)  # one start time per video: unbounded, it grew in a service
def ticks(microseconds: int, time_base: Fraction) -> int:
    """`microseconds` in `time_base`, remembered: asked again for every audio packet carried."""
    return round(Fraction(microseconds, 1_000_000) / time_base)


class AviClock:
    """Frame times for an AVI, which stores none: FFmpeg numbers its frames in decode order, so
    with B-frames their pts come out shuffled (without, they are right). A frame's decode time,
    carried through reordering, is that of the packet that made the decoder return it, so it
    rises by one slot a frame in display order (dropped frames counted): times run from the
    first frame's pts by decode-time steps. Frames flushed at the end have no decode time."""

    def __init__(self) -> None:
        self.anchor: tuple[int, int] | None = None  # the first reordered frame's (pts, dts)

    def time(self, pts: int | None, dts: int | None, reordered: bool) -> int | None:
        if not reordered:
            return pts
        if self.anchor is None and pts is not None and dts is not None:
            self.anchor = (pts, dts)
        if self.anchor is None or dts is None:
            return None
        return self.anchor[0] + dts - self.anchor[1]


def exact_rate(rate: Fraction) -> Fraction:
    """The NTSC rate (N x 1000/1001 fps) `rate` is within 10 ppm of, else `rate` itself. FFmpeg's
    Matroska reader gives 59.94 fps, whose frames last 16683333 ns there, as 19001/317 (it bounds
    the fraction's terms): encoders were told that, and the times were not put on the grid."""
    ntsc = Fraction(round(rate * Fraction(1001, 1000)) * 1000, 1001)
    return ntsc if ntsc and abs(ntsc - rate) <= rate / 100_000 else rate


def rounded(value: Fraction) -> int:
    """To the nearest integer, halves away from zero, as FFmpeg rescales timestamps."""
    whole = int(abs(value) + Fraction(1, 2))
    return whole if value >= 0 else -whole


def clock_seconds(clock: str | None) -> float | None:
    """HH:MM:SS.fraction (Matroska's DURATION tag) in seconds; None if absent or unreadable."""
    try:
        hours, minutes, seconds = (clock or "").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None
