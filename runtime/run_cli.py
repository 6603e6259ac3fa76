"""`bdinn-run [MODEL] INPUT... [-o OUT]`: deband pictures and videos with any bdinn model file.

The model is the first argument when it ends in .plan/.engine/.onnx/.safetensors (or --model);
without one the bundled default model runs. Every output path is decided and checked before
any work starts, so a bad argument costs nothing and never leaves half the outputs behind.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from tqdm import tqdm

from . import video
from .backends import BACKENDS, PICKLED_SUFFIXES, SUFFIXES, BackendError
from .cli_options import (
    BdinnCommand,
    allow_embedded_plugin_option,
    max_change_option,
    one_line,
    one_line_warnings,
    os_error_message,
    plugin_library_option,
    stops_cleanly,
    tile_option,
)
from .console import tell
from .debander import DEFAULT_OVERLAP, Debander
from .files import OutputError, check_writable, resolved
from .imageio import (
    IMAGE_SUFFIXES,
    MAX_FILE_BYTES,
    ImageError,
    check_side_for,
    read_icc_profile,
    read_image,
    refuse_device,
    sides,
    stored_layout,
    stored_size,
    write_image,
)
from .picture_metadata import read_metadata
from .png_chunks import read_png_colour
from .video import CONTAINERS, VIDEO_SUFFIXES, is_video
from .video_encoder import PARAM_LISTS, crf_help, preset_help
from .video_formats import holds_video, without_video

MEDIA_SUFFIXES = {*IMAGE_SUFFIXES, *VIDEO_SUFFIXES}
LOSSY_IMAGE_SUFFIXES = {".jpg", ".jpeg"}
OUR_OUTPUT_MARK = ".debanded"  # NAME.debanded.png: skipped when a folder is expanded again
STDIO = Path(video.STDIO)  # input: a video stream on standard input; -o: Y4M on standard output


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path

    @property
    def is_video(self) -> bool:
        if self.source == STDIO or _is_video(self.source):
            return True
        return _unnamed_stream(self.source) and (self.target == STDIO or is_video(self.target))


def _is_video(source: Path) -> bool:
    """By the suffix; a file named as neither picture nor video by what FFmpeg finds in it."""
    return is_video(source) or (source.suffix.lower() not in IMAGE_SUFFIXES and holds_video(source))


def _unnamed_stream(source: Path) -> bool:
    """A pipe or device named as neither picture nor video (<(...), a FIFO, /dev/fd/N): looking
    inside would use up its start, so the output's name (.mkv, -) says a video comes through it."""
    return source.suffix.lower() not in MEDIA_SUFFIXES and source.exists() and not source.is_file()


def folder_members(folder: Path) -> list[Path]:
    """A folder's pictures and videos, sorted, without our own NAME.debanded outputs and hidden
    files (as the shell's * leaves them: macOS's ._NAME.jpg beside each picture is none)."""
    media = [p for p in folder.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file()]
    members = sorted(p for p in media if not p.stem.endswith(OUR_OUTPUT_MARK) and not p.name.startswith("."))
    if not members:
        hidden = " (hidden files are skipped)" if any(p.name.startswith(".") for p in media) else ""
        raise click.ClickException(f"{folder}: folder holds no pictures or videos{hidden}")
    return members


