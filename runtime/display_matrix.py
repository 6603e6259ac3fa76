"""A video's display matrix, read from its decoded frames and written back whole.

Phones and `ffmpeg -display_rotation/-display_hflip` store how a picture is shown as a 3x3
matrix (FFmpeg's AV_FRAME_DATA_DISPLAYMATRIX: 16.16 fixed point, the last column 2.30). Its
rotation alone (PyAV's `frame.rotation`) loses a mirror: a horizontally flipped source came out
turned by 180°, upside down. So the matrix travels as it is, and the rotation and mirror are
derived only to tell users what a container cannot keep.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from .pyav import side_data_of

IDENTITY = (1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)


@dataclass(frozen=True)
class DisplayMatrix:
    values: tuple[int, ...]  # row-major, as FFmpeg stores it

    @classmethod
    def of(cls, frame: Any) -> DisplayMatrix | None:
        """The frame's display matrix; None where it has none, or one that changes nothing."""
        for entry in side_data_of(frame):
            if entry.type.name == "DISPLAYMATRIX":
                values = struct.unpack("=9i", bytes(entry)[:36])  # FFmpeg stores native int32s
                return None if values == IDENTITY else cls(values)
        return None

    @property
    def mirrored(self) -> bool:
        """Whether the picture is shown flipped (a negative determinant)."""
        m = self.values
        return m[0] * m[4] - m[1] * m[3] < 0

    @property
    def rotation(self) -> int:
        """Counter-clockwise degrees, as `ffmpeg -display_rotation` takes them, of the rotation
        left once a horizontal flip is undone (FFmpeg applies the flip after the rotation)."""
        m = self.values
        flip = -1 if self.mirrored else 1
        column_x, column_y = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
        if not column_x or not column_y:  # a degenerate matrix: no rotation to tell
            return 0
        return round(-math.degrees(math.atan2(m[1] / column_y, flip * m[0] / column_x))) % 360

    def describe(self) -> str:
        """'90° display rotation', 'horizontal mirror' or both, for warnings."""
        parts = [f"{self.rotation}° display rotation"] if self.rotation else []
        return " and ".join([*parts, "horizontal mirror"] if self.mirrored else parts)

    def ffmpeg_options(self) -> str:
        """The ffmpeg input options that give a reader of the video this matrix."""
        rotation = [f"-display_rotation {self.rotation}"] if self.rotation else []
        return " ".join([*rotation, "-display_hflip"] if self.mirrored else rotation)
