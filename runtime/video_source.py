"""Opening a video source: a file by its path, or standard input read so that Ctrl-C, SIGTERM
and SIGHUP still stop a job whose writer has stalled (FFmpeg's own pipe reader would wait for it).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .imageio import MAX_PIXELS
from .pyav import local_file
from .stop_signals import STOP_SIGNALS
from .video_formats import STDIN, VideoError
from .video_streams import moving_pictures

_POLL = 0.05  # seconds between checks for a stop request while standard input has nothing


class StandardInput:
    """Standard input as the Python file PyAV reads a piped source from. FFmpeg's own pipe reader
    retries a read that a signal interrupts and never returns to Python, so Ctrl-C and SIGTERM
    waited for the writer to send more. This one waits in select() a moment at a time and ends
    the stream (b"") once `stop` is set: by a signal while the source is opened, or by the job's
    stop flag, which it is, while the decode thread reads. A read that fails (standard input
    closed or broken) also ends the stream, and is kept in `failed` to be reported. It counts
    the bytes it passes on (`read_bytes`, and `at_end` once the writer closed the pipe), which is
    all there is to tell a Y4M stream that ends inside a frame."""

    name = "pipe:0"  # what PyAV's messages call it

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.failed: OSError | None = None
        self.read_bytes = 0
        self.at_end = False

    def read(self, size: int) -> bytes:
        while not self.stop.is_set() and self.failed is None:
            try:
                if os.name == "nt" or select.select([0], [], [], _POLL)[0]:  # no select() on pipes there
                    data = os.read(0, size)
                    self.read_bytes += len(data)
                    self.at_end = not data
                    return data
            except OSError as exc:
                self.failed = exc
        return b""

    def error(self, src: Path) -> VideoError | None:
        """A failed read's error: the stream's true end, and why FFmpeg made what it did of it."""
        return (
            None
            if self.failed is None
            else VideoError(f"{src}: cannot read standard input ({self.failed.strerror})")
        )


def open_source(src: Path) -> tuple[Any, StandardInput | None]:
    """The source container, and the reader of standard input when that is the source."""
    import av

    stdin = StandardInput() if src == STDIN else None
    try:
        container = av.open(local_file(src), "r") if stdin is None else _open_watching_signals(stdin)
    except av.FFmpegError:
        if stdin is None:
            raise VideoError(
                f"{src}: not a video file FFmpeg can read (check the file or re-encode it)"
            ) from None
        raise stdin.error(src) or VideoError(
            f"{src}: not a video stream FFmpeg can read from a pipe (pipe Y4M, MKV or MPEG-TS; "
            "MP4 only with its index first, -movflags faststart)"
        ) from None
    failed = stdin.error(src) if stdin is not None else None  # FFmpeg made do with what it had read
    videos = moving_pictures(container) if failed is None else []
    if not videos:
        kinds = {stream.type for stream in container.streams}
        container.close()
        if failed is None and not kinds - {"data"}:  # nor sound: FFmpeg found no real stream at all
            raise VideoError(
                f"{src}: FFmpeg finds no video or audio stream in it; is it cut short or damaged (an MP4 "
                "cut inside its index looks like this)? Check the file or get it again"
            )
        raise failed or VideoError(f"{src}: no video stream; pass a file with video")
    context = videos[0].codec_context
    try:
        if context is None:  # PyAV gives none where the stream's codec is not known
            raise VideoError(
                f"{src}: FFmpeg cannot decode its video stream (a codec it does not know, or a file cut "
                "short or damaged); check the file or re-encode it"
            )
        check_frame_size(src, context.width, context.height)
    except VideoError:
        container.close()
        raise
    return container, stdin


def check_frame_size(src: Path | str, width: int, height: int) -> None:
    """Refuse frames over MAX_PIXELS: a few bytes of a stream's header, or one frame of another
    size within it, would otherwise have the decoder and the RGB copies take tens of GB."""
    if width * height > MAX_PIXELS:
        raise VideoError(
            f"{src}: {width}x{height} frames are over {MAX_PIXELS / 1e6:.0f} megapixels, more than bdinn "
            "decodes (a damaged or crafted stream?)"
        )


def _open_watching_signals(stdin: StandardInput) -> Any:
    """av.open of standard input, with Ctrl-C, SIGTERM and SIGHUP kept. PyAV drops an exception
    raised inside its read callback, where a signal's handler may well run (FFmpeg probes the
    stream without the interpreter lock), so while it opens, each handler runs inside a wrapper
    that keeps what it raises, ends the stream, and raises it again once PyAV has returned. A
    handler that returns (a flag a program checks) changes nothing."""
    import av

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread
        return av.open(stdin, "r")
    watched = {sig: handler for sig in STOP_SIGNALS if callable(handler := signal.getsignal(sig))}
    raised: list[BaseException] = []

    def kept(signum: int, frame: Any) -> None:
        try:
            watched[signum](signum, frame)
        except BaseException as exc:  # KeyboardInterrupt, or the command's SystemExit
            raised.append(exc)
            stdin.stop.set()

    container = failure = None
    try:
        with _signals_held(watched):  # a signal between two swaps would meet a mix of handlers
            for sig in watched:
                signal.signal(sig, kept)
        container = av.open(stdin, "r")
    except av.FFmpegError as exc:
        failure = exc
    finally:
        with _signals_held(watched):
            for sig, handler in watched.items():
                signal.signal(sig, handler)
    if raised:
        if container is not None:
            container.close()
        raise raised[0]
    if failure is not None:
        raise failure
    return container


@contextlib.contextmanager
def _signals_held(signals: Iterable[int]) -> Iterator[None]:
    """Signals delivered only once the block ends (POSIX; elsewhere the block runs as it is)."""
    held = set(signals)
    if not held or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
