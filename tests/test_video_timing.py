"""Frame times: rates, variable-rate sources, AVI and Y4M, cut-short files, broadcast captures and
clock jumps."""

import itertools
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="needs the video extra: pip install '.[video]'")

from video_sources import (  # noqa: E402
    FPS,
    RATE,
    H,
    N,
    W,
    gradient,
    make_clip,
    make_video,
    mux_gradient,
    mux_silence,
    probe,
    sounded_clip,
)

from bdinn.runtime.video import deband_video  # noqa: E402


def test_matroska_milliseconds_become_an_exact_frame_rate_in_mp4(tmp_path):
    """Matroska keeps times in milliseconds: 24 or 24000/1001 fps come out 42, 41, 42 ms apart, and
    written so into MP4 the rate read 23.983 (a Y4M piped on from it said F128000:5337). Frames
    within half a millisecond of the frame grid go on it; the sound stays where it was. FFmpeg reads
    59.94 fps from Matroska as 19001/317 (frames of 16683333 ns): that rate went on, with the jitter."""
    for rate in (Fraction(24), Fraction(24000, 1001), Fraction(60000, 1001)):
        source = tmp_path / f"{float(rate):.3f}.mkv"
        with av.open(str(source), "w") as out:
            stream = out.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            audio = out.add_stream("aac", rate=RATE)
            audio.codec_context.layout = "mono"
            stream.codec_context.time_base = Fraction(1, 1000)  # off the grid that starts at 0
            for i in range(N):  # a tenth of a second after the sound, as cameras start
                frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
                frame.pts, frame.time_base = round((Fraction(1, 10) + i / rate) * 1000), Fraction(1, 1000)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
            mux_silence(out, audio, N / float(rate))
        for name in ("out.mp4", "out.mov"):
            deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False, force=True)
            with av.open(str(tmp_path / name)) as result:  # PyAV 19: a closed file's streams say nothing
                video = result.streams.video[0]
                average = video.average_rate
                times = sorted(p.pts * video.time_base for p in result.demux(video=0) if p.pts is not None)
            assert average == rate, (name, average)
            assert {b - a for a, b in itertools.pairwise(times)} == {1 / rate}, times
            assert probe(tmp_path / name)["audio"][0][1] == pytest.approx(
                probe(source)["audio"][0][1], abs=0.03
            )


