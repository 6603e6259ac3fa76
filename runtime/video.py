"""Deband a video file frame by frame with any callable, keeping audio, timing and colour tags.

    report = deband_video("in.mp4", "out.mkv", process)

`process` is called on the calling thread, once per frame in presentation order (twice for an
interlaced frame: once per field, below), with an H x W x 3 RGB array as decoded:

- uint8 (rgb24) for 8-bit sources,
- uint16 (rgb48) for deeper sources (10-bit and up), on the full 16-bit scale: black 0,
  white 65535, so a 10-bit source keeps all its precision.

It returns an H x W x 3 uint8 or uint16 RGB array of the same size (either dtype, whatever the
source; uint16 is on the same 0..65535 scale). Return uint16 when the output is 10-bit: rounding
a debanded frame to 8 bits brings the bands back. The array may be a new one or the input
modified in place.

Pipeline: a decode thread (demux, decode, YUV -> RGB) and an encode thread (RGB -> YUV, encode,
mux) are joined to the calling thread by bounded queues, so decoding and encoding overlap with
inference. An exception anywhere (in `process`, the decoder or the encoder, or Ctrl-C) stops all
three, the threads are joined, the partial output is deleted, and the exception is raised.

Output: 10-bit by default, 8- or 12-bit with bit_depth, with the source's chroma resolution
(4:2:0, 4:2:2, or 4:4:4 for 4:4:4 and RGB sources) where the encoder writes it, else the most it
writes, with a warning; `chroma` asks for one. The encoder follows from the destination's suffix
(DEFAULT_CODECS) unless `codec` names one. Alpha is kept by FFV1 and ProRes (prores_ks) and
dropped with a warning elsewhere. Frames their decoder flags interlaced are converted and
debanded field by field (`process` is called on each field, a picture of half the frame's
height) and written interlaced by x264 (in the first frame's field order), ProRes and FFV1 (in
each frame's) and Y4M (the first frame's; video_fields.py says where x264 cannot); other
encoders code the woven fields as progressive pictures, with a warning. Frame timestamps, frame
rate, frame count, display rotation, the start timecode and the colour tags (primaries,
transfer, matrix, range) are kept; so is the sample aspect ratio with x264/x265 (other encoders
warn that they drop it). What else the source carries goes along (video_streams.py): audio is
copied packet for packet where the destination container takes its codec, otherwise re-encoded
(AAC; Opus for WebM); subtitles are copied where the container takes their codec, and text ones
rewritten into its own text codec where it does not (subtitle_text.py: SubRip, ASS or WebVTT
into MP4's and MOV's mov_text, any of them into WebM's WebVTT, mov_text into Matroska's SubRip);
chapters go into MKV, WebM, MP4 and MOV, and attachments (fonts, cover art) into MKV. What a
container cannot hold (Y4M holds no audio) is dropped with a warning. HDR10 static metadata
(mastering display, MaxCLL/MaxFALL) is passed to x265, x264 and SVT-AV1; other encoders drop it
with a warning. Closed captions (A/53) go back into each frame for x264 and x265
(video_side_data.py); other encoders drop them with a warning. Data streams are not carried
over. The output is written to a hidden temporary file beside `dst` and renamed over it at the
end, so a failure never leaves a partial video.

Colour conversion (video_colour.py) uses the source's own matrix and range in both directions
and passes `process` 16-bit RGB on the true 0..65535 scale.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import os
import queue
import signal
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write
from .hdr10 import ENCODER_OPTION, Hdr10
from .pyav import require_pyav
from .video_colour import (
    ASSUMED_TAGS,
    HDR_TRANSFERS,
    Colour,
    alpha_of,
    copy_alpha,
    copy_colour_tags,
    decode_rgb,
    encode_frame,
    put_alpha,
)
from .video_encoder import DEFAULT_CRF, encoder_label, encoder_options
from .video_fields import (
    FIELD_FLAGS,
    NOT_WOVEN,
    ONE_FIELD_ORDER,
    TOP_FIELD_FIRST,
    field_flags,
    order_name,
    order_of,
    split_fields,
    weave,
    why_not_fields,
    with_field_flags,
)
from .video_side_data import (
    CAPTION_OPTIONS,
    has_captions,
    side_data_carrier,
    with_side_data_of,
    writes_captions,
)
from .video_streams import TIMECODE_MUXERS, CarriedStreams, copy_tags, moving_pictures

# "-" as the source reads a stream from standard input (Y4M, MKV, MPEG-TS: what FFmpeg can read
# from a pipe); as the destination it writes Y4M to standard output, for an encoder to read.
STDIO = "-"
STDIN, STDOUT = Path("<stdin>"), Path("<stdout>")

# Destination suffix -> FFmpeg muxer.
CONTAINERS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".ts": "mpegts",
    ".y4m": "yuv4mpegpipe",
}

# Suffixes read as video: those written, and broadcast and older formats that are only read.
VIDEO_SUFFIXES = (*CONTAINERS, ".mpg", ".mpeg", ".m2v", ".m2ts", ".mts", ".mxf", ".vob", ".dv", ".flv",
                  ".wmv", ".3gp", ".ogv")  # fmt: skip

# Muxer -> encoders to try, best first; the first one that is built in and writes the requested
# bit depth wins. wrapped_avframe is Y4M's uncompressed video.
DEFAULT_CODECS = {
    "mp4": ("libx265", "libx264"),
    "mov": ("libx265", "libx264"),
    "matroska": ("libx265", "libx264", "libsvtav1"),
    "mpegts": ("libx265", "libx264"),
    "webm": ("libsvtav1", "libvpx-vp9"),
    "avi": ("libx264",),
    "yuv4mpegpipe": ("wrapped_avframe",),
}

# Muxer -> the encoders among ours (_KNOWN_ENCODERS) whose video it really holds. FFmpeg's own
# check accepts more (AV1 or FFV1 in MPEG-TS, x264 in Y4M) and then writes an unplayable data
# stream or fails at the end, after all the work. Measured by encoding into each with PyAV.
VIDEO_CODECS = {
    "mp4": {"libx264", "libx265", "libsvtav1", "libvpx-vp9", "ffv1"},
    "mov": {"libx264", "libx265"},
    "matroska": {"libx264", "libx265", "libsvtav1", "libvpx-vp9", "libvpx", "ffv1"},
    "webm": {"libsvtav1", "libvpx-vp9", "libvpx"},
    "avi": {"libx264", "libvpx", "ffv1"},
    "mpegts": {"libx264", "libx265"},
    "yuv4mpegpipe": {"wrapped_avframe"},
}
_KNOWN_ENCODERS = set().union(*VIDEO_CODECS.values())

CHROMA = ("420", "422", "444")  # output chroma resolutions (4:2:0, 4:2:2, 4:4:4)
# Encoders that keep alpha (yuva formats), measured by decoding it back: x265 and VP9 list yuva
# formats too, but PyAV's x265 refuses to open with them and its VP9 decoder returns no alpha.
_ALPHA_ENCODERS = {"ffv1", "prores_ks"}

_HELD = 16  # video packets held back at the start until their timestamps are checked
_QUEUE_SIZE = 4  # frames waiting on each side of `process`; 1080p RGB48 is 12 MB a frame
_POLL = 0.05  # seconds between checks for a stop request while a queue is full or empty


class VideoError(ValueError):
    """A bad video file or request; the message is one line: the file, the problem and what to do."""


@dataclass(frozen=True)
class VideoReport:
    """What deband_video did.

    frames: frames decoded, processed and encoded (the same number).
    seconds: wall-clock time of the whole run; fps: frames / seconds, the processing speed.
    frame_rate: the video's own average frame rate; duration: its length in seconds.
    codec, pix_fmt, width, height: the output video stream.
    audio_streams: audio streams copied without re-encoding; audio_transcoded: re-encoded ones
    (their codec does not fit the container); audio_dropped: ones the container cannot hold.
    subtitle_streams: subtitle streams copied or rewritten; subtitles_dropped: ones the container
    cannot hold.
    hdr10: whether the source's HDR10 static metadata was written into the output.
    fields: an interlaced source's field order ("top field first"), debanded field by field;
    None for progressive video.
    captions: whether the source's closed captions (A/53) were written into the output.
    """

    src: Path
    dst: Path
    frames: int
    seconds: float
    fps: float
    frame_rate: float
    duration: float
    codec: str
    pix_fmt: str
    width: int
    height: int
    audio_streams: int
    audio_transcoded: int = 0
    audio_dropped: int = 0
    subtitle_streams: int = 0
    subtitles_dropped: int = 0
    hdr10: bool = False
    fields: str | None = None
    captions: bool = False


def is_video(path: str | os.PathLike) -> bool:
    """Whether the file name has a video suffix (VIDEO_SUFFIXES); the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


