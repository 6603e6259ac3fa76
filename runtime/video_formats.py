"""What a debanded video is written as, checked before any work: the container from the file
name, an encoder that fits it and writes the bit depth, and the pixel format (chroma and alpha
from the source where the encoder keeps them); the paths it goes between ("-": standard input
and output), the suffixes read as video, and VideoError, which every video module raises.
"""

from __future__ import annotations

import functools
import io
import numbers
import os
import warnings
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from .pyav import require_pyav
from .video_encoder import encoder_label, encoder_options, ffmpeg_heard
from .video_streams import moving_pictures, picture_format

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

# Encoders that write the colour range into their own stream (H.264 and HEVC VUI), so that it
# survives a container without colour tags (AVI, which takes x264 of the two); FFV1, VP8 and
# MPEG-4 Part 2 in AVI lost it.
RANGE_IN_STREAM = {"libx264", "libx265"}

# Muxer -> the encoders among ours (_KNOWN_ENCODERS) whose video it really holds. FFmpeg's own
# check accepts more (AV1 or FFV1 in MPEG-TS, x264 in Y4M) and then writes an unplayable data
# stream or fails at the end, after all the work. Measured by encoding into each with PyAV.
VIDEO_CODECS = {
    "mp4": {"libx264", "libx265", "libsvtav1", "libvpx-vp9", "ffv1"},
    "mov": {"libx264", "libx265", "prores_ks"},
    "matroska": {"libx264", "libx265", "libsvtav1", "libvpx-vp9", "libvpx", "ffv1", "prores_ks"},
    "webm": {"libsvtav1", "libvpx-vp9", "libvpx"},
    "avi": {"libx264", "libvpx", "ffv1"},
    "mpegts": {"libx264", "libx265"},
    "yuv4mpegpipe": {"wrapped_avframe"},
}


_KNOWN_ENCODERS = set().union(*VIDEO_CODECS.values())


CHROMA = ("420", "422", "444")  # output chroma resolutions (4:2:0, 4:2:2, 4:4:4)


# Encoders that keep alpha (yuva formats), measured by decoding it back: x265 lists yuva formats
# too, but PyAV's x265 refuses to open with them. VP9 writes alpha as a second layer, flagged in
# WebM (alpha_mode 1), which FFmpeg's own decoder ignores and video_streams reads with libvpx.
_ALPHA_ENCODERS = {"ffv1", "prores_ks", "libvpx-vp9"}
# libvpx lists yuva422p and yuva444p too but opens with yuva420p alone, and its alpha layer is
# kept by Matroska and WebM alone (MP4 has no place for it: the alpha was lost without a word).
_ALPHA_FORMATS = {"libvpx-vp9": {"yuva420p"}}
_ALPHA_MUXERS = {"libvpx-vp9": {"matroska", "webm"}}


class VideoError(ValueError):
    """A bad video file or request; the message is one line: the file, the problem and what to do."""


def is_video(path: str | os.PathLike) -> bool:
    """Whether the file name has a video suffix (VIDEO_SUFFIXES); the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


# FFmpeg's readers of video containers and elementary streams, by the names an opened file gives:
# what a file named as neither picture nor video is taken for a video by. Not its image readers
# (GIF, APNG, ICO: pictures, animated or not), nor text ("tty") or audio with cover art.
_VIDEO_READERS = {
    "h264", "hevc", "vvc", "mpegvideo", "m4v", "vc1", "cavsvideo", "h261", "h263", "av1", "obu", "ivf",
    "mpegts", "mpeg", "matroska", "mov", "avi", "flv", "asf", "ogg", "yuv4mpegpipe", "mxf", "dv", "nut",
    "gxf", "wtv", "rm", "lxf", "dnxhd", "dirac", "bink",
}  # fmt: skip


@functools.cache
def _reads_avif() -> bool:
    """Whether Pillow reads AVIF here (its plugin, from Pillow 11.3): then a still AVIF is a
    picture; else FFmpeg still reads it, as a video of one frame."""
    from PIL import features

    return bool(features.check("avif"))


@functools.lru_cache(maxsize=256)
def holds_video(path: Path) -> bool:
    """Whether FFmpeg reads the file as a video, whatever its name: an elementary stream (.h264,
    .hevc), a renamed or suffix-less file."""

    def video(container: Any) -> bool:
        if container.metadata.get("major_brand", "").strip() == "avif" and _reads_avif():
            return False  # a still AVIF, a video of one frame to FFmpeg's MP4 reader: a picture
        readers = set(container.format.name.split(","))
        return bool(readers & _VIDEO_READERS) and bool(moving_pictures(container))

    return _asks_ffmpeg(path, video)


def without_video(path: Path) -> bool:
    """Whether FFmpeg reads the file as media with no moving pictures (sound, subtitles, cover
    art): asked for a video of it, say that, rather than blame the output's name."""
    return _asks_ffmpeg(path, lambda container: bool(container.streams) and not moving_pictures(container))


