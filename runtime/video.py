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
modified in place, but not a writeable buffer of the caller's returned again for another frame:
frames wait in a queue to be encoded, so refilling it would overwrite them (refused with a
VideoError; a read-only array, such as a constant picture, may come back every frame).

Pipeline: a decode thread (demux, decode, YUV -> RGB) and an encode thread (RGB -> YUV, encode,
mux) are joined to the calling thread by bounded queues, so decoding and encoding overlap with
inference. An exception anywhere (in `process`, the decoder or the encoder, or Ctrl-C) stops all
three, the threads are joined, the partial output is deleted, and the exception is raised. After a
signal, a thread blocked on a stalled pipe (a reader of standard output that stopped reading, a
named pipe given as the source) is waited for a second, then left behind with its containers,
which are not closed under it.
SIGTERM is not an exception unless the program makes it one (bdinn-run does: a handler that
raises SystemExit); Python's default ends the process where it stands, leaving the hidden
temporary file (.NAME.XXXXXXXX.tmp) beside the output.

Output: 10-bit by default, 8- or 12-bit with bit_depth, with the source's chroma resolution
(4:2:0, 4:2:2, or 4:4:4 for 4:4:4 and RGB sources) where the encoder writes it, else the most it
writes, with a warning; `chroma` asks for one. The encoder follows from the destination's suffix
(DEFAULT_CODECS) unless `codec` names one. Alpha is kept by FFV1, ProRes (prores_ks) and, at 8
bits, VP9 (libvpx-vp9), and dropped with a warning elsewhere. Frames their decoder flags
interlaced are converted and debanded field by field (`process` is called on each field, a picture
of half the frame's height) and written interlaced by x264 (in the first frame's field order),
ProRes and FFV1 (in each frame's) and Y4M (the first frame's; video_fields.py says where x264
cannot); other encoders code the woven fields as progressive pictures, with a warning. Frame
timestamps, frame rate, frame count, display rotation, the start timecode and the colour tags
(primaries, transfer, matrix, range) are kept; so is the sample aspect ratio with x264/x265 (other
encoders warn that they drop it). What else the source carries goes along (video_streams.py):
audio is copied packet for packet where the destination container takes its codec, otherwise
re-encoded (AAC; Opus for WebM); subtitles are copied where the container takes their codec, and
text ones rewritten into its own text codec where it does not (subtitle_text.py: SubRip, ASS or
WebVTT into MP4's and MOV's mov_text, any of them into WebM's WebVTT, mov_text into Matroska's
SubRip); chapters go into MKV, WebM, MP4 and MOV, and attachments (fonts, cover art) into MKV.
What a container cannot hold (Y4M holds no audio) is dropped with a warning. HDR10 static metadata
(mastering display, MaxCLL/MaxFALL) is passed to x265, x264 and SVT-AV1; other encoders drop it
with a warning. Closed captions (A/53) go back into each frame for x264 and x265
(video_side_data.py); other encoders drop them with a warning. Data streams are not carried over
(named in a warning). The output is written to a hidden temporary file beside `dst` and renamed
over it at the end, so a failure never leaves a partial video.

Colour conversion (video_colour.py) uses the source's own matrix and range in both directions and
passes `process` 16-bit RGB on the true 0..65535 scale; the frame written is the source's own YUV
samples plus the change `process` made (video_source_samples.py), so what RGB cannot hold
(super-whites, colours outside it) and what `process` left alone come back as they were. The
output's set-up and the threads' work are in video_job.py (the threads and queues themselves in
video_pipeline.py, a frame's way through `process` in video_frames.py, timestamp arithmetic in
video_timing.py), opening the source (standard input included) in video_source.py; the container,
encoder and pixel format checks in video_formats.py.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .backends.base import BackendError
from .console import LossyBar
from .display_matrix import DisplayMatrix
from .files import OutputError, atomic_write
from .mp4_boxes import cut_box
from .pyav import require_pyav
from .subtitle_text import Timeline
from .video_colour import (
    ASSUMED_TAGS,
    HDR_TRANSFERS,
    Colour,
    copy_alpha,
    copy_colour_tags,
    swscale_writes,
)
from .video_encoder import encoder_label
from .video_fields import (
    FIELD_FLAGS,
    ONE_FIELD_ORDER,
    field_flags,
    order_name,
    why_not_fields,
)
from .video_float import beyond_white
from .video_formats import (
    CHROMA,
    CONTAINERS,
    DEFAULT_CODECS,
    RANGE_IN_STREAM,
    STDIN,
    STDIO,
    STDOUT,
    VIDEO_CODECS,
    VIDEO_SUFFIXES,
    VideoError,
    check_encoder,
    check_paths,
    check_trial_encode,
    follow_source,
    is_video,
    with_alpha,
)
from .video_frames import checked_picture, coded_frame, outgoing_frame, rgb_pictures
from .video_job import VideoJob
from .video_side_data import CAPTION_OPTIONS, has_captions, side_data_carrier
from .video_source import open_source
from .video_source_samples import SourceSamples
from .video_streams import ROTATION_MUXERS, moving_pictures