# ---------------------------------------------------------------------------------------------
# Threads.
# ---------------------------------------------------------------------------------------------


class _Cancelled(Exception):
    """Raised in a thread waiting on a queue when another thread has failed."""


class _Pipeline:
    """Stop flag and first error shared by the decode, inference and encode threads."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc
        self.stop.set()

    def put(self, q: queue.Queue, item: object) -> None:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL)
                return
            except queue.Full:
                pass
        raise _Cancelled

    def get(self, q: queue.Queue) -> Any:
        while not self.stop.is_set():
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                pass
        raise _Cancelled

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        def run() -> None:
            try:
                target()
            except _Cancelled:
                pass
            except BaseException as exc:
                self.fail(exc)

        return threading.Thread(target=run, name=name, daemon=True)


_END = object()


@dataclass
class _Video:
    pictures: tuple[np.ndarray, ...]  # the frame, or its top and bottom fields
    pts: int
    rotation: int = 0
    alpha: np.ndarray | None = None  # H x W uint16 on 0..65535, where the output keeps alpha
    top_field_first: bool | None = None  # an interlaced frame's field dominance; None: progressive
    carrier: Any = None  # where the decoded frame's side data (captions) must go along: a copy


@dataclass
class _Carried:
    """Audio or subtitles riding along with the video."""

    out: Any  # output stream
    item: Any  # Packet to copy, or AudioFrame to encode


# ---------------------------------------------------------------------------------------------
# Checks before anything is written.
# ---------------------------------------------------------------------------------------------


def _muxer_for(dst: Path) -> str:
    if dst == STDOUT:
        return "yuv4mpegpipe"
    muxer = CONTAINERS.get(dst.suffix.lower())
    if muxer is None:
        choices = ", ".join(sorted(CONTAINERS))
        raise VideoError(
            f"{dst}: unsupported output container {dst.suffix or '(no suffix)'!r}; use {choices}"
        )
    return muxer


def _check_paths(src: Path, dst: Path, force: bool) -> str:
    """Validate the paths; the destination's muxer name."""
    if dst == STDOUT:
        return "yuv4mpegpipe"
    if src == STDIN:
        pass
    elif not src.exists():
        raise VideoError(f"{src}: no such file (check the path)")
    if src.is_dir():
        raise VideoError(f"{src}: is a folder, not a video file")
    muxer = _muxer_for(dst)
    if src != STDIN and (dst.resolve() == src.resolve() or (dst.exists() and os.path.samefile(dst, src))):
        raise VideoError(f"{dst}: the output is the input file; write to another path")
    if dst.is_dir():
        raise VideoError(f"{dst}: is a folder; give an output file name")
    if dst.exists() and not force:
        raise VideoError(f"{dst}: already exists; pass force=True (--force) to overwrite it")
    return muxer


def _available_encoders() -> list[str]:
    import av

    names = {name for names in DEFAULT_CODECS.values() for name in names} | set(DEFAULT_CRF) | {"ffv1"}
    return sorted(name for name in names if name in av.codecs_available and _encoder(name) is not None)


def _encoder(name: str) -> Any:
    import av

    try:
        return av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        return None


def _writes(enc: Any) -> set[str] | None:
    """The pixel formats an encoder writes; None where it takes any (Y4M's wrapped_avframe)."""
    formats = enc.video_formats
    return None if formats is None else {f.name for f in formats}