def test_a_file_cut_short_is_written_with_a_warning(tmp_path):
    """An MP4 with its index in front (faststart) and its last third missing still decodes."""
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with av.open(str(whole)) as source:  # cut after the 20th packet, as a copy stopped there
        end = [packet.pos + packet.size for packet in source.demux(video=0) if packet.size][19]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:end])
    with pytest.warns(
        UserWarning, match=r"cut\.mp4: decoded \d+ of the 30 frames its header lists"
    ) as caught:
        report = deband_video(cut, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert report.frames == 20 and caught[0].filename == __file__


def test_frames_an_edit_list_hides_are_not_taken_for_a_cut(tmp_path):
    """An MP4 whose edit list hides its first two frames lists six but shows four: no warning."""
    source = tmp_path / "edit-list.mp4"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
            frame.pts, frame.time_base = (i - 2) * 40, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert report.frames == 4


def test_variable_frame_rate_into_y4m_or_avi_is_warned_about(tmp_path):
    """Y4M and AVI count frames: irregular times are lost there, and kept in MKV."""
    source = tmp_path / "vfr.mkv"
    times = [0, 40, 50, 130, 140, 400]  # milliseconds
    with av.open(str(source), "w") as out:
        stream = out.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, ms in enumerate(times):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    for name, what in (("out.y4m", "Y4M"), ("out.avi", "AVI")):
        with pytest.warns(
            UserWarning, match=rf"out\.{name[4:]}: the source's frame times are irregular .* {what}"
        ):
            deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
        deband_video(source, tmp_path / "out.mp4", lambda rgb: rgb, progress=False)  # kept off the grid
    assert probe(tmp_path / "out.mkv")["times"] == pytest.approx([t / 1000 for t in times])
    assert probe(tmp_path / "out.mp4")["times"] == pytest.approx([t / 1000 for t in times], abs=1e-6)
    regular = make_clip(tmp_path / "regular.mkv", "yuv420p")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("r.y4m", "r.avi"):
            deband_video(regular, tmp_path / name, lambda rgb: rgb, progress=False)


def test_frame_rate_and_time_base_of_a_25_fps_source(tmp_path):
    # A Matroska source (1 ms time base) at 25 fps: timestamps come through unchanged.
    src = tmp_path / "pal.mkv"
    with av.open(str(src), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.codec_context.time_base = Fraction(1, 25)
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(src, tmp_path / "out.mp4", lambda rgb: rgb, progress=False)
    after = probe(tmp_path / "out.mp4")
    assert report.frame_rate == 25 and after["rate"] == 25
    assert after["times"] == pytest.approx([i / 25 for i in range(6)], abs=1e-3)
    assert after["audio"] == [] and report.audio_streams == 0


def test_a_matroska_file_cut_short_is_written_with_a_warning(tmp_path):
    """Matroska lists no frame count, so a file cut in half (a copy stopped there) was written
    short without a word; its header's duration of the video track says what should have been
    there (the file's own would take audio that runs on after the pictures for a cut)."""
    whole = tmp_path / "whole.mkv"
    with av.open(str(whole), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        audio = out.add_stream("flac", rate=RATE)
        audio.codec_context.layout = "mono"
        noise = np.random.default_rng(0)
        for i in range(50):
            picture = noise.integers(0, 256, (H, W, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        mux_silence(out, audio, 4.0)  # 4 s of sound under 2 s of pictures
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert deband_video(whole, tmp_path / "a.mkv", lambda rgb: rgb, progress=False).frames == 50
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    said = r"cut\.mkv: decoded 0\.\d\d s of video, but its header says its video lasts 2\.00 s; .* cut short"
    with pytest.warns(UserWarning, match=said):
        report = deband_video(cut, tmp_path / "b.mkv", lambda rgb: rgb, progress=False)
    assert 10 < report.frames < 40
    # A tenth of a file missing is a cut too (that threshold let an hour lose six minutes unsaid).
    with av.open(str(whole)) as source:
        end = [packet.pos for packet in source.demux(video=0) if packet.size][34]
    cut.write_bytes(whole.read_bytes()[:end])
    with pytest.warns(UserWarning, match=r"cut\.mkv: decoded 1\.\d\d s of video, but .* lasts 2\.00 s"):
        report = deband_video(cut, tmp_path / "c.mkv", lambda rgb: rgb, progress=False)
    assert 30 <= report.frames <= 36


def test_a_still_end_is_said_to_be_one_not_a_file_cut_short(tmp_path):
    """A screen recording that goes still ends in a frame shown for seconds (its block duration):
    it was warned about as a file cut short. The output shows it for one frame, and says so."""
    still = tmp_path / "still.mkv"
    with av.open(str(still), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        frames = []
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = 40 * i, Fraction(1, 1000)
            frames.append(frame)
        for packet in itertools.chain(*map(stream.encode, [*frames, None])):
            packet.duration = 3000 if packet.pts == 160 else packet.duration  # the last: 3 s on screen
            out.mux(packet)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = deband_video(still, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    said = [str(w.message) for w in caught]
    assert report.frames == 5 and not any("cut short" in line for line in said), said
    assert any(
        "still.mkv: shows its last frame for 3.00 s (a still end);" in line and "2.96 s shorter" in line
        for line in said
    ), said


def test_a_capture_from_mid_broadcast_starts_at_zero_with_its_streams_in_step(tmp_path):
    """A TS cut from a broadcast starts hours into its clock, or just before it wraps at 2^33:
    kept as they were, an MP4 began with 10 hours of nothing, AVI failed, and the frames before
    the wrap (negative after FFmpeg unwraps) were hidden by MP4's edit list. Every stream's clock
    now starts where the file starts, as FFmpeg's do, the audio still as far behind the video
    (within AAC's priming, 21 ms, where MP4 re-encodes it)."""
    for start in (10 * 3600 * 90000, 2**33 - 45000):
        source = tmp_path / f"capture-{start}.ts"
        with av.open(str(source), "w") as out:
            video = out.add_stream("libx264", rate=FPS)
            video.width, video.height, video.pix_fmt = W, H, "yuv420p"
            audio = out.add_stream("mp2", rate=RATE)
            audio.codec_context.layout = "mono"
            for i in range(N):
                frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
                frame.pts, frame.time_base = start + i * 90000 // FPS, Fraction(1, 90000)
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
            mux_silence(out, audio, 0.5, start=round((start / 90000 + 0.2) * RATE))
        with av.open(str(source)) as probe_:
            late = float((probe_.streams.audio[0].start_time - probe_.streams.video[0].start_time) / 90000)
        assert abs(late - 0.2) < 0.03
        for name in ("out.mp4", "out.mkv", "out.avi"):
            dst = tmp_path / name
            report = deband_video(source, dst, lambda rgb: rgb, progress=False, force=True)
            with av.open(str(dst)) as result:
                firsts = {
                    s.type: float(s.start_time * s.time_base)
                    for s in result.streams
                    if s.start_time is not None
                }
                frames = sum(1 for _ in result.decode(video=0))
            assert report.frames == frames == N
            assert firsts["video"] < 1 / FPS, firsts
            if name != "out.avi":  # AVI's audio has no start time of its own
                assert abs(firsts["audio"] - firsts["video"] - late) < 0.03, firsts


def test_aac_into_avi_leaves_no_empty_frame_slot(tmp_path):
    """AAC's priming frame starts 21 ms before 0, which AVI cannot hold: FFmpeg's muxer moved every
    stream up when it arrived, after the first video frame, so slot 1 stayed empty and the rest
    played a frame late. The sound is moved up instead (its priming is played in AVI anyway)."""
    source = make_video(tmp_path / "in.mp4")  # x264 with AAC, as cameras and phones write
    deband_video(source, tmp_path / "out.avi", lambda rgb: rgb, codec="ffv1", progress=False)
    with av.open(str(tmp_path / "out.avi")) as result:
        slots = [packet.dts for packet in result.demux(video=0) if packet.size]
    with av.open(str(tmp_path / "out.avi")) as result:
        sound = next(result.decode(audio=0)).time
    assert slots == list(range(N)) and sound == 0


def test_sound_that_starts_late_into_avi_is_warned_about(tmp_path):
    """AVI holds no start time for sound: sound 0.3 s after the picture played from the start, that
    much early, without a word."""
    source = sounded_clip(tmp_path / "late.mp4", sound_from=0.3)
    with pytest.warns(
        UserWarning, match=r"out\.avi: the source's sound starts 0\.(2|3)\d s after its picture"
    ):
        deband_video(source, tmp_path / "out.avi", lambda rgb: rgb, codec="ffv1", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Matroska keeps it
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, codec="ffv1", progress=False)


def test_recordings_joined_end_to_end_run_on_past_the_clock_jump(tmp_path):
    """Two MPEG-TS recordings joined byte for byte (as `cat` joins captures) restart the clock
    halfway. The frames after the jump all came out at one time, and the copied sound, going back
    in time, made the muxer fail after the work; every stream now runs on past it, as in FFmpeg."""
    segment = make_video(tmp_path / "segment.ts")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(segment.read_bytes() * 2)
    with av.open(str(segment)) as one:
        sound = float(one.streams.audio[0].duration * one.streams.audio[0].time_base)
    for name in ("out.mkv", "out.mp4"):
        with pytest.warns(UserWarning, match=r"joined\.ts: its clock jumps 1 time\(s\)"):
            report = deband_video(joined, tmp_path / name, lambda rgb: rgb, progress=False)
        info = probe(tmp_path / name)
        times = info["times"]
        assert report.frames == len(times) == 2 * N
        assert all(b - a > 0.5 / FPS for a, b in itertools.pairwise(times)), times
        assert abs(times[-1] - times[0] - (2 * N - 1) / FPS) < 1.5 / FPS, times
        assert abs(info["audio"][0][1] - 2 * sound) < 0.05, (info["audio"], sound)


def _capture_streams(out: av.container.OutputContainer, tracks: int) -> tuple[av.VideoStream, list]:
    """The streams of the captures below: 5 fps H.264 without B-frames (cut in display order as in
    decode order) and `tracks` mono AAC tracks."""
    video = out.add_stream("libx264", rate=5)
    video.width, video.height, video.pix_fmt = W, H, "yuv420p"
    video.options = {"bf": "0"}
    sound = [out.add_stream("aac", rate=RATE) for _ in range(tracks)]
    for track in sound:
        track.codec_context.layout = "mono"
    return video, sound


def _ts_with_gaps(path: Path, seconds: int, video_gap: float, track_gaps: tuple[float, ...]) -> Path:
    """An MPEG-TS of `seconds` of 5 fps video and one AAC track per entry of `track_gaps`: from
    1 s on, the video's packets are `video_gap` s later and each track's its own gap later."""
    with av.open(str(path), "w") as out:
        video, tracks = _capture_streams(out, len(track_gaps))
        packets = []
        for i in range(seconds * 5):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
            frame.pts = i
            packets += video.encode(frame)
        shifted = [(p, video_gap) for p in [*packets, *video.encode(None)]]
        for track, gap in zip(tracks, track_gaps, strict=True):
            sound = []
            for k in range(0, seconds * RATE, 1024):
                frame = av.AudioFrame.from_ndarray(
                    np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
                )
                frame.sample_rate, frame.pts = RATE, k
                sound += track.encode(frame)
            shifted += [(p, gap) for p in [*sound, *track.encode(None)]]
        for packet, gap in shifted:
            if packet.pts * packet.time_base >= 1:
                step = round(gap / packet.time_base)
                packet.pts, packet.dts = packet.pts + step, packet.dts + step
        for packet, _ in sorted(shifted, key=lambda item: item[0].dts * item[0].time_base):
            out.mux(packet)
    return path


def _stream_times(path: Path, index: int) -> list[float]:
    with av.open(str(path)) as src:
        return [float(p.pts * p.time_base) for p in src.demux(src.streams[index]) if p.pts is not None]


@pytest.mark.parametrize("later", [0, 0.3])
def test_a_signal_lost_for_long_is_closed_up_with_the_sound_in_step(tmp_path, later):
    """A capture that lost the signal for 12 s jumps ahead: closed up as FFmpeg does (over 10 s),
    the sound with the pictures, though its first packet after the gap comes before theirs, and
    where the pictures come back `later` than the sound (the sound stayed 12 s behind)."""
    source = _ts_with_gaps(tmp_path / "loss.ts", 3, 12 + later, (12,))
    with pytest.warns(UserWarning, match=r"loss\.ts: its clock jumps 1 time\(s\)"):
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    times = probe(tmp_path / "out.mkv")["times"]
    assert len(times) == 15 and max(b - a for a, b in itertools.pairwise(times)) < 0.25, times
    sound = _stream_times(tmp_path / "out.mkv", 1)
    assert max(b - a for a, b in itertools.pairwise(sound)) < 0.05
    # the sound ends where it ended beside the pictures in the source
    before = max(_stream_times(source, 1)) - max(_stream_times(source, 0))
    assert max(sound) - max(times) == pytest.approx(before, abs=0.03)


def test_joined_recordings_keep_each_ones_sound_with_its_pictures(tmp_path):
    """Sound that runs on 1.5 s past the pictures, joined to itself: each stream made its own
    correction at the join, and the second recording's sound came 1.5 s after its pictures. One
    correction for both keeps them together: the pictures wait while the first one's sound ends."""
    one = tmp_path / "one.ts"
    with av.open(str(one), "w") as out:
        video, [sound] = _capture_streams(out, 1)
        mux_silence(out, sound, 3.5)
        mux_gradient(out, video, 10)  # 2 s
    joined = tmp_path / "joined.ts"
    joined.write_bytes(one.read_bytes() * 2)
    with pytest.warns(UserWarning, match=r"joined\.ts: its clock jumps 1 time\(s\)"):
        deband_video(joined, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    times = probe(tmp_path / "out.mkv")["times"]
    assert len(times) == 20 and times[10] - times[0] == pytest.approx(3.5, abs=0.05), times
    before = max(_stream_times(one, 1)) - max(_stream_times(one, 0))
    assert max(_stream_times(tmp_path / "out.mkv", 1)) - max(times) == pytest.approx(before, abs=0.03)


def test_a_second_sound_track_that_pauses_long_keeps_its_pause(tmp_path):
    """Broadcasts send no packets for a track gone quiet (a commentary): a pause of over 10 s is
    no clock jump, and moved the pictures and the other track about with it."""
    source = _ts_with_gaps(tmp_path / "quiet.ts", 14, 0, (0, 11))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    times = probe(tmp_path / "out.mkv")["times"]
    assert len(times) == 70 and {round(b - a, 3) for a, b in itertools.pairwise(times)} == {0.2}
    assert max(b - a for a, b in itertools.pairwise(_stream_times(tmp_path / "out.mkv", 1))) < 0.05
    paused = _stream_times(tmp_path / "out.mkv", 2)
    assert [round(b - a) for a, b in itertools.pairwise(paused) if b - a > 1] == [11]


def test_a_track_silent_across_a_join_comes_back_on_the_new_clock(tmp_path):
    """A second sound track that stops before a join and comes back after it never jumps on its
    own clock: it landed on top of the first recording instead of in the second."""
    parts = []
    for k, (start, end) in enumerate(((0, 1), (1.5, 3))):  # the quiet track's sound in each
        part = tmp_path / f"part{k}.ts"
        with av.open(str(part), "w") as out:
            video, tracks = _capture_streams(out, 2)
            mux_silence(out, tracks[0], 3)
            mux_silence(out, tracks[1], end - start, start=round(start * RATE))
            mux_gradient(out, video, 15)
        parts.append(part.read_bytes())
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(parts))
    with pytest.warns(UserWarning, match=r"joined\.ts: its clock jumps 1 time\(s\)"):
        deband_video(joined, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    times = probe(tmp_path / "out.mkv")["times"]
    quiet = _stream_times(tmp_path / "out.mkv", 2)
    assert len(times) == 30 and max(quiet) == pytest.approx(times[15] + 3, abs=0.1), (times, quiet)
    assert [round(b - a, 1) for a, b in itertools.pairwise(quiet) if b - a > 0.5] == [3.5]


@pytest.mark.parametrize("b_frames", [0, 3])
def test_an_avi_keeps_its_frames_evenly_timed_and_late_video_late(tmp_path, b_frames):
    """AVI stores no presentation times, and FFmpeg numbers its frames in decode order: with
    B-frames they came out shuffled, and the clip was retimed, the first frame held 120 ms and
    the rest 80 ms late. Frames are timed by their decode times (carried through reordering) from
    the first frame's time: a video that starts 0.4 s after its sound still does, give or take
    the slot FFmpeg's AVI reader itself is off by."""
    source = tmp_path / "old.avi"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.max_b_frames = b_frames
        sound = out.add_stream("pcm_s16le", rate=RATE)
        sound.codec_context.layout = "mono"
        mux_silence(out, sound, 2.0)
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), 10 * i, np.uint8), format="rgb24")
            frame.pts = 10 + i  # 0.4 s after the sound starts
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with av.open(str(source)) as check:
        read = [f.pts for f in check.decode(video=0)][:5]
    assert (read == sorted(read)) == (b_frames == 0)  # shuffled as read where there are B-frames
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FFmpeg's AVI muxer lists the skipped slots as frames
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    with av.open(str(tmp_path / "out.mkv")) as result:
        frames = [(float(f.time), f.to_ndarray(format="gray").mean()) for f in result.decode(video=0)]
    start = frames[0][0]
    assert abs(start - 0.4) <= 0.041  # the sound starts at 0
    assert [t for t, _ in frames] == pytest.approx([start + i / 25 for i in range(25)], abs=1e-3)
    assert [round(level / 10) for _, level in frames] == list(range(25))  # in display order


def test_an_elementary_stream_keeps_its_own_frame_rate(tmp_path):
    """A .m2v holds no container timing; FFmpeg's raw demuxer says 25 frames a second where the
    stream's header says 29.97, and a Y4M of it played 20 % slow with a false VFR warning."""
    rate = Fraction(30000, 1001)
    source = tmp_path / "clip.m2v"
    with av.open(str(source), "w", format="mpeg2video") as out:
        stream = out.add_stream("mpeg2video", rate=rate)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    for name in ("out.y4m", "out.mkv"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            report = deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False)
        assert report.frame_rate == pytest.approx(float(rate)) and report.duration == pytest.approx(12 / rate)


def test_video_starting_between_two_frame_times_is_not_called_irregular(tmp_path):
    """Regular 25 fps video 21 ms after its audio (as bdinn-run's own MKV of an MP4 with AAC is):
    Y4M and AVI outputs warned that its frame times were irregular and had been retimed."""
    source = tmp_path / "late.mkv"
    with av.open(str(source), "w") as out:
        video = out.add_stream("ffv1", rate=25)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        audio = out.add_stream("aac", rate=RATE)
        audio.codec_context.layout = "mono"
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = 21 + 40 * i, Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        mux_silence(out, audio, N / 25)
    for name in ("out.y4m", "out.avi"):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            report = deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False)
        assert report.frames == N
        assert not [w for w in said if "irregular" in str(w.message)], name  # Y4M: "audio dropped"
