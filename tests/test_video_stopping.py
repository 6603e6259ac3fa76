"""Stopping a video job: errors in any thread, signals, stalled pipes, standard input and output,
full disks."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="needs the video extra: pip install '.[video]'")

from video_sources import (  # noqa: E402
    FPS,
    H,
    N,
    W,
    listing,
    make_video,
)

from bdinn.runtime.video import deband_video  # noqa: E402


def _threads_left_since(before: set[threading.Thread]) -> list[str]:
    """Threads started since `before` and still running, but the shared row pool's workers
    (runtime/processing.py), which stay by design. Threads of earlier tests, which may end at any
    moment (a model closed by the garbage collector), are none of this test's business."""
    started = set(threading.enumerate()) - before
    return sorted(t.name for t in started if not t.name.startswith("bdinn-rows"))


def test_error_in_process_stops_everything_and_leaves_nothing(source, tmp_path):
    baseline = set(threading.enumerate())
    calls = []

    def fails_on_frame_3(rgb):
        if len(calls) == 3:
            raise RuntimeError("inference blew up")
        calls.append(1)
        return rgb

    done = []
    with pytest.raises(RuntimeError, match="inference blew up"):
        deband_video(
            source, tmp_path / "out.mkv", fails_on_frame_3, progress=lambda n, total: done.append((n, total))
        )
    assert done == [(1, N), (2, N), (3, N)]
    assert listing(tmp_path) == []  # no output, no temporary file
    assert _threads_left_since(baseline) == []


@pytest.mark.parametrize(
    "error", [BrokenPipeError(32, "Broken pipe"), OSError(28, "No space left on device")]
)
def test_a_progress_bar_that_cannot_be_drawn_loses_the_bar_not_the_video(
    source, tmp_path, monkeypatch, error
):
    """deband_video's default bar (progress=True) with stderr gone mid-run (2>&1 | head, a log
    collector that died, 2>/dev/full): its write raised inside the job, and the video was lost."""

    class Gone:  # stderr after its reader left
        encoding = "utf-8"

        def write(self, text: str) -> int:
            raise error

        def flush(self) -> None:
            raise error

    monkeypatch.setattr(sys, "stderr", Gone())
    report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb)
    assert report.frames == N and (tmp_path / "out.mkv").stat().st_size > 0


@pytest.mark.parametrize(("sig", "said"), [(signal.SIGTERM, "Terminated."), (signal.SIGHUP, "Hangup.")])
def test_a_stopping_signal_under_a_command_stops_cleanly(source, tmp_path, capsys, request, sig, said):
    """`timeout`, docker stop or a batch scheduler send SIGTERM, a dropped SSH session SIGHUP: the
    commands clean up as for Ctrl-C (SIGHUP left the temporary output behind)."""
    import os
    import time

    from bdinn.runtime.cli_options import stops_cleanly

    if sig == signal.SIGHUP:  # under nohup it starts ignored, and stops_cleanly rightly keeps it so
        previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
        request.addfinalizer(lambda: signal.signal(signal.SIGHUP, previous))
    before = signal.getsignal(sig)
    baseline = set(threading.enumerate())

    def terminated(rgb):
        os.kill(os.getpid(), sig)  # while decoding and encoding threads run
        time.sleep(5)  # the handler interrupts this at once
        return rgb

    command = stops_cleanly(lambda: deband_video(source, tmp_path / "out.mkv", terminated, progress=False))
    started = time.monotonic()
    with pytest.raises(SystemExit) as info:
        command()
    assert info.value.code == 128 + sig and time.monotonic() - started < 4
    assert capsys.readouterr().err.endswith(f"{said}\n")  # a log says why the run ended
    assert listing(tmp_path) == []  # no output, no temporary file
    assert _threads_left_since(baseline) == []
    assert signal.getsignal(sig) is before

    def interrupted(rgb):
        raise KeyboardInterrupt  # Ctrl-C: the same clean-up, and the shell's status 130

    command = stops_cleanly(lambda: deband_video(source, tmp_path / "out.mkv", interrupted, progress=False))
    with pytest.raises(SystemExit) as info:
        command()
    assert info.value.code == 128 + signal.SIGINT and listing(tmp_path) == []