def _pick_codec(
    dst: Path, muxer: str, codec: str | None, pix_fmts: list[str], bit_depth: int
) -> tuple[str, str]:
    """The encoder's name and the first of `pix_fmts` it writes, checked against the container."""
    import av

    def written(enc: Any) -> list[str]:
        names = _writes(enc)
        return pix_fmts if names is None else [p for p in pix_fmts if p in names]

    def fits(name: str) -> bool:
        if name in _KNOWN_ENCODERS:
            return name in VIDEO_CODECS[muxer]
        probe = av.open(io.BytesIO(), "w", format=muxer)
        try:
            probe.add_stream(name)
            return True
        except ValueError:
            return False
        finally:
            probe.close()

    wanted = pix_fmts[0] if len(pix_fmts) == 1 else f"{bit_depth}-bit"
    if codec is None:
        for name in DEFAULT_CODECS[muxer]:
            enc = _encoder(name)
            if enc is not None and written(enc) and fits(name):
                return enc.name, written(enc)[0]
        able = [n for n in _available_encoders() if n in _KNOWN_ENCODERS and fits(n) and written(_encoder(n))]
        way = f"pass codec= one of {', '.join(able)}" if able else "write .mkv (libx265)"
        raise VideoError(f"{dst}: no built-in encoder writes {wanted} video into {dst.suffix}; {way}")
    if muxer == "yuv4mpegpipe" and codec != "wrapped_avframe":
        raise VideoError(f"{dst}: Y4M holds raw video only; leave codec (--codec) out")
    enc = _encoder(codec)
    if enc is None or enc.type != "video":
        raise VideoError(
            f"{dst}: unknown video encoder {codec!r}; choose one of {', '.join(_available_encoders())}"
        )
    if not written(enc):
        names = _writes(enc) or set()
        other = [c for c in CHROMA if _pix_fmt(c, bit_depth) in names]
        shallower = [
            d for d in (10, 8) if d < bit_depth and any(_pix_fmt(p[3:6], d) in names for p in pix_fmts)
        ]
        if shallower:
            hint = (
                f"pass bit_depth={shallower[0]} (--bit-depth {shallower[0]}) or use another codec (libx265)"
            )
        elif other:
            hint = f"ask for chroma {other[0]} (--chroma {other[0]}) or use another codec (libx265)"
        else:
            hint = "use another codec (libx265)"
        raise VideoError(f"{dst}: {enc.name} cannot write {wanted} video; {hint}")
    if not fits(enc.name):
        raise VideoError(
            f"{dst}: a {dst.suffix} file cannot hold {enc.name} video; use .mkv or another codec"
        )
    return enc.name, written(enc)[0]


def _open_source(src: Path) -> Any:
    import av

    try:
        container = _open_watching_signals("pipe:0") if src == STDIN else av.open(str(src), "r")
    except av.FFmpegError:
        if src == STDIN:
            raise VideoError(
                f"{src}: not a video stream FFmpeg can read from a pipe (pipe Y4M, MKV or MPEG-TS; "
                "MP4 only with its index first, -movflags faststart)"
            ) from None
        raise VideoError(
            f"{src}: not a video file FFmpeg can read (check the file or re-encode it)"
        ) from None
    if not moving_pictures(container):
        container.close()
        raise VideoError(f"{src}: no video stream; pass a file with video")
    return container


def _open_watching_signals(url: str) -> Any:
    """av.open of a pipe, with Ctrl-C and SIGTERM kept. While av.open blocks on an empty pipe, a
    signal's Python handler runs inside PyAV's interrupt callback: FFmpeg stops, the exception the
    handler raised is dropped, and the open fails as 'invalid data'. Note the signal; raise again."""
    import av

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread
        return av.open(url, "r")
    watched = {
        sig: handler for sig in (signal.SIGINT, signal.SIGTERM) if callable(handler := signal.getsignal(sig))
    }
    caught: list[int] = []

    def note(signum: int, frame: Any) -> None:
        caught.append(signum)
        watched[signum](signum, frame)

    for sig in watched:
        signal.signal(sig, note)
    try:
        return av.open(url, "r")
    except av.FFmpegError:
        for signum in caught:  # PyAV dropped what the handler raised: raise it again
            watched[signum](signum, None)
        raise
    finally:
        for sig, handler in watched.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------------------------
# deband_video.
# ---------------------------------------------------------------------------------------------


