"""One deband_video run: the output file set up with what the source carries, a decode thread
(demux, decode, YUV -> RGB) and an encode thread (RGB -> YUV, encode, mux) around the calling
thread's `process` (video_pipeline), each frame taken through it as deband_frame takes one
(video_frames), with its times kept or mended for the output (video_timing)."""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
import queue
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .display_matrix import DisplayMatrix
from .files import SPACE_ERRNOS
from .hdr10 import ENCODER_OPTION, Hdr10
from .pyav import local_file
from .video_clock import ClockMender
from .video_colour import Colour, alpha_of, copy_colour_tags, put_alpha
from .video_encoder import encoder_label
from .video_fields import (
    NOT_WOVEN,
    TOP_FIELD_FIRST,
    field_flags,
    order_of,
    why_not_fields,
    with_field_flags,
)
from .video_float import beyond_white
from .video_formats import STDIN, STDOUT, VideoError, chroma_of, writes_chroma
from .video_frames import HandedBack, checked_picture, coded_frame, outgoing_frame, rgb_pictures
from .video_pipeline import END, QUEUE_SIZE, Cancelled, Pipeline
from .video_side_data import (
    CAPTION_OPTIONS,
    has_captions,
    side_data_carrier,
    writes_captions,
)
from .video_source import StandardInput, check_frame_size
from .video_source_samples import SourceSamples
from .video_streams import (
    TIMECODE_MUXERS,
    CarriedStreams,
    alpha_decoder,
    codec_name,
    copy_tags,
    moving_pictures,
)
from .video_timing import AviClock, clock_seconds, exact_rate, rounded, ticks

RAW_STREAMS = {
    "mpegvideo",
    "h264",
    "hevc",
    "m4v",
    "vc1",
    "cavsvideo",
    "h261",
    "h263",
}  # FFmpeg's raw demuxers
ODD_SIZED = {"ffv1", "wrapped_avframe"}  # encoders that code subsampled chroma at odd sizes (Y4M: raw)

_HELD = 16  # video packets held back at the start until their timestamps are checked


@dataclass
class _Video:
    pictures: tuple[np.ndarray, ...]  # the frame, or its top and bottom fields
    pts: int
    display: DisplayMatrix | None = None  # how the frame is shown: rotation and mirror
    alpha: np.ndarray | None = None  # H x W uint16 on 0..65535, where the output keeps alpha
    top_field_first: bool | None = None  # an interlaced frame's field dominance; None: progressive
    carrier: Any = None  # where the decoded frame's side data (captions) must go along: a copy
    source: SourceSamples | None = None  # what the RGB path would lose of the frame, to put back


@dataclass
class Resized:
    """Where a source first changed its picture size, and how many frames were scaled back."""

    first: int  # the first such frame's index
    size: tuple[int, int]  # its width and height
    frames: int = 0


@dataclass
class _Carried:
    """Audio or subtitles riding along with the video."""

    out: Any  # output stream
    item: Any  # Packet to copy, or AudioFrame to encode


# Where the output keeps a sample aspect ratio: encoders that write it into the video stream, and
# muxers that write it for any encoder. (What Y4M output loses is said apart, for every tag.)
SAR_ENCODERS = ("libx264", "libx265", "wrapped_avframe")
SAR_MUXERS = ("mp4", "mov")


