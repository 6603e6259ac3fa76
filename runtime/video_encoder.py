"""The video encoder's settings: quality (CRF), speed (preset) and the caller's own FFmpeg options.

Checked before any frame is decoded: FFmpeg ignores option names an encoder does not have, and
refuses a bad value only when the encoder opens on the first frame, after the model has loaded
and a frame has gone through it. Each setting is tried on a small throwaway encoder instead, so a
mistake is one line naming the option.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import IO, Any

# Encoder -> default CRF. Debanded pictures are all smooth gradients, so these sit on the
# high-quality side of each encoder's default (x264 23, x265 28, SVT-AV1 35, VP9 32).
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libsvtav1": 28, "libvpx-vp9": 28, "libvpx": 10}
MAX_CRF = {"libx264": 51, "libx265": 51}  # the others go to 63
# VP8's CRF must not be below its default qmin, 4; SVT-AV1 ignores 0 (it encodes as its default
# 35). The others start at 0.
MIN_CRF = {"libvpx": 4, "libsvtav1": 1}


def crf_help() -> str:
    """Each encoder's CRF range and bdinn's default for it, from the tables the check uses (the
    help text had SVT-AV1 from 0, and no VP8)."""
    return ", ".join(
        f"{codec} {MIN_CRF.get(codec, 0)}..{MAX_CRF.get(codec, 63)} (default {crf})"
        for codec, crf in DEFAULT_CRF.items()
    )


_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                 "veryslow", "placebo")  # fmt: skip
# Encoder -> (its FFmpeg option, the values it takes, fastest last where numbers) for `preset`.
PRESETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "libx264": ("preset", _X26X_PRESETS),
    "libx265": ("preset", _X26X_PRESETS),
    "libsvtav1": ("preset", tuple(str(n) for n in range(14))),  # 0 slowest .. 13 fastest
    "libvpx-vp9": ("cpu-used", tuple(str(n) for n in range(9))),
    "libvpx": ("cpu-used", tuple(str(n) for n in range(17))),
}


def preset_help() -> str:
    """Each encoder's speed presets, from the table the check uses (its help had no VP8)."""
    return ", ".join(
        f"{codec} {values[0]}{' (slowest)' if values[0].isdigit() else ''}..{values[-1]}"
        for codec, (_, values) in PRESETS.items()
    )


# Options that are set from elsewhere: their own arguments, or the source and the bit depth.
_OWN_ARGUMENT = {"crf": "crf= (--crf)", "preset": "preset= (--preset)", "cpu-used": "preset= (--preset)"}
_FROM_SOURCE = {"pixel_format", "pix_fmt", "video_size", "s", "time_base", "r", "colorspace",
                "color_range", "color_primaries", "color_trc", "codec_tag"}  # fmt: skip
# key=value:key=value lists: ours and the caller's are joined (the caller's last, so they win).
PARAM_LISTS = {"x264-params", "x265-params", "svtav1-params"}
# Their entries that set the colour tags, which follow the source (as color_range does).
_COLOUR_PARAMS = {"range", "colorprim", "transfer", "colormatrix", "fullrange", "color-range",
                  "color-primaries", "transfer-characteristics", "matrix-coefficients"}  # fmt: skip


def encoder_label(codec: str) -> str:
    """An encoder's name for messages: Y4M's raw video has an FFmpeg-internal one."""
    return "raw Y4M video" if codec == "wrapped_avframe" else codec