def test_a_hangup_that_nohup_ignores_stays_ignored():
    from bdinn.runtime.cli_options import stops_cleanly

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert stops_cleanly(lambda: signal.getsignal(signal.SIGHUP))() is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def _noise_video(path: Path, frames: int) -> Path:
    """A lossless (FFV1) video of noise: it compresses to nothing less than itself."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        noise = np.random.default_rng(0).integers(0, 256, (H, W, 3), np.uint8)
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.roll(noise, i, axis=1))))
        out.mux(stream.encode(None))
    return path


def test_a_full_disk_is_the_outputs_problem_not_the_encoders(tmp_path):
    """ENOSPC or EFBIG while encoding said "encoding with FFV1 failed"; it is the output location's
    one-line error, as for pictures, and nothing is left behind. A real file-size limit here."""
    source = _noise_video(tmp_path / "noise.mkv", 60)
    out = tmp_path / "out"
    out.mkdir()
    child = (
        "import resource\n"
        "from bdinn.runtime.video import deband_video\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    deband_video({str(source)!r}, {str(out / 'big.mkv')!r}, lambda rgb: rgb, codec='ffv1',\n"
        "                 progress=False)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert done.stdout == (
        f"OutputError {out / 'big.mkv'}: cannot write there (File too large); choose another output or check "
        "that its folder is writable and has space\n"
    ), done.stderr
    assert listing(out) == []


def _stopped_by(
    sig: int, child: str, feed: bytes = b"", reads_stdout: bool = True, again: float | None = None
) -> tuple[int, bytes]:
    """(exit status, stderr) of a Python `child` sent `sig` once it printed 'ready' to stderr (and
    once more `again` seconds later), with its standard input given `feed` and left open (the
    writer stalls), and its standard output read or not (the reader stalls). A child still running
    10 s after the signal fails the test."""
    process = subprocess.Popen(
        [sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdin.write(feed)
    process.stdin.flush()
    assert process.stderr.readline() == b"ready\n"
    if reads_stdout:
        threading.Thread(target=process.stdout.read, daemon=True).start()
    time.sleep(1.5)  # blocked on the pipe by now
    process.send_signal(sig)
    if again is not None:  # an impatient user
        time.sleep(again)
        process.send_signal(sig)
    try:
        process.wait(timeout=10)
    finally:
        process.kill()
    return process.returncode, process.stderr.read()


_CHILD = (
    "import signal, sys\n"
    "import av  # imported before 'ready', so that the wait is spent on the pipe\n"
    "from bdinn.runtime.video import deband_video\n"
    "signal.signal(signal.SIGTERM, lambda n, f: sys.exit(128 + n))\n"
    "print('ready', file=sys.stderr, flush=True)\n"
    "try:\n"
    "    deband_video({src!r}, {dst!r}, lambda rgb: rgb, progress=False)\n"
    "except KeyboardInterrupt:\n"
    "    sys.exit(130)\n"
)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("sent", ["nothing", "a few frames"])
def test_a_signal_while_standard_input_stalls_stops_the_job(source, tmp_path, sig, status, sent):
    """Ctrl-C or SIGTERM while the writer of standard input sends nothing (yet, or more) stops as a
    signal, at once. FFmpeg's own pipe reader retried the interrupted read until the writer closed
    the pipe (an earlier version of this test closed it, and so missed that)."""
    feed = b"" if sent == "nothing" else _y4m_of(tmp_path)[:20000]  # the header and a few frames
    dst = tmp_path / "out" / "out.mkv"
    dst.parent.mkdir()
    returncode, stderr = _stopped_by(sig, _CHILD.format(src="-", dst=str(dst)), feed)
    assert returncode == status, stderr.decode()
    assert listing(dst.parent) == []


def _y4m_of(tmp_path: Path) -> bytes:
    """A short Y4M stream, as a pipe would carry it."""
    deband_video(make_video(tmp_path / "silent.mkv", audio=False), tmp_path / "in.y4m", lambda rgb: rgb,
                 progress=False)  # fmt: skip
    return (tmp_path / "in.y4m").read_bytes()


def test_a_signal_whose_handler_runs_inside_a_read_of_standard_input_is_not_lost(tmp_path):
    """FFmpeg probes a pipe without the interpreter lock, so a signal's handler often runs at the
    next line of Python, inside PyAV's read callback, which drops what it raises: the job then ran
    to its end. Here the handler is made to run there every time."""
    dst = tmp_path / "out" / "out.mkv"
    dst.parent.mkdir()
    child = (
        "import os, signal, sys\n"
        "from bdinn.runtime import video_source\n"
        "from bdinn.runtime.video import deband_video\n"
        "real = video_source.StandardInput.read\n"
        "def read(self, size):\n"
        "    if not hasattr(self, 'signalled'):\n"
        "        self.signalled = os.kill(os.getpid(), signal.SIGINT)  # handled before the next line\n"
        "    return real(self, size)\n"
        "video_source.StandardInput.read = read\n"
        "try:\n"
        f"    deband_video('-', {str(dst)!r}, lambda rgb: rgb, progress=False)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], input=_y4m_of(tmp_path), capture_output=True, timeout=300
    )
    assert done.returncode == 130, done.stderr.decode()
    assert listing(dst.parent) == []


@pytest.mark.parametrize(
    ("suffix", "size", "reads"),
    [(".y4m", 8192, 2), (".ts", 400, 2), (".ts", 400, 3)],  # while decoding; while FFmpeg probes
)
def test_standard_input_that_breaks_is_an_error_not_the_end(tmp_path, suffix, size, reads):
    """A read of standard input that fails (EIO, a reset connection) ended the stream quietly: the
    job reported success and left a cut-short (here empty) output, or, where FFmpeg's probe made do
    with what it had, said the stream had no picture size."""
    silent = make_video(tmp_path / "silent.mkv", audio=False)
    deband_video(silent, tmp_path / f"in{suffix}", lambda rgb: rgb, progress=False)
    dst = tmp_path / "out" / "out.mkv"
    dst.parent.mkdir()
    child = (
        "import errno, os\n"
        "from bdinn.runtime.video import deband_video\n"
        "real, calls = os.read, []\n"
        "def read(fd, size):\n"
        "    calls.append(fd)\n"
        f"    if len(calls) > {reads}:  # then the pipe breaks\n"
        "        raise OSError(errno.EIO, os.strerror(errno.EIO))\n"
        f"    return real(fd, min(size, {size}))\n"
        "os.read = read\n"
        "try:\n"
        f"    deband_video('-', {str(dst)!r}, lambda rgb: rgb, progress=False)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    feed = (tmp_path / f"in{suffix}").read_bytes()
    done = subprocess.run([sys.executable, "-c", child], input=feed, capture_output=True, timeout=300)
    assert done.stdout.decode() == "VideoError <stdin>: cannot read standard input (Input/output error)\n"
    assert listing(dst.parent) == []


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("again", [None, 0.3])
def test_a_signal_while_the_reader_of_standard_output_stalls_stops_the_job(tmp_path, sig, status, again):
    """The encode thread is blocked inside FFmpeg writing to a pipe nobody reads: the job waited for
    it forever and swallowed every further Ctrl-C. It is now left behind after a moment, also when
    a second signal comes while it is waited for (Python's Thread.join, interrupted, then called
    the thread ended, and the output was closed under it: that hung)."""
    long = _noise_video(tmp_path / "long.mkv", 200)  # far more Y4M than a pipe holds
    child = _CHILD.format(src=str(long), dst="-")
    returncode, stderr = _stopped_by(sig, child, reads_stdout=False, again=again)
    assert returncode == status, stderr.decode()


def test_a_signal_while_a_named_pipe_source_stalls_stops_the_job(tmp_path):
    """A named pipe given by its path is read by FFmpeg's own reader, which a signal does not
    interrupt: the decode thread is left behind as a stalled standard output's encode thread is."""
    fifo = tmp_path / "feed.y4m"
    os.mkfifo(fifo)
    feed = _y4m_of(tmp_path)[:20000]
    writer_done = threading.Event()

    def write_and_stall() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(feed)
            pipe.flush()
            writer_done.wait(30)

    threading.Thread(target=write_and_stall, daemon=True).start()
    dst = tmp_path / "out" / "out.mkv"
    dst.parent.mkdir()
    try:
        returncode, stderr = _stopped_by(signal.SIGINT, _CHILD.format(src=str(fifo), dst=str(dst)))
    finally:
        writer_done.set()
    assert returncode == 130, stderr.decode()
    assert listing(dst.parent) == []