def expand_inputs(patterns: tuple[str, ...]) -> list[Path]:
    """Files, folders (their pictures and videos, sorted, without our own NAME.debanded outputs)
    and globs, in the order given; a file named twice (by any spelling) is done once."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if not pattern:
            raise click.ClickException("an input path is empty (check the command's quoting)")
        if pattern == "-":
            if len(patterns) > 1:
                raise click.ClickException("-: standard input must be the only input")
            return [STDIO]
        if path.is_dir():
            found.extend(folder_members(path))
        elif any(ch in pattern for ch in "*?[") and not path.exists():
            # no FIFO or device, as in a folder (a FIFO waited forever); a broken link fails alone
            matches = sorted(m for m in map(Path, glob.glob(pattern, recursive=True)) if not _special(m))
            if not matches:
                raise click.ClickException(f"{pattern}: no file matches this pattern")
            if OUR_OUTPUT_MARK not in pattern:  # as for folders: a second run must not take them in
                matches = [m for m in matches if not m.stem.endswith(OUR_OUTPUT_MARK)]
                if not matches:
                    raise click.ClickException(
                        f"{pattern}: matches only bdinn-run's own NAME.debanded outputs"
                    )
            for match in matches:  # a folder (shoot/* matching shoot/day1) is taken as from the shell
                found.extend(folder_members(match) if match.is_dir() else [match])
        else:
            if not path.exists() and "://" in pattern:  # Path() would fold it into a path: http:/host
                raise click.ClickException(
                    f"{pattern}: bdinn-run reads files, not URLs; download it, or pipe it in: "
                    f"ffmpeg -i {pattern} -c copy -f matroska - | bdinn-run - -o OUT.mkv"
                )
            if not path.exists():
                raise click.ClickException(f"{path}: no such file (check the path)")
            found.append(path)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(resolved(path), path)  # the first spelling, in the first place
    return list(unique.values())


def _special(path: Path) -> bool:
    """A FIFO, device or socket: there, but neither a file nor a folder."""
    return path.exists() and not path.is_file() and not path.is_dir()


def plan_jobs(sources: list[Path], output: str | None, force: bool, depth: int | None = None) -> list[Job]:
    """Where each input goes; refuses to touch an input or (without --force) an existing file,
    and checks every output's format and folder, so that nothing fails after the work.

    One input and an -o with a suffix (and no trailing slash): that file. Otherwise -o is a
    folder (made if needed), pictures become NAME.png there (lossless: JPEG would band again)
    and videos NAME.mkv. Without -o, outputs go beside the inputs as NAME.debanded.png / .mkv.
    """
    place = Path(output) if output is not None else None
    if STDIO in sources or place == STDIO:
        return [plan_stream(sources, place)]
    single_file = (
        place is not None and len(sources) == 1 and place.suffix
        and not output.endswith(("/", os.sep)) and not place.is_dir()
    )  # fmt: skip
    jobs = []
    for source in sources:
        suffix = ".mkv" if _is_video(source) else ".png"
        if single_file:
            target = place
        elif place is None:
            target = source.with_name(f"{source.stem}{OUR_OUTPUT_MARK}{suffix}")
        else:
            if place.exists() and not place.is_dir():
                if len(sources) == 1:  # no suffix: /dev/null, a named pipe, a file named without one
                    raise click.ClickException(
                        f"{place}: -o needs a file name with a suffix that says its format (.mkv, .png); "
                        f"to stream a video into a pipe or device, use -o - > {place}"
                    )
                raise click.ClickException(f"{place}: is a file; with several inputs -o must be a folder")
            if len(sources) > 1 and place.suffix.lower() in MEDIA_SUFFIXES:
                raise click.ClickException(f"{place}: names a file, but {len(sources)} inputs need a folder")
            target = place / f"{source.stem}{suffix}"
        jobs.append(Job(source, target))
    inputs = {resolved(s) for s in sources}
    seen: dict[Path, Path] = {}  # output -> the input written there
    for job in jobs:
        written = resolved(job.target)
        if written in inputs:
            raise click.ClickException(f"{job.target}: is an input; bdinn-run never overwrites its inputs")
        if written in seen:
            raise click.ClickException(
                f"{job.target}: {seen[written]} and {job.source} would both be written here (rename one)"
            )
        seen[written] = job.source
        if job.target.exists() and not job.target.is_file() and not job.target.is_dir():
            raise click.ClickException(  # check_writable refuses it too, without the way to do it
                f"{job.target}: is a named pipe or device, not a file; to stream a video into it, "
                f"use -o - > {job.target}"
            )
        try:  # not a folder, not there already (a dangling link too) unless forced; its folder writable
            check_writable(job.target, replace=force)
        except OutputError as exc:
            raise click.ClickException(str(exc)) from None
        check_format(job, depth)
    return jobs


def plan_stream(sources: list[Path], place: Path | None) -> Job:
    """A job with standard input or output: one video, Y4M when it goes to standard output."""
    if place is None:
        raise click.ClickException("-: standard input needs -o (a video file, or - for Y4M on stdout)")
    if len(sources) > 1:
        raise click.ClickException(f"-o -: standard output takes one video, not {len(sources)} inputs")
    job = Job(sources[0], place)
    if job.source == STDIO and (sys.stdin is None or sys.stdin.isatty()):
        state = "closed" if sys.stdin is None else "a terminal"
        raise click.ClickException(
            f"-: standard input is {state}; pipe a video into it (ffmpeg ... | bdinn-run -)"
        )
    if place == STDIO and (sys.stdout is None or sys.stdout.isatty()):
        state = "closed" if sys.stdout is None else "a terminal"
        raise click.ClickException(
            f"-o -: standard output is {state}; pipe it into a program (| ffmpeg -i - ...)"
        )
    if not job.is_video:
        _refuse_media_without_video(job.source)
        raise click.ClickException(f"-o -: writes a Y4M video stream; give {job.source} an output file")
    if place != STDIO:
        if place.is_dir() or not place.suffix:
            raise click.ClickException(f"{place}: name an output file for the video on standard input")
        check_format(job)
        try:
            check_writable(place)
        except OutputError as exc:
            raise click.ClickException(str(exc)) from None
    return job


def _refuse_media_without_video(source: Path) -> None:
    """A sound or subtitle file given for a video (audio.m4a -o x.mkv) is named as such."""
    if source.suffix.lower() not in IMAGE_SUFFIXES and without_video(source):
        raise click.ClickException(
            f"{source}: no video stream (only sound, subtitles or cover art); pass a file with video"
        )


def check_format(job: Job, depth: int | None = None) -> None:
    """The output suffix must be one we write, of the input's kind (picture or video), and able to
    hold the picture's depth (`depth`: --bit-depth, else the input's) and alpha."""
    suffix = job.target.suffix.lower()
    kind, known = ("video", CONTAINERS) if job.is_video else ("picture", IMAGE_SUFFIXES)
    if suffix not in known:
        if suffix in CONTAINERS:  # a video asked of what is no picture either
            _refuse_media_without_video(job.source)
        usual = ".mkv" if job.is_video else ".png"
        raise click.ClickException(
            f"{job.target}: cannot write a {kind} as {suffix or 'no suffix'!r} (use {usual})"
        )
    # not from a pipe's header: that would use it up (run_picture reads it once)
    unasked = job.is_video or suffix in (".png", ".tif", ".tiff") or not job.source.is_file()
    layout = None if unasked else stored_layout(job.source)
    if layout is not None and layout[0] > 16:  # a float or 32-bit TIFF: no --bit-depth reads it
        raise click.ClickException(
            f"{job.source}: {layout[0]}-bit samples are not supported (save it as 8- or 16-bit)"
        )
    written = depth if depth in (8, 16) else layout[0] if layout is not None else 8  # 10, 12: refused later
    if layout is not None and written > 8:
        raise click.ClickException(
            f"{job.target}: a 16-bit picture is written as .png or .tif only; pass --bit-depth 8 or "
            "write .png"
        )
    if layout is not None and layout[1] and suffix in LOSSY_IMAGE_SUFFIXES:
        raise click.ClickException(f"{job.target}: JPEG holds no alpha, and {job.source} has it; write .png")
    if (size := _picture_size(job)) is not None:
        try:
            check_side_for(job.target, *size)
        except ImageError as exc:
            raise click.ClickException(str(exc)) from None
    if suffix in LOSSY_IMAGE_SUFFIXES:
        tell(one_line(f"Warning: {job.target}: JPEG's lossy compression brings some banding back; "
                      ".png keeps the result exact"))  # fmt: skip


def draws_bars(quiet: bool) -> bool:
    """Progress bars on a terminal only: in a log (CI, a pipeline) each redraw is a line of its
    own, and error lines ran into the bar's text."""
    return not quiet and sys.stderr.isatty()


