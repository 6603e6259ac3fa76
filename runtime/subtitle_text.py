"""Text subtitles between containers: each cue's text taken out of one codec's packet and put into
another's, so that a film's subtitles survive the move to a container that takes one text codec
only (MP4 and MOV: mov_text; WebM: WebVTT; Matroska: any but mov_text, which becomes SubRip).

What a target cannot hold is left out: styling (ASS override tags, SubRip and WebVTT markup,
mov_text style boxes) and ASS vector drawings. Bitmap subtitles (DVD, Blu-ray PGS, DVB) have no
text and are not converted.
"""

from __future__ import annotations

import html
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

TEXT_CODECS = {"mov_text", "subrip", "ass", "webvtt", "text"}  # codec names: srt is subrip, ssa ass
TEXT_CODEC_OF_MUXER = {"matroska": "subrip", "mp4": "mov_text", "mov": "mov_text", "webm": "webvtt"}

_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>")  # <i>, </font>, <v Bob>, <c.yellow>
_WEBVTT_TIMESTAMP = re.compile(r"<\d[\d:.]*>")  # karaoke timing inside a cue (YouTube's captions)
_ASS_BLOCK = re.compile(r"(\{[^{}]*\})")  # {\i1}, {\an8}, {a comment}: all hidden in ASS
_SUBRIP_BLOCK = re.compile(r"(\{\\[^{}]*\})")  # SubRip shows braces, but often carries ASS's {\an8}
_ASS_DRAWING = re.compile(r"\\p(\d)")  # \p1 and up draw vector shapes until \p0
_MOV_TEXT_MAX = 0xFFFF  # a mov_text sample's 16-bit length

# FFmpeg opens its text subtitle encoders only with an ASS header; mov_text takes its default
# style from it (white text: without colours it writes black). Nothing is encoded with them: the
# packets are written as they are.
_ASS_HEADER = (
    "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, "
    "Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
    "Alignment, MarginL, MarginR, MarginV, Encoding\n"
    "Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1\n\n"
    "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)


def _ass_text(text: str, blocks: re.Pattern[str] = _ASS_BLOCK) -> str:
    """The words of ASS dialogue: override blocks out, drawings (\\p1 ... \\p0) out, \\N a line break."""
    words, drawing = [], False
    for part in blocks.split(text):
        if blocks.fullmatch(part):
            if levels := _ASS_DRAWING.findall(part):
                drawing = levels[-1] != "0"
        elif not drawing:
            words.append(part)
    return "".join(words).replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ")


def cue_text(codec: str, payload: bytes, encoding: str = "utf-8") -> str:
    """The plain text of one cue as `codec` stores it in a packet ("" for none). Raises
    UnicodeDecodeError where the text is not in `encoding`."""
    if codec == "mov_text":  # 16-bit length, UTF-8 text, style boxes
        length = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
        return payload[2 : 2 + length].decode("utf-8", "replace").strip()
    text = payload.decode(encoding, "strict" if encoding == "utf-8" else "replace")
    if codec in ("ass", "ssa"):
        return _ass_text(text.split(",", 8)[-1]).strip()  # ReadOrder, Layer, Style, Name, margins, Effect
    if codec == "webvtt":
        return html.unescape(_MARKUP.sub("", _WEBVTT_TIMESTAMP.sub("", text))).strip()
    if codec in ("srt", "subrip"):
        return _ass_text(_MARKUP.sub("", text), _SUBRIP_BLOCK).strip()
    return text.strip()  # plain text


def cue_packet(target: str, text: str, pts: int, duration: int, time_base: Any) -> Any:
    """A `target` packet holding `text` from `pts` for `duration` (in `time_base`)."""
    import av

    if target == "webvtt":
        text = html.escape(text, quote=False)
    data = text.encode()
    if target == "mov_text":
        data = data[:_MOV_TEXT_MAX].decode("utf-8", "ignore").encode()  # whole characters only
        data = len(data).to_bytes(2, "big") + data
    out = av.Packet(data)
    out.pts = out.dts = pts
    out.duration, out.time_base = duration, time_base
    return out


@dataclass
class Timeline:
    """Cues in, samples that never overlap out: mov_text samples may not overlap (FFmpeg's MP4
    muxer then shifts every later cue), while ASS signs and SubRip often do. At each start and
    end the texts on screen are joined, one line each, into a sample of their own.

    Cues must come in order of start (as demuxed); samples come out as soon as no later cue can
    change them. At most MAX_ON_SCREEN cues show at once, the later ones dropped and counted: each
    sample repeats every text on screen, so 10,000 overlapping cues made a 1.2 GB MP4 from 722 KB.
    """

    MAX_ON_SCREEN = 8  # a screen of subtitles; mov_text holds 64 KB a sample

    cues: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, text) on screen
    shown_until: int | None = None  # samples are out up to here
    dropped: int = 0  # cues that came while MAX_ON_SCREEN others were on screen

    def add(self, start: int, end: int, text: str) -> list[tuple[int, int, str]]:
        ready = self._samples_until(start)  # what remains on screen at `start`: the cues ending later
        if text and end > start:
            if len(self.cues) < self.MAX_ON_SCREEN:
                self.cues.append((start, end, text))
            else:
                self.dropped += 1
        return ready

    def flush(self) -> list[tuple[int, int, str]]:
        return self._samples_until(max((end for _, end, _ in self.cues), default=0))

    def _samples_until(self, limit: int) -> list[tuple[int, int, str]]:
        since = limit if self.shown_until is None else self.shown_until
        if limit <= since:  # nothing new to show (or a cue that starts in what is out already)
            self.shown_until = since
            return []
        times = sorted({since, limit, *(t for cue in self.cues for t in cue[:2] if since < t < limit)})
        samples = []
        for a, b in itertools.pairwise(times):
            texts = [text for start, end, text in self.cues if start <= a and end >= b]
            if texts:
                samples.append((a, b, "\n".join(texts)))
        self.cues = [cue for cue in self.cues if cue[1] > limit]
        self.shown_until = limit
        return samples