__all__ = [  # the names users import from here; the format checks live in video_formats.py
    "CHROMA",
    "CONTAINERS",
    "DEFAULT_CODECS",
    "STDIO",
    "VIDEO_CODECS",
    "VIDEO_SUFFIXES",
    "OutputError",
    "VideoError",
    "VideoReport",
    "check_encoder",
    "deband_frame",
    "deband_video",
    "is_video",
]


@dataclass(frozen=True)
class VideoReport:
    """What deband_video did.

    frames: frames decoded, processed and encoded (the same number).
    seconds: wall-clock time of the whole run; fps: frames / seconds, the processing speed.
    frame_rate: the video's own average frame rate; duration: its length in seconds.
    codec, pix_fmt, width, height: the output video stream.
    audio_streams: audio streams copied without re-encoding; audio_transcoded: re-encoded ones
    (their codec does not fit the container); audio_dropped: ones the container cannot hold, and
    ones of which nothing could be read (written empty).
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
    0..65535 scale for frames deeper than 8 bits), and gives back the frame's own samples plus
    the change `process` made (YUV and grey: super-whites and colours outside RGB are kept; an
    identity `process` returns the frame's samples exactly). Float RGB (EXR's) must hold 0..1;
    float grey is refused.
    A frame with closed captions (A/53) keeps all its side data, for an encoder that writes them
    (libx264; libx265 with a53cc=1); other frames have none: PyAV cannot attach it. Set the
    rotation on your output stream
    (`stream.set_display_rotation`) and the HDR10 metadata in your encoder's options
    (`Hdr10.of(frame).encoder_params(codec)` from bdinn.runtime.hdr10).

    Do not hand `frame.to_ndarray()` of a YUV frame to a Debander: that is the stacked Y, U and V
    planes, which it would take for a gray picture.
    """
    require_pyav("deband_frame")
    import av

    if not isinstance(frame, av.VideoFrame):
        raise TypeError(f"deband_frame takes a PyAV VideoFrame, got {type(frame).__name__}")
    _check_process(process)
    if fields is not None and not isinstance(fields, bool):
        raise TypeError(f"fields must be True, False or None (the frame's own flag), got {fields!r}")
    if not swscale_writes(name := frame.format.name):
        raise VideoError(
            f"deband_frame cannot give back a {name} frame (FFmpeg's scaler reads it but does not write "
            f"it): convert it first, e.g. frame.reformat(format='rgb24')"
        )
    if name.startswith("grayf"):
        raise VideoError(
            f"deband_frame cannot take float grey ({name}): FFmpeg's scaler writes it as video range "
            "(RGB black as 0.0625); put its samples into a gray16le frame first"
        )
    if (beyond := beyond_white(frame)) is not None:
        raise VideoError(f"deband_frame: this {name} frame {beyond}")
    fields = frame.interlaced_frame if fields is None else fields
    if not fields:
        dominance = None
    elif frame.interlaced_frame:
        dominance = field_flags().is_top_first(frame)
    else:  # asked for fields without a flag to say their order: top first, as HD video mostly is
        dominance = True
    deep = frame.format.components[0].bits > 8
    which = f"the frame at {frame.time:.3f} s" if frame.time is not None else "a frame without a time"
    rgb = rgb_pictures(frame, dominance, deep)
    colour = Colour.of(frame)
    source = SourceSamples.of(frame, rgb, frame.format.name, colour, dominance)
    pictures = tuple(checked_picture("deband_frame", which, process(p), p.shape) for p in rgb)
    made = coded_frame(pictures, frame.format.name, colour, dominance)
    if source is not None:
        made = source.put_back(made)
    copy_alpha(frame, made)
    out = outgoing_frame(made, dominance, side_data_carrier(frame) if has_captions(frame) else None)
    copy_colour_tags(frame, out)  # as they were, even if odd
    out.pts = frame.pts
    if frame.time_base is not None:  # None on a frame made from an array
        out.time_base = frame.time_base
    return out