def split_model_argument(model: str | None, paths: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """`bdinn-run model.plan a.png` and `bdinn-run a.png` both work: sniff the first argument. A
    model anywhere else is refused: `bdinn-run a.png model.onnx` debanded a.png with the bundled
    model, then failed on model.onnx as a picture."""
    models = SUFFIXES.keys() | PICKLED_SUFFIXES
    if model is None and paths and Path(paths[0]).suffix.lower() in models:
        model, paths = paths[0], paths[1:]
    if misplaced := [path for path in paths if Path(path).suffix.lower() in models]:
        raise click.UsageError(
            f"{misplaced[0]}: a model among the inputs; give it first (bdinn-run MODEL INPUT...) or with -m"
        )
    if sidecars := [path for path in paths if Path(path).suffix.lower() == ".json"]:  # best.json for best
        raise click.UsageError(
            f"{sidecars[0]}: a JSON file, not a picture, video or model; give the model it describes "
            "(NAME.safetensors, NAME.plan) first"
        )
    return model, paths


def parse_codec_options(ctx: click.Context, param: click.Parameter, pairs: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE pairs -> a dict, in order. A later KEY replaces an earlier one, as in FFmpeg,
    except that repeated x264/x265/svtav1-params add up (key=value:key=value lists)."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE (e.g. tune=grain)", ctx, param)
        options[key] = f"{options[key]}:{value}" if key in PARAM_LISTS and key in options else value
    return options


@click.command("bdinn-run", cls=BdinnCommand)
@click.argument("paths", nargs=-1, required=True)
@click.option("-m", "--model", default=None, help="Model file [default: the first argument if it is "
              "a .plan/.engine/.onnx/.safetensors, else the bundled default model].")  # fmt: skip
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Output file (one input) or folder, or - for a video as Y4M on standard output "
                   "[default: NAME.debanded.png, or .mkv for a video, alongside].")  # fmt: skip