class CueRewriter:
    """One text subtitle stream on its way into another text codec: packets in, packets out."""

    def __init__(self, codec: str, target: str, time_base: Any) -> None:
        self.codec, self.target, self.time_base = codec, target, time_base
        self.encoding = "utf-8"  # Windows-1252 once a cue is not UTF-8, as old SubRip files are
        self.timeline = Timeline() if target == "mov_text" else None  # its samples may not overlap

    def packets_for(self, packet: Any) -> list[Any]:
        """The packets a source packet's cue becomes now (none, or samples now complete)."""
        try:
            text = cue_text(self.codec, bytes(packet), self.encoding)
        except UnicodeDecodeError:
            self.encoding = "cp1252"
            text = cue_text(self.codec, bytes(packet), self.encoding)
        start, duration = packet.pts if packet.pts is not None else packet.dts, packet.duration or 0
        if self.timeline is None:
            return [cue_packet(self.target, text, start, duration, self.time_base)] if text else []
        return self._packets(self.timeline.add(start, start + duration, text))

    def flush(self) -> list[Any]:
        """The packets for the cues still held at the end of the stream."""
        return self._packets(self.timeline.flush()) if self.timeline is not None else []

    def _packets(self, samples: list[tuple[int, int, str]]) -> list[Any]:
        return [cue_packet(self.target, text, a, b - a, self.time_base) for a, b, text in samples]


def text_stream(output: Any, source: Any, target: str) -> Any:
    """A `target` subtitle stream on `output` in `source`'s time base, for cue_packet's packets."""
    out = output.add_stream(target)
    out.time_base = out.codec_context.time_base = source.time_base
    out.codec_context.subtitle_header = _ASS_HEADER.encode()
    return out
