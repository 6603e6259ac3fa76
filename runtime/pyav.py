"""PyAV, new enough for bdinn's video work, or one line saying how to get it; and two readers of
its frames: side data (listed differently by PyAV 18 and 19) and a plane's rows as numpy.

The colour conversions pass swscale flags (accurate rounding, full chroma interpolation, bit-exact
output) that PyAV exposes from version 18 on; PyAV 17 converts 4:2:0 video several code values
off. PyAV 18 needs Python 3.11 or newer, so Python 3.10 serves pictures but not video.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

MIN_VERSION = (18, 1)  # 18.0 lacks VideoCodecContext.field_order
_MIN = ".".join(map(str, MIN_VERSION))


class MissingPackage(ImportError):
    """PyAV is missing or too old; the message names what needs it and how to install it."""


def local_file(path: str | os.PathLike) -> str:
    """A file's path as FFmpeg must get it to open that file: absolute. A relative name that starts
    with letters and a colon is a protocol to FFmpeg (concat:, http:, even ".a:"): a file called
    concat:a.y4m played a.y4m instead, and an output x:y.mkv failed with "Protocol not found"."""
    return os.path.abspath(path)


def require_pyav(what: str = "video") -> ModuleType:
    """The av module; MissingPackage naming `what` needs it and the install command otherwise."""
    try:
        import av
    except ModuleNotFoundError as exc:
        if exc.name != "av":  # PyAV is there, without something it imports
            raise MissingPackage(f"{what} needs PyAV, and it does not import ({exc})") from None
        raise MissingPackage(f"{what} needs PyAV {_MIN} or newer: pip install '.[video]' in bdinn's folder "
                          "(Python 3.11 or newer)") from None  # fmt: skip
    except ImportError as exc:  # a broken install: a library it links is missing or mismatched
        raise MissingPackage(
            f"{what} needs PyAV, and it does not import ({exc}): pip install -U av"
        ) from None
    version = tuple(int(part) for part in av.__version__.split(".")[:2] if part.isdigit())
    if version < MIN_VERSION:
        raise MissingPackage(f"{what} needs PyAV {_MIN} or newer, and {av.__version__} is installed: "
                          "pip install -U av (Python 3.11 or newer)")  # fmt: skip
    return av


def side_data_of(frame: Any) -> list[Any]:
    """The frame's side data entries (each with .type and bytes()): PyAV 18 iterates the entries,
    PyAV 19 their types."""
    container = frame.side_data
    return [entry if hasattr(entry, "type") else container[entry] for entry in container]


def plane_rows(frame: Any, index: int) -> np.ndarray:
    """Plane `index` as rows of bytes (line padding included), writable where the frame is."""
    plane = frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