def encoder_options(
    codec: str,
    pix_fmt: str,
    crf: int | None = None,
    preset: str | int | None = None,
    extra: Mapping[str, object] | None = None,
) -> dict[str, str]:
    """FFmpeg options for `codec` (crf=None: DEFAULT_CRF), checked; ValueError names a bad one."""
    if codec == "libsvtav1":  # before the first SVT-AV1 encoder opens: else it prints its banner
        os.environ.setdefault("SVT_LOG", "1")  # errors only (a user's own SVT_LOG wins)
    if crf is not None and (isinstance(crf, bool) or not isinstance(crf, numbers.Integral)):
        raise ValueError(f"crf must be a whole number, got {crf!r}")
    if extra is not None and not isinstance(extra, Mapping):
        raise ValueError(f"codec options must map option names to values, got a {type(extra).__name__}")
    options: dict[str, str] = {}
    bitrate = "b" in (extra or {}) and not codec.startswith("libvpx")  # VP9: CRF capped by b
    if crf is None:  # a target bitrate replaces the default CRF (which would override it)
        crf = None if bitrate else DEFAULT_CRF.get(codec)
    elif bitrate:
        raise ValueError(f"{codec} takes a CRF or a bitrate (b=), not both: it would ignore b=; give one")
    elif codec not in DEFAULT_CRF:
        raise ValueError(f"{encoder_label(codec)} has no CRF setting; leave crf (--crf) out")
    elif not MIN_CRF.get(codec, 0) <= crf <= MAX_CRF.get(codec, 63):
        best, worst = MIN_CRF.get(codec, 0), MAX_CRF.get(codec, 63)
        raise ValueError(f"CRF {crf} is out of range for {codec}; use {best} (best) to {worst}")
    if crf is not None:
        options["crf"] = str(crf)
    if codec == "libx265":
        options["x265-params"] = "log-level=error"  # x265 prints a banner and statistics otherwise
    if codec.startswith("libvpx"):
        options["b"] = "0"  # CRF alone: constant quality
    if preset is not None:
        options.update(_preset_option(codec, preset))
    given: dict[str, tuple[str, str]] = {}  # option -> (value to set, as the caller wrote it)
    for key, value in (extra or {}).items():
        _check_name(codec, key)
        text = str(value)
        colour = [entry for entry in text.split(":") if entry.split("=")[0].strip() in _COLOUR_PARAMS]
        if key in (*PARAM_LISTS, "x264opts") and colour:
            raise ValueError(
                f"{key} {colour[0]}: the colour tags follow from the source; not an encoder option"
            )
        if key in PARAM_LISTS and options.get(key):
            text = f"{options[key]}:{text}"
        given[key] = (text, f"{key}={value}")
    if given:
        _check_together(codec, pix_fmt, options, given)
        options.update({key: text for key, (text, _) in given.items()})
    return options


def _check_together(
    codec: str, pix_fmt: str, options: dict[str, str], given: dict[str, tuple[str, str]]
) -> None:
    """The caller's options tried in one encoder, as they will run: some only make sense in
    pairs (x264's maxrate without bufsize is refused). If it fails, the option without which it
    opens is named; if there is none, all of them."""
    every = {**options, **{key: text for key, (text, _) in given.items()}}
    try:
        _check_open(codec, pix_fmt, every, ", ".join(said for _, said in given.values()))
    except ValueError:
        for key, (_, said) in given.items():
            try:
                _check_open(codec, pix_fmt, {k: v for k, v in every.items() if k != key}, said)
            except ValueError:
                continue
            _check_open(codec, pix_fmt, every, said)  # raises, naming this one
        raise


def _preset_option(codec: str, preset: str | int) -> dict[str, str]:
    if codec not in PRESETS:
        raise ValueError(f"{encoder_label(codec)} has no speed preset; leave preset (--preset) out")
    option, values = PRESETS[codec]
    value = str(preset).strip().lower()
    if value not in values:
        choices = ", ".join(values) if not values[0].isdigit() else f"{values[0]} (slowest) to {values[-1]}"
        raise ValueError(f"{codec} has no preset {preset!r}; use one of {choices}")
    return {option: value}


def _check_name(codec: str, key: str) -> None:
    if key in _OWN_ARGUMENT:
        raise ValueError(f"{key} has its own setting, {_OWN_ARGUMENT[key]}; not an encoder option")
    if key in _FROM_SOURCE:
        raise ValueError(f"{key} follows from the source and the bit depth; not an encoder option")
    supported = _encoder_context(codec).supported_options
    if key not in {o.name for o in (*supported.private, *supported.generic)}:
        raise ValueError(f"{codec} has no option {key!r} (ffmpeg -h encoder={codec} lists them)")


