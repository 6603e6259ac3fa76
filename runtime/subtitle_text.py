"""Text subtitles between containers: each cue's text taken out of one codec's packet and put into
another's, so that a film's subtitles survive the move to a container that takes one text codec
only (MP4 and MOV: mov_text; WebM: WebVTT; Matroska: any but mov_text, which becomes SubRip).

What a target cannot hold is left out: styling (ASS override tags, SubRip and WebVTT markup,
mov_text style boxes) and ASS vector drawings. Bitmap subtitles (DVD, Blu-ray PGS, DVB) have no
text and are not converted.
"""

from __future__ import annotations

import html
import re
from typing import Any

TEXT_CODECS = {"mov_text", "srt", "subrip", "ass", "ssa", "webvtt", "text"}
TARGET = {"matroska": "subrip", "mp4": "mov_text", "mov": "mov_text", "webm": "webvtt"}

_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>")  # <i>, </font>, <v Bob>, <c.yellow>
_ASS_OVERRIDES = re.compile(r"\{[^{}]*\}")  # {\i1}, {\an8}: ASS's, and common in SubRip too
_ASS_DRAWING = re.compile(r"\{[^{}]*\\p[1-9][^{}]*\}")  # a vector shape, not text
_MOV_TEXT_MAX = 0xFFFF  # a mov_text sample's 16-bit length

# FFmpeg opens its text subtitle encoders only with an ASS header; nothing is encoded with them
# (packets are written as they are), so the smallest valid one will do.
_ASS_HEADER = (
    "[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontname, Fontsize\n"
    "Style: Default,Arial,16\n\n[Events]\nFormat: Layer, Start, End, Style, Text\n"
)


def cue_text(codec: str, payload: bytes) -> str:
    """The plain text of one cue as `codec` stores it in a packet ("" for none)."""
    if codec == "mov_text":  # 16-bit length, UTF-8 text, style boxes
        length = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
        return payload[2 : 2 + length].decode("utf-8", "replace").strip()
    text = payload.decode("utf-8", "replace")
    if codec in ("ass", "ssa"):
        if _ASS_DRAWING.search(text):
            return ""
        text = text.split(",", 8)[-1]  # ReadOrder, Layer, Style, Name, 3 margins, Effect, then text
        text = _ASS_OVERRIDES.sub("", text)
        return text.replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ").strip()
    text = _ASS_OVERRIDES.sub("", _MARKUP.sub("", text))
    return (html.unescape(text) if codec == "webvtt" else text).strip()


def cue_packet(target: str, text: str, like: Any) -> Any:
    """A `target` packet holding `text`, timed as the packet `like`; None for an empty cue."""
    import av

    if not text:
        return None
    if target == "webvtt":
        text = html.escape(text, quote=False)
    data = text.encode()
    if target == "mov_text":
        data = data[:_MOV_TEXT_MAX].decode("utf-8", "ignore").encode()  # whole characters only
        data = len(data).to_bytes(2, "big") + data
    out = av.Packet(data)
    out.pts, out.dts, out.duration, out.time_base = like.pts, like.dts, like.duration, like.time_base
    return out


def text_stream(output: Any, source: Any, target: str) -> Any:
    """A `target` subtitle stream on `output` in `source`'s time base, for cue_packet's packets."""
    out = output.add_stream(target)
    out.time_base = out.codec_context.time_base = source.time_base
    out.codec_context.subtitle_header = _ASS_HEADER.encode()
    return out
