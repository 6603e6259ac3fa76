"""HDR10 static metadata: read it from a decoded frame, hand it to the encoder that writes it.

A PQ video carries the mastering display's colour volume (SMPTE ST 2086) and the content light
levels (MaxCLL, MaxFALL); players tone-map with them, so a re-encode that drops them changes how
the picture looks. FFmpeg decoders attach both to frames as side data (from the bitstream's SEI
or OBUs, or from the container); PyAV gives the raw C structs, parsed here. Encoders take them
as private parameters, each in its own spelling; those without such a parameter (VP9, FFV1, Y4M)
cannot keep them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from .pyav import side_data_of

_MASTERING_DISPLAY = "MASTERING_DISPLAY_METADATA"
_CONTENT_LIGHT = "CONTENT_LIGHT_LEVEL"
# AVMasteringDisplayMetadata: primaries R, G, B then the white point as (x, y) AVRationals, min and
# max luminance as AVRationals, then has_primaries and has_luminance as ints.
_MASTERING_LAYOUT = struct.Struct("<20i2i")
_CONTENT_LIGHT_LAYOUT = struct.Struct("<2I")  # AVContentLightMetadata: MaxCLL, MaxFALL

# Encoder -> the private option its parameters go into.
ENCODER_OPTION = {"libx265": "x265-params", "libx264": "x264-params", "libsvtav1": "svtav1-params"}

Chromaticity = tuple[float, float]


@dataclass(frozen=True)
class Hdr10:
    """The static HDR10 metadata of a video: either part may be missing.

    primaries: red, green, blue and white point as CIE 1931 (x, y); luminance: (min, max) in
    cd/m^2; light: (MaxCLL, MaxFALL) in cd/m^2.
    """

    primaries: tuple[Chromaticity, Chromaticity, Chromaticity, Chromaticity] | None = None
    luminance: tuple[float, float] | None = None
    light: tuple[int, int] | None = None

    @classmethod
    def of(cls, frame: Any) -> Hdr10 | None:
        """The frame's HDR10 side data, or None when it has none."""
        primaries = luminance = light = None
        for data in side_data_of(frame):
            raw = bytes(data)
            if data.type.name == _MASTERING_DISPLAY and len(raw) >= _MASTERING_LAYOUT.size:
                *values, has_primaries, has_luminance = _MASTERING_LAYOUT.unpack_from(raw)
                ratios = [
                    num / den if den else 0.0 for num, den in zip(values[::2], values[1::2], strict=True)
                ]
                if has_primaries:
                    r, g, b, white = (tuple(ratios[i : i + 2]) for i in range(0, 8, 2))
                    primaries = (r, g, b, white)
                if has_luminance:
                    luminance = (ratios[8], ratios[9])
            elif data.type.name == _CONTENT_LIGHT and len(raw) >= _CONTENT_LIGHT_LAYOUT.size:
                light = _CONTENT_LIGHT_LAYOUT.unpack_from(raw)
        if primaries is None and luminance is None and light is None:
            return None
        return cls(primaries, luminance, light)

    def parts(self) -> str:
        """What this metadata holds, for messages."""
        held = [
            "mastering display" if self.primaries or self.luminance else "",
            "light levels" if self.light else "",
        ]
        return " and ".join(x for x in held if x)

    def encoder_params(self, codec: str) -> str | None:
        """The metadata in `codec`'s parameter syntax (for ENCODER_OPTION[codec]); None if it has none."""
        if codec not in ENCODER_OPTION:
            return None
        params = []
        if self.primaries and self.luminance:  # the encoders take the colour volume only whole
            (r, g, b, white), (low, high) = self.primaries, self.luminance
            if codec == "libsvtav1":  # plain numbers
                xy = [f"{x:.5f},{y:.5f}" for x, y in (g, b, r, white)]
                level = f"{high:.4f},{low:.4f}"
            else:  # x264 and x265: 1/50000 for chromaticity, 1/10000 cd/m^2 for luminance
                xy = [f"{round(x * 50000)},{round(y * 50000)}" for x, y in (g, b, r, white)]
                level = f"{round(high * 10000)},{round(low * 10000)}"
            key = "master-display" if codec == "libx265" else "mastering-display"
            params.append("{}=G({})B({})R({})WP({})L({})".format(key, *xy, level))
        if self.light:
            key = {"libx265": "max-cll", "libx264": "cll", "libsvtav1": "content-light"}[codec]
            params.append(f"{key}={self.light[0]},{self.light[1]}")
        return ":".join(params) or None