def _fields_lost(src: Path, codec: str, pix_fmt: str, height: int, tagged: bool = False) -> str:
    """The warning for fields debanded one by one and then coded as progressive frames; `tagged`:
    said before the work, from the stream's tag (the frames may still turn out progressive)."""
    reason = why_not_fields(codec, pix_fmt, height)
    if reason is None:  # the encoder could have kept them, but the first frame set it up
        reason, advice = f"the video began with progressive frames, so {codec} was set up for those", ""
    elif codec in FIELD_FLAGS:
        advice = "crop it to such a height or write 4:2:2 (--chroma 422) to keep it interlaced, "
    else:
        advice = "use libx264 (--codec libx264) or prores_ks (.mov, --codec prores_ks) to keep fields, "
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
    the container's frame count, else its duration times the frame rate: an estimate where the
    timestamps have gaps or restart; None when the container does not say).

    Raises VideoError for a bad file or request, before anything is written where it can be
    known up front, and OutputError (from bdinn.runtime.files; both are ValueErrors) where dst
    cannot be written; any exception from `process` is raised as it is, except StopIteration,
    which Python turns into RuntimeError inside the frame loop.

    An encoder outside VIDEO_CODECS, or codec_options, is first tried on a few small frames
    (milliseconds) with file descriptor 2 pointed at a temporary file, to keep FFmpeg's and the
    encoder's own printing from the caller: whatever other threads write to stderr in that
    window is lost.
    """
    started = time.perf_counter()
    _check_process(process)
    if not (isinstance(progress, bool) or callable(progress)):
        raise TypeError(f"progress must be True, False or a callable progress(done, total), got {progress!r}")
    src, dst = (_path(name, what) for name, what in ((src, "src"), (dst, "dst")))
    src = STDIN if os.fspath(src) == STDIO else Path(src)
    dst = STDOUT if os.fspath(dst) == STDIO else Path(dst)
    codec_name, pix_fmt, options = check_encoder(dst, codec, bit_depth, crf, preset, codec_options, chroma)
    muxer = check_paths(src, dst, force)

    source, stdin = open_source(src)
    bar = job = None
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
            pix_fmt = follow_source(vin, src, dst, codec_name, bit_depth)
        pix_fmt = with_alpha(vin, src, codec_name, pix_fmt, chroma_chosen=chroma is not None, muxer=muxer)
        job = VideoJob(source, src, dst, muxer, codec_name, pix_fmt, options, process)
        check_trial_encode(dst, muxer, codec_name, pix_fmt, options, job.rate, job.out_time_base)
        job.stdin = stdin
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
            quiet = sys.stderr is None  # pythonw, some daemons: no console to draw on
            bar = LossyBar(total=job.total, unit="frame", desc=src.name, dynamic_ncols=True, disable=quiet)
            job.on_frame = lambda done: bar.update(1)
        elif callable(progress):
            total = job.total  # not the job: job -> on_frame -> job kept every job until a gc
            job.on_frame = lambda done: progress(done, total)
        if dst == STDOUT:
            _write_stdout(job.run)
        else:
            atomic_write(dst, job.run, replace=force)  # another job's output of that name is kept
    finally:
        if bar is not None:
            bar.close()
        if job is None or not job.stuck:  # else a thread left behind on a stalled pipe may still use it
            source.close()

    _warn_after_run(job, warned_fields_lost)
    return _report(job, time.perf_counter() - started)


def _warn_after_run(job: VideoJob, warned_fields_lost: bool) -> None:
    """What the frames showed only as they were decoded and written: a file cut short or damaged,
    what the output could not keep. Warnings point at deband_video's caller."""
    for message in (*_source_findings(job), *_output_losses(job, warned_fields_lost)):
        warnings.warn(message, stacklevel=3)


