"""Videos the video tests make and read back: gradients that move, sound, HDR10, alpha, captures."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bdinn.runtime.display_matrix import DisplayMatrix

W, H, N, FPS, RATE = 64, 48, 8, 24, 48000


def gradient(i: int) -> np.ndarray:
    """A horizontal ramp that moves 4 levels a frame, over a vertical one, on a flat blue."""
    x, y = np.arange(W)[None, :], np.arange(H)[:, None]
    red = (x * 3 + i * 4) % 256 + 0 * y
    green = 60 + y * 2 + 0 * x
    return np.stack([red, green, np.full_like(red, 128)], axis=-1).astype(np.uint8)


def make_video(
    path: Path,
    *,
    video: bool = True,
    audio: bool = True,
    rotation: int = 0,
    hflip: bool = False,
    codec: str = "libx264",
    audio_codec: str = "aac",
    channels: int = 1,
    sar: Fraction | None = None,
) -> Path:
    """N frames of a moving gradient at FPS (BT.709, limited range) plus a 440 Hz sine."""
    with av.open(str(path), "w") as out:
        if video:
            vs = out.add_stream(codec, rate=FPS)
            vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
            ctx = vs.codec_context
            ctx.colorspace = ctx.color_range = ctx.color_primaries = ctx.color_trc = 1
            if rotation or hflip:
                vs.set_display_rotation(rotation, hflip=hflip)
            if sar:
                ctx.sample_aspect_ratio = sar
        if audio:
            aus = out.add_stream(audio_codec, rate=RATE)
            aus.codec_context.layout = "stereo" if channels == 2 else "mono"
        start = 0
        for i in range(N):
            if video:
                frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
                frame = frame.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
                frame.pts = i
                out.mux(vs.encode(frame))
            if audio:
                count = RATE // FPS
                t = np.arange(start, start + count) / RATE
                wave = np.repeat((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], channels, 0)
                sound = av.AudioFrame.from_ndarray(wave, format="fltp", layout=aus.codec_context.layout.name)
                sound.sample_rate, sound.pts = RATE, start
                out.mux(aus.encode(sound))
                start += count
        if video:
            out.mux(vs.encode(None))
        if audio:
            out.mux(aus.encode(None))
    return path


def mux_gradient(out: av.container.OutputContainer, stream: av.VideoStream, frames: int = N) -> None:
    """`frames` of the moving gradient into a video `stream`, one per tick, then its last packets."""
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(gradient(i), format="rgb24")
        frame.pts = i
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def mux_silence(
    out: av.container.OutputContainer, stream: av.AudioStream, seconds: float, start: int = 0
) -> None:
    """`seconds` of silence into an audio `stream` (its own format and layout), from sample `start`;
    the encoder re-frames it to its own frame size."""
    ctx = stream.codec_context
    for k in range(0, round(seconds * ctx.sample_rate), 1024):
        sound = av.AudioFrame(format=ctx.format.name, layout=ctx.layout.name, samples=1024)
        for plane in sound.planes:
            plane.update(bytes(plane.buffer_size))
        sound.sample_rate, sound.time_base, sound.pts = (
            ctx.sample_rate,
            Fraction(1, ctx.sample_rate),
            start + k,
        )
        out.mux(stream.encode(sound))
    out.mux(stream.encode(None))


def sounded_clip(path: Path, sound_from: float = 0.0, **muxer_options: str) -> Path:
    """x264 frames of the gradient from 0 and mono AAC silence from `sound_from` seconds to the
    frames' end; `muxer_options` for the container (movflags)."""
    with av.open(str(path), "w", options=muxer_options) as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = out.add_stream("aac", rate=RATE)
        audio.codec_context.layout = "mono"
        mux_gradient(out, video)
        mux_silence(out, audio, N / FPS - sound_from, start=round(sound_from * RATE))
    return path


