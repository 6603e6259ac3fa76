"""What a video carries besides its pictures, set up on a new file: audio (copied, or re-encoded
where the container does not take its codec), subtitles, chapters, attachments such as fonts,
cover art, and tags. What a container cannot hold is dropped with one warning that names it.
"""

from __future__ import annotations

import contextlib
import mimetypes
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

from .pyav import local_file
from .subtitle_text import TEXT_CODEC_OF_MUXER, TEXT_CODECS, CueRewriter, text_stream

# Muxer -> the audio codecs copied into it packet for packet (None: any); others are re-encoded.
# FFmpeg's own check is not enough: it accepts stereo PCM in MP4 and then fails at the trailer,
# after all the work, and it writes PCM into MPEG-TS as an unplayable data stream.
AUDIO_COPY: dict[str, set[str] | None] = {
    "matroska": None,
    "mp4": {"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus"},
    "mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
    "mpegts": {"aac", "mp3", "mp2", "ac3", "eac3", "opus"},
    "webm": {"opus", "vorbis"},
    "avi": {"mp3", "mp2", "ac3", "pcm_s16le", "aac"},
}
# Muxers that need AAC's AudioSpecificConfig in their header, which AAC framed as ADTS (MPEG-TS,
# .aac files) lacks: such sound is re-encoded for them (AVI refuses it after the work otherwise).
AAC_CONFIG_NEEDED = {"avi"}
# Muxer -> the subtitle codecs copied into it (None: any FFmpeg accepts). Other text subtitles
# are rewritten into the container's own text codec (subtitle_text.py); bitmap ones are dropped,
# and so is text for MPEG-TS, which takes it from FFmpeg but writes an unreadable stream.
SUBTITLE_COPY: dict[str, set[str] | None] = {
    "matroska": None,
    "mp4": {"mov_text"},
    "mov": {"mov_text"},
    "webm": {"webvtt"},
    "mpegts": {"dvb_subtitle", "dvb_teletext"},
}
CHAPTER_MUXERS = {"matroska", "webm", "mp4", "mov"}  # containers with a chapter list
# Containers that keep a start timecode: MOV and MP4 in a tmcd track, Matroska as a tag.
TIMECODE_MUXERS = {"matroska", "webm", "mp4", "mov"}
# Containers that keep a display rotation (MP4 and MOV in the track matrix, Matroska as projection).
ROTATION_MUXERS = {"matroska", "webm", "mp4", "mov"}
# Muxer -> codec for audio that cannot be copied into it.
AUDIO_FALLBACK = {"webm": "libopus"}
AUDIO_FALLBACK_DEFAULT = "aac"

# Channel count -> FFmpeg's usual layout, for audio whose channels come in no stated order.
_USUAL_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# libopus takes only Vorbis's layout for each channel count: AC-3's and DTS's 5.1(side) is
# remapped to 5.1 (back), as FFmpeg's resampler does on the way into the encoder.
_OPUS_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}

# Stream and file tags worth carrying over; the rest (encoder, statistics, brands) describe the
# old file and would be wrong on the new one.
_TAGS = {
    "title",
    "language",
    "handler_name",
    "comment",
    "description",
    "artist",
    "album",
    "genre",
    "date",
    "creation_time",
    "copyright",
    "location",
}


_ATTACHED_PIC = 1024  # AV_DISPOSITION_ATTACHED_PIC: a still picture (cover art) shown as a video stream


_PICTURE_TYPES = {"mjpeg": "image/jpeg", "png": "image/png", "bmp": "image/bmp", "webp": "image/webp"}


def moving_pictures(container: Any) -> list[Any]:
    """The video streams that are video, not cover art (MKV image attachments, MP4 covr)."""
    return [s for s in container.streams.video if not s.disposition & _ATTACHED_PIC]


def _alpha_layer(stream: Any) -> bool:
    """Whether a VP9 stream carries an alpha layer beside its picture (WebM's alpha_mode 1), which
    FFmpeg's own VP9 decoder ignores, and this PyAV has libvpx to decode it (else: the picture
    only, as FFmpeg decodes it)."""
    import av

    return (
        stream.codec_context.name == "vp9"
        and stream.metadata.get("alpha_mode") == "1"
        and "libvpx-vp9" in av.codecs_available
    )