def _source_findings(job: VideoJob) -> Iterator[str]:
    """What decoding showed of the source: cut short, a still end, damage, clock jumps, resizes."""
    src, dst = job.src, job.dst
    # An exact count from the header (MP4, MOV); an edit list may hide some of them, but then the
    # header's duration is what was decoded.
    listed_time = job.listed_duration
    short_in_time = listed_time is None or job.duration < listed_time - 0.5 / float(job.rate)
    if job.listed_frames and job.frames < job.listed_frames and short_in_time:
        yield (
            f"{src}: decoded {job.frames} of the {job.listed_frames} frames its header lists; the file may "
            "be cut short (the output holds what was there)"
        )
    whole = job.track_duration  # to the millisecond: only frames a decoder drops (an open GOP) differ
    still, noticed = job.still_end(), max(0.5, 3 / float(job.rate))
    if not job.listed_frames and whole and whole - (job.duration + still) > noticed:
        yield (
            f"{src}: decoded {job.duration:.2f} s of video, but its header says its video lasts "
            f"{whole:.2f} s; the file may be cut short (the output holds what was there)"
        )
    if still > noticed:  # it was taken for a file cut short
        yield (
            f"{src}: shows its last frame for {still + 1 / float(job.rate):.2f} s (a still end); {dst} "
            f"shows it for one frame and is {still:.2f} s shorter (bdinn does not keep a still end)"
        )
    if job.bytes_after_frames:
        yield (
            f"{src}: ends inside a frame ({job.bytes_after_frames} bytes after the last whole one, which "
            "FFmpeg drops); the output holds the whole frames: did the program writing it stop early?"
        )
    if job.damaged_packets or job.damaged_frames:
        yield (
            f"{src}: damaged ({job.damaged_packets} broken video packet(s), {job.damaged_frames} frame(s) "
            "decoded with errors), as a broken recording or transfer is; FFmpeg concealed what it could, so "
            "the output may show them or lack frames: check it, or get the source again"
        )
    if job.carried.indexed and src != STDIN and (cut := cut_box(Path(src))) is not None:
        cause = "a recording that stopped while writing its index" if cut.kind == "moov" else "a copy cut off"
        yield (
            f"{src}: cut short inside its {cut.kind!r} box ({cut.present} of its {cut.declared} bytes are "
            f"there), as {cause} leaves it; what FFmpeg could not read of it (tracks, frames) is not in "
            "the output"
        )
    if unheard := job.carried.unheard:
        yield (
            f"{src}: none of audio stream {', '.join(map(str, unheard))}'s sound could be read (an MP4 or "
            "MOV cut inside its index at the file's end looks like this); the output's sound track is empty"
        )
    if job.clock_jumps:
        yield (
            f"{src}: its clock jumps {job.clock_jumps} time(s) (recordings joined end to end, an encoder "
            "restart); what follows each jump was moved to run on from before it, as FFmpeg does"
        )
    if (resized := job.resized) is not None:
        size = f"{job.width}x{job.height}"
        yield (
            f"{src}: the picture size changes from {size} to {resized.size[0]}x{resized.size[1]} at frame "
            f"{resized.first}; a video keeps one size, so {resized.frames} frame(s) were scaled to {size} "
            "(stretched where the shape differs): to keep each size, cut the source at the change first"
        )


_HEARD_EARLY = 0.04  # seconds of sound ahead of its picture that viewers begin to notice (45 ms)