def plane_samples(frame: av.VideoFrame) -> list[bytes]:
    """Each plane's rows without their padding: PyAV 18.1.1 pads a converted frame's rows where a
    frame it allocates has none, so whole buffers of equal pictures differ."""
    unpadded = av.VideoFrame(frame.width, frame.height, frame.format.name)
    rows = []
    for plane, bare in zip(frame.planes, unpadded.planes, strict=True):
        data = np.frombuffer(plane, np.uint8)[: plane.line_size * plane.height].reshape(plane.height, -1)
        rows.append(data[:, : min(bare.line_size, plane.line_size)].tobytes())
    return rows


def planes(path: Path) -> list[list[np.ndarray]]:
    """Every frame's Y, U, V planes as int arrays."""
    frames = []
    with av.open(str(path)) as src:
        for frame in src.decode(video=0):
            dtype = np.uint16 if frame.format.components[0].bits > 8 else np.uint8
            planes = []
            for plane in frame.planes:
                row = plane.line_size // np.dtype(dtype).itemsize
                data = np.frombuffer(plane, dtype)[: row * plane.height].reshape(plane.height, row)
                planes.append(data[:, : plane.width].astype(int))
            frames.append(planes)
    return frames


def probe(path: Path) -> dict:
    with av.open(str(path)) as src:
        vs = src.streams.video[0]
        frames = list(src.decode(vs))
        info = {
            "codec": vs.codec_context.codec.canonical_name,
            "codec_tag": vs.codec_tag,
            "pix_fmt": frames[0].format.name,
            "size": (frames[0].width, frames[0].height),
            "times": [float(f.time) for f in frames],
            "rate": vs.average_rate,
            "rgb": [f.to_ndarray(format="rgb24") for f in frames],
            "colour": (
                frames[0].colorspace,
                frames[0].color_range,
                frames[0].color_primaries,
                frames[0].color_trc,
            ),
            "rotation": frames[0].rotation,
            "display": DisplayMatrix.of(frames[0]),
            "audio": [],
        }
    with av.open(str(path)) as src:
        for stream in src.streams.audio:
            ctx = stream.codec_context
            samples = sum(f.samples for f in src.decode(stream))
            info["audio"].append((ctx.codec.canonical_name, samples / ctx.sample_rate))
    return info


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# A P3-D65 mastering display of 1000 cd/m^2, MaxCLL 1000, MaxFALL 400, in x265's units.
MASTERING = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"


def make_hdr10(path: Path) -> Path:
    """A 10-bit PQ HEVC clip carrying HDR10 mastering-display and light-level SEI."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx265", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p10le"
        ctx = vs.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = 9, 16, 9, 1
        vs.options = {"x265-params": f"log-level=error:master-display={MASTERING}:max-cll=1000,400"}
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(gradient(i).astype(np.uint16) * 257, format="rgb48le")
            frame = frame.reformat(format="yuv420p10le", dst_colorspace=9, dst_color_range=1)
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def make_clip(
    path: Path, pix_fmt: str, codec: str = "ffv1", size: tuple[int, int] = (W, H), frames: int = 3, **options
) -> Path:
    """Frames of the moving gradient in `pix_fmt`, losslessly unless `codec` says otherwise."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=FPS)
        (vs.width, vs.height), vs.pix_fmt = size, pix_fmt
        vs.options = {k: str(v) for k, v in options.items()}
        for i in range(frames):
            rgb = np.resize(gradient(i), (*size[::-1], 3))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
                format=pix_fmt
            )
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def flat_ts(path: Path, size: tuple[int, int], start: int, frames: int = 4) -> bytes:
    """MPEG-TS of flat grey frames 30 levels apart, numbered from `start`."""
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(start, start + frames):
            grey = np.full((size[1], size[0], 3), 30 * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(grey, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path.read_bytes()


def x26x_settings(path: Path) -> dict[str, str]:
    """The settings x264 and x265 write into their stream's first SEI, as key=value pairs."""
    data = path.read_bytes()
    start = max(data.find(b"x264 - core"), data.find(b"x265 (build"))
    text = data[start : data.index(b"\0", start)].decode("ascii", "replace")
    return dict(part.split("=", 1) for part in text.split() if "=" in part)