# What encoders say on opening that is no refusal: x264 coding fields (flags=+ildct) turns its
# weighted P-frame prediction off.
_HARMLESS_WARNINGS = {"interlace + weightp is not implemented"}


def _check_open(codec: str, pix_fmt: str, options: dict[str, str], setting: str) -> None:
    """Open a 64 x 64 encoder with `options` (milliseconds): FFmpeg's own check of `setting`.

    A bad entry in x264/x265/svtav1-params is only a warning in FFmpeg's log (the encoder opens
    and runs with its default), and x264 writes some refusals straight to stderr: both are
    caught here and become the reason in the one-line error.
    """
    import av
    import av.logging

    ctx = _encoder_context(codec)
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 64, 64, pix_fmt, Fraction(1, 25)
    ctx.options = dict(options)
    failure: av.FFmpegError | None = None
    with ffmpeg_heard() as (logs, printed):
        try:
            ctx.open()
        except av.FFmpegError as exc:
            failure = exc
        del ctx  # freed here: x265 prints "encoded 0 frames" as it closes, a stray line otherwise
    if failure is not None:
        said = [line for line in printed if not line.startswith("encoded ")]
        said += [m.strip() for _, _, m in logs]
        reason = "; ".join(said) or failure.strerror or str(failure)
        raise ValueError(f"{codec} refuses the option {setting} ({reason})") from None
    warned = [
        message.strip()
        for lvl, _, message in logs
        if lvl <= av.logging.WARNING and message.strip() not in _HARMLESS_WARNINGS
    ]
    if warned:
        raise ValueError(f"{codec} does not take the option {setting} ({'; '.join(warned)})")


def _new_trial_lock() -> None:
    """A fresh lock, also in a child forked while another thread held the old one."""
    global _ONE_TRIAL_AT_A_TIME
    _ONE_TRIAL_AT_A_TIME = threading.Lock()


_new_trial_lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_trial_lock)


@contextlib.contextmanager
def ffmpeg_heard() -> Iterator[tuple[list[tuple[int, str, str]], list[str]]]:
    """What FFmpeg logs (warnings and worse) and what C code prints to stderr during a trial
    encode, kept from the user and yielded (filled on exit) for the one-line error to quote.
    One trial at a time: two overlapping ones would each put back the stderr the other set."""
    import av.logging

    with _ONE_TRIAL_AT_A_TIME:
        level, skipping = av.logging.get_level(), av.logging.get_skip_repeated()
        av.logging.set_level(av.logging.WARNING)
        av.logging.set_skip_repeated(False)  # PyAV drops a message repeated from the last trial's
        try:
            with av.logging.Capture() as logs, _stderr_captured() as printed:
                yield logs, printed
        finally:
            av.logging.set_level(level)
            av.logging.set_skip_repeated(skipping)


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """The lines C code writes to file descriptor 2 meanwhile, in the yielded list on exit.
    Process-wide, so kept to the milliseconds of an encoder's trial open."""
    lines: list[str] = []
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # started with stderr closed: nothing to keep quiet
        yield lines
        return
    sink = _anonymous_file()
    if sink is None:  # nowhere to put it: C code's printing shows
        os.close(saved)
        yield lines
        return
    with sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines += [
                line.strip() for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip()
            ]


def _anonymous_file() -> IO[bytes] | None:
    """A file of no name: in memory where Linux has memfd, so that no temporary folder is needed
    (a read-only container has none: the trial encode failed, and so the encoder was refused);
    else a temporary file; None where neither can be had."""
    with contextlib.suppress(OSError, AttributeError):  # memfd: Linux only
        return open(os.memfd_create("bdinn-stderr"), "w+b")
    with contextlib.suppress(OSError):
        return tempfile.TemporaryFile()
    return None


def _encoder_context(codec: str) -> Any:
    import av

    return av.CodecContext.create(codec, "w")