def _output_losses(job: VideoJob, warned_fields_lost: bool) -> Iterator[str]:
    """What the output could not keep of the source: its frame times, fields, captions, subtitles,
    orientation, HDR10 metadata."""
    src, dst, muxer, codec_name, pix_fmt = job.src, job.dst, job.muxer, job.codec, job.pix_fmt
    if job.retimed:
        counter = "Y4M" if muxer == "yuv4mpegpipe" else "AVI"
        yield (
            f"{dst}: the source's frame times are irregular (variable frame rate), and "
            f"{counter} holds one frame every {1 / float(job.rate):.4g} s, "
            "so frames were retimed (audio muxed back will drift); write .mkv or .mp4 to keep their times"
        )
    if (late := max(job.avi_late.values(), default=0.0)) >= _HEARD_EARLY:
        yield (
            f"{dst}: the source's sound starts {late:.2f} s after its picture, and AVI holds no start "
            "time for sound, so it plays from the start, that much early; write .mkv or .mp4 to keep "
            "them in step"
        )
    if job.interlaced_frames and not job.codes_fields and not warned_fields_lost:
        yield _fields_lost(src, codec_name, pix_fmt, job.height)
    if len(job.dominances) > 1 and job.codes_fields and codec_name in ONE_FIELD_ORDER:
        yield (
            f"{dst}: the source's field order changes between frames, and {encoder_label(codec_name)} "
            "keeps one order for the whole stream, so the others play back jerkily; ffv1 or prores_ks keep "
            "each frame's"
        )
    if job.captions and not job.writes_captions:
        why = (
            "a53cc=0 turns them off; leave it out to keep them"
            if codec_name in CAPTION_OPTIONS
            else f"{encoder_label(codec_name)} cannot carry them; use libx264 or libx265 (.mkv .mp4 .mov .ts)"
        )
        yield f"{src}: its closed captions (A/53: CEA-608/708) are dropped: {why}"
    for index, dropped in job.carried.crowded.items():
        yield (
            f"{src}: subtitle stream {index}: {dropped} cues dropped, each shown while "
            f"{Timeline.MAX_ON_SCREEN} others were on screen (mov_text samples repeat all that is shown); "
            "write .mkv to keep them"
        )
    for index in job.carried.not_utf8:
        yield (
            f"{src}: subtitle stream {index} is not UTF-8; its text was read as Windows-1252 (cp1252): if it "
            "reads wrong, convert the subtitles to UTF-8 first (iconv)"
        )
    if muxer == "yuv4mpegpipe" and (note := _y4m_losses(job.colour, job.display, job.sar)):
        yield f"{dst}: {note}"
    elif job.display and muxer not in ROTATION_MUXERS:
        yield (
            f"{dst}: a {dst.suffix} file cannot hold the source's {job.display.describe()}, so it "
            "plays turned or mirrored; write .mkv or .mp4 to keep it"
        )
    if muxer == "avi" and job.colour.full_range and codec_name not in RANGE_IN_STREAM:
        yield (
            f"{dst}: AVI keeps no colour range and {encoder_label(codec_name)} writes none into its stream, "
            "so players take this full-range video for limited range (its contrast stretched); write .mkv, "
            "or use libx264"
        )
    if job.hdr10 and not job.hdr10_kept:
        advice = (
            f"give it to the encoder reading the stream: x265-params {job.hdr10.encoder_params('libx265')}"
            if muxer == "yuv4mpegpipe"
            else "use libx265, libx264 or libsvtav1 to keep it"
        )
        yield (
            f"{dst}: {encoder_label(codec_name)} cannot carry the source's HDR10 metadata "
            f"({job.hdr10.parts()}); dropped ({advice})"
        )


def _report(job: VideoJob, seconds: float) -> VideoReport:
    unheard = job.carried.unheard  # written as empty tracks: nothing of them was carried
    return VideoReport(
        src=job.src,
        dst=job.dst,
        frames=job.frames,
        seconds=seconds,
        fps=job.frames / seconds if seconds > 0 else 0.0,
        frame_rate=float(job.rate),
        duration=job.duration,
        codec=job.codec,
        pix_fmt=job.pix_fmt,
        width=job.width,
        height=job.height,
        audio_streams=len(set(job.carried.audio_out) - job.carried.transcode - set(unheard)),
        audio_transcoded=len(job.carried.transcode - set(unheard)),
        audio_dropped=job.carried.audio_dropped + len(unheard),
        subtitle_streams=len(job.carried.subtitle_out),
        subtitles_dropped=job.carried.subtitles_dropped,
        hdr10=job.hdr10_kept,
        fields=order_name(job.first_interlaced) if job.first_interlaced is not None else None,
        captions=job.captions and job.writes_captions,
    )


def _check_process(process: object) -> None:
    if not callable(process):
        raise TypeError(f"process must be a callable, frame -> frame (H x W x 3 RGB arrays), got {process!r}")
    if getattr(process, "closed", False) is True:  # a closed Debander: now, not after the output is set up
        raise BackendError("this Debander is closed; open the model again")


def _path(name: object, what: str) -> str | os.PathLike:
    """A file name, as PyAV opens them: an open file or BytesIO is not one (FFmpeg reads by name)."""
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"{what} must be a file path (str or os.PathLike) or '-', got {type(name).__name__}")
    return name


def _y4m_losses(colour: Colour, display: DisplayMatrix | None, sar: Fraction | None) -> str | None:
    """What a Y4M output cannot say about this video, and how to tell its reader; None if nothing.
    (Y4M has a sample aspect field, but FFmpeg's muxer fills it from a setting PyAV cannot reach.)"""
    tags = colour.ffmpeg_tags() if {colour.primaries, colour.trc, colour.colorspace} - ASSUMED_TAGS else ""
    sar = sar if sar and sar != 1 else None
    held = (
        ("colour tags but the range", tags, tags),
        (display and display.describe(), display, display and display.ffmpeg_options()),
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