def _check_output(src: Path | str, which: str, image: Any, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype not in (np.uint8, np.uint16) or image.shape != shape:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise VideoError(
            f"{src}: process returned {got} for {which}; return {shape[0]} x {shape[1]} x 3 "
            "uint8 or uint16 RGB"
        )
    return image


def _outgoing_frame(made: Any, top_field_first: bool | None, carrier: Any) -> Any:
    """The frame to encode: `made` (the debanded picture, or its woven fields) given the source
    frame's captions where `carrier` holds them, then flagged with its field order (progressive
    for None, where the carrier brought an interlaced flag along)."""
    if carrier is not None:
        made = with_side_data_of(carrier, made)
    if top_field_first is not None or made.interlaced_frame:
        made = field_flags().flagged(made, top_field_first)
    return made


def deband_frame(
    frame: Any, process: Callable[[np.ndarray], np.ndarray], *, fields: bool | None = None
) -> Any:
    """One PyAV VideoFrame through `process` (a Debander, say), returned as a new VideoFrame in the
    same pixel format, colour tags, pts and time base, with its alpha (if any) as it was: for code
    with its own decode/encode loop.

    An interlaced frame (`frame.interlaced_frame`, or `fields=True`) has its two fields converted
    and debanded one by one (`process` is called twice, on pictures of half its height) and comes
    back interlaced with its own field dominance, for an encoder that codes fields (libx264 with
    flags=+ildct+ilme and the stream's field_order set). Pass fields=False for frames that are
    flagged interlaced but hold one picture: HEVC's field pictures, Adam7 PNGs (NOT_WOVEN).

    It converts as deband_video does (the frame's own matrix and range; uint16 RGB on the true
    0..65535 scale for frames deeper than 8 bits). A frame with closed captions (A/53) keeps all
    its side data, for an encoder that writes them (libx264; libx265 with a53cc=1); other frames
    have none: PyAV cannot attach it. Set the rotation on your output stream
    (`stream.set_display_rotation`) and the HDR10 metadata in your encoder's options
    (`Hdr10.of(frame).encoder_params(codec)` from bdinn.runtime.hdr10).

    Do not hand `frame.to_ndarray()` of a YUV frame to a Debander: that is the stacked Y, U and V
    planes, which it would take for a gray picture.
    """
    require_pyav("deband_frame")
    import av

    if not isinstance(frame, av.VideoFrame):
        raise TypeError(f"deband_frame takes a PyAV VideoFrame, got {type(frame).__name__}")
    fields = frame.interlaced_frame if fields is None else fields
    if not fields:
        dominance = None
    elif frame.interlaced_frame:
        dominance = field_flags().is_top_first(frame)
    else:  # asked for fields without a flag to say their order: top first, as HD video mostly is
        dominance = True
    deep = frame.format.components[0].bits > 8
    which = f"the frame at {frame.time:.3f} s" if frame.time is not None else "a frame without a time"
    parts = []
    for part in split_fields(frame) if fields else (frame,):
        rgb = decode_rgb(part, deep)
        result = _check_output("deband_frame", which, process(rgb), rgb.shape)
        parts.append(encode_frame(result, frame.format.name, Colour.of(frame)))
    made = parts[0] if dominance is None else weave(*parts, frame.height)
    copy_alpha(frame, made)
    out = _outgoing_frame(made, dominance, side_data_carrier(frame) if has_captions(frame) else None)
    copy_colour_tags(frame, out)  # as they were, even if odd
    out.pts = frame.pts
    if frame.time_base is not None:  # None on a frame made from an array
        out.time_base = frame.time_base
    return out


def check_encoder(
    dst: str | os.PathLike,
    codec: str | None = None,
    bit_depth: int = 10,
    crf: int | None = None,
    preset: str | int | None = None,
    codec_options: Mapping[str, object] | None = None,
    chroma: str | None = None,
) -> tuple[str, str, dict[str, str]]:
    """(encoder, pixel format, FFmpeg options) for a video written to `dst` with deband_video's
    settings, checked: VideoError before any work, so a batch can be checked before a model loads.
    The pixel format has `chroma`, else the least the encoder writes; deband_video follows the source's."""
    dst = STDOUT if os.fspath(dst) == STDIO else Path(dst)
    try:
        require_pyav()
    except ImportError as exc:
        raise VideoError(f"{dst}: {exc}") from None
    muxer = _muxer_for(dst)
    if bit_depth not in (8, 10, 12):
        raise VideoError(f"{dst}: bit depth must be 8, 10 or 12, got {bit_depth}")
    if chroma is not None and chroma not in CHROMA:
        raise VideoError(
            f"{dst}: chroma must be one of {', '.join(CHROMA)} (None: the source's), got {chroma!r}"
        )
    pix_fmts = [_pix_fmt(c, bit_depth) for c in ([chroma] if chroma else CHROMA)]
    codec_name, pix_fmt = _pick_codec(dst, muxer, codec, pix_fmts, bit_depth)
    try:
        return codec_name, pix_fmt, encoder_options(codec_name, pix_fmt, crf, preset, codec_options)
    except ValueError as exc:
        raise VideoError(f"{dst}: {exc}") from None


def _pix_fmt(chroma: str, bit_depth: int) -> str:
    return f"yuv{chroma}p" + ("" if bit_depth == 8 else f"{bit_depth}le")


def _chroma_of(fmt: Any) -> str:
    """The least output chroma that keeps all of a source format's: RGB is 4:4:4, gray 4:2:0."""
    if fmt is None or sum(not c.is_alpha for c in fmt.components) < 3:
        return "420"
    if fmt.is_rgb or fmt.chroma_width(4) == 4:  # full horizontal chroma (4:4:4, 4:4:0)
        return "444"
    return "422" if fmt.chroma_height(4) == 4 else "420"  # full vertical (4:2:2, 4:1:1), or half


def _follow_source(vin: Any, src: Path, dst: Path, codec: str, bit_depth: int) -> str:
    """The output pixel format: the least chroma the encoder writes that keeps the source's, else
    its most, with a warning."""
    kept = _chroma_of(vin.codec_context.format)
    names = _writes(_encoder(codec))
    writable = [c for c in CHROMA if names is None or _pix_fmt(c, bit_depth) in names]
    enough = [c for c in writable if c >= kept]  # "420" < "422" < "444"
    chosen = enough[0] if enough else writable[-1]
    if chosen < kept:
        warnings.warn(
            f"{dst}: {encoder_label(codec)} writes 4:{chosen[1]}:{chosen[2]} at most, so {src.name}'s "
            f"4:{kept[1]}:{kept[2]} chroma is reduced; use libx265 (.mkv) to keep it, or chroma {chosen} "
            f"(--chroma {chosen}) to ask for 4:{chosen[1]}:{chosen[2]}",
            stacklevel=3,
        )
    return _pix_fmt(chosen, bit_depth)


def _with_alpha(vin: Any, src: Path, codec: str, pix_fmt: str) -> str:
    """The output pixel format with alpha where the source has it and the encoder keeps it."""
    fmt = vin.codec_context.format
    if fmt is None or not any(c.is_alpha for c in fmt.components):
        return pix_fmt
    with_alpha = "yuva" + pix_fmt.removeprefix("yuv")
    if codec in _ALPHA_ENCODERS and with_alpha in (_writes(_encoder(codec)) or ()):
        return with_alpha
    warnings.warn(
        f"{src}: its alpha channel is dropped: {encoder_label(codec)} does not keep it in {pix_fmt}; "
        "ffv1 (.mkv) or prores_ks (.mov) do",
        stacklevel=3,
    )
    return pix_fmt


def _fields_lost(src: Path, codec: str, pix_fmt: str, height: int, tagged: bool = False) -> str:
    """The warning for fields debanded one by one and then coded as progressive frames; `tagged`:
    said before the work, from the stream's tag (the frames may still turn out progressive)."""
    reason = why_not_fields(codec, pix_fmt, height)
    if reason is None:  # the encoder could have kept them, but the first frame set it up
        reason, advice = f"the video began with progressive frames, so {codec} was set up for those", ""
    elif codec in FIELD_FLAGS:
        advice = "crop it to such a height or write 4:2:2 (--chroma 422) to keep it interlaced, "
    else:
        advice = "use libx264 (--codec libx264) or prores_ks (.mov) to keep it interlaced, "
    lead = "tagged interlaced; its interlaced frames are" if tagged else "interlaced; its frames' fields are"
    return (
        f"{src}: {lead} debanded field by field, but {reason}, so they are coded as progressive frames, "
        f"which players do not deinterlace: {advice}or deinterlace it first (ffmpeg -vf bwdif)"
    )


def deband_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    process: Callable[[np.ndarray], np.ndarray],
    *,
    codec: str | None = None,
    bit_depth: int = 10,
    crf: int | None = None,
    preset: str | int | None = None,
    codec_options: Mapping[str, object] | None = None,
    chroma: str | None = None,
    force: bool = False,
    progress: bool | Callable[[int, int | None], object] = True,
) -> VideoReport:
    """Run `process` on every frame of `src` and write the result to `dst` (see the module doc).

    codec: an FFmpeg video encoder (libx265, libx264, libsvtav1, libvpx-vp9, ffv1, ...); by
    default the first of DEFAULT_CODECS[container] that is built in. bit_depth: 10, 8, or 12 (x265
    and FFV1 write it; for 12-bit ProRes 4444 or DNxHR 444 masters). crf: the encoder's
    constant-rate factor (DEFAULT_CRF when left out; encoders without one, like ffv1, take none).
    preset: the encoder's speed (PRESETS: x264/x265 ultrafast to placebo, SVT-AV1 0 to 13, VP9
    cpu-used 0 to 8; the encoder's default when left out). codec_options: more FFmpeg options for
    the encoder ({"tune": "grain", "g": 48}; x264-params, x265-params and svtav1-params are added
    to bdinn's own). chroma: "420", "422" or "444"; None keeps the source's chroma resolution (RGB
    counts as 4:4:4) where the encoder can write it, and warns where it cannot (SVT-AV1 writes
    4:2:0 only). force: overwrite an existing dst. progress: True for a tqdm bar in frames per
    second, False for none, or a callable progress(done, total) called after each frame (total is
    None when the container does not say).

    Raises VideoError for a bad file or request, before anything is written where it can be
    known up front; any exception from `process` is raised as it is.
    """
    started = time.perf_counter()
    src = STDIN if os.fspath(src) == STDIO else Path(src)
    dst = STDOUT if os.fspath(dst) == STDIO else Path(dst)
    codec_name, pix_fmt, options = check_encoder(dst, codec, bit_depth, crf, preset, codec_options, chroma)
    muxer = _check_paths(src, dst, force)

    source = _open_source(src)
    bar = None
    try:
        vin, *others = moving_pictures(source)
        if others:
            dropped = "the other is" if len(others) == 1 else f"the other {len(others)} are"
            warnings.warn(
                f"{src}: {len(others) + 1} video streams; the first is debanded and {dropped} dropped (to "
                f"deband another on its own: ffmpeg -i {src} -map 0:v:N -c copy ONE.mkv, N from 1)",
                stacklevel=2,
            )
        if chroma is None:
            pix_fmt = _follow_source(vin, src, dst, codec_name, bit_depth)
        pix_fmt = _with_alpha(vin, src, codec_name, pix_fmt)
        job = _Job(source, src, dst, muxer, codec_name, pix_fmt, options, process)
        # The stream's tag says it before the work; the frames themselves after it (below).
        warned_fields_lost = (
            job.stream_top_first is not None and why_not_fields(codec_name, pix_fmt, job.height) is not None
        )
        if warned_fields_lost:
            warnings.warn(_fields_lost(src, codec_name, pix_fmt, job.height, tagged=True), stacklevel=2)
        if bit_depth == 8 and job.colour.trc in HDR_TRANSFERS:
            warnings.warn(
                f"{dst}: 8-bit output of an HDR (PQ or HLG) source bands visibly; leave the bit depth at 10",
                stacklevel=2,
            )
        if progress is True:
            from tqdm import tqdm

            bar = tqdm(total=job.total, unit="frame", desc=src.name, dynamic_ncols=True)
            job.on_frame = lambda done: bar.update(1)
        elif callable(progress):
            job.on_frame = lambda done: progress(done, job.total)
        if dst == STDOUT:
            _write_stdout(job.run)
        else:
            atomic_write(dst, job.run)
    finally:
        if bar is not None:
            bar.close()
        source.close()

    # An exact count from the header (MP4, MOV); an edit list may hide some of them, but then the
    # header's duration is what was decoded.
    listed_time = job.listed_duration
    short_in_time = listed_time is None or job.duration < listed_time - 0.5 / float(job.rate)
    if job.listed_frames and job.frames < job.listed_frames and short_in_time:
        warnings.warn(
            f"{src}: decoded {job.frames} of the {job.listed_frames} frames its header lists; the file may "
            "be cut short (the output holds what was there)",
            stacklevel=2,
        )
    if job.damaged_packets or job.damaged_frames:
        warnings.warn(
            f"{src}: damaged ({job.damaged_packets} broken video packet(s), {job.damaged_frames} frame(s) "
            "decoded with errors), as a broken recording or transfer is; FFmpeg concealed what it could, so "
            "the output may show them or lack frames: check it, or get the source again",
            stacklevel=2,
        )
    if job.retimed:
        counter = "Y4M" if muxer == "yuv4mpegpipe" else "AVI"
        warnings.warn(
            f"{dst}: the source's frame times are irregular (variable frame rate), and "
            f"{counter} holds one frame every {1 / float(job.rate):.4g} s, "
            "so frames were retimed (audio muxed back will drift); write .mkv or .mp4 to keep their times",
            stacklevel=2,
        )
    if job.interlaced_frames and not job.codes_fields and not warned_fields_lost:
        warnings.warn(_fields_lost(src, codec_name, pix_fmt, job.height), stacklevel=2)
    if len(job.dominances) > 1 and job.codes_fields and codec_name in ONE_FIELD_ORDER:
        warnings.warn(
            f"{dst}: the source's field order changes between frames, and {encoder_label(codec_name)} "
            "keeps one order for the whole stream, so the others play back jerkily; ffv1 or prores_ks keep "
            "each frame's",
            stacklevel=2,
        )
    if job.captions and not job.writes_captions:
        why = (
            "a53cc=0 turns them off; leave it out to keep them"
            if codec_name in CAPTION_OPTIONS
            else f"{encoder_label(codec_name)} cannot carry them; use libx264 or libx265 (.mkv .mp4 .mov .ts)"
        )
        warnings.warn(f"{src}: its closed captions (A/53: CEA-608/708) are dropped: {why}", stacklevel=2)
    for index in job.carried.not_utf8:
        warnings.warn(
            f"{src}: subtitle stream {index} is not UTF-8; its text was read as Windows-1252 (cp1252): if it "
            "reads wrong, convert the subtitles to UTF-8 first (iconv)",
            stacklevel=2,
        )
    if muxer == "yuv4mpegpipe" and (note := _y4m_losses(job.colour, job.rotation, job.sar)):
        warnings.warn(f"{dst}: {note}", stacklevel=2)
    if job.hdr10 and not job.hdr10_kept:
        advice = (
            f"give it to the encoder reading the stream: x265-params {job.hdr10.encoder_params('libx265')}"
            if muxer == "yuv4mpegpipe"
            else "use libx265, libx264 or libsvtav1 to keep it"
        )
        warnings.warn(
            f"{dst}: {encoder_label(codec_name)} cannot carry the source's HDR10 metadata "
            f"({job.hdr10.parts()}); dropped ({advice})",
            stacklevel=2,
        )
    seconds = time.perf_counter() - started
    return VideoReport(
        src=src,
        dst=dst,
        frames=job.frames,
        seconds=seconds,
        fps=job.frames / seconds if seconds > 0 else 0.0,
        frame_rate=float(job.rate),
        duration=job.duration,
        codec=codec_name,
        pix_fmt=pix_fmt,
        width=job.width,
        height=job.height,
        audio_streams=len(job.carried.audio_out) - len(job.carried.transcode),
        audio_transcoded=len(job.carried.transcode),
        audio_dropped=job.carried.audio_dropped,
        subtitle_streams=len(job.carried.subtitle_out),
        subtitles_dropped=job.carried.subtitles_dropped,
        hdr10=job.hdr10_kept,
        fields=order_name(job.first_interlaced) if job.first_interlaced is not None else None,
        captions=job.captions and job.writes_captions,
    )