@click.option("--bit-depth", type=click.Choice(["8", "10", "12", "16"]), default=None,
              help="Pictures: 8 or 16 [default: the input's]. Videos: 8, 10 or 12 (x265, FFV1) "
                   "[default: 10].")  # fmt: skip
@click.option("--dither", is_flag=True,
              help="TPDF dither when rounding to 8 bits (no new bands), seeded.")  # fmt: skip
@max_change_option
@tile_option
@click.option("--overlap", type=click.IntRange(0), default=None,
              help=f"Tile overlap in pixels [default: {DEFAULT_OVERLAP}, at most half a tile or of an "
                   "engine's largest frame].")  # fmt: skip
@click.option("--backend", type=click.Choice(BACKENDS), default=None, help="[default: from the model file]")
@click.option("--device", default=None, help="cpu, cuda or cuda:N [default: a GPU when there is one].")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None,
              help="Checkpoints only; exported models keep their precision.")  # fmt: skip
@plugin_library_option
@allow_embedded_plugin_option
@click.option("--codec", default=None, help="Video encoder [default: from the output container].")
@click.option("--crf", type=click.IntRange(0, 63), default=None,
              help=f"Video quality, lower is better: {crf_help()}.")  # fmt: skip
@click.option("--preset", default=None,
              help=f"Video encoder speed: {preset_help()} [default: the codec's].")  # fmt: skip
@click.option("--codec-option", "codec_options", metavar="KEY=VALUE", multiple=True,
              callback=parse_codec_options,
              help="More FFmpeg options for the video encoder (tune=grain, g=48, x265-params=...); "
                   "repeatable.")  # fmt: skip