def alpha_decoder(stream: Any) -> Any | None:
    """A libvpx decoder for a stream with an alpha layer (`_alpha_layer`): transparent web video
    lost its alpha without a word, even into FFV1. None for every other stream."""
    import av

    return av.CodecContext.create("libvpx-vp9", "r") if _alpha_layer(stream) else None


def picture_format(stream: Any) -> Any:
    """The pixel format a source stream's frames decode to, its alpha included (alpha_decoder)."""
    import av

    fmt = stream.codec_context.format
    if fmt is None or not _alpha_layer(stream):
        return fmt
    for plain, with_alpha in (("yuv", "yuva"), ("gbr", "gbra")):  # VP9 profile 1 codes RGB as gbrp
        if fmt.name.startswith(plain):
            return av.VideoFormat(with_alpha + fmt.name.removeprefix(plain))
    return fmt


def pictures_of(container: Any) -> list[Any]:
    """The cover-art streams: still pictures FFmpeg shows as one-packet video streams."""
    return [s for s in container.streams.video if s.disposition & _ATTACHED_PIC]


def timecode_of(source: Any) -> str | None:
    """The source's start timecode ("01:00:00:00"; ";" before the frames when drop-frame), where
    FFmpeg reports one: on the video stream (MOV, MP4, Matroska), a tmcd data stream, or the file
    (MXF)."""
    places = [s.metadata for s in moving_pictures(source)[:1]] + [s.metadata for s in source.streams.data]
    for metadata in (*places, source.metadata):
        for key, value in metadata.items():
            if key.lower() == "timecode" and value:
                return value
    return None


def _from_start(chapter: dict[str, Any], start: int | None) -> dict[str, Any]:
    """A chapter timed from the file's start (microseconds), as the streams' clocks now are."""
    if not start:
        return chapter
    shift = round(Fraction(start, 1_000_000) / Fraction(chapter["time_base"]))
    return {**chapter, "start": max(0, chapter["start"] - shift), "end": max(0, chapter["end"] - shift)}


def codec_name(stream: Any) -> str | None:
    """The codec's own name (`mp3`, `dvb_subtitle`), which the tables above list, not its
    decoder's (`mp3float`, `dvbsub`); None where FFmpeg has no decoder for it."""
    ctx = stream.codec_context
    return ctx.codec.canonical_name if ctx is not None else None


_DISCARD_ALL = 48  # AVDISCARD_ALL: what FFmpeg's MOV reader sets on a chapter track
# What a stream without a codec (or packets) in an MP4 or MOV most likely is.
_CUT_INDEX = "a track whose description is cut short, as a recording that stopped leaves it, looks like this"


def _silent(stream: Any) -> bool:
    """An audio stream the demuxer found no sound in: listed (as broadcasts list a second
    language that is not on air) but without channels or a sample rate."""
    ctx = stream.codec_context
    return ctx is not None and (not ctx.sample_rate or not ctx.layout.nb_channels)


# ISO 639-2 codes that MOV's writer knows only in the other spelling of its QuickTime list
# (FFmpeg's mov_mdhd_language_map mixes the T and B codes): given as they were, they were dropped.
_MOV_LANGUAGE = {"deu": "ger", "nld": "dut", "ell": "gre", "isl": "ice", "zho": "chi", "sqi": "alb",
                 "mkd": "mac", "hye": "arm", "kat": "geo", "bod": "tib", "mya": "bur", "msa": "may",
                 "cym": "wel", "rum": "ron", "cze": "ces", "slo": "slk", "fre": "fra", "swe": "sve",
                 "fas": "per", "eus": "baq", "gle": "iri"}  # fmt: skip


def copy_tags(target: Any, source: Any, muxer: str | None = None) -> None:
    tags = {k: v for k, v in source.metadata.items() if k.lower() in _TAGS}
    if "name" in source.metadata and "title" not in {k.lower() for k in tags}:
        tags["title"] = source.metadata["name"]  # an MP4 track's title reads back as its udta name
    if muxer == "mov":
        tags = {k: _MOV_LANGUAGE.get(v, v) if k.lower() == "language" else v for k, v in tags.items()}
    target.metadata.update(tags)