class VideoJob:
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
        self.stdin: StandardInput | None = None  # the reader, when the source is standard input
        # A source read by FFmpeg that is not a regular file (a named pipe, /dev/fd/N) can block
        # the decode thread for good; so can standard input on Windows (no select() on pipes).
        self.source_may_stall = os.name == "nt" if src == STDIN else not Path(src).is_file()
        self.vin = moving_pictures(source)[0]
        self.decoder = alpha_decoder(self.vin)  # None: the stream's own
        ctx = self.vin.codec_context
        self.width, self.height = ctx.width, ctx.height
        if self.width <= 0 or self.height <= 0:
            raise VideoError(f"{src}: the video stream has no picture size; re-encode or repair the file")
        self.keeps_alpha = pix_fmt.startswith("yuva")
        self._check_sides()
        self.colour = Colour.of(ctx)
        self._set_clock()
        self.start = source.start_time or 0  # microseconds; where every output stream's clock starts
        self._set_expected_length()
        self.frames, self.duration = 0, 0.0
        self.last_frame: tuple[int, int] | None = None  # a Matroska source's last (pts, duration)
        container = "a Y4M stream" if dst == STDOUT else f"a {dst.suffix} file"
        self.carried = CarriedStreams(source, None if src == STDIN else src, dst, container, muxer)
        self.tmp = ""  # the temporary file being written, named in FFmpeg's errors
        self.display: DisplayMatrix | None = None  # the first frame's display matrix
        self.hdr10: Hdr10 | None = None  # the first frame's, set by the decode thread
        self.hdr10_kept = False
        self.retimed = False  # a frame moved to fit a container that counts frames (Y4M, AVI)
        self.stuck = False  # stopped by a signal with a thread blocked on a stalled pipe, left behind
        self.damaged_packets = self.damaged_frames = 0  # found broken by the demuxer, the decoder
        self.bytes_after_frames = 0  # a Y4M source's tail, short of a whole frame
        self.clock_jumps = 0  # where the source's clock restarted (joined MPEG-TS recordings)
        self.muxed: dict[int, int] = {}  # carried output stream -> the last decode time muxed there
        self.avi_leads: dict[int, int] = {}  # carried output stream -> ticks its times are moved up
        self.avi_late: dict[int, float] = {}  # carried output stream -> seconds its start was lost
        self.equal_times_allowed = False  # by the output's muxer, as its decode times rise
        self.writing = False  # a mux call under way: what fails there is the muxer's doing
        # The container's (MP4/MOV's pasp, Y4M's A field) as FFmpeg takes it, else the bitstream's:
        # ProRes and Y4M carry it only in the container.
        sar = self.vin.sample_aspect_ratio or ctx.sample_aspect_ratio
        self.sar = Fraction(sar) if sar else None
        # Fields are woven in a frame unless the decoder hands each over alone; the frames' own
        # flags say which are interlaced, the stream's tag only what to expect.
        self.woven_fields = codec_name(self.vin) not in NOT_WOVEN
        self.stream_top_first = TOP_FIELD_FIRST.get(ctx.field_order) if self.woven_fields else None
        self.first_interlaced: bool | None = None  # the first interlaced frame's order: top first?
        self.codes_fields = False  # the encoder was set up to keep fields
        self.interlaced_frames = 0
        self.captions = False  # some frame carried closed captions
        self.writes_captions = writes_captions(codec, options)  # and the encoder writes them back
        self.dominances: set[bool] = set()  # the field orders met
        self.resized: Resized | None = None  # frames of another size than the first's, scaled to it

    def _check_sides(self) -> None:
        """A chroma the encoder subsamples needs even sides, unless the encoder codes odd ones."""
        import av

        fmt = av.VideoFormat(self.pix_fmt)
        chroma = chroma_of(fmt)
        odd = (chroma != "444" and self.width % 2) or (chroma == "420" and self.height % 2)
        if odd and self.codec not in ODD_SIZED:
            size, chroma_name = f"{self.width}x{self.height}", f"4:{chroma[1]}:{chroma[2]}"
            full = writes_chroma(self.codec, "444", fmt.components[0].bits)
            raise VideoError(
                f"{self.src}: {size} has an odd side, which {encoder_label(self.codec)} cannot code in "
                f"{chroma_name}: "
                + ("write 4:4:4 (chroma='444', --chroma 444), " if full else "")
                + "use ffv1, or crop it"
            )

    def _set_clock(self) -> None:
        """The frame rate, the time bases in and out, and the frame grid output times go on."""
        # An elementary stream (.m2v, .h264) has no container timing: FFmpeg's raw demuxers
        # assume 25 frames a second, where the codec's own header says the rate (29.97).
        elementary = self.source.format.name in RAW_STREAMS and self.vin.guessed_rate
        rates = (self.vin.guessed_rate,) if elementary else ()
        rates += (self.vin.average_rate, self.vin.guessed_rate, self.vin.base_rate)
        self.rate = exact_rate(Fraction(next((rate for rate in rates if rate), 25)))
        self.time_base = Fraction(self.vin.time_base or Fraction(1, 90000))
        # AVI and Y4M count frames rather than time: their time base is one frame.
        self.counts_frames = self.muxer in ("avi", "yuv4mpegpipe")
        self.out_time_base = 1 / self.rate if self.counts_frames else self.time_base
        self.grid: int | None = None  # one frame in out_time_base ticks, where times are put on it
        self.grid_origin: int | None = None  # where the grid starts: the first frame's time
        fine = Fraction(1, math.lcm(self.rate.numerator, self.time_base.denominator))
        if (
            not self.counts_frames and self.muxer not in ("matroska", "webm")  # they keep milliseconds anyway
            and self.time_base >= Fraction(1, 1000) and (1 / self.rate / self.time_base).denominator != 1
            and self.time_base.numerator == 1 and fine.denominator <= 10**7
        ):  # fmt: skip
            # Matroska's milliseconds round 24000/1001 fps to 42, 41, 42 ms: written so into MP4 the
            # rate reads 23.983 and durations jitter; frames within a millisecond of the frame grid
            # go on it, as FFmpeg's constant-rate output has them (others keep theirs).
            self.out_time_base, self.grid = fine, int(1 / self.rate / fine)

    def _set_expected_length(self) -> None:
        """How long the source says its video is (frames listed, duration, where the track ends),
        and the frame count progress is shown against."""
        self.listed_frames: int | None = self.vin.frames or None  # read now: PyAV 19 closes streams
        self.listed_duration = float(self.vin.duration * self.time_base) if self.vin.duration else None
        # Matroska's header says where the video track ends (a DURATION tag, from FFmpeg and
        # mkvmerge); the file's duration would count sound that runs on after the pictures, and
        # other containers' durations without a frame count are estimates (MPEG-TS: bit rate).
        matroska = "matroska" in self.source.format.name and self.src != STDIN
        ends = clock_seconds(self.vin.metadata.get("DURATION")) if matroska else None  # where the track ends
        begins = float(self.vin.start_time * self.time_base) if self.vin.start_time else 0.0
        self.track_duration = ends - begins if ends is not None else None
        self.total = self.listed_frames
        if self.total is None and self.vin.duration:
            self.total = max(1, round(self.vin.duration * self.time_base * self.rate))
        elif self.total is None and self.source.duration:
            self.total = max(1, round(self.source.duration / 1e6 * float(self.rate)))

    # -- output setup ---------------------------------------------------------------------------

    def _open_output(self, tmp: str) -> Any:
        import av

        output = av.open(
            tmp if self.dst == STDOUT else local_file(tmp),  # "pipe:1" is FFmpeg's standard output
            "w",
            format=self.muxer,
            options={"strict": "-1"} if self.muxer == "yuv4mpegpipe" else {},
        )
        copy_tags(output, self.source)
        # Matroska and WebM take a decode time equal to the last (two subtitle cues at once)
        self.equal_times_allowed = bool(output.format.flags & av.format.Flags.ts_nonstrict.value)
        self.vout = vout = output.add_stream(self.codec, rate=self.rate)
        vout.width, vout.height, vout.pix_fmt = self.width, self.height, self.pix_fmt
        # The source's flags, and default as FFmpeg marks the first of each kind: Matroska wrote
        # the one picture track as not default, which players may leave unselected.
        vout.disposition = self.vin.disposition | av.stream.Disposition.default
        enc = vout.codec_context
        enc.time_base = self.out_time_base
        if self.sar:
            enc.sample_aspect_ratio = self.sar  # MP4 and MOV write it as pasp, x264 and x265 in the stream
            if self.sar != 1 and self.codec not in SAR_ENCODERS and self.muxer not in SAR_MUXERS:
                warnings.warn(  # PyAV cannot set Matroska's or AVI's own field, which the others need
                    f"{self.dst}: {encoder_label(self.codec)} does not keep the source's sample aspect ratio "
                    f"{self.sar} in {self.dst.suffix or self.muxer}; write .mp4 or .mov"
                    + (", or use libx265 or libx264," if self.muxer != "webm" else "")
                    + " to keep it",
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
        copy_tags(vout, self.vin, self.muxer)
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
            if not self.stuck:  # else a thread is still inside FFmpeg with it
                with contextlib.suppress(Exception):  # the first error is the one to report
                    output.close()
            raise
        try:
            output.close()
        except av.FFmpegError as exc:
            self._check_space(exc)
            raise VideoError(f"{self.dst}: cannot finish the file ({exc})") from exc

    def _check_space(self, exc: Any) -> None:
        """A full disk or quota while writing is the output location's error, not the encoder's:
        raised as the OSError about the temporary file that atomic_write reports as such."""
        if self.tmp and exc.errno in SPACE_ERRNOS:
            raise OSError(exc.errno, exc.strerror, self.tmp) from exc

    def _pipeline(self, output: Any) -> None:
        pipe = Pipeline(self.stdin.stop if self.stdin else None)
        decoded: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        processed: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        threads = [
            pipe.thread(lambda: self._decode(pipe, decoded), "bdinn-decode"),
            pipe.thread(lambda: self._encode(pipe, processed, output), "bdinn-encode"),
        ]
        for thread, _ in threads:
            thread.start()
        handed_back = HandedBack()
        try:
            done = 0
            while True:
                item = pipe.get(decoded)
                if isinstance(item, _Video):
                    item.pictures = tuple(self._processed(item.pictures, done, handed_back))
                    done += 1
                    pipe.put(processed, item)
                    if self.on_frame is not None:
                        self.on_frame(done)
                else:
                    pipe.put(processed, item)
                    if item is END:
                        break
        except Cancelled:
            pass
        except BaseException as exc:
            pipe.fail(exc)
        finally:
            # Only a pipe can block a thread for good: standard output (a reader that stopped
            # reading), or a source FFmpeg reads itself that is not a file (a named pipe given by
            # its path, /dev/fd/N) or standard input where it cannot wait in select() (Windows).
            self.stuck = pipe.wait_for(threads, self.dst == STDOUT or self.source_may_stall)
        error, pipe.error = pipe.error, None
        if error is not None:  # raised with no cycle back to it: a failed job freed at once, not by gc
            try:
                raise error
            finally:
                del error

    def _processed(
        self, pictures: tuple[np.ndarray, ...], done: int, handed_back: HandedBack
    ) -> Iterator[np.ndarray]:
        """`process` run on each picture of frame `done` (the frame, or its fields), checked."""
        for field, picture in enumerate(pictures):
            which = f"frame {done}" if len(pictures) == 1 else f"field {field} of frame {done}"
            image = checked_picture(self.src, which, self.process(picture), picture.shape)
            handed_back.check(self.src, which, image)
            yield image

    def _decode(self, pipe: Pipeline, decoded: queue.Queue) -> None:
        """Demux the source; video frames as RGB arrays, audio as packets (or frames to re-encode)."""
        import av

        # The alpha decoder's frames lack the container's side data (display matrix, HDR10), which
        # FFmpeg attaches to the stream decoder's only: its first frame (no frame delay) lends them.
        self.vin.thread_type = "AUTO" if self.decoder is None else "SLICE"
        lender: Any = None
        deep: bool | None = None
        last: int | None = None
        step = max(1, round(1 / (self.rate * self.time_base)))  # one frame, for frames without pts
        clock = AviClock() if self.source.format.name == "avi" else None
        start = self._start_in(self.time_base)
        mender = ClockMender(self.source.format, 1 / self.rate)
        frames_end: int | None = None  # where the last video packet's bytes end in the source
        try:
            carried = self.carried.streams
            demuxed = self.source.demux(self.vin, *(self.source.streams[i] for i in carried))
            for packet in mender.packets(demuxed):
                index = packet.stream.index
                if packet.size:
                    self.carried.heard.add(index)
                if packet.stream.type == "video":
                    if packet.pos is not None and packet.pos >= 0 and packet.size:
                        frames_end = packet.pos + packet.size
                    if self.decoder is not None and lender is None:
                        with contextlib.suppress(av.FFmpegError):
                            lender = next(iter(packet.decode()), None)
                    try:
                        frames = packet.decode() if self.decoder is None else self.decoder.decode(packet)
                    except av.InvalidDataError:  # a packet the decoder refuses: skipped, as FFmpeg does
                        frames = None
                    self.damaged_packets += bool(packet.is_corrupt) or frames is None
                    for frame in frames or ():
                        self.damaged_frames += bool(frame.is_corrupt)
                        if deep is None:
                            deep = frame.format.components[0].bits > 8
                            self.hdr10 = Hdr10.of(frame if lender is None else lender)
                        if self.track_duration is not None and frame.pts is not None and frame.duration:
                            self._note_last_frame(frame.pts, frame.duration)
                        pts = frame.pts
                        if clock is not None:
                            pts = clock.time(pts, frame.dts, bool(self.vin.codec_context.has_b_frames))
                        pts = pts if pts is not None else (0 if last is None else last + step)
                        last = pts
                        display = DisplayMatrix.of(frame if lender is None else lender)
                        alpha = alpha_of(frame) if self.keeps_alpha else None
                        dominance = self._dominance(frame)
                        check_frame_size(self.src, frame.width, frame.height)  # a size change mid-stream
                        if (beyond := beyond_white(frame)) is not None:
                            raise VideoError(f"{self.src}: the frame at {frame.time or 0:.3f} s {beyond}")
                        pictures = rgb_pictures(frame, dominance, deep)
                        source = SourceSamples.of(frame, pictures, self.pix_fmt, self.colour, dominance)
                        captioned = has_captions(frame)
                        self.captions |= captioned
                        carrier = side_data_carrier(frame) if captioned and self.writes_captions else None
                        item = _Video(pictures, pts - start, display, alpha, dominance, carrier, source)
                        pipe.put(decoded, item)
                elif index in self.carried.transcode:
                    for frame in packet.decode():
                        pipe.put(decoded, _Carried(carried[index], frame))
                elif packet.dts is not None:  # the empty packet at the end only flushes decoders
                    for item in self.carried.packets_for(packet):
                        pipe.put(decoded, _Carried(carried[index], item))
            for index, item in self.carried.flush():
                pipe.put(decoded, _Carried(carried[index], item))
            self.clock_jumps = mender.jumps
            self.bytes_after_frames = self._bytes_after(frames_end)
        except av.FFmpegError as exc:
            self._check_stdin()  # a read that failed: the reason for what FFmpeg makes of it
            if self.src == STDIN and "mp4" in self.source.format.name:  # its index may come last
                raise VideoError(
                    f"{self.src}: cannot decode the stream ({exc}); a pipe cannot seek, so pipe Y4M, MKV or "
                    "MPEG-TS, or an MP4 with its index first (-movflags faststart)"
                ) from exc
            what = "stream" if self.src == STDIN else "file"
            raise VideoError(f"{self.src}: cannot decode the {what} ({exc}); re-encode or repair it") from exc
        self._check_stdin()  # a read that failed ended the stream early: not its end
        pipe.put(decoded, END)

    def _bytes_after(self, frames_end: int | None) -> int:
        """How many bytes of a Y4M source follow its last whole frame: FFmpeg's reader drops a
        frame cut short (its writer died) without a word. Only Y4M: other containers may well end
        in an index or padding after their last frame."""
        if self.source.format.name != "yuv4mpegpipe" or frames_end is None:
            return 0
        if self.stdin is not None:
            size = self.stdin.read_bytes if self.stdin.at_end else frames_end
        else:
            size = os.stat(self.src).st_size if Path(self.src).is_file() else frames_end
        return max(0, size - frames_end)

    def _check_stdin(self) -> None:
        failed = self.stdin.error(self.src) if self.stdin is not None else None
        if failed is not None:
            raise failed

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

    def _encode(self, pipe: Pipeline, processed: queue.Queue, output: Any) -> None:
        """RGB -> YUV, encode and mux; audio waits for the first video frame (it sets the header)."""
        import av

        waiting: list[_Carried] = []
        opening: list[Any] | None = []  # the first video packets, until their timestamps are checked
        first: int | None = None
        last: int | None = None
        origin: int | None = None  # the first frame's time, in the source's time base
        try:
            while (item := pipe.get(processed)) is not END:
                if isinstance(item, _Carried):
                    if first is None:
                        waiting.append(item)
                    else:
                        self._mux_carried(output, item)
                    continue
                pts = item.pts
                if self.counts_frames:  # counted in frames: an irregular source is retimed
                    # Measured from the first frame: video that starts between two frame times
                    # (21 ms after its audio, at 25 fps) is late as a whole, not irregular.
                    origin = pts if origin is None else origin
                    base = round(origin * self.time_base / self.out_time_base)
                    exact = base + (pts - origin) * self.time_base / self.out_time_base
                    pts = round(exact)
                    skipped = self.muxer == "yuv4mpegpipe" and last is not None and pts != last + 1
                    self.retimed |= abs(exact - pts) > Fraction(1, 4) or skipped
                elif self.grid:
                    pts = self._on_grid(pts)
                if last is not None and pts <= last:
                    pts = last + 1  # timestamps must rise; broken sources sometimes repeat one
                    self.retimed |= self.counts_frames
                if first is None:
                    first = pts
                    if item.display:
                        self.vout.set_display_matrix(item.display.values)
                        self.display = item.display
                    self._set_fields(item.top_field_first)
                    self._set_hdr10()
                last = pts
                frame = coded_frame(item.pictures, self.pix_fmt, self.colour, item.top_field_first)
                if item.source is not None:
                    frame = item.source.put_back(frame)
                if item.top_field_first is not None:
                    self.interlaced_frames += 1
                    self.dominances.add(item.top_field_first)
                    if self.first_interlaced is None:
                        self.first_interlaced = item.top_field_first
                if item.alpha is not None:
                    put_alpha(frame, item.alpha)
                if (frame.width, frame.height) != (self.width, self.height):
                    frame = self._resized(frame)
                frame = outgoing_frame(frame, item.top_field_first, item.carrier)
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
                out = self.carried.audio_out[index]
                self._write_carried(output, out, out.encode(None))
        except av.FFmpegError as exc:
            if self.dst == STDOUT and exc.errno in (errno.EPIPE, errno.EBADF):
                raise VideoError(
                    f"{self.dst}: the program reading standard output closed it after {self.frames} "
                    "frame(s) were encoded; stopping"
                ) from exc
            self._check_space(exc)
            reason = exc.strerror or str(exc)  # its file name is the temporary file's
            if self.writing:  # the muxer refused a packet (of any stream: it interleaves them)
                raise VideoError(f"{self.dst}: FFmpeg's {self.muxer} muxer failed ({reason})") from exc
            label = encoder_label(self.codec)
            raise VideoError(f"{self.dst}: encoding with {label} failed ({reason})") from exc
        self.duration = float((last - first) * self.out_time_base + 1 / self.rate)

    def _note_last_frame(self, pts: int, duration: int) -> None:
        """Matroska's blocks carry their own durations (other containers' are gaps between decode
        times): the last frame's tells a still end (a screen recording gone still) from a file cut
        short."""
        if self.last_frame is None or pts >= self.last_frame[0]:
            self.last_frame = (pts, duration)

    def still_end(self) -> float:
        """Seconds a Matroska source shows its last frame beyond one frame; 0 where not known."""
        if self.last_frame is None:
            return 0.0
        return max(0.0, float(self.last_frame[1] * self.time_base - 1 / self.rate))

    def _on_grid(self, pts: int) -> int:
        """A source time (coarse ticks) in out_time_base, on the frame grid from the first frame
        (video may start after its sound) if within a tick of it: each of the two was rounded to
        its tick, so a frame of a constant rate is within one tick of the other's grid."""
        ticks = int(pts * self.time_base / self.out_time_base)
        if self.grid_origin is None:
            self.grid_origin = ticks
        nearest = self.grid_origin + round((ticks - self.grid_origin) / self.grid) * self.grid
        return nearest if abs(nearest - ticks) <= self.time_base / self.out_time_base else ticks

    def _resized(self, frame: Any) -> Any:
        """A frame of another size than the first's (a broadcast capture switching format) scaled to
        the stream's one size, as FFmpeg scales such frames; noted for a warning."""
        if self.resized is None:
            self.resized = Resized(self.frames, (frame.width, frame.height))
        self.resized.frames += 1
        scaled = frame.reformat(width=self.width, height=self.height, interpolation="LANCZOS")
        copy_colour_tags(frame, scaled)
        return scaled

    def _mux_video(
        self, output: Any, held: list[Any] | None, packets: list[Any], final: bool = False
    ) -> list[Any] | None:
        """Mux the encoder's packets; the first _HELD are held back and their decode times mended if
        they need it: libx265 gives a stream of one or two frames decode times that are garbage
        (1e17 off, uninitialised), which MP4 and MOV refuse at the end of all the work."""
        if held is None:
            self._write(output, packets)
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
        self._write(output, held)
        return None

    def _write(self, output: Any, packets: list[Any]) -> None:
        """Mux `packets`, noting while it runs that a failure is the muxer's, not an encoder's."""
        self.writing = True
        output.mux(packets)
        self.writing = False

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

    def _start_in(self, time_base: Any) -> int:
        """The source's start time in `time_base`: subtracted from every stream's timestamps, as
        FFmpeg does, so that a capture that starts hours into a broadcast (MPEG-TS), or just
        before its clock wrapped, starts at 0 and keeps its streams' offsets to one another."""
        return ticks(self.start, Fraction(time_base)) if self.start else 0

    def _mux_carried(self, output: Any, item: _Carried) -> None:
        import av

        thing = item.item
        shift = self._start_in(thing.time_base) if thing.time_base else 0
        if isinstance(thing, av.Packet):  # copied as it is
            if thing.pts is not None:
                thing.pts -= shift
            if thing.dts is not None:
                thing.dts -= shift
            thing.stream = item.out
            packets = [thing]
        else:
            if thing.pts is not None:
                thing.pts -= shift
            packets = item.out.encode(thing)
        self._write_carried(output, item.out, packets)

    def _write_carried(self, output: Any, out: Any, packets: list[Any]) -> None:
        """Mux packets of a carried stream `out`, in its time base and in order (_in_order)."""
        self.writing = True
        output.start_encoding()  # the header, once: it sets the output streams' time bases
        for packet in packets:
            self._in_order(packet, out)
        output.mux(packets)
        self.writing = False

    def _in_order(self, packet: Any, out: Any) -> None:
        """A carried packet in `out`'s time base, its decode time after the last one muxed there:
        where a source's go back (sound on both sides of a clock jump overlaps), it is moved up to
        just after it, as FFmpeg does, since muxers refuse it (Matroska after all the work)."""
        if packet.dts is None or not packet.time_base:
            return
        if packet.time_base != out.time_base:
            scale = Fraction(packet.time_base) / Fraction(out.time_base)
            packet.dts, packet.pts, packet.duration = (
                None if value is None else rounded(value * scale)
                for value in (packet.dts, packet.pts, packet.duration)
            )
            packet.time_base = out.time_base
        if self.muxer == "avi":  # which holds no time before 0 (AAC's priming frame is at -1): FFmpeg
            # moves every stream up once such a packet arrives, video from there on, an empty slot
            if out.index not in self.avi_leads and packet.dts > 0:  # nor a start after 0: it plays from 0
                self.avi_late[out.index] = float(packet.dts * out.time_base)
            lead = self.avi_leads.setdefault(out.index, max(0, -packet.dts))
            packet.dts += lead
            if packet.pts is not None:
                packet.pts += lead
        last = self.muxed.get(out.index)
        if last is not None:
            earliest = last + (not self.equal_times_allowed)
            if packet.dts < earliest:
                if packet.pts is not None and packet.pts >= packet.dts:
                    packet.pts = max(packet.pts, earliest)
                packet.dts = earliest
        self.muxed[out.index] = packet.dts