def _asks_ffmpeg(path: Path, question: Callable[[Any], bool]) -> bool:
    """question(the opened file) for a regular file FFmpeg opens; False where it cannot, or PyAV
    is missing. Only regular files: opening a pipe would take its start."""
    try:
        import av
    except ImportError:
        return False
    if not path.is_file():
        return False
    try:
        with av.open(str(path)) as container:
            return question(container)
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return False


def _muxer_for(dst: Path) -> str:
    if dst == STDOUT:
        return "yuv4mpegpipe"
    muxer = CONTAINERS.get(dst.suffix.lower())
    if muxer is None and dst.is_dir():
        raise VideoError(f"{dst}: is a folder; give an output file name")
    if muxer is None:
        choices = ", ".join(sorted(CONTAINERS))
        raise VideoError(
            f"{dst}: unsupported output container {dst.suffix or '(no suffix)'!r}; use {choices}"
        )
    return muxer


def _standard_input_is(path: Path) -> bool:
    """Whether standard input is redirected from `path` (bdinn-run - -o v.mkv < v.mkv): --force
    would replace the source it reads, as naming the file twice would."""
    try:
        return os.path.samestat(os.fstat(0), os.stat(path))
    except (OSError, ValueError):  # no descriptor 0, or no such output yet
        return False


def check_paths(src: Path, dst: Path, force: bool) -> str:
    """Validate the paths; the destination's muxer name."""
    if dst == STDOUT:
        return "yuv4mpegpipe"
    if src != STDIN and not src.exists():
        raise VideoError(f"{src}: no such file (check the path)")
    if src.is_dir():
        raise VideoError(f"{src}: is a folder, not a video file")
    muxer = _muxer_for(dst)
    if src != STDIN and (dst.resolve() == src.resolve() or (dst.exists() and os.path.samefile(dst, src))):
        raise VideoError(f"{dst}: the output is the input file; write to another path")
    if src == STDIN and _standard_input_is(dst):
        raise VideoError(f"{dst}: the output is the file on standard input; write to another path")
    if dst.is_dir():
        raise VideoError(f"{dst}: is a folder; give an output file name")
    if (dst.exists() or dst.is_symlink()) and not force:  # a dangling link too
        raise VideoError(f"{dst}: already exists; pass force=True (--force) to overwrite it")
    return muxer


def _available_encoders() -> list[str]:
    """The encoders measured into our containers that this FFmpeg has, less Y4M's raw one (it
    takes no --codec): the ones to name to a user."""
    import av

    names = _KNOWN_ENCODERS - {"wrapped_avframe"}
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


def _rgb_or_grey(pix_fmt: str) -> bool:
    """An RGB, grey or palette format (not semi-planar or packed YUV, which QSV encoders take)."""
    import av

    return av.VideoFormat(pix_fmt).is_rgb or pix_fmt.startswith(("gray", "ya", "pal", "mono"))


