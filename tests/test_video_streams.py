"""What rides along with the pictures: sound, subtitles, chapters, attachments, cover art, timecode."""

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
    make_video,
    mux_gradient,
    mux_silence,
    probe,
    sounded_clip,
)

from bdinn.runtime.subtitle_text import cue_text  # noqa: E402
from bdinn.runtime.video import VideoError, deband_video  # noqa: E402


def test_audio_that_webm_cannot_hold_is_reencoded_to_opus(source, tmp_path):
    dst = tmp_path / "out.webm"
    report = deband_video(source, dst, lambda rgb: rgb, codec="libvpx-vp9", bit_depth=8, progress=False)
    assert (report.audio_streams, report.audio_transcoded) == (0, 1)
    after = probe(dst)
    assert after["codec"] == "vp9" and len(after["times"]) == N
    [(codec, seconds)] = after["audio"]
    assert codec == "opus" and seconds == pytest.approx(N / FPS, abs=0.05)


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".mp4"])
def test_the_video_track_is_marked_default(source, tmp_path, suffix):
    """Matroska and WebM outputs marked the one picture track not default (FFmpeg marks the first
    of each kind), which players may leave unselected."""
    codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
    deband_video(source, tmp_path / f"out{suffix}", lambda rgb: rgb, codec=codec, bit_depth=8, progress=False)
    with av.open(str(tmp_path / f"out{suffix}")) as out:
        assert out.streams.video[0].disposition & av.stream.Disposition.default


@pytest.mark.parametrize(
    ("audio_codec", "suffix", "expected"),
    [
        ("pcm_s16le", ".mp4", "aac"),  # FFmpeg takes stereo PCM into MP4, then fails at the end
        ("pcm_s16le", ".ts", "aac"),  # ... and into MPEG-TS as an unplayable data stream
        ("pcm_s16le", ".mov", "pcm_s16le"),
        ("libopus", ".mov", "aac"),  # MOV holds no Opus
        ("libopus", ".mp4", "opus"),
        ("libmp3lame", ".mp4", "mp3"),  # its decoder is "mp3float": MP3 was re-encoded everywhere
        ("libmp3lame", ".ts", "mp3"),
    ],
)
def test_stereo_audio_is_copied_where_the_container_takes_it_else_reencoded(
    tmp_path, audio_codec, suffix, expected
):
    source = make_video(tmp_path / "source.mkv", audio_codec=audio_codec, channels=2)
    report = deband_video(source, tmp_path / f"out{suffix}", lambda rgb: rgb, progress=False)
    assert report.audio_transcoded == (expected != probe(source)["audio"][0][0])
    [(codec, seconds)] = probe(tmp_path / f"out{suffix}")["audio"]
    assert codec == expected and seconds == pytest.approx(N / FPS, abs=0.05)


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("track", r"data stream 1 not carried: .*; one names no codec and holds no packets \(a track whose"),
        ("stsd", r"audio stream 1 names no codec FFmpeg can read \(a track whose description is cut short"),
    ],
)
def test_sound_an_mp4_cut_inside_its_index_lost_is_said(tmp_path, where, said):
    """A recording that stopped while writing its index (at the end of the file): cut inside the sound
    track's description, FFmpeg reads the track as a data stream (dropped without a word) or as sound
    without a codec ("cannot keep undecodable audio ... in a .mkv file; use .mkv to keep it")."""
    whole = make_video(tmp_path / "whole.mp4").read_bytes()
    sound = whole.index(b"trak", whole.index(b"trak") + 4)  # the index comes last; its second track
    cut = sound + 8 if where == "track" else whole.index(b"stsd", sound) - 4
    source = tmp_path / "cut.mp4"
    source.write_bytes(whole[:cut])
    with pytest.warns(UserWarning, match=said):
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert report.frames == N and probe(tmp_path / "out.mkv")["audio"] == []