@click.option("--chroma", type=click.Choice(["source", *video.CHROMA]), default="source",
              show_default=False,
              help="Video chroma resolution: 420, 422 or 444 [default: the source's, where the "
                   "encoder writes it].")  # fmt: skip
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs (never inputs).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars, and no 'INPUT -> OUTPUT' line.")
@stops_cleanly
@one_line_warnings()
def main(
    paths: tuple[str, ...],
    model: str | None,
    output: str | None,
    bit_depth: str | None,
    dither: bool,
    max_change: float | None,
    tile: int | None,
    overlap: int | None,
    backend: str | None,
    device: str | None,
    precision: str | None,
    plugin_library: Path | None,
    allow_embedded_plugin: bool,
    codec: str | None,
    crf: int | None,
    preset: str | None,
    codec_options: dict[str, str],
    chroma: str,
    force: bool,
    quiet: bool,
) -> None:
    """Deband pictures and videos: bdinn-run [MODEL] INPUT... [-o OUT].

    INPUT - reads a video stream (Y4M, MKV, MPEG-TS) from standard input.
    """
    if output == "":
        raise click.BadParameter("an empty path (an unset variable?); name a file or folder", param_hint="-o")
    model, patterns = split_model_argument(model, paths)
    if not patterns:
        raise click.UsageError("no input given: bdinn-run [MODEL] INPUT... [-o OUT]")
    if tile is not None and overlap is not None and overlap * 2 > tile:  # as a usage error, naming the option
        raise click.BadParameter(f"{overlap} is more than half of --tile {tile}", param_hint="--overlap")
    depth = int(bit_depth) if bit_depth else None
    jobs = plan_jobs(expand_inputs(patterns), output, force, depth)
    if depth in (10, 12) and not all(job.is_video for job in jobs):
        raise click.BadParameter("pictures are written with 8 or 16 bits", param_hint="--bit-depth")
    if depth == 16 and any(job.is_video for job in jobs):
        raise click.BadParameter("videos are written with 8, 10 or 12 bits", param_hint="--bit-depth")
    encoder = {
        "codec": codec, "crf": crf, "preset": preset, "codec_options": codec_options,
        "chroma": None if chroma == "source" else chroma,
    }  # fmt: skip
    for job in jobs:  # encoder settings are checked before the model loads
        if job.is_video:
            try:
                video.check_encoder(job.target, bit_depth=depth or 10, **encoder)
            except video.VideoError as exc:
                raise click.ClickException(str(exc)) from None
    try:
        deband = Debander.open(
            model, backend=backend, device=device, precision=precision, tile=tile,
            overlap=overlap, plugin_library=plugin_library, allow_embedded_plugin=allow_embedded_plugin,
            max_change=max_change,
        )  # fmt: skip
    except (BackendError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    failures = 0
    bar = tqdm(jobs, unit="file", disable=not draws_bars(quiet) or len(jobs) < 2)
    with deband:  # its backend's threads and GPU memory go with it, also when bdinn-run runs in-process
        for job in bar:
            try:
                if job.is_video:
                    run_video(deband, job, depth, dither, encoder, force, quiet)
                else:
                    run_picture(deband, job, depth, dither, force, quiet)
            except (ImageError, BackendError, ValueError, MemoryError, OSError) as exc:
                if isinstance(exc, MemoryError):  # the next may well fit
                    said = f"{job.source}: not enough memory for it ({_less_memory(deband, job)})"
                elif isinstance(exc, OSError):  # an input removed since the run began, a link to nothing
                    if (said := os_error_message(exc)) is None:
                        raise
                else:
                    said = str(exc)
                if len(jobs) == 1:
                    raise click.ClickException(said) from None
                if not said.startswith(f"{job.source}:"):  # the model's error: say which input met it
                    said = f"{job.source}: {said}"
                failures += 1
                tell(one_line(f"bdinn-run: error: {said}"))
    if failures:
        raise click.ClickException(f"{failures} of {len(jobs)} inputs failed (see above)")
    if not quiet and len(jobs) == 1 and not jobs[0].is_video:  # videos report their own line
        tell(one_line(f"{jobs[0].source} -> {jobs[0].target}"))


def _picture_size(job: Job) -> tuple[int, int] | None:
    """A picture's (height, width) from its header: turned as the output will be where the header
    says so, a TIFF's as stored (its longer side is the same); None for a video or a pipe."""
    return None if job.is_video or not job.source.is_file() else stored_size(job.source) or sides(job.source)


def _less_memory(deband: Debander, job: Job) -> str:
    """What to try when `job` ran out of memory: half the tile it ran in (the whole picture where
    it ran whole; --tile's, or 2048, for a video), at most 1024 and at least --tile's least, 32."""
    size = _picture_size(job)
    ran = (deband.tile_for(size) or size) if size is not None else (deband.tile or 2048,)
    smaller = min(1024, max(ran) // 2 // 8 * 8)  # tiles are multiples of 8
    if smaller < 32:
        return "even --tile 32 needs more than this machine has free"
    return f"try --tile {smaller}"


def run_picture(
    deband: Debander, job: Job, depth: int | None, dither: bool, force: bool, quiet: bool
) -> None:
    """Read, deband and write one picture; an error names the file it is about. A picture that
    runs in tiles (large ones on the CPU: an 8K one takes a minute) shows a bar of its tiles."""
    with read_once(job.source) as path:
        try:
            image = read_image(path, as_file=True)
        except ImageError as exc:  # named as the user named it, not as the copy of a pipe's bytes
            raise ImageError(str(exc).replace(str(path), str(job.source))) from None
        icc_profile, png_colour, metadata = read_icc_profile(path), read_png_colour(path), read_metadata(path)
    tiled = deband.tile_for(image.shape[:2]) is not None
    bar = {"unit": "tile", "leave": False, "mininterval": 0}  # tiles take seconds: show each
    with tqdm(desc=job.source.name, disable=not draws_bars(quiet) or not tiled, **bar) as tiles:

        def progress(done: int, total: int) -> None:
            tiles.total = total
            tiles.update(done - tiles.n)

        # Seeded by name: the same picture gets the same dither every run, and the frames of a
        # picture sequence each their own (one seed for all laid one fixed pattern over them).
        seed = zlib.crc32(os.fsencode(job.source.name)) if dither else None
        try:
            result = deband(image, bit_depth=depth, dither=dither, seed=seed, progress=progress)
        except ValueError as exc:  # e.g. too small: the message names the problem, not the file
            raise ValueError(f"{job.source}: {exc}") from None
    write_image(
        job.target, result, icc_profile=icc_profile, png_colour=png_colour, metadata=metadata,
        replace=force,  # another job's output of that name is kept
    )  # fmt: skip


@contextlib.contextmanager
def read_once(source: Path) -> Iterator[Path]:
    """`source`, or where it is a pipe (<(...), a FIFO) a temporary copy of what came through it:
    a picture is read four times (pixels, ICC profile, PNG colour chunks, EXIF), a pipe gives its
    bytes once, and opening a FIFO again waits for a writer forever."""
    if source.is_file():
        yield source
        return
    refuse_device(source)  # copied whole, it filled the disk by 4 GB first
    try:
        holder = tempfile.TemporaryDirectory(prefix="bdinn-run-")
    except OSError as exc:  # a read-only container's: a traceback
        raise ImageError(
            f"{source}: a picture from a pipe is copied to a temporary folder first, and none is "
            f"writable ({exc.strerror or exc}); set TMPDIR to a writable folder"
        ) from None
    with holder as folder:
        copy = Path(folder) / source.name
        with open(source, "rb") as pipe, open(copy, "wb") as file:
            while piece := pipe.read(1 << 20):
                file.write(piece)
                if file.tell() > MAX_FILE_BYTES:  # not a picture: stop before the disk fills
                    raise ImageError(
                        f"{source}: over {MAX_FILE_BYTES >> 30} GB, more than a picture bdinn reads"
                    )
        yield copy


def run_video(
    deband: Debander, job: Job, depth: int | None, dither: bool, encoder: dict[str, Any], force: bool,
    quiet: bool,
) -> None:  # fmt: skip
    """Deband a video: PyAV decodes and encodes on their own threads around the model."""
    frames = itertools.count()  # frames come in presentation order: frame N's dither is seeded N
    dithered, precision = dither and depth == 8, 16 if (depth or 10) > 8 else 8

    def process(frame: np.ndarray) -> np.ndarray:
        index = next(frames)
        try:
            return deband(frame, bit_depth=precision, dither=dithered, seed=index if dithered else None)
        except ValueError as exc:  # a frame too small, mid-stream: the message names the problem only
            raise ValueError(f"{job.source}: {exc}") from None

    report = video.deband_video(
        job.source,
        job.target,
        process,
        bit_depth=depth or 10,
        force=force,
        progress=draws_bars(quiet),
        **encoder,
    )
    if not quiet:
        total = f"{report.frames} frame{'' if report.frames == 1 else 's'}"
        notes = [f"interlaced ({report.fields}), field by field"] if report.fields else []
        notes += ["closed captions kept"] if report.captions else []
        if count := report.audio_transcoded:  # lossy: PCM, FLAC or AC-3 the container cannot hold
            notes.append(f"{count} audio stream{'' if count == 1 else 's'} re-encoded")
        said = "".join(f", {note}" for note in notes)
        tell(one_line(f"{report.src} -> {report.dst}: {total} at {report.fps:.2f} fps{said}"))


if __name__ == "__main__":
    main()