def _pick_codec(
    dst: Path, muxer: str, codec: str | None, pix_fmts: list[str], bit_depth: int
) -> tuple[str, str]:
    """The encoder's name and the first of `pix_fmts` it writes, checked against the container."""

    def written(enc: Any) -> list[str]:
        names = _writes(enc)
        return [w for p in pix_fmts if (w := as_written(p, names, enc.name))]

    def fits(name: str) -> bool:
        """Measured (VIDEO_CODECS); any other encoder is tried by `_reads_back` once its options
        are known."""
        return name in VIDEO_CODECS[muxer] if name in _KNOWN_ENCODERS else True

    def able() -> list[str]:
        """The encoders we know that write the wanted video into this container."""
        return [n for n in _available_encoders() if fits(n) and written(_encoder(n))]

    wanted = pix_fmts[0] if len(pix_fmts) == 1 else f"{bit_depth}-bit"
    if codec is None:
        for name in DEFAULT_CODECS[muxer]:
            enc = _encoder(name)
            if enc is not None and written(enc) and fits(name):
                return enc.name, written(enc)[0]
        codecs = able()
        way = f"pass codec= one of {', '.join(codecs)}" if codecs else "write .mkv (libx265)"
        raise VideoError(f"{dst}: no built-in encoder writes {wanted} video into {dst.suffix}; {way}")
    if muxer == "yuv4mpegpipe" and codec != "wrapped_avframe":
        raise VideoError(f"{dst}: Y4M holds raw video only; leave codec (--codec) out")
    enc = _encoder(codec)
    if enc is None or enc.type != "video":
        raise VideoError(
            f"{dst}: unknown video encoder {codec!r}; choose one of {', '.join(_available_encoders())} "
            "(or another of FFmpeg's video encoders)"
        )
    if not written(enc):
        others = [n for n in able() if n != enc.name]  # libx265 cannot go into .webm
        instead = f"another codec ({', '.join(others)})" if others else "another codec in .mkv (libx265)"
        names = _writes(enc) or set()
        if names and all(_rgb_or_grey(name) for name in names):  # not a matter of depth or chroma
            raise VideoError(
                f"{dst}: {enc.name} writes RGB or grey video only, and bdinn writes YUV; use {instead}"
            )
        other = [c for c in CHROMA if as_written(_pix_fmt(c, bit_depth), names, enc.name)]
        shallower = [
            d
            for d in (10, 8)
            if d < bit_depth and any(as_written(_pix_fmt(p[3:6], d), names, enc.name) for p in pix_fmts)
        ]
        if shallower:
            hint = f"pass bit_depth={shallower[0]} (--bit-depth {shallower[0]}) or use {instead}"
        elif other:
            hint = f"ask for chroma {other[0]} (--chroma {other[0]}) or use {instead}"
        else:
            hint = f"use {instead}"
        raise VideoError(f"{dst}: {enc.name} cannot write {wanted} video; {hint}")
    if not fits(enc.name):
        holders = [suffix for suffix, name in CONTAINERS.items() if enc.name in VIDEO_CODECS[name]]
        codecs = able()
        instead = f" or pass codec= one of {', '.join(codecs)}" if codecs else ""
        raise VideoError(
            f"{dst}: a {dst.suffix} file cannot hold {enc.name} video; write {', '.join(holders)}{instead}"
        )
    return enc.name, written(enc)[0]


# What `_reads_back` encodes: a colour gradient, which any working encoder keeps within a few
# levels, big enough for every encoder's minimum and small enough to take milliseconds; 8 frames,
# as 2 were too few for x265 into .mp4 and x264 into .ts (lookahead, B-frames) to come back.
_TRIAL_SIZE, _TRIAL_FRAMES = (144, 256), 8
_TRIAL_TOLERANCE = 8.0  # mean absolute error in 8-bit levels; misread video is off by ~100


def _trial_frame() -> Any:
    import numpy as np

    h, w = _TRIAL_SIZE
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[..., 0] = np.linspace(16, 235, w, dtype=np.float32).round()[None, :]
    rgb[..., 1] = np.linspace(235, 16, h, dtype=np.float32).round()[:, None]
    rgb[..., 2] = 128
    return rgb