def test_a_fragmented_mp4_keeps_its_sound(tmp_path):
    """A fragmented MP4 (DASH, CMAF, piped ffmpeg output) lists no packets in its header, and the
    first test for a cut index dropped its sound as cut short."""
    source = sounded_clip(tmp_path / "fragmented.mp4", movflags="frag_keyframe+empty_moov")
    with av.open(str(source)) as probe_it:
        assert [stream.frames for stream in probe_it.streams] == [0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    [(codec, seconds)] = probe(tmp_path / "out.mkv")["audio"]
    assert codec == "aac" and seconds > 0.3


def test_sound_an_mp4_cut_inside_its_chunk_table_lost_is_said(tmp_path):
    """Cut just inside the sound track's chunk offsets, the track keeps its codec and its count of
    packets, but none can be read: the output's sound track came out empty without a word."""
    whole = make_video(tmp_path / "whole.mp4").read_bytes()
    chunks = whole.index(b"stco", whole.index(b"trak", whole.index(b"trak") + 4))
    source = tmp_path / "cut.mp4"
    source.write_bytes(whole[: chunks + 8])
    with pytest.warns(UserWarning, match=r"cut\.mp4: none of audio stream 1's sound could be read"):
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert (report.frames, report.audio_streams, report.audio_dropped) == (N, 0, 1)


def test_an_mp4_cut_before_its_sound_track_is_said_to_be_cut(tmp_path):
    """Cut at the start of the sound track's description, FFmpeg lists the video alone: the sound
    was lost without a word. The index box itself says how long it should be."""
    whole = make_video(tmp_path / "whole.mp4").read_bytes()
    index = whole.index(b"moov") - 4
    sound = whole.index(b"trak", whole.index(b"trak") + 4) - 4
    source = tmp_path / "cut.mp4"
    source.write_bytes(whole[:sound])
    said = rf"cut\.mp4: cut short inside its 'moov' box \({sound - index} of its {len(whole) - index} bytes"
    with pytest.warns(UserWarning, match=said):
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert report.frames == N and probe(tmp_path / "out.mkv")["audio"] == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the whole file: every box ends within it
        deband_video(tmp_path / "whole.mp4", tmp_path / "whole.mkv", lambda rgb: rgb, progress=False)


def test_aac_without_its_config_is_reencoded_for_avi(tmp_path):
    """AAC from an MPEG-TS is framed as ADTS, without the AudioSpecificConfig AVI's header needs:
    copied, the muxer refused it after all the work ("encoding with libx264 failed")."""
    for suffix, transcoded in ((".ts", 1), (".mp4", 0)):
        source = make_video(tmp_path / f"source{suffix}")
        report = deband_video(source, tmp_path / f"out{suffix}.avi", lambda rgb: rgb, progress=False)
        assert (report.audio_streams, report.audio_transcoded) == (1 - transcoded, transcoded)
        [(codec, seconds)] = probe(tmp_path / f"out{suffix}.avi")["audio"]
        assert codec == "aac" and seconds == pytest.approx(probe(source)["audio"][0][1], abs=0.05)


def test_a_failure_of_the_muxer_is_not_blamed_on_the_encoder(source, tmp_path, monkeypatch):
    """What the muxer refuses (it may be any stream's packet: it interleaves them) is said to be
    the muxer's, with FFmpeg's reason and no temporary file name."""
    opened = av.open

    class Refusing:  # the real output file, whose muxer refuses the first sound it is given
        def __init__(self, *args, **kwargs):
            self.container = opened(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.container, name)

        def mux(self, packets):
            if any(p.stream.type == "audio" for p in (packets if isinstance(packets, list) else [packets])):
                raise av.error.ArgumentError(22, "Invalid argument", "/somewhere/.out.mkv.1234.tmp")
            return self.container.mux(packets)

    monkeypatch.setattr(av, "open", lambda *args, **kwargs: Refusing(*args, **kwargs) if "w" in args else
                        opened(*args, **kwargs))  # fmt: skip
    with pytest.raises(VideoError, match=r"out\.mkv: FFmpeg's matroska muxer failed \(Invalid argument\)$"):
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert not list(tmp_path.iterdir())


SUBTITLES = "1\n00:00:00,040 --> 00:00:00,120\nHello\n\n2\n00:00:00,200 --> 00:00:00,300\nWorld\n\n"


CHAPTERS = [("Opening", 0, 4), ("Rest", 4, N)]  # titles, first and end frame


FONT = ("font.ttf", "font/ttf", b"\x00\x01\x00\x00 a font")


def make_film(path: Path) -> Path:
    """An MKV as films come: video, a French SubRip track, two chapters and an attached font."""
    srt_path = path.with_suffix(".srt")
    srt_path.write_text(SUBTITLES)
    return film_with(path, srt_path, language="fre", extras=True)


def film_with(path: Path, subtitle_file: Path, language: str | None = None, extras: bool = False) -> Path:
    """A short clip with the subtitle track of `subtitle_file` (any format FFmpeg reads) and,
    with `extras`, CHAPTERS and the FONT attached."""
    with av.open(str(subtitle_file)) as subs, av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        track = out.add_stream_from_template(subs.streams.subtitles[0])
        if language:
            track.metadata["language"] = language
        if extras:
            out.add_attachment(*FONT)
            out.set_chapters(
                [
                    {
                        "id": i + 1,
                        "start": a,
                        "end": b,
                        "time_base": Fraction(1, FPS),
                        "metadata": {"title": t},
                    }
                    for i, (t, a, b) in enumerate(CHAPTERS)
                ]
            )
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        for packet in subs.demux(subs.streams.subtitles[0]):
            if packet.dts is not None:
                packet.stream = track
                out.mux(packet)
        out.mux(vs.encode(None))
    return path


def _extras(path: Path) -> dict:
    """The subtitle cues (text, start, end in seconds), chapters and attachments of a file."""
    with av.open(str(path)) as src:
        cues = [
            (cue_text(stream.codec_context.name, bytes(p)), float(p.pts * p.time_base),
             float((p.pts + p.duration) * p.time_base))
            for stream in src.streams.subtitles
            for p in src.demux(stream)
            if p.size > (2 if stream.codec_context.name == "mov_text" else 0)  # MP4 fills gaps: empty cues
        ]  # fmt: skip
        return {
            "subtitles": [(s.codec_context.name, s.metadata.get("language")) for s in src.streams.subtitles],
            "cues": cues,
            "chapters": [
                (c["metadata"].get("title"), round(float(c["start"] * c["time_base"]), 3))
                for c in src.chapters()
            ],
            "attachments": [(a.name, a.mimetype, bytes(a.data)) for a in src.streams.attachments],
        }


def test_subtitles_chapters_and_fonts_are_kept_in_mkv(tmp_path):
    film = make_film(tmp_path / "film.mkv")
    before = _extras(film)
    assert before["cues"] == [("Hello", 0.04, 0.12), ("World", 0.2, 0.3)]  # the source is as meant
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(film, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    after = _extras(tmp_path / "out.mkv")
    assert after == before
    assert after["subtitles"] == [("srt", "fre")] and len(after["chapters"]) == 2
    assert (report.subtitle_streams, report.subtitles_dropped, report.frames) == (1, 0, N)


def test_cover_art_is_kept_in_mkv_and_warned_about_elsewhere(tmp_path):
    """FFmpeg shows an MKV's image attachment as a one-frame video stream beside the movie."""
    import cv2

    cover = cv2.imencode(".jpg", np.full((32, 32, 3), 90, np.uint8))[1].tobytes()
    source = tmp_path / "album.mkv"
    with av.open(str(source), "w") as out:
        out.add_attachment("cover.jpg", "image/jpeg", cover)
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    with av.open(str(source)) as src:
        assert sorted(s.codec_context.name for s in src.streams.video) == [
            "h264",
            "mjpeg",
        ]  # as FFmpeg shows it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert (report.frames, report.width, report.height) == (N, W, H)
    with av.open(str(tmp_path / "out.mkv")) as out:
        pictures = [s for s in out.streams.video if s.disposition & 1024]
        assert [(s.metadata["filename"], s.metadata["mimetype"]) for s in pictures] == [
            ("cover.jpg", "image/jpeg")
        ]
        assert bytes(next(p for p in out.demux(pictures[0]) if p.size)) == cover
    with pytest.warns(UserWarning, match=r"a \.mp4 file cannot hold the source's 1 cover picture\(s\)"):
        deband_video(source, tmp_path / "out.mp4", lambda rgb: rgb, progress=False)


def test_mp4_text_subtitles_become_subrip_in_mkv(tmp_path):
    """Matroska has no mov_text: MP4's cues arrive as SubRip, text and times exact, gaps left out."""
    source = tmp_path / "phone.mp4"
    with av.open(str(source), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        text = out.add_stream("mov_text")
        text.time_base = text.codec_context.time_base = Fraction(1, 1000)
        text.codec_context.subtitle_header = b"[Script Info]\nScriptType: v4.00+\n\n[Events]\n"
        text.metadata["language"] = "fra"
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        for start, length, cue in [(40, 80, "Bonjour"), (200, 100, "Monde\né")]:
            packet = av.Packet(len(cue.encode()).to_bytes(2, "big") + cue.encode())
            packet.pts = packet.dts = start
            packet.duration, packet.time_base, packet.stream = length, Fraction(1, 1000), text
            out.mux(packet)
        out.mux(vs.encode(None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    after = _extras(tmp_path / "out.mkv")
    assert after["subtitles"] == [("srt", "fra")] and report.subtitle_streams == 1
    assert after["cues"] == [("Bonjour", 0.04, 0.12), ("Monde\né", 0.2, 0.3)]


def test_languages_reach_a_mov_file_in_the_spelling_its_writer_knows(tmp_path):
    """MOV's writer takes its QuickTime list's codes only, which spell German 'ger' (ISO 639-2/B)
    but Romanian 'ron' (/T): a 'deu' track came out with no language."""
    source = tmp_path / "tracks.mkv"
    with av.open(str(source), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.metadata["language"] = "nld"
        tracks = [out.add_stream("aac", rate=48000) for _ in range(5)]
        for track, language in zip(tracks, ("deu", "rum", "fra", "eng", "swe"), strict=True):
            track.codec_context.layout = "mono"
            track.metadata["language"] = language
        mux_gradient(out, vs)
        for track in tracks:
            mux_silence(out, track, N / FPS)
    deband_video(source, tmp_path / "out.mov", lambda rgb: rgb, progress=False)
    with av.open(str(tmp_path / "out.mov")) as out:
        said = [s.metadata.get("language") for s in (*out.streams.video, *out.streams.audio)]
    assert said == ["dut", "ger", "ron", "fra", "eng", "sve"]


def test_what_a_container_cannot_hold_is_dropped_with_one_warning(tmp_path):
    film = make_film(tmp_path / "film.mkv")
    with pytest.warns(UserWarning) as caught:
        report = deband_video(film, tmp_path / "out.mp4", lambda rgb: rgb, progress=False)
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'out.mp4'}: a .mp4 file cannot hold the source's 1 attachment(s); dropped "
        "(write .mkv to keep them)",
    ]
    assert all(w.filename == __file__ for w in caught)
    after = _extras(tmp_path / "out.mp4")
    assert (after["subtitles"], after["attachments"]) == ([("mov_text", "fre")], [])  # rewritten, below
    assert after["chapters"] == _extras(film)["chapters"]  # MP4 has a chapter list
    assert (report.subtitle_streams, report.subtitles_dropped) == (1, 0)
    with pytest.warns(UserWarning) as caught:
        deband_video(film, tmp_path / "out.ts", lambda rgb: rgb, progress=False)
    assert [str(w.message).split(": ", 1)[1] for w in caught] == [
        "a .ts file cannot hold subtitle subrip stream 1; dropped (write .mkv to keep them)",
        "a .ts file cannot hold the source's 2 chapter(s) and 1 attachment(s); dropped "
        "(write .mkv to keep them)",
    ]
    assert _extras(tmp_path / "out.ts")["chapters"] == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MP4's chapters come in a text track FFmpeg lists as data
        deband_video(tmp_path / "out.mp4", tmp_path / "again.mkv", lambda rgb: rgb, progress=False)
    assert _extras(tmp_path / "again.mkv")["chapters"] == _extras(film)["chapters"]


def test_a_broadcasts_dvb_subtitles_stay_in_its_transport_stream(tmp_path):
    """DVB bitmap subtitles go from MPEG-TS into MPEG-TS as they are. Their decoder is `dvbsub`,
    not the codec's name `dvb_subtitle`, and they were dropped as a codec the container refuses."""
    source = tmp_path / "capture.ts"
    with av.open(str(source), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        subtitles = out.add_stream("dvbsub")
        subtitles.metadata["language"] = "deu"
        # An empty display set (page composition, end of display set), as FFmpeg's encoder writes it.
        display_set = bytes([0x0F, 0x10, 0, 1, 0, 2, 5, 0x05, 0x0F, 0x80, 0, 1, 0, 0])
        for i in range(N):
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.full((H, W, 3), 9 * i, np.uint8))))
            cue = av.Packet(display_set)
            cue.stream, cue.time_base, cue.pts = subtitles, Fraction(1, 90000), i * 90000 // FPS
            cue.dts = cue.pts
            out.mux(cue)
        out.mux(video.encode(None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / "out.ts", lambda rgb: rgb, progress=False)
    assert (report.subtitle_streams, report.subtitles_dropped) == (1, 0)
    with av.open(str(tmp_path / "out.ts")) as out:
        [kept] = out.streams.subtitles
        assert (kept.codec_context.codec.canonical_name, kept.metadata["language"]) == ("dvb_subtitle", "deu")
        assert [bytes(packet) for packet in out.demux(kept) if packet.size] == [display_set] * N


ASS_FILE = """[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, Bold, Italic, Alignment, MarginL, MarginR, MarginV
Style: Default,Arial,16,&Hffffff,0,0,2,10,10,10

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:00.04,0:00:00.12,Default,,0,0,0,,{\\i1}Hello{\\i0}, you\\Nthere
Dialogue: 0,0:00:00.12,0:00:00.20,Default,,0,0,0,,{\\p1}m 0 0 l 100 0 100 100{\\p0}
Dialogue: 0,0:00:00.20,0:00:00.30,Default,,0,0,0,,World
"""


@pytest.mark.parametrize(
    ("subtitles", "dst", "written", "cues"),
    [
        ("srt", "out.mp4", "mov_text", [("Hello", 0.04, 0.12), ("World", 0.2, 0.3)]),
        ("srt", "out.mov", "mov_text", [("Hello", 0.04, 0.12), ("World", 0.2, 0.3)]),
        ("srt", "out.webm", "webvtt", [("Hello", 0.04, 0.12), ("World", 0.2, 0.3)]),
        ("ass", "out.mp4", "mov_text", [("Hello, you\nthere", 0.04, 0.12), ("World", 0.2, 0.3)]),
        ("vtt", "out.mp4", "mov_text", [("Hello & you", 0.04, 0.12), ("World", 0.2, 0.3)]),
    ],
)
def test_text_subtitles_are_rewritten_into_the_containers_own_text_codec(
    tmp_path, subtitles, dst, written, cues
):
    """MP4/MOV hold mov_text only and WebM WebVTT only: a film's SubRip, ASS or WebVTT cues are
    rewritten as plain text (styling and ASS drawings left out), times exact."""
    texts = {"srt": SUBTITLES.replace("Hello", "<i>Hello</i>"), "ass": ASS_FILE,
             "vtt": "WEBVTT\n\n00:00:00.040 --> 00:00:00.120\n<v Bob><b>Hello</b> &amp; you\n\n"
                    "00:00:00.200 --> 00:00:00.300 align:start\nWorld\n\n"}  # fmt: skip
    subtitle_file = tmp_path / f"cues.{subtitles}"
    subtitle_file.write_text(texts[subtitles])
    source = film_with(tmp_path / "film.mkv", subtitle_file)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = deband_video(source, tmp_path / dst, lambda rgb: rgb, progress=False)
    after = _extras(tmp_path / dst)
    assert [name for name, _ in after["subtitles"]] == [written] and report.subtitle_streams == 1
    if written == "webvtt":
        cues = [(text.replace("&", "&amp;"), start, end) for text, start, end in cues]  # WebVTT escapes
    assert after["cues"] == cues


def test_overlapping_cues_keep_their_times_in_mp4_and_show_white(tmp_path):
    """MP4's text samples cannot overlap (its muxer would shift every later cue): a sign on screen
    while a line comes and goes is written as three back-to-back samples. The track's default
    style is white text."""
    srt = tmp_path / "cues.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,300\nSIGN\n\n2\n00:00:00,100 --> 00:00:00,200\nLine\n\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deband_video(
            film_with(tmp_path / "film.mkv", srt), tmp_path / "out.mp4", lambda rgb: rgb, progress=False
        )
    assert _extras(tmp_path / "out.mp4")["cues"] == [
        ("SIGN", 0.0, 0.1),
        ("SIGN\nLine", 0.1, 0.2),
        ("SIGN", 0.2, 0.3),
    ]
    with av.open(str(tmp_path / "out.mp4")) as out:
        sample_entry = out.streams.subtitles[0].codec_context.extradata
    assert sample_entry[26:30] == b"\xff\xff\xff\xff"  # tx3g default style: text colour RGBA


def test_a_crowd_of_overlapping_cues_is_capped_in_mp4_with_a_warning(tmp_path):
    """Each MP4 sample repeats every text on screen: 10,000 cues over one another in a 722 KB file
    became a 1.2 GB MP4, in time and memory growing with their square. A screenful is kept."""
    srt = tmp_path / "crowd.srt"
    srt.write_text("".join(f"{i + 1}\n00:00:00,{i:03d} --> 00:00:00,300\ncue {i}\n\n" for i in range(200)))
    source = film_with(tmp_path / "film.mkv", srt)
    with pytest.warns(UserWarning, match=r"subtitle stream 1: 192 cues dropped, each shown while 8 others"):
        deband_video(source, tmp_path / "out.mp4", lambda rgb: rgb, progress=False)
    cues = _extras(tmp_path / "out.mp4")["cues"]
    assert max(len(text.splitlines()) for text, _, _ in cues) == 8
    assert [text.splitlines()[-1] for text, _, _ in cues[:8]] == [f"cue {i}" for i in range(8)]


def test_subtitles_that_are_not_utf8_are_read_as_windows_1252_with_a_warning(tmp_path):
    srt = tmp_path / "old.srt"
    srt.write_bytes("1\n00:00:00,040 --> 00:00:00,120\nÇa va, café crème\n\n".encode("cp1252"))
    film = film_with(tmp_path / "film.mkv", srt)
    with pytest.warns(UserWarning, match=r"film\.mkv: subtitle stream 1 is not UTF-8; its text was read as"):
        deband_video(film, tmp_path / "out.mp4", lambda rgb: rgb, progress=False)
    assert _extras(tmp_path / "out.mp4")["cues"] == [("Ça va, café crème", 0.04, 0.12)]


def _timecoded(path: Path, timecode: str, rate: Fraction = Fraction(FPS)) -> Path:
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.metadata["timecode"] = timecode  # MOV and MP4 write it as a tmcd track
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def _timecodes(path: Path) -> list[str | None]:
    with av.open(str(path)) as src:
        return [
            next((v for k, v in s.metadata.items() if k.lower() == "timecode"), None) for s in src.streams
        ]


@pytest.mark.parametrize("source", ["in.mov", "in.mkv"])
def test_the_start_timecode_is_kept_where_the_container_holds_one(tmp_path, source):
    """Masters carry the timecode of their first frame (a MOV tmcd track, a Matroska tag)."""
    film = _timecoded(tmp_path / source, "01:02:03:04")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("out.mov", "out.mp4", "out.mkv", "out.webm"):
            deband_video(film, tmp_path / name, lambda rgb: rgb, progress=False)
            assert "01:02:03:04" in _timecodes(tmp_path / name)
    with pytest.warns(
        UserWarning, match=r"out\.ts: a \.ts file cannot hold the source's timecode 01:02:03:04"
    ):
        deband_video(film, tmp_path / "out.ts", lambda rgb: rgb, progress=False)
    drop_frame = _timecoded(tmp_path / "ntsc.mov", "00:59:59;28", Fraction(30000, 1001))
    deband_video(drop_frame, tmp_path / "ntsc-out.mov", lambda rgb: rgb, progress=False)
    assert _timecodes(tmp_path / "ntsc-out.mov")[0] == "00:59:59;28"


def test_a_second_video_stream_is_dropped_with_a_warning(tmp_path):
    """A multi-angle or picture-in-picture file: only the first video stream is debanded."""
    source = tmp_path / "angles.mkv"
    with av.open(str(source), "w") as out:
        streams = [out.add_stream("libx264", rate=FPS) for _ in range(2)]
        for stream in streams:
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(N):
            for stream in streams:
                frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
        for stream in streams:
            out.mux(stream.encode(None))
    with pytest.warns(
        UserWarning, match=r"angles\.mkv: 2 video streams; the first is debanded and the other is dropped "
    ):
        report = deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    assert report.frames == N and probe(tmp_path / "out.mkv")["size"] == (W, H)
    with av.open(str(tmp_path / "out.mkv")) as out:
        assert len(out.streams.video) == 1


def test_chapters_move_with_the_streams_clock(tmp_path):
    """A file whose clock starts at 10 s has its chapters there too; they start with the output."""
    source = tmp_path / "late.mkv"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        out.set_chapters([{"id": 1, "start": 10 * FPS, "end": 10 * FPS + 4, "time_base": Fraction(1, FPS),
                           "metadata": {"title": "second"}}])  # fmt: skip
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24").reformat(format="yuv420p")
            frame.pts = 10 * FPS + i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with warnings.catch_warnings():  # its header's DURATION is where it ends (10.33 s): not cut short
        warnings.simplefilter("error")
        deband_video(source, tmp_path / "out.mkv", lambda rgb: rgb, progress=False)
    with av.open(str(tmp_path / "out.mkv")) as result:
        [chapter] = result.chapters()
        assert float(result.streams.video[0].start_time * result.streams.video[0].time_base) < 1 / FPS
    seconds = [float(chapter[key] * chapter["time_base"]) for key in ("start", "end")]
    assert seconds == pytest.approx([0, 4 / FPS], abs=1e-3) and chapter["metadata"]["title"] == "second"


def test_an_audio_stream_without_sound_is_dropped_with_a_warning(tmp_path):
    """DVB/ATSC captures list audio streams that are not on air (0 channels, 0 Hz): every output
    failed after the first frames, the error naming the video encoder."""
    source = tmp_path / "capture.ts"
    with av.open(str(source), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        spoken = out.add_stream("mp2", rate=RATE)
        out.add_stream("ac3", rate=RATE)  # listed, never a packet
        mux_gradient(out, video)
        mux_silence(out, spoken, 0.5)
    for name in ("out.mkv", "out.mp4", "out.webm"):
        with pytest.warns(UserWarning, match=r"capture\.ts: audio stream 2 shows no sound .*; dropped"):
            report = deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False)
        assert (report.frames, report.audio_dropped) == (N, 1)
        with av.open(str(tmp_path / name)) as result:
            assert [s.type for s in result.streams] == ["video", "audio"]


def test_surround_audio_in_ac3_order_goes_into_webm(tmp_path):
    """AC-3, E-AC-3 and DTS carry 5.1 with side channels, a layout libopus refuses: a film's
    soundtrack into .webm failed after the first frame."""
    source = tmp_path / "film.mkv"
    with av.open(str(source), "w") as out:
        video = out.add_stream("ffv1", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = out.add_stream("ac3", rate=RATE)
        audio.codec_context.layout = "5.1(side)"
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        mux_silence(out, audio, 1 / 3)
    report = deband_video(source, tmp_path / "out.webm", lambda rgb: rgb, progress=False)
    assert (report.frames, report.audio_transcoded) == (N, 1)
    with av.open(str(tmp_path / "out.webm")) as result:
        [sound] = result.streams.audio
        assert (sound.codec_context.name, sound.codec_context.layout.nb_channels) == ("opus", 6)
        assert sum(frame.samples for frame in result.decode(audio=0)) >= RATE // 3 - 1536


def test_an_mp4_tracks_title_survives_another_pass(tmp_path):
    """A title written into MP4 reads back as its `name`, which was not carried: an MP4 made by
    bdinn lost its "Director commentary" label on the next pass."""
    source = tmp_path / "titled.mp4"
    with av.open(str(source), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = out.add_stream("aac", rate=RATE)
        audio.metadata["title"] = "Director commentary"
        mux_gradient(out, video)
        mux_silence(out, audio, 0.25)
    for name, key in (("out.mkv", "title"), ("out.mp4", "name")):
        deband_video(source, tmp_path / name, lambda rgb: rgb, progress=False)
        with av.open(str(tmp_path / name)) as result:
            assert result.streams.audio[0].metadata[key] == "Director commentary"


def _trimmed_mp4(path: Path) -> Path:
    """What `ffmpeg -ss 1 -i long.mp4 -c copy` writes: the packets from the key frame before the
    cut (here the first), shifted so that the cut is at 0, an edit list hiding the second before."""
    whole = path.with_name("whole.mp4")
    with av.open(str(whole), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"g": "50", "bf": "2", "sc_threshold": "0"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.codec_context.layout = "stereo"
        for i in range(50):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 4, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for start in range(0, 2 * 48000, 1024):
            tone = np.sin(np.arange(start, start + 1024) / 48000 * 2 * np.pi * 440).astype(np.float32) * 0.3
            frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    with av.open(str(whole)) as source, av.open(str(path), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.dts is not None:
                cut = round(1 / packet.time_base)  # one second in the stream's ticks
                packet.pts, packet.dts, packet.stream = (
                    packet.pts - cut,
                    packet.dts - cut,
                    streams[packet.stream.index],
                )
                out.mux(packet)
    return path


def _starts_and_samples(path: Path) -> tuple[float, float, int]:
    with av.open(str(path)) as container:
        video = [float(frame.time) for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = [(float(frame.time), frame.samples) for frame in container.decode(audio=0)]
    return video[0], audio[0][0], sum(samples for _, samples in audio)


@pytest.mark.parametrize("suffix", [".mkv", ".ts", ".mp4"])
def test_sound_an_edit_list_hides_stays_hidden(tmp_path, suffix):
    """A clip cut from a longer MP4 without re-encoding holds the sound from the key frame on:
    in Matroska and MPEG-TS (no edit lists) it played for a second over no picture, and the
    picture began a second late."""
    source = _trimmed_mp4(tmp_path / "trimmed.mp4")
    video_start, audio_start, samples = _starts_and_samples(source)
    assert (video_start, audio_start) == (0, 0) and samples == pytest.approx(48000, abs=1024)
    out = tmp_path / f"out{suffix}"
    deband_video(source, out, lambda rgb: rgb, progress=False)
    video_start, audio_start, samples = _starts_and_samples(out)
    # the packet kept to prime the decoder begins up to two AAC packets (2 x 21 ms) before the cut
    assert video_start - audio_start == pytest.approx(0, abs=0.05)
    assert samples == pytest.approx(48000, abs=3 * 1024)  # was 96000: the second before the cut
