"""Cue text out of each text subtitle codec, and mov_text's samples that may not overlap."""

import pytest

from bdinn.runtime.subtitle_text import Timeline, cue_text


@pytest.mark.parametrize(
    ("codec", "payload", "text"),
    [
        ("ssa", rb"0,0,Default,,0,0,0,,{\i1}Hello{\i0}, you\Nthere", "Hello, you\nthere"),
        ("ass", rb"3,0,Sign,,0,0,0,fade,{\p1}m 0 0 l 9 0 9 9{\p0}After, the shape", "After, the shape"),
        ("ass", rb"4,0,Default,,0,0,0,,{a comment}{\k20}Ka{\k30}ra\hoke", "Kara oke"),
        (
            "srt",
            rb'<i>Hello</i> <font color="red">{\an8}you</font> {laughs} &amp;',
            "Hello you {laughs} &amp;",
        ),
        ("webvtt", b"<v Bob><c.yellow>Hi</c> &lt;3 &amp; <00:00:01.500>more", "Hi <3 & more"),
        ("text", b" plain <text> {kept} ", "plain <text> {kept}"),
        ("mov_text", b"\x00\x05Hello\x00\x00\x00\x0cstyl", "Hello"),  # the style box after the text
        ("mov_text", b"\x00\x00", ""),  # MP4's filler between cues
    ],
)
def test_each_codec_gives_its_cues_plain_text(codec, payload, text):
    assert cue_text(codec, payload) == text


def test_text_that_is_not_utf8_is_refused_unless_another_encoding_is_named():
    payload = "Ça va, café".encode("cp1252")
    with pytest.raises(UnicodeDecodeError):
        cue_text("srt", payload)
    assert cue_text("srt", payload, "cp1252") == "Ça va, café"


def test_overlapping_cues_become_back_to_back_samples_of_what_is_on_screen():
    """A sign on screen for 2 s while two lines of dialogue come and go, then a gap and a line."""
    timeline, samples = Timeline(), []
    for start, end, text in [(0, 2000, "SIGN"), (500, 800, "L1"), (1000, 1300, "L2"), (2500, 2600, "L3")]:
        samples += timeline.add(start, end, text)
    on_screen = ["SIGN", "SIGN\nL1", "SIGN", "SIGN\nL2", "SIGN"]
    assert samples == list(
        zip([0, 500, 800, 1000, 1300], [500, 800, 1000, 1300, 2000], on_screen, strict=True)
    )
    assert timeline.flush() == [(2500, 2600, "L3")]
    assert Timeline().add(0, 10, "only") == [] and Timeline().flush() == []
    back_to_back = Timeline()
    assert back_to_back.add(0, 100, "a") + back_to_back.add(100, 200, "b") + back_to_back.flush() == [
        (0, 100, "a"),
        (100, 200, "b"),
    ]


def test_at_most_a_screenful_of_cues_shows_at_once():
    timeline, samples = Timeline(), []
    for start in range(20):  # 20 cues over one another, each to the end
        samples += timeline.add(start, 100, f"c{start}")
    samples += timeline.flush()
    assert timeline.dropped == 12 and max(len(text.split("\n")) for _, _, text in samples) == 8
    assert samples[-1] == (19, 100, "\n".join(f"c{i}" for i in range(8)))  # the first eight, to the end
    timeline.add(200, 300, "after")  # the crowd gone: cues show again
    assert timeline.flush() == [(200, 300, "after")]