def _reads_back(
    muxer: str, codec: str, pix_fmt: str, options: Mapping[str, str], rate: Fraction, time_base: Fraction
) -> str | None:
    """None if a few frames from `codec` with these options, written into `muxer` in memory, decode
    back to about the frame sent; else why not. For the encoders VIDEO_CODECS has not measured:
    FFmpeg accepts raw video into .mov and .avi and writes a file that plays as noise or not at all."""
    import av
    import av.logging
    import numpy as np

    sent = _trial_frame()
    buffer = io.BytesIO()
    logs: list[tuple[int, str, str]] = []
    try:
        with ffmpeg_heard() as (logs, _):  # the encoder's chatter, and why it refuses
            with av.open(buffer, "w", format=muxer) as out:
                stream = out.add_stream(codec, rate=rate, options=dict(options))
                stream.height, stream.width = _TRIAL_SIZE
                stream.pix_fmt = pix_fmt
                stream.codec_context.time_base = time_base
                if muxer == "avi":
                    stream.codec_context.max_b_frames = 0  # as VideoJob writes it
                frame = av.VideoFrame.from_ndarray(sent, format="rgb24").reformat(format=pix_fmt)
                for index in range(_TRIAL_FRAMES):
                    frame.pts = round(index / rate / time_base)
                    out.mux(stream.encode(frame))
                out.mux(stream.encode(None))
            buffer.seek(0)
            with av.open(buffer) as back:
                if not back.streams.video:
                    return "no video stream read back"
                got = [f.to_ndarray(format="rgb24") for f in back.decode(back.streams.video[0])]
    except (av.FFmpegError, ValueError, OSError) as exc:
        said = [" ".join(message.split()) for level, _, message in logs if level <= av.logging.ERROR]
        return said[0] if said else str(exc)  # FFmpeg's words (one line): "returned 22" says little
    if not got:
        return "no frame read back"
    error = float(np.abs(got[0].astype(np.int16) - sent).mean())
    return None if error <= _TRIAL_TOLERANCE else f"read back {error:.0f} levels off"


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
    if (
        isinstance(bit_depth, bool)
        or not isinstance(bit_depth, numbers.Integral)
        or bit_depth not in (8, 10, 12)
    ):
        raise VideoError(f"{dst}: bit depth must be 8, 10 or 12, got {bit_depth!r}")
    if chroma is not None and chroma not in CHROMA:
        choices = ", ".join(map(repr, CHROMA))
        raise VideoError(f"{dst}: chroma must be one of {choices} (None: the source's), got {chroma!r}")
    pix_fmts = [_pix_fmt(c, bit_depth) for c in ([chroma] if chroma else CHROMA)]
    codec_name, pix_fmt = _pick_codec(dst, muxer, codec, pix_fmts, bit_depth)
    try:
        options = encoder_options(codec_name, pix_fmt, crf, preset, codec_options)
    except ValueError as exc:
        raise VideoError(f"{dst}: {exc}") from None
    check_trial_encode(dst, muxer, codec_name, pix_fmt, options)
    return codec_name, pix_fmt, options


def check_trial_encode(
    dst: Path,
    muxer: str,
    codec: str,
    pix_fmt: str,
    options: Mapping[str, str],
    rate: Fraction = Fraction(25),
    time_base: Fraction = Fraction(1, 25),
) -> None:
    """VideoError unless an encoder outside VIDEO_CODECS writes this pixel format into the
    container readably (`_reads_back`). Again once the source has chosen the format and timing:
    raw video goes into .avi as 4:2:0 but comes back as noise in 4:4:4, and MPEG-2 takes
    25 frames a second in ticks of 1/25 s but not in an MP4 source's ticks of 1/12288 s."""
    if codec in _KNOWN_ENCODERS or not (why := _reads_back(muxer, codec, pix_fmt, options, rate, time_base)):
        return
    raise VideoError(
        f"{dst}: {codec} {pix_fmt} video in a {dst.suffix} file failed a trial encode ({why}); "
        f"use another container or one of {', '.join(_available_encoders())}"
    )


def _pix_fmt(chroma: str, bit_depth: int) -> str:
    return f"yuv{chroma}p" + ("" if bit_depth == 8 else f"{bit_depth}le")


# The semi-planar twins of the 4:2:0 formats bdinn writes: hardware encoders take 10-bit video
# only so (NVENC, QSV, AMF: P010), and QSV's H.264 any video (NV12). Not 4:2:2 (NV16, P210):
# NVENC lists them, but few cards code 4:2:2, and its 4:4:4 was picked before.
_SEMI_PLANAR = {"yuv420p": "nv12", "yuv420p10le": "p010le", "yuv420p12le": "p012le"}


def as_written(planar: str, names: set[str] | None, codec: str) -> str | None:
    """`planar` where the encoder writes it (or any format: names None), else its semi-planar twin
    where the encoder writes that; None where it writes neither. Not P010 for hardware H.264:
    NVENC and AMF list it for their HEVC and AV1 siblings, and their H.264 codes 8 bits."""
    if names is None or planar in names:
        return planar
    twin = _SEMI_PLANAR.get(planar)
    if codec.startswith("h264_") and twin != "nv12":
        return None
    return twin if twin in names else None