class CarriedStreams:
    """The source's audio and subtitle streams as set up on one output, and the rest it carries.

    src: the source file, None for standard input (no second pass for cover art); container:
    the destination's kind for messages ("a .mp4 file", "a Y4M stream").
    """

    def __init__(self, source: Any, src: Path | None, dst: Path, container: str, muxer: str) -> None:
        self.source, self.src, self.dst, self.container, self.muxer = source, src, dst, container, muxer
        self.pictures = pictures_of(source)
        self.ain = list(source.streams.audio)
        self.audio_out: dict[int, Any] = {}
        self.transcode: set[int] = set()  # audio streams re-encoded rather than copied
        self.audio_dropped = 0
        self.subtitle_out: dict[int, Any] = {}
        self.rewritten: dict[int, CueRewriter] = {}  # text subtitle streams put into another text codec
        self.subtitles_dropped = 0
        self.timecode = timecode_of(source)  # for the video stream's tags, where the container keeps it
        self.preroll: dict[int, Any] = {}  # audio stream -> the packet an edit list hides, held back
        self.indexed = "mp4" in source.format.name  # MOV and MP4 count each track's packets in their index
        self.heard: set[int] = set()  # the source streams any packet was read of, hidden ones too

    def add_to(self, output: Any) -> None:
        """Set up every carried stream, the chapters and the attachments on `output`."""
        self._add_audio(output)
        self._add_subtitles(output)
        self._add_chapters_and_attachments(output)
        self._warn_data_streams()

    @property
    def unheard(self) -> list[int]:
        """Audio streams set up in the output of which no packet was read, once the source has been
        read (an MP4 cut inside a track's chunk table): their tracks are empty, so they count as dropped."""
        return [index for index in self.audio_out if index not in self.heard] if self.indexed else []

    @property
    def streams(self) -> dict[int, Any]:
        """Source stream index -> output stream, for every audio and subtitle stream carried."""
        return {**self.audio_out, **self.subtitle_out}

    def packets_for(self, packet: Any) -> list[Any]:
        """What to mux for a source packet: itself, or what its cue becomes in the output's text
        codec (none, or samples of earlier cues that are now complete); none for one an MP4 edit
        list hides (is_discard) where the output cannot hide it too, but the last of those before
        a shown audio packet. A clip cut out of a longer MP4 without re-encoding (ffmpeg -ss -c
        copy) holds the sound from its key frame on, up to seconds before the cut: MPEG-TS, and
        Matroska where PyAV does not carry the stream's initial padding (its CodecDelay; PyAV 18),
        played it over no picture, and the picture started that much later. The one packet kept
        primes the decoder, as AAC's first packet does in any MP4 (which then keeps it hidden)."""
        index = packet.stream.index
        if packet.is_discard and not self._hides_itself(packet.stream):
            if packet.stream.type == "audio":
                self.preroll[index] = packet  # the one held before is dropped
            return []
        held = self.preroll.pop(index, None)
        rewrite = self.rewritten.get(index)
        shown = [packet] if rewrite is None else rewrite.packets_for(packet)
        return shown if held is None else [held, *shown]

    def _hides_itself(self, stream: Any) -> bool:
        """Whether the output hides what the source's edit list hides: MP4 and MOV with edit lists
        of their own, Matroska and WebM with the padding PyAV 19 carries over (dropping the packets
        there as well made decoders skip a second of the sound that was left)."""
        padded = (getattr(stream.codec_context, "initial_padding", 0) or 0) > 0
        return self.muxer in ("mp4", "mov") or (self.muxer in ("matroska", "webm") and padded)

    def flush(self) -> list[tuple[int, Any]]:
        """(source stream index, packet) for the cues still held at the end of the source."""
        return [(index, packet) for index, rewrite in self.rewritten.items() for packet in rewrite.flush()]

    @property
    def crowded(self) -> dict[int, int]:
        """Rewritten subtitle stream -> the cues dropped for coming while a screenful were shown."""
        return {i: r.timeline.dropped for i, r in self.rewritten.items() if r.timeline and r.timeline.dropped}

    @property
    def not_utf8(self) -> list[int]:
        """The rewritten subtitle streams whose text was not UTF-8 (read as Windows-1252)."""
        return [index for index, rewrite in self.rewritten.items() if rewrite.encoding != "utf-8"]

    def _add_audio(self, output: Any) -> None:
        if self.muxer == "yuv4mpegpipe":
            self.audio_dropped = len(self.ain)
            if self.ain:
                warnings.warn(
                    f"{self.dst}: Y4M holds no audio; {len(self.ain)} audio stream(s) dropped", stacklevel=7
                )
            return
        takes = AUDIO_COPY.get(self.muxer)
        # no codec and no packets listed (a fragmented MP4 lists none either, but names its codec)
        unread = [s for s in self.ain if self.indexed and s.codec_context is None and not s.frames]
        if unread:
            self.audio_dropped += len(unread)
            which = ", ".join(str(stream.index) for stream in unread)
            warnings.warn(
                f"{self.src or 'the input'}: audio stream {which} names no codec FFmpeg can read "
                f"({_CUT_INDEX}); dropped",
                stacklevel=7,
            )
        empty = [stream for stream in self.ain if stream not in unread and _silent(stream)]
        if empty:  # muxers refuse a stream of 0 channels only when the first packet is written
            self.audio_dropped += len(empty)
            which = ", ".join(str(stream.index) for stream in empty)
            warnings.warn(
                f"{self.src or 'the input'}: audio stream {which} shows no sound (FFmpeg found no channels "
                "or sample rate in it: a broadcast lists such streams); dropped",
                stacklevel=7,
            )
        for stream in self.ain:
            if stream in empty or stream in unread:
                continue
            name = codec_name(stream) or "undecodable"
            out = None
            adts = name == "aac" and self.muxer in AAC_CONFIG_NEEDED and not stream.codec_context.extradata
            if (takes is None or name in takes) and not adts:
                with contextlib.suppress(ValueError):  # PyAV's own check can still refuse it
                    out = output.add_stream_from_template(stream)
            if out is None:  # the container does not take this codec: re-encode
                out = self._reencoded_audio(output, stream, name)
                if out is None:
                    continue
                self.transcode.add(stream.index)
            copy_tags(out, stream, self.muxer)
            out.disposition = stream.disposition
            self.audio_out[stream.index] = out

    def _add_subtitles(self, output: Any) -> None:
        """Copy the subtitle streams the container takes, rewrite text ones it does not take into
        its own text codec, and warn about the rest."""
        takes = SUBTITLE_COPY.get(self.muxer, set())
        dropped: list[str] = []
        for stream in self.source.streams.subtitles:
            name = codec_name(stream) or "unknown"
            out = None
            if takes is None or name in takes:
                with contextlib.suppress(ValueError):  # PyAV's own check (FFmpeg's codec list)
                    out = output.add_stream_from_template(stream)
            if out is None and name in TEXT_CODECS and self.muxer in TEXT_CODEC_OF_MUXER:
                target = TEXT_CODEC_OF_MUXER[self.muxer]
                out = text_stream(output, stream, target)
                self.rewritten[stream.index] = CueRewriter(name, target, stream.time_base)
            if out is None:
                dropped.append(f"{name} stream {stream.index}")
                continue
            copy_tags(out, stream, self.muxer)
            out.disposition = stream.disposition
            self.subtitle_out[stream.index] = out
        self.subtitles_dropped = len(dropped)
        if dropped:
            warnings.warn(
                f"{self.dst}: {self.container} cannot hold subtitle {', '.join(dropped)}; dropped "
                "(write .mkv to keep them)",
                stacklevel=7,
            )

    def _add_chapters_and_attachments(self, output: Any) -> None:
        """Chapters go to containers with a chapter list, attachments (fonts) to Matroska."""
        chapters = self.source.chapters()
        if chapters and self.muxer in CHAPTER_MUXERS:
            output.set_chapters([_from_start(chapter, self.source.start_time) for chapter in chapters])
        attachments = [s for s in self.source.streams.attachments if s.data]
        pictures = self._cover_art() if self.muxer == "matroska" else []
        if self.muxer == "matroska":
            for stream in attachments:
                output.add_attachment(stream.name, stream.mimetype, bytes(stream.data))
            for name, mimetype, data in pictures:
                output.add_attachment(name, mimetype, data)
        missing = len(self.pictures) - len(pictures)
        lost = [
            f"{len(chapters)} chapter(s)" if chapters and self.muxer not in CHAPTER_MUXERS else "",
            f"{len(attachments)} attachment(s)" if attachments and self.muxer != "matroska" else "",
            f"{missing} cover picture(s)" if missing else "",
            f"timecode {self.timecode}" if self.timecode and self.muxer not in TIMECODE_MUXERS else "",
        ]
        if any(lost):
            warnings.warn(
                f"{self.dst}: {self.container} cannot hold the source's "
                f"{' and '.join(x for x in lost if x)}; dropped (write .mkv to keep them)",
                stacklevel=7,
            )

    def _warn_data_streams(self) -> None:
        """Data streams are not carried (a timecode track is, into the tags): said, since one may be
        a camera's telemetry (GoPro MET), or a sound track an MP4 cut inside its index left
        without its description."""
        dropped = [
            stream
            for stream in self.source.streams.data
            if "timecode" not in {key.lower() for key in stream.metadata}
            and int(stream.discard) != _DISCARD_ALL  # a chapter track, which FFmpeg reads as chapters
        ]
        if not dropped:
            return
        labels = []
        for stream in dropped:
            handler = stream.metadata.get("handler_name")
            labels.append(f"{stream.index} ({handler})" if handler else str(stream.index))
        unnamed = self.indexed and any("handler_name" not in s.metadata and not s.frames for s in dropped)
        warnings.warn(
            f"{self.src or 'the input'}: data stream {', '.join(labels)} not carried: bdinn keeps pictures, "
            "sound, subtitles, chapters, attachments and timecode"
            + (f"; one names no codec and holds no packets ({_CUT_INDEX})" if unnamed else ""),
            stacklevel=7,
        )

    def _cover_art(self) -> list[tuple[str, str, bytes]]:
        """The source's cover pictures as (file name, MIME type, bytes), read in a second pass over
        the file (the main pass reads only the streams it copies); none from standard input."""
        import av

        if not self.pictures or self.src is None:
            return []
        found = []
        with av.open(local_file(self.src)) as again:
            for stream in pictures_of(again):
                packet = next((p for p in again.demux(stream) if p.size), None)
                if packet is None:
                    continue
                mimetype = stream.metadata.get("mimetype") or _PICTURE_TYPES.get(codec_name(stream))
                name = stream.metadata.get("filename") or f"cover{mimetypes.guess_extension(mimetype or '')}"
                if mimetype:
                    found.append((name, mimetype, bytes(packet)))
        return found

    def _reencoded_audio(self, output: Any, stream: Any, name: str) -> Any:
        """An output stream re-encoding `stream` for this container, or None (warned) if it cannot."""
        target = AUDIO_FALLBACK.get(self.muxer, AUDIO_FALLBACK_DEFAULT)
        ctx = stream.codec_context
        try:
            out = output.add_stream(target, rate=48000 if "opus" in target else ctx.sample_rate or 48000)
            layout = ctx.layout  # channels in no stated order (PCM in Matroska) get the usual one
            if "opus" in target:
                out.codec_context.layout = _OPUS_LAYOUTS[layout.nb_channels]  # KeyError beyond 8: dropped
            elif layout.name.endswith("channels"):
                out.codec_context.layout = _USUAL_LAYOUTS.get(layout.nb_channels, layout)
            else:
                out.codec_context.layout = layout
        except Exception:
            self.audio_dropped += 1
            warnings.warn(
                f"{self.dst}: cannot keep {name} audio stream {stream.index} in a {self.dst.suffix} file; "
                "dropped" + (" (use .mkv to keep it)" if self.muxer != "matroska" else ""),
                stacklevel=8,
            )
            return None
        return out