def test_a_signal_handler_that_returns_does_not_disturb_opening_standard_input(tmp_path):
    """A program whose SIGINT handler only sets a flag (a notebook's "cancel") got a probe cut
    short ("not a video stream") when the signal came while standard input was opened."""
    child = (
        "import os, signal\n"
        "from bdinn.runtime import video_source\n"
        "from bdinn.runtime.video import deband_video\n"
        "flags = []\n"
        "signal.signal(signal.SIGINT, lambda n, f: flags.append(n))\n"
        "real = video_source.StandardInput.read\n"
        "def read(self, size):\n"
        "    if not flags:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(self, size)\n"
        "video_source.StandardInput.read = read\n"
        f"report = deband_video('-', {str(tmp_path / 'out.mkv')!r}, lambda rgb: rgb, progress=False)\n"
        "print(report.frames, flags)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], input=_y4m_of(tmp_path), capture_output=True, timeout=300
    )
    assert done.stdout.decode() == f"{N} [{int(signal.SIGINT)}]\n", done.stderr.decode()


@pytest.mark.parametrize("stage", ["decode_rgb", "encode_frame"])
def test_error_in_the_decode_or_encode_thread_is_raised(source, tmp_path, monkeypatch, stage):
    from bdinn.runtime import video_frames

    baseline = set(threading.enumerate())
    real, calls = getattr(video_frames, stage), []

    def fails_on_call_3(*args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(f"{stage} blew up")
        return real(*args)

    monkeypatch.setattr(video_frames, stage, fails_on_call_3)
    with pytest.raises(OSError, match=f"{stage} blew up"):
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert listing(tmp_path) == []
    assert _threads_left_since(baseline) == []