def writes_chroma(codec: str, chroma: str, bit_depth: int) -> bool:
    """Whether `codec` writes video of that chroma and depth (planar, or its semi-planar twin)."""
    return as_written(_pix_fmt(chroma, bit_depth), _writes(_encoder(codec)), codec) is not None


def chroma_of(fmt: Any) -> str:
    """The least output chroma that keeps all of a source format's: RGB is 4:4:4, gray 4:2:0."""
    if fmt is None or sum(not c.is_alpha for c in fmt.components) < 3:
        return "420"
    if fmt.is_rgb or fmt.chroma_width(4) == 4:  # full horizontal chroma (4:4:4, 4:4:0)
        return "444"
    return "422" if fmt.chroma_height(4) == 4 else "420"  # full vertical (4:2:2, 4:1:1), or half


def follow_source(vin: Any, src: Path, dst: Path, codec: str, bit_depth: int) -> str:
    """The output pixel format: the least chroma the encoder writes that keeps the source's, else
    its most, with a warning."""
    kept = chroma_of(picture_format(vin))
    names = _writes(_encoder(codec))
    writable = [c for c in CHROMA if as_written(_pix_fmt(c, bit_depth), names, codec)]
    enough = [c for c in writable if c >= kept]  # "420" < "422" < "444"
    chosen = enough[0] if enough else writable[-1]
    if chosen < kept:
        warnings.warn(
            f"{dst}: {encoder_label(codec)} writes 4:{chosen[1]}:{chosen[2]} at most, so {src.name}'s "
            f"4:{kept[1]}:{kept[2]} chroma is reduced; use libx265 (.mkv) to keep it, or chroma {chosen} "
            f"(--chroma {chosen}) to ask for 4:{chosen[1]}:{chosen[2]}",
            stacklevel=3,
        )
    return as_written(_pix_fmt(chosen, bit_depth), names, codec) or _pix_fmt(chosen, bit_depth)


def with_alpha(vin: Any, src: Path, codec: str, pix_fmt: str, chroma_chosen: bool, muxer: str) -> str:
    """The output pixel format with alpha where the source has it and the encoder keeps it in this
    container; where the caller chose no chroma, at 4:4:4 where the encoder keeps it only there
    (ProRes 4444), else at 4:2:0 where only there (VP9), with a warning."""
    fmt = picture_format(vin)
    if fmt is None or not any(c.is_alpha for c in fmt.components):
        return pix_fmt
    holders = _ALPHA_MUXERS.get(codec, {muxer})
    writes: set[str] = set()
    if codec in _ALPHA_ENCODERS and muxer in holders:
        writes = _ALPHA_FORMATS.get(codec) or _writes(_encoder(codec)) or set()
    depth = pix_fmt[len("yuv444p") :]  # "" (8 bits) or "10le", after any yuvCCCp
    same, at_444, at_420 = "yuva" + pix_fmt.removeprefix("yuv"), f"yuva444p{depth}", f"yuva420p{depth}"
    if same in writes:
        return same
    if at_444 in writes and not chroma_chosen:
        return at_444
    if at_420 in writes and not chroma_chosen:
        warnings.warn(
            f"{src}: {encoder_label(codec)} keeps alpha at 4:2:0 only, so its chroma is reduced to keep "
            "its alpha; chroma 444 (--chroma 444) keeps the chroma and drops the alpha",
            stacklevel=3,
        )
        return at_420
    where = f"in {pix_fmt}" if muxer in holders else f"in {muxer} files, only in .mkv and .webm"
    if at_444 in writes:
        keeps = "with chroma 444 (--chroma 444)"
    elif at_420 in writes:
        keeps = "with chroma 420 (--chroma 420)"
    else:
        keeps = (
            "ffv1 (.mkv) and prores_ks (.mov) keep it (codec=, --codec NAME: the suffix alone picks "
            "another encoder), as does libvpx-vp9 at 8 bits (.webm, --codec libvpx-vp9 --bit-depth 8)"
        )
    warnings.warn(
        f"{src}: its alpha channel is dropped: {encoder_label(codec)} does not keep it {where}; {keeps}",
        stacklevel=3,
    )
    return pix_fmt
