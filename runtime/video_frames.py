"""A video frame's way through `process`, shared by deband_video and deband_frame: the RGB
pictures of a decoded frame, the checks on what `process` returns, and the frame to encode."""

from __future__ import annotations

import collections
import contextlib
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from .imageio import native_order
from .video_colour import Colour, decode_rgb, encode_frame
from .video_fields import field_flags, split_fields, weave
from .video_formats import VideoError
from .video_pipeline import QUEUE_SIZE
from .video_side_data import with_side_data_of


def checked_picture(src: Path | str, which: str, image: Any, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(image, np.ndarray):
        image = native_order(image)  # big-endian uint16, as Debander returns it
    if not isinstance(image, np.ndarray) or image.dtype not in (np.uint8, np.uint16) or image.shape != shape:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise VideoError(
            f"{src}: process returned {got} for {which}; return {shape[0]} x {shape[1]} x 3 "
            "uint8 or uint16 RGB"
        )
    return image


class HandedBack:
    """Writeable memory `process` handed back, remembered weakly. Frames wait in a queue for the
    encode thread, so a `process` that writes every frame into one buffer of its own overwrites frames
    before they are encoded (silently: frames repeated, others lost). Such reuse is caught when the
    buffer comes back the second time, whatever the encoder's pace, because the caller still holds
    it; memory the caller let go (a new array each frame) is forgotten as it is freed."""

    def __init__(self) -> None:
        self._held: collections.deque[tuple[weakref.ref, int, int, str]] = collections.deque(
            maxlen=4 * QUEUE_SIZE
        )

    def check(self, src: Path | str, which: str, image: np.ndarray) -> None:
        if not image.flags.writeable:  # a constant picture handed back for every frame is safe
            return
        low, high = _byte_bounds(image)
        for owner, start, end, earlier in self._held:
            if owner() is not None and low < end and start < high:
                raise VideoError(
                    f"{src}: process returned, for {which}, memory it returned for {earlier}: frames wait to "
                    "be encoded on another thread, so return a new array for each frame (or a copy)"
                )
        if (owner := _owner(image)) is not None:
            self._held.append((owner, low, high, which))


_byte_bounds = getattr(np.lib, "array_utils", np).byte_bounds  # moved there by NumPy 2


def _owner(image: np.ndarray) -> weakref.ref | None:
    """A weak reference to the deepest object in the chain of bases that owns `image`'s memory and
    can be referenced weakly (a numpy array, a torch tensor's storage; not PyAV's planes). A torch
    tensor's .numpy() is based on a new alias of the tensor each call, which dies with the frame:
    its storage lives as long as the tensor."""
    chain: list[Any] = [image]
    while isinstance(chain[-1], np.ndarray) and chain[-1].base is not None:
        chain.append(chain[-1].base)
    for holder in reversed(chain):
        storage = getattr(holder, "untyped_storage", None)
        with contextlib.suppress(TypeError):
            return weakref.ref(storage() if callable(storage) else holder)
    return None


def rgb_pictures(frame: Any, top_field_first: bool | None, deep: bool) -> tuple[np.ndarray, ...]:
    """The frame as RGB for `process`: whole, or its top and bottom fields where it has a field
    order."""
    parts = split_fields(frame) if top_field_first is not None else (frame,)
    return tuple(decode_rgb(part, deep) for part in parts)


def coded_frame(
    pictures: tuple[np.ndarray, ...], pix_fmt: str, colour: Colour, top_field_first: bool | None
) -> Any:
    """rgb_pictures' reverse: the debanded picture, or its fields woven, as one `pix_fmt` frame."""
    parts = [encode_frame(picture, pix_fmt, colour) for picture in pictures]
    return parts[0] if top_field_first is None else weave(*parts, sum(p.shape[0] for p in pictures))


def outgoing_frame(made: Any, top_field_first: bool | None, carrier: Any) -> Any:
    """The frame to encode: `made` (the debanded picture, or its woven fields) given the source
    frame's captions where `carrier` holds them, then flagged with its field order (progressive
    for None, where the carrier brought an interlaced flag along)."""
    if carrier is not None:
        made = with_side_data_of(carrier, made)
    if top_field_first is not None or made.interlaced_frame:
        made = field_flags().flagged(made, top_field_first)
    return made