def _y4m_losses(colour: Colour, rotation: int, sar: Fraction | None) -> str | None:
    """What a Y4M output cannot say about this video, and how to tell its reader; None if nothing.
    (Y4M has a sample aspect field, but FFmpeg's muxer fills it from a setting PyAV cannot reach.)"""
    tags = colour.ffmpeg_tags() if {colour.primaries, colour.trc, colour.colorspace} - ASSUMED_TAGS else ""
    sar = sar if sar and sar != 1 else None
    held = (
        ("colour tags but the range", tags, tags),
        (f"{rotation}° rotation", rotation, f"-display_rotation {rotation}"),
        (f"sample aspect ratio {sar}", sar, f"-vf setsar={sar}"),
    )
    lost = [(what, option) for what, kept, option in held if kept]
    if not lost:
        return None
    missing, options = " or ".join(what for what, _ in lost), " ".join(option for _, option in lost)
    return f"Y4M carries no {missing}; tell the program reading it (ffmpeg: {options})"


def _write_stdout(write: Callable[[str], object]) -> None:
    """write("pipe:1"): a stream, so what was sent before an error cannot be taken back. As deep
    in the call stack as atomic_write, so that warnings point at the caller in both cases."""
    write("pipe:1")


class _Job:
    """One deband_video run: the source's streams, the output's setup and the three threads."""

    def __init__(
        self,
        source: Any,
        src: Path,
        dst: Path,
        muxer: str,
        codec: str,
        pix_fmt: str,
        options: dict[str, str],
        process: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.source, self.src, self.dst, self.muxer = source, src, dst, muxer
        self.codec, self.pix_fmt, self.options, self.process = codec, pix_fmt, options, process
        self.on_frame: Callable[[int], object] | None = None
        self.vin = moving_pictures(source)[0]
        ctx = self.vin.codec_context
        self.width, self.height = ctx.width, ctx.height
        if self.width <= 0 or self.height <= 0:
            raise VideoError(f"{src}: the video stream has no picture size; re-encode or repair the file")
        chroma = pix_fmt.removeprefix("yuva").removeprefix("yuv")[:3]
        self.keeps_alpha = pix_fmt.startswith("yuva")
        if (chroma != "444" and self.width % 2) or (chroma == "420" and self.height % 2):
            raise VideoError(
                f"{src}: {self.width}x{self.height} has an odd side; 4:{chroma[1]}:{chroma[2]} output needs "
                "even sizes (crop it)"
            )
        self.colour = Colour.of(ctx)
        self.rate = Fraction(self.vin.average_rate or self.vin.guessed_rate or self.vin.base_rate or 25)
        self.time_base = Fraction(self.vin.time_base or Fraction(1, 90000))
        # AVI and Y4M count frames rather than time: their time base is one frame.
        self.cfr = muxer in ("avi", "yuv4mpegpipe")
        self.out_time_base = 1 / self.rate if self.cfr else self.time_base
        self.listed_frames: int | None = self.vin.frames or None  # read now: PyAV 19 closes streams
        self.listed_duration = float(self.vin.duration * self.time_base) if self.vin.duration else None
        self.total = self.listed_frames
        if self.total is None and self.vin.duration:
            self.total = max(1, round(self.vin.duration * self.time_base * self.rate))
        elif self.total is None and source.duration:
            self.total = max(1, round(source.duration / 1e6 * float(self.rate)))
        self.frames, self.duration = 0, 0.0
        container = "a Y4M stream" if dst == STDOUT else f"a {dst.suffix} file"
        self.carried = CarriedStreams(source, None if src == STDIN else src, dst, container, muxer)
        self.tmp = ""  # the temporary file being written, named in FFmpeg's errors
        self.rotation = 0  # the first frame's display rotation
        self.hdr10: Hdr10 | None = None  # the first frame's, set by the decode thread
        self.hdr10_kept = False
        self.retimed = False  # a frame moved to fit a container that counts frames (Y4M, AVI)
        self.damaged_packets = self.damaged_frames = 0  # found broken by the demuxer, the decoder
        self.sar = Fraction(ctx.sample_aspect_ratio) if ctx.sample_aspect_ratio else None
        # Fields are woven in a frame unless the decoder hands each over alone; the frames' own
        # flags say which are interlaced, the stream's tag only what to expect.
        self.woven_fields = ctx.name not in NOT_WOVEN
        self.stream_top_first = TOP_FIELD_FIRST.get(ctx.field_order) if self.woven_fields else None
        self.first_interlaced: bool | None = None  # the first interlaced frame's order: top first?
        self.codes_fields = False  # the encoder was set up to keep fields
        self.interlaced_frames = 0
        self.captions = False  # some frame carried closed captions
        self.writes_captions = writes_captions(codec, options)  # and the encoder writes them back
        self.dominances: set[bool] = set()  # the field orders met

    # -- output setup ---------------------------------------------------------------------------

    def _open_output(self, tmp: str) -> Any:
        import av

        output = av.open(
            tmp, "w", format=self.muxer, options={"strict": "-1"} if self.muxer == "yuv4mpegpipe" else {}
        )
        copy_tags(output, self.source)
        ctx = self.vin.codec_context
        self.vout = vout = output.add_stream(self.codec, rate=self.rate)
        vout.width, vout.height, vout.pix_fmt = self.width, self.height, self.pix_fmt
        enc = vout.codec_context
        enc.time_base = self.out_time_base
        if ctx.sample_aspect_ratio:
            enc.sample_aspect_ratio = ctx.sample_aspect_ratio
            if ctx.sample_aspect_ratio != 1 and self.codec not in ("libx264", "libx265", "wrapped_avframe"):
                warnings.warn(  # PyAV cannot set the container's own field, which the others need
                    f"{self.dst}: {encoder_label(self.codec)} does not keep the source's sample aspect ratio "
                    f"{ctx.sample_aspect_ratio}; use libx265 or libx264 (.mkv, .mp4) to keep it",
                    stacklevel=5,
                )
        colour = self.colour
        enc.colorspace, enc.color_range = colour.colorspace, colour.color_range
        enc.color_primaries, enc.color_trc = colour.primaries, colour.trc
        if self.codec == "libx265" and self.muxer in ("mp4", "mov"):
            enc.codec_tag = "hvc1"  # the HEVC tag Apple's players want
        if self.muxer == "avi":
            enc.max_b_frames = 0  # AVI keeps no presentation times, so no reordered frames
        self.options = {**CAPTION_OPTIONS.get(self.codec, {}), **self.options}  # the caller's win
        vout.options = self.options
        copy_tags(vout, self.vin)
        if self.carried.timecode and self.muxer in TIMECODE_MUXERS:
            vout.metadata["timecode"] = self.carried.timecode  # MOV and MP4 write a tmcd track for it
        self.carried.add_to(output)
        return output

    # -- the threads ----------------------------------------------------------------------------

    def run(self, tmp: str) -> None:
        """Decode, process and encode everything into `tmp` (atomic_write renames it)."""
        import av

        self.tmp = tmp if self.dst != STDOUT else ""
        output = self._open_output(tmp)
        try:
            self._pipeline(output)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                output.close()
            raise
        try:
            output.close()
        except av.FFmpegError as exc:
            raise VideoError(f"{self.dst}: cannot finish the file ({exc})") from exc

    def _pipeline(self, output: Any) -> None:
        pipe = _Pipeline()
        decoded: queue.Queue = queue.Queue(maxsize=_QUEUE_SIZE)
        processed: queue.Queue = queue.Queue(maxsize=_QUEUE_SIZE)
        threads = [
            pipe.thread(lambda: self._decode(pipe, decoded), "bdinn-decode"),
            pipe.thread(lambda: self._encode(pipe, processed, output), "bdinn-encode"),
        ]
        for thread in threads:
            thread.start()
        try:
            done = 0
            while True:
                item = pipe.get(decoded)
                if isinstance(item, _Video):
                    which = f"frame {done}" if len(item.pictures) == 1 else f"a field of frame {done}"
                    item.pictures = tuple(
                        _check_output(self.src, which, self.process(picture), picture.shape)
                        for picture in item.pictures
                    )
                    done += 1
                    pipe.put(processed, item)
                    if self.on_frame is not None:
                        self.on_frame(done)
                else:
                    pipe.put(processed, item)
                    if item is _END:
                        break
        except _Cancelled:
            pass
        except BaseException as exc:
            pipe.fail(exc)
        finally:
            for thread in threads:
                while thread.is_alive():
                    try:
                        thread.join()
                    except BaseException as exc:  # Ctrl-C while joining: stop, and still join
                        pipe.fail(exc)
        if pipe.error is not None:
            raise pipe.error

    def _decode(self, pipe: _Pipeline, decoded: queue.Queue) -> None:
        """Demux the source; video frames as RGB arrays, audio as packets (or frames to re-encode)."""
        import av

        self.vin.thread_type = "AUTO"
        deep: bool | None = None
        last: int | None = None
        step = max(1, round(1 / (self.rate * self.time_base)))  # one frame, for frames without pts
        try:
            carried = self.carried.streams
            for packet in self.source.demux(self.vin, *(self.source.streams[i] for i in carried)):
                index = packet.stream.index
                if packet.stream.type == "video":
                    self.damaged_packets += bool(packet.is_corrupt)
                    for frame in packet.decode():
                        self.damaged_frames += bool(frame.is_corrupt)
                        if deep is None:
                            deep = frame.format.components[0].bits > 8
                            self.hdr10 = Hdr10.of(frame)
                        pts = frame.pts if frame.pts is not None else (0 if last is None else last + step)
                        last = pts
                        rotation = int(frame.rotation or 0)
                        alpha = alpha_of(frame) if self.keeps_alpha else None
                        dominance = self._dominance(frame)
                        parts = split_fields(frame) if dominance is not None else (frame,)
                        pictures = tuple(decode_rgb(part, deep) for part in parts)
                        captioned = has_captions(frame)
                        self.captions |= captioned
                        carrier = side_data_carrier(frame) if captioned and self.writes_captions else None
                        pipe.put(decoded, _Video(pictures, pts, rotation, alpha, dominance, carrier))
                elif index in self.carried.transcode:
                    for frame in packet.decode():
                        pipe.put(decoded, _Carried(carried[index], frame))
                elif packet.dts is not None:  # the empty packet at the end only flushes decoders
                    for item in self.carried.packets_for(packet):
                        pipe.put(decoded, _Carried(carried[index], item))
            for index, item in self.carried.flush():
                pipe.put(decoded, _Carried(carried[index], item))
        except av.FFmpegError as exc:
            if self.src == STDIN and "mp4" in self.source.format.name:  # its index may come last
                raise VideoError(
                    f"{self.src}: cannot decode the stream ({exc}); a pipe cannot seek, so pipe Y4M, MKV or "
                    "MPEG-TS, or an MP4 with its index first (-movflags faststart)"
                ) from exc
            what = "stream" if self.src == STDIN else "file"
            raise VideoError(f"{self.src}: cannot decode the {what} ({exc}); re-encode or repair it") from exc
        pipe.put(decoded, _END)

    def _dominance(self, frame: Any) -> bool | None:
        """Whether the frame's top field comes first, or None for a progressive frame, as its
        decoder says (a stream's tag can be a guess: H.264 in MP4 says top first for all)."""
        if frame.interlaced_frame and self.woven_fields:
            return field_flags().is_top_first(frame)
        return None

    def _set_fields(self, top_field_first: bool | None) -> None:
        """Before the encoder opens: the field order tag (the first frame's, else the stream's as
        it was), and, where the first frame is interlaced, the options that make the encoder keep
        fields (a progressive frame coded as fields would be deinterlaced by players)."""
        top = self.stream_top_first if top_field_first is None else top_field_first
        if top is not None:
            self.vout.codec_context.field_order = order_of(top)
        if top_field_first is not None and why_not_fields(self.codec, self.pix_fmt, self.height) is None:
            self.options = with_field_flags(self.codec, self.options)
            self.vout.options = self.options
            self.codes_fields = True

    def _encode(self, pipe: _Pipeline, processed: queue.Queue, output: Any) -> None:
        """RGB -> YUV, encode and mux; audio waits for the first video frame (it sets the header)."""
        import av

        waiting: list[_Carried] = []
        opening: list[Any] | None = []  # the first video packets, until their timestamps are checked
        first: int | None = None
        last: int | None = None
        try:
            while (item := pipe.get(processed)) is not _END:
                if isinstance(item, _Carried):
                    if first is None:
                        waiting.append(item)
                    else:
                        self._mux_carried(output, item)
                    continue
                pts = item.pts
                if self.cfr:  # counted in frames: an irregular source is retimed
                    exact = pts * self.time_base / self.out_time_base
                    pts = round(exact)
                    skipped = self.muxer == "yuv4mpegpipe" and last is not None and pts != last + 1
                    self.retimed |= abs(exact - pts) > Fraction(1, 4) or skipped
                if last is not None and pts <= last:
                    pts = last + 1  # timestamps must rise; broken sources sometimes repeat one
                    self.retimed |= self.cfr
                if first is None:
                    first = pts
                    if item.rotation:
                        self.vout.set_display_rotation(item.rotation)
                        self.rotation = item.rotation
                    self._set_fields(item.top_field_first)
                    self._set_hdr10()
                last = pts
                parts = [encode_frame(picture, self.pix_fmt, self.colour) for picture in item.pictures]
                frame = parts[0] if item.top_field_first is None else weave(*parts, self.height)
                if item.top_field_first is not None:
                    self.interlaced_frames += 1
                    self.dominances.add(item.top_field_first)
                    if self.first_interlaced is None:
                        self.first_interlaced = item.top_field_first
                if item.alpha is not None:
                    put_alpha(frame, item.alpha)
                frame = _outgoing_frame(frame, item.top_field_first, item.carrier)
                frame.pts, frame.time_base = pts, self.out_time_base
                opening = self._mux_video(output, opening, self.vout.encode(frame))
                for held in waiting:
                    self._mux_carried(output, held)
                waiting.clear()
                self.frames += 1
            if first is None or last is None:
                raise VideoError(f"{self.src}: no decodable video frames; re-encode or repair the file")
            self._mux_video(output, opening, self.vout.encode(None), final=True)
            for index in self.carried.transcode:
                output.mux(self.carried.audio_out[index].encode(None))
        except av.FFmpegError as exc:
            if self.dst == STDOUT and exc.errno in (errno.EPIPE, errno.EBADF):
                raise VideoError(
                    f"{self.dst}: the program reading standard output closed it after {self.frames} "
                    "frame(s); stopping"
                ) from exc
            reason = str(exc).replace(self.tmp, self.dst.name) if self.tmp else str(exc)
            label = encoder_label(self.codec)
            raise VideoError(f"{self.dst}: encoding with {label} failed ({reason})") from exc
        self.duration = float((last - first) * self.out_time_base + 1 / self.rate)

    def _mux_video(
        self, output: Any, held: list[Any] | None, packets: list[Any], final: bool = False
    ) -> list[Any] | None:
        """Mux the encoder's packets; the first _HELD are held back and their decode times mended if
        they need it: libx265 gives a stream of one or two frames decode times that are garbage
        (1e17 off, uninitialised), which MP4 and MOV refuse at the end of all the work."""
        if held is None:
            output.mux(packets)
            return None
        held.extend(packets)
        if len(held) < _HELD and not final:
            return held
        pts = [p.pts for p in held]
        step = max(1, round(1 / (self.rate * self.out_time_base)))  # one frame
        dts = [p.dts for p in held]
        if held and (
            None in dts
            or any(b <= a for a, b in itertools.pairwise(dts))
            or any(d > p for d, p in zip(dts, pts, strict=True))
            or dts[0] < min(pts) - _HELD * step
        ):
            ordered = sorted(pts)
            delay = max(0, *(o - p for o, p in zip(ordered, pts, strict=True)))
            for packet, time_ in zip(held, ordered, strict=True):
                packet.dts = time_ - delay
        output.mux(held)
        return None

    def _set_hdr10(self) -> None:
        """Before the encoder opens: pass on the source's HDR10 metadata where the encoder takes it."""
        params = self.hdr10.encoder_params(self.codec) if self.hdr10 else None
        if params:
            option = ENCODER_OPTION[self.codec]
            self.vout.options = {
                **self.options,
                option: ":".join(p for p in (params, self.options.get(option)) if p),  # the caller's win
            }
            self.hdr10_kept = True

    @staticmethod
    def _mux_carried(output: Any, item: _Carried) -> None:
        import av

        if isinstance(item.item, av.Packet):  # copied as it is
            item.item.stream = item.out
            output.mux(item.item)
        else:
            output.mux(item.out.encode(item.item))
