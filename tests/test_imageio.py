"""Image files: 16-bit survives, bad files give one-line errors, writes are atomic."""

import errno
import io
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps
from PIL.PngImagePlugin import PngInfo

from bdinn.runtime.files import (
    OutputError,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    restored_if_failed,
    user_cache,
    written_together,
)
from bdinn.runtime.imageio import (
    ImageError,
    Metadata,
    _keyed_gray_alpha,
    from_float,
    read_icc_profile,
    read_image,
    read_metadata,
    stored_layout,
    stored_size,
    to_float,
    write_image,
)
from bdinn.runtime.tiff_tags import EXTRA_SAMPLES, LENGTH, WIDTH, read_tags, with_straight_alpha

DATA = Path(__file__).parent / "data"


def test_48_and_64_bit_png_round_trips_are_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 65536, (37, 53, 3), dtype=np.uint16)
    write_image(tmp_path / "deep.png", rgb)
    back = read_image(tmp_path / "deep.png")
    assert back.dtype == np.uint16 and np.array_equal(back, rgb)
    rgba = rng.integers(0, 65536, (9, 11, 4), dtype=np.uint16)
    write_image(tmp_path / "deep-alpha.png", rgba)
    assert np.array_equal(read_image(tmp_path / "deep-alpha.png", keep_alpha=True), rgba)
    assert np.array_equal(read_image(tmp_path / "deep-alpha.png"), rgba[..., :3])


def test_channel_order_is_rgb():
    sky = read_image(DATA / "sky-gradient.png")
    assert sky.shape == (192, 320, 3) and sky.dtype == np.uint8
    top = sky[:20].reshape(-1, 3).mean(axis=0)
    assert top[2] > top[0] + 20  # an evening sky: blue well above red at the top
    assert np.array_equal(sky, cv2.imread(str(DATA / "sky-gradient.png"))[..., ::-1])


def test_gray_rgba_and_palette_are_converted(tmp_path):
    rng = np.random.default_rng(1)
    gray16 = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    write_image(tmp_path / "g16.png", gray16)
    back = read_image(tmp_path / "g16.png")
    assert back.shape == (20, 30, 3) and back.dtype == np.uint16
    assert all(np.array_equal(back[..., c], gray16) for c in range(3))
    assert np.array_equal(read_image(tmp_path / "g16.png", as_file=True), gray16)
    gray8 = rng.integers(0, 256, (20, 30, 1), dtype=np.uint8)
    write_image(tmp_path / "g8.png", gray8)
    assert np.array_equal(read_image(tmp_path / "g8.png", keep_alpha=True)[..., 3], np.full((20, 30), 255))

    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    write_image(tmp_path / "a.png", rgba)
    assert np.array_equal(read_image(tmp_path / "a.png"), rgba[..., :3])  # alpha dropped
    assert np.array_equal(read_image(tmp_path / "a.png", keep_alpha=True), rgba)
    assert np.array_equal(read_image(tmp_path / "a.png", as_file=True), rgba)
    opaque = rgba.copy()
    opaque[..., 3] = 255
    write_image(tmp_path / "opaque.png", opaque)  # RGBA whose alpha says nothing: still RGBA
    assert np.array_equal(read_image(tmp_path / "opaque.png", as_file=True), opaque)
    write_image(tmp_path / "rgb.png", rgba[..., :3])
    assert np.array_equal(read_image(tmp_path / "rgb.png", as_file=True), rgba[..., :3])
    colours = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) // 64 * 64  # at most 64 colours
    Image.fromarray(colours).quantize(64).save(tmp_path / "palette.png")
    assert np.array_equal(read_image(tmp_path / "palette.png"), colours)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, :8] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "turned.jpg", exif=exif.tobytes(), quality=100)
    shown = read_image(tmp_path / "turned.jpg")
    assert shown.shape == (16, 8, 3)
    assert shown[:6].mean() > 200 and shown[10:].mean() < 50  # the white half is now on top


def one_line(info: pytest.ExceptionInfo, path: Path) -> str:
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_truncated_png_is_a_one_line_error(tmp_path):
    data = (DATA / "soft-shapes.png").read_bytes()
    for name, cut in (("half.png", data[: len(data) // 2]), ("no-end.png", data[: data.rindex(b"IEND") - 4])):
        path = tmp_path / name
        path.write_bytes(cut)
        with pytest.raises(ImageError, match="truncated PNG") as info:
            read_image(path)
        one_line(info, path)
    # Bytes after the end chunk are tolerated, as by every viewer.
    (tmp_path / "tail.png").write_bytes(data + b"\0" * 100)
    assert read_image(tmp_path / "tail.png").shape == (192, 320, 3)


def test_a_png_damaged_inside_its_pixels_is_one_line_alone(tmp_path, capfd):
    """libpng printed "libpng error: IDAT: CRC error" to stderr before bdinn's own line."""
    data = bytearray((DATA / "soft-shapes.png").read_bytes())
    middle = len(data) * 2 // 3
    data[middle : middle + 40] = bytes(40)
    (tmp_path / "damaged.png").write_bytes(data)
    with pytest.raises(ImageError, match=r"damaged PNG, its IDAT chunk fails its checksum") as info:
        read_image(tmp_path / "damaged.png")
    one_line(info, tmp_path / "damaged.png")
    assert capfd.readouterr().err == ""
    good = (DATA / "soft-shapes.png").read_bytes()  # libpng only warns of a bad IEND checksum: read
    (tmp_path / "end.png").write_bytes(good[:-4] + b"\0\0\0\0")
    assert read_image(tmp_path / "end.png").shape == (192, 320, 3)


def test_truncated_and_corrupt_jpeg(tmp_path):
    ok, encoded = cv2.imencode(".jpg", read_image(DATA / "leaf-texture.png"))
    assert ok
    data = encoded.tobytes()
    for fraction in (0.5, 0.9, 0.99):
        path = tmp_path / f"cut{fraction}.jpg"
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(ImageError, match="truncated or corrupt JPEG data") as info:
            read_image(path)
        one_line(info, path)


def _leaf_jpeg(**options: int) -> bytes:
    params = [x for pair in ((getattr(cv2, name), value) for name, value in options.items()) for x in pair]
    ok, encoded = cv2.imencode(".jpg", cv2.imread(str(DATA / "leaf-texture.png")), params)
    assert ok
    return encoded.tobytes()


def _mid_scan_cut(data: bytes) -> bytes:
    """Cut inside a scan (a progressive JPEG cut between two scans is whole, only coarser), then
    the end marker: OpenCV decodes it, the rest of the picture gray."""
    return data[: len(data) * 3 // 5] + b"\xff\xd9"


def _stray_bytes_then_cut(data: bytes) -> bytes:
    """Bytes between two header segments (harmless: libjpeg skips them, with a warning that
    stopped the strict decode before it saw the cut further on), then a cut scan."""
    tables = data.index(b"\xff\xdb")
    return _mid_scan_cut(data[:tables] + b"\x00\x01\x02" + data[tables:])


def _restart_marker_renumbered(data: bytes) -> bytes:
    """RST0 to RST7 count off the intervals; one out of turn means a lost stretch of the scan."""
    at = data.index(b"\xff\xd3")
    return data[: at + 1] + b"\xd5" + data[at + 2 :]


@pytest.mark.parametrize(
    ("options", "damage", "reason"),
    [
        ({}, _mid_scan_cut, "premature end of data segment"),
        ({"IMWRITE_JPEG_PROGRESSIVE": 1}, _mid_scan_cut, "premature end of data segment"),
        ({"IMWRITE_JPEG_RST_INTERVAL": 1}, _restart_marker_renumbered, "found marker 0xd5 instead of RST3"),
        ({}, _stray_bytes_then_cut, "premature end of data segment"),
    ],
)
def test_a_jpeg_damaged_inside_its_scan_is_refused(tmp_path, capfd, options, damage, reason):
    """OpenCV and Pillow return such a picture, part of it flat gray, and libjpeg's warning went
    only to stderr: bdinn-run debanded it and exited 0."""
    data = _leaf_jpeg(**options)
    path = tmp_path / "damaged.jpg"
    path.write_bytes(damage(data))
    assert cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR) is not None
    capfd.readouterr()
    expected = re.escape(f"damaged.jpg: truncated or corrupt JPEG data ({reason}), part of the picture")
    with pytest.raises(ImageError, match=expected) as info:
        read_image(path)
    one_line(info, path)
    assert capfd.readouterr().err == ""  # OpenCV never got to print libjpeg's warning
    (tmp_path / "whole.jpg").write_bytes(data)
    assert read_image(tmp_path / "whole.jpg").shape == (192, 320, 3)


def _later_scan_table_cut(data: bytes) -> bytes:
    """A progressive JPEG cut inside the Huffman table of a later scan: a lenient decode returns
    the scans before it, a coarse picture far from the whole one."""
    table = data.index(b"\xff\xc4", data.index(b"\xff\xda"))
    return data[: table + 6]


def _marker_inside_the_scan(data: bytes) -> bytes:
    """Two bytes of the scan turned into a frame marker: libjpeg stops there with an error, and
    a lenient decode returns the rest of the picture flat gray."""
    middle = (data.index(b"\xff\xda") + len(data)) // 2
    return data[:middle] + b"\xff\xc1" + data[middle + 2 :]


@pytest.mark.parametrize(
    ("options", "damage", "reason"),
    [
        ({"IMWRITE_JPEG_PROGRESSIVE": 1}, _later_scan_table_cut, "Bogus Huffman table definition"),
        ({}, _marker_inside_the_scan, "Invalid JPEG file structure: two SOF markers"),
    ],
)
def test_a_jpeg_error_a_lenient_decode_gets_past_is_refused(tmp_path, options, damage, reason):
    """libjpeg's errors (not only its warnings) inside the data: the strict decode failed, the
    lenient one returned the damaged picture, and bdinn-run debanded it and exited 0."""
    path = tmp_path / "damaged.jpg"
    path.write_bytes(damage(_leaf_jpeg(**options)))
    with pytest.raises(ImageError, match=re.escape(f"truncated or corrupt JPEG data ({reason})")) as info:
        read_image(path)
    one_line(info, path)


def test_stray_bytes_between_jpeg_segments_leave_the_picture_as_it_was(tmp_path):
    """libjpeg warns of them too ("extraneous bytes before marker"), but every pixel is there:
    such files come from some cameras and editors, and are read as before."""
    data = _leaf_jpeg()
    tables = data.index(b"\xff\xdb")
    (tmp_path / "whole.jpg").write_bytes(data)
    (tmp_path / "stray.jpg").write_bytes(data[:tables] + b"\x00\x01\x02" + data[tables:])
    assert np.array_equal(read_image(tmp_path / "stray.jpg"), read_image(tmp_path / "whole.jpg"))
    (tmp_path / "padded.jpg").write_bytes(
        data[:-2] + b"\x00\x00\xff\xd9"
    )  # after the scan: every pixel there
    assert np.array_equal(read_image(tmp_path / "padded.jpg"), read_image(tmp_path / "whole.jpg"))


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
@pytest.mark.parametrize("orientation", [1, 6])
def test_jpeg_pixels_are_opencvs_bit_for_bit(tmp_path, mode, orientation):
    """TurboJPEG decodes YCbCr and gray JPEGs (it reports damage), OpenCV the rest (CMYK): the
    pictures are what OpenCV alone returned, turned as the EXIF tag says."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"{mode}.jpg"
    Image.open(DATA / "leaf-texture.png").convert(mode).save(path, exif=exif.tobytes(), quality=92)
    opencv = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert opencv.shape == ((192, 320, 3) if orientation == 1 else (320, 192, 3))
    assert np.array_equal(read_image(path), opencv[:, :, ::-1])


def test_opencv_before_4_13_is_quietened_by_its_older_log_call(tmp_path, monkeypatch):
    """OpenCV 4.8-4.12 (the only ones numpy 1 installs) have `cv2.setLogLevel` and no
    `cv2.utils.logging`: every picture failed with an AttributeError there."""
    levels = [3]
    monkeypatch.delattr(cv2.utils, "logging")
    monkeypatch.setattr(cv2, "getLogLevel", lambda: levels[-1], raising=False)
    monkeypatch.setattr(cv2, "setLogLevel", levels.append, raising=False)
    assert read_image(DATA / "soft-shapes.png").shape == (192, 320, 3)
    assert levels == [3, 0, 3]  # silent while OpenCV decodes, then as it was


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "empty file"),
        (b"this is not an image", "not an image file"),
        (
            b"\x89PNG\r\n\x1a\n" + b"\0\0\0\x0dIHDR" + b"\xff" * 17 + b"\0\0\0\0IEND\xaeB`\x82",
            "damaged PNG, its IHDR chunk fails its checksum",  # was "corrupt PNG", after libpng's line
        ),
    ],
)
def test_bad_inputs_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "photo.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        read_image(path)
    one_line(info, path)
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)


def test_float_conversions():
    assert to_float(np.array([0, 51, 255], np.uint8)).tolist() == pytest.approx([0.0, 0.2, 1.0])
    assert to_float(np.array([0, 65535], np.uint16)).tolist() == [0.0, 1.0]
    assert to_float(np.array([1], np.uint16)).dtype == np.float32
    assert from_float(np.array([-0.2, 0.5, 1.7, np.nan]), 8).tolist() == [0, 128, 255, 0]
    assert from_float(np.array([0.5, 1 / 65535 * 0.49]), 16).tolist() == [32768, 0]
    levels = np.arange(65536, dtype=np.uint16)
    assert np.array_equal(from_float(to_float(levels), 16), levels)  # every 16-bit level survives
    assert np.array_equal(from_float(to_float(levels).astype(np.float64), 16), levels)
    with pytest.raises(ValueError, match="8 or 16"):
        from_float(np.zeros(1), 10)
    with pytest.raises(TypeError):
        to_float(np.zeros(1, np.float32))


def test_writes_are_atomic_and_readable_by_others(tmp_path):
    with pytest.raises(ImageError, match="float32"):
        write_image(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageError, match=r"16-bit images can only be written as \.png or \.tif"):
        write_image(tmp_path / "f.jpg", np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(ImageError, match=r"suffix '\.xyz'"):
        write_image(tmp_path / "f.xyz", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []

    target = write_image(tmp_path / "keep.png", np.full((4, 4, 3), 7, np.uint8))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not tempfile's 0o600

    def crash(tmp: str) -> None:
        Path(tmp).write_bytes(b"half an image")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert np.array_equal(read_image(target), np.full((4, 4, 3), 7))  # the old file, intact
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]  # no temporary file left


def test_folders_made_for_an_output_go_when_it_fails_or_is_taken_back(tmp_path):
    """An export stopped while its engine built took back its ONNX file but left the folders made
    for it: a command that fails leaves no empty folders, as check_writable promises."""

    def crash(tmp: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "a" / "b" / "x.onnx", crash)
    assert list(tmp_path.iterdir()) == []
    written = atomic_write(tmp_path / "a" / "b" / "x.onnx", lambda tmp: Path(tmp).write_bytes(b"graph"))
    assert written.made == (tmp_path / "a" / "b", tmp_path / "a")
    (tmp_path / "a" / "other.txt").write_text("not ours")
    written.take_back()
    assert [p.name for p in tmp_path.rglob("*")] == ["a", "other.txt"]  # a folder in use stays


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_a_full_or_forbidden_output_is_an_output_error_naming_the_target(tmp_path, code):
    def fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"part")
        raise OSError(code, os.strerror(code))

    with pytest.raises(OutputError) as caught:
        atomic_write(tmp_path / "x.png", fail)
    assert str(caught.value).startswith(f"{tmp_path / 'x.png'}: cannot write there ({os.strerror(code)})")
    assert list(tmp_path.iterdir()) == []


def test_other_errors_while_writing_pass_through_unchanged(tmp_path):
    def fail(tmp: str) -> None:
        raise OSError(errno.EINVAL, "bad argument from an encoder")

    with pytest.raises(OSError, match="bad argument from an encoder") as caught:
        atomic_write(tmp_path / "x.png", fail)
    assert not isinstance(caught.value, OutputError) and list(tmp_path.iterdir()) == []

    missing = tmp_path / "cache" / "engine.plan"  # a file the writer reads, not the output
    with pytest.raises(FileNotFoundError) as caught:
        atomic_write(tmp_path / "x.plan", lambda tmp: shutil.copyfile(missing, tmp))
    assert not isinstance(caught.value, OutputError) and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("link_error", [None, errno.EPERM, errno.EINVAL, errno.EXDEV, errno.ENOSPC])
def test_without_replace_a_file_that_appears_meanwhile_is_kept(tmp_path, monkeypatch, link_error):
    """Two jobs writing one name (two bdinn-run or deband_video calls, neither with force): each
    checked before its work that the name was free, and the last rename silently replaced the first
    output. Where a hard link fails for another reason (FAT on Linux: EPERM, on Windows: EINVAL)
    come the check and the rename."""
    if link_error is not None:

        def no_links(*args: object) -> None:
            raise OSError(link_error, os.strerror(link_error))

        monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.png"

    def raced(tmp: str) -> None:
        target.write_bytes(b"another job's output")
        Path(tmp).write_bytes(b"this one")

    with pytest.raises(OutputError, match=r"out\.png: appeared while this was being written") as info:
        atomic_write(target, raced, replace=False)
    one_line(info, target)
    assert target.read_bytes() == b"another job's output"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary file left
    target.unlink()
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"new"), replace=False)
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["out.png"]
    atomic_write(target, raced, replace=True)  # replacing was asked for
    assert target.read_bytes() == b"this one" and [p.name for p in tmp_path.iterdir()] == ["out.png"]
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")  # a dangling link is a name taken too
    with pytest.raises(OutputError, match="is kept"):
        atomic_write(tmp_path / "gone.png", lambda tmp: Path(tmp).write_bytes(b"new"), replace=False)
    assert (tmp_path / "gone.png").is_symlink() and not (tmp_path / "nowhere.png").exists()
    (tmp_path / "gone.png").unlink()
    write_image(tmp_path / "img.png", np.zeros((4, 4, 3), np.uint8), replace=False)
    # it said the file "appeared while this was being written" and advised force=True, which
    # write_image has not
    with pytest.raises(
        OutputError, match=r"img\.png: already exists and is kept \(pass --force to overwrite it; in Python"
    ):
        write_image(tmp_path / "img.png", np.ones((4, 4, 3), np.uint8), replace=False)
    assert read_image(tmp_path / "img.png").max() == 0


def test_files_written_together_stand_or_fall_together(tmp_path):
    """bdinn-export --force lost the old plan where its new sidecar could not be written (a full
    disk) or a signal came between the two; bdinn-eval's table was replaced where its JSON failed."""
    plan, sidecar = tmp_path / "e.plan", tmp_path / "e.plan.json"
    plan.write_bytes(b"old plan")
    sidecar.write_text("old sidecar")

    def pair(second: Callable[[], None]) -> None:
        with written_together(plan, sidecar) as written:
            written.append(atomic_write_bytes(plan, b"new plan"))
            second()
            written.append(atomic_write_text(sidecar, "new sidecar"))

    def full() -> None:
        raise OutputError(f"{sidecar}: cannot be written (No space left on device)")

    with pytest.raises(OutputError):
        pair(full)
    assert (plan.read_bytes(), sidecar.read_text()) == (b"old plan", "old sidecar")
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C between the two: deferred, then all taken back
        pair(lambda: os.kill(os.getpid(), signal.SIGINT))
    assert (plan.read_bytes(), sidecar.read_text()) == (b"old plan", "old sidecar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.plan", "e.plan.json"]
    pair(lambda: None)
    assert (plan.read_bytes(), sidecar.read_text()) == (b"new plan", "new sidecar")
    for path in (plan, sidecar):
        path.unlink()
    with pytest.raises(OutputError):  # nothing there before: nothing left
        pair(full)
    assert list(tmp_path.iterdir()) == []
    # SIGTERM's default action (a library caller's process) killed it between the new plan and
    # putting the old pair back: the new plan stood beside the old sidecar, with hidden copies.
    plan.write_bytes(b"old plan")
    sidecar.write_text("old sidecar")
    code = (
        "import os, signal, sys; from pathlib import Path\n"
        "from bdinn.runtime.files import atomic_write_bytes, atomic_write_text, written_together\n"
        "plan, sidecar = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "with written_together(plan, sidecar) as written:\n"
        "    written.append(atomic_write_bytes(plan, b'new plan'))\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    raise OSError(28, 'No space left on device')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(plan), str(sidecar)], capture_output=True, timeout=60
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert (plan.read_bytes(), sidecar.read_text()) == (b"old plan", "old sidecar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.plan", "e.plan.json"]


def test_restored_if_failed_never_copies_through_a_link_planted_at_its_name(tmp_path, monkeypatch):
    """A failed hard link was answered with a copy that followed a link planted at the name
    meanwhile (in a shared folder): the old file was written over whatever it pointed to."""
    graph, elsewhere = tmp_path / "m.onnx", tmp_path / "someone-elses"
    graph.write_bytes(b"old")
    elsewhere.write_bytes(b"theirs")

    def planted(source: object, name: object) -> None:
        Path(name).symlink_to(elsewhere)
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))

    monkeypatch.setattr(os, "link", planted)
    with pytest.raises(OutputError), restored_if_failed(graph):
        pass
    assert elsewhere.read_bytes() == b"theirs" and graph.read_bytes() == b"old"
    for name in [p.name for p in tmp_path.iterdir() if p.is_symlink()]:
        (tmp_path / name).unlink()

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "link", _no_hard_links)
    monkeypatch.setattr(shutil, "copyfileobj", full)
    with pytest.raises(OutputError), restored_if_failed(graph):  # the copy cut short is not left behind
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "someone-elses"]


def _no_hard_links(*args: object) -> None:
    """os.link on a file system without hard links (FAT, sshfs, some NFS)."""
    raise OSError(errno.EPERM, os.strerror(errno.EPERM))


@pytest.mark.parametrize("links", [True, False])
def test_restored_if_failed_puts_the_old_file_back_and_leaves_no_copy(tmp_path, monkeypatch, links):
    """bdinn-export --force's ONNX file, replaced before its engine builds; where the file system
    has no hard links the old file waits as a copy."""
    if not links:
        monkeypatch.setattr(os, "link", _no_hard_links)
    graph = tmp_path / "m.onnx"
    graph.write_bytes(b"old")
    with pytest.raises(RuntimeError), restored_if_failed(graph) as ours:
        ours.append(atomic_write(graph, lambda tmp: Path(tmp).write_bytes(b"new")))
        raise RuntimeError("the build failed")
    assert graph.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    with pytest.raises(RuntimeError), restored_if_failed(graph):
        raise RuntimeError("failed before the new file was written")
    assert graph.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    with restored_if_failed(graph) as ours:
        ours.append(atomic_write(graph, lambda tmp: Path(tmp).write_bytes(b"new")))
    assert graph.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    (tmp_path / "kept.onnx").write_bytes(b"linked")
    (tmp_path / "link.onnx").symlink_to("kept.onnx")  # the write replaces the link, not its target
    with pytest.raises(RuntimeError), restored_if_failed(tmp_path / "link.onnx") as ours:
        ours.append(atomic_write(tmp_path / "link.onnx", lambda tmp: Path(tmp).write_bytes(b"new")))
        raise RuntimeError
    assert (
        os.readlink(tmp_path / "link.onnx") == "kept.onnx"
        and (tmp_path / "kept.onnx").read_bytes() == b"linked"
    )
    for name in ("link.onnx", "kept.onnx"):
        (tmp_path / name).unlink()
    with pytest.raises(RuntimeError), restored_if_failed(tmp_path / "new.onnx") as ours:  # nothing to keep
        ours.append(atomic_write(tmp_path / "new.onnx", lambda tmp: Path(tmp).write_bytes(b"half")))
        raise RuntimeError
    assert not (tmp_path / "new.onnx").exists()  # what the block wrote is taken back


@pytest.mark.parametrize("links", [True, False])
def test_restored_if_failed_keeps_another_jobs_file(tmp_path, monkeypatch, links):
    """Two forced exports to one name: the one that failed put the file from before both over the
    other's new output, which had said it was written."""
    if not links:
        monkeypatch.setattr(os, "link", _no_hard_links)
    graph = tmp_path / "m.onnx"
    graph.write_bytes(b"old")
    with pytest.raises(RuntimeError), restored_if_failed(graph) as ours:
        ours.append(atomic_write(graph, lambda tmp: Path(tmp).write_bytes(b"ours")))
        atomic_write(graph, lambda tmp: Path(tmp).write_bytes(b"theirs"))  # the other job, meanwhile
        raise RuntimeError("our build failed")
    assert graph.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    with pytest.raises(RuntimeError), restored_if_failed(graph) as ours:  # theirs before ours
        atomic_write(graph, lambda tmp: Path(tmp).write_bytes(b"newer"))
        raise RuntimeError("failed before ours was written")
    assert graph.read_bytes() == b"newer" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_write_image_takes_big_endian_samples_and_names_an_empty_image(tmp_path):
    """Big-endian uint16 (which Debander returns for such input) was refused as 'cannot write >u2
    samples'; an empty array as 'cannot write images with suffix .png (use .png)'."""
    wide = np.arange(16 * 16 * 3, dtype=">u2").reshape(16, 16, 3) * 85
    write_image(tmp_path / "big.png", wide)
    assert np.array_equal(read_image(tmp_path / "big.png"), wide)
    with pytest.raises(ImageError, match=r"empty\.png: the image is 0x5; there is nothing to write"):
        write_image(tmp_path / "empty.png", np.zeros((0, 5, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png"]


def test_tiff_alpha_colours_are_not_multiplied_by_alpha(tmp_path):
    """OpenCV returns 8-bit RGBA TIFF colours premultiplied; an alpha-0 row must keep its colour."""
    rgb = np.random.default_rng(2).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    alpha = np.tile(np.linspace(0, 255, 16).astype(np.uint8)[:, None], (1, 24))
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "a.tif")
    assert np.array_equal(read_image(tmp_path / "a.tif", as_file=True), np.dstack([rgb, alpha]))
    assert np.array_equal(read_image(tmp_path / "a.tif"), rgb)


def test_gray_tiff_with_premultiplied_alpha_is_divided_back(tmp_path):
    """Pillow reads it as "La", which it cannot convert to RGBA: "conversion from La to L not
    supported", a raw ValueError naming no file."""
    tifffile = pytest.importorskip("tifffile", reason="scikit-image's tifffile writes these TIFFs")
    gray, alpha = np.full((24, 32), 100, np.uint8), np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))
    premultiplied = (gray.astype(np.uint16) * alpha // 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "la.tif", np.dstack([premultiplied, alpha]), photometric="minisblack",
                     extrasamples=["assocalpha"])  # fmt: skip
    kept = read_image(tmp_path / "la.tif", as_file=True)
    assert kept.shape == (24, 32, 2) and np.array_equal(kept[..., 1], alpha)
    seen = alpha >= 64  # where dividing back leaves the gray within a level or two
    assert np.abs(kept[..., 0].astype(int) - 100)[seen].max() <= 2


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_applied_with_or_without_alpha(tmp_path, orientation):
    rgba = np.random.default_rng(3).integers(0, 256, (6, 10, 4), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    for pixels in (rgba[..., :3], rgba):
        Image.fromarray(pixels).save(tmp_path / "x.png", exif=exif.tobytes())
        upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "x.png")))  # as viewers show it
        Image.fromarray(pixels).save(tmp_path / "x.webp", exif=exif.tobytes(), lossless=True, exact=True)
        Image.fromarray(pixels).save(tmp_path / "x.tif", tiffinfo={0x0112: orientation})
        for suffix in ("png", "webp", "tif"):
            assert np.array_equal(read_image(tmp_path / f"x.{suffix}", as_file=True), upright), suffix


def test_a_png_whose_exif_follows_the_pixels_is_turned_and_keeps_it(tmp_path):
    """read_image() (OpenCV) turned such a PNG, as_file=True and bdinn-run did not (Pillow reads
    a late eXIf only after decoding), and bdinn-run dropped the EXIF block."""
    rgb = np.random.default_rng(5).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "early.png", exif=exif.tobytes())
    data = (tmp_path / "early.png").read_bytes()
    at = data.index(b"eXIf") - 4
    chunk = data[at : at + 12 + struct.unpack(">I", data[at : at + 4])[0]]
    rest = data.replace(chunk, b"")
    end = rest.index(b"IEND") - 4
    (tmp_path / "late.png").write_bytes(rest[:end] + chunk + rest[end:])
    upright = read_image(tmp_path / "early.png", as_file=True)
    assert upright.shape == (64, 40, 3)
    for as_file in (True, False):
        assert np.array_equal(read_image(tmp_path / "late.png", as_file=as_file), upright)
    assert stored_size(tmp_path / "late.png") == (64, 40)
    assert read_metadata(tmp_path / "late.png") == read_metadata(tmp_path / "early.png") != Metadata()


def test_gray_with_alpha_keeps_its_layout(tmp_path):
    la = np.random.default_rng(4).integers(0, 256, (12, 20, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert np.array_equal(read_image(tmp_path / "la.png", as_file=True), la)
    assert np.array_equal(read_image(tmp_path / "la.png", keep_alpha=True), la[..., [0, 0, 0, 1]])
    write_image(tmp_path / "out.png", la)  # no gray + alpha PNG from OpenCV: RGBA with equal channels
    assert np.array_equal(read_image(tmp_path / "out.png", as_file=True), la[..., [0, 0, 0, 1]])


def test_pictures_of_several_frames_are_refused(tmp_path):
    frames = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (0, 128)]
    for name, count in (("anim.png", "2"), ("anim.webp", "2"), ("pages.tif", "several")):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
        with pytest.raises(ImageError, match=f"holds {count} frames; bdinn debands single pictures") as info:
            read_image(tmp_path / name)
        one_line(info, tmp_path / name)


def _mpo(path: Path, second_type: int, **save: Any) -> None:
    """A JPEG with a second MPF image of `second_type` (0x010001: a camera's large preview,
    0x020002: a stereo pair's second view)."""
    y, x = np.mgrid[0:24, 0:32]
    picture = Image.fromarray(np.dstack([x * 7, y * 9, x + y]).astype(np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, "MPO", save_all=True, append_images=[picture.resize((16, 12))], **save)
    data = bytearray(buffer.getvalue())
    mpf = data.index(b"MPF\0") + 4  # Pillow writes it little-endian: a TIFF header, then one IFD
    ifd = mpf + struct.unpack_from("<I", data, mpf + 4)[0]
    for at in range(ifd + 2, ifd + 2 + 12 * struct.unpack_from("<H", data, ifd)[0], 12):
        if struct.unpack_from("<H", data, at)[0] == 0xB002:  # the MP entries, 16 bytes each
            struct.pack_into("<I", data, mpf + struct.unpack_from("<I", data, at + 8)[0] + 16, second_type)
    path.write_bytes(bytes(data))


def test_a_tiff_whose_further_pages_are_previews_is_one_picture(tmp_path):
    """A scanner's or camera's TIFF with a reduced-resolution preview page (NewSubfileType 1) was
    refused as "several frames"; a page of full resolution after one still is."""
    tifffile = pytest.importorskip("tifffile", reason="scikit-image's tifffile writes the pages")
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.dstack([x * 3, y * 4, (x + y) * 2]).astype(np.uint8)
    with tifffile.TiffWriter(tmp_path / "scan.tif") as tiff:
        tiff.write(rgb, photometric="rgb")
        for step in (2, 4):
            tiff.write(rgb[::step, ::step], photometric="rgb", subfiletype=1)
    assert np.array_equal(read_image(tmp_path / "scan.tif"), rgb)
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tiff:
        for page in (rgb[::2, ::2], rgb, rgb):
            tiff.write(page, photometric="rgb", subfiletype=1 if page.shape[0] == 24 else 0)
    with pytest.raises(ImageError, match="holds several frames; bdinn debands single pictures"):
        read_image(tmp_path / "pages.tif")
    with tifffile.TiffWriter(tmp_path / "many.tif") as tiff:  # the page limit: 32 previews pass
        tiff.write(rgb, photometric="rgb")
        for _ in range(32):
            tiff.write(rgb[::4, ::4], photometric="rgb", subfiletype=1)
    assert read_image(tmp_path / "many.tif").shape == rgb.shape
    data = bytearray((tmp_path / "scan.tif").read_bytes())
    with tifffile.TiffFile(tmp_path / "scan.tif") as tiff:  # a preview in JPEG XL, which Pillow lacks
        at = tiff.pages[2].tags[259].valueoffset
    data[at : at + 2] = struct.pack("<H", 50002)
    (tmp_path / "jxl.tif").write_bytes(data)
    assert read_image(tmp_path / "jxl.tif").shape == rgb.shape  # Pillow's KeyError traceback
    whole = (tmp_path / "scan.tif").read_bytes()
    with tifffile.TiffFile(tmp_path / "scan.tif") as tiff:  # a copy cut off inside its last page
        (tmp_path / "cut.tif").write_bytes(whole[: tiff.pages[2].offset + 6])
    cut = r"cut\.tif: truncated or damaged TIFF, a page's directory lies past the file's end"
    with pytest.raises(ImageError, match=cut):
        read_image(tmp_path / "cut.tif")  # was read as one picture, or several frames, by chance
    with tifffile.TiffWriter(tmp_path / "big-endian.tif", bigtiff=True, byteorder=">") as tiff:
        tiff.write(rgb, photometric="rgb")  # Pillow opens no big-endian BigTIFF: its first page was read
        tiff.write(rgb, photometric="rgb")
    with pytest.raises(ImageError, match="holds several frames"):
        read_image(tmp_path / "big-endian.tif")


def test_a_jpeg_with_a_preview_image_is_one_picture_and_a_stereo_pair_is_refused(tmp_path):
    """Pillow calls every JPEG with a second MPF image animated: a camera's JPEG with its large
    preview was refused as "2 frames"."""
    _mpo(tmp_path / "camera.jpg", 0x010001, dpi=(300, 300))
    assert read_image(tmp_path / "camera.jpg").shape == (24, 32, 3)
    assert read_metadata(tmp_path / "camera.jpg").dpi == (300, 300)
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # no resolution in EXIF or JFIF: Pillow's assumed 72 dpi was carried
    _mpo(tmp_path / "no-dpi.jpg", 0x010001, exif=exif.tobytes())
    assert read_metadata(tmp_path / "no-dpi.jpg").dpi is None
    _mpo(tmp_path / "stereo.mpo", 0x020002)
    with pytest.raises(
        ImageError, match=r"stereo\.mpo: holds 2 views \(a stereo, multi-angle or panorama MPO\)"
    ) as info:
        read_image(tmp_path / "stereo.mpo")
    one_line(info, tmp_path / "stereo.mpo")


@pytest.mark.parametrize("side", [40000, 13500])
def test_a_picture_too_large_to_decode_is_one_line(tmp_path, side):
    """A 119-byte PNG that claims side x side pixels: at 40000 OpenCV refused it, at 13500 (182
    megapixels, under OpenCV's limit) it allocated gigabytes; both are refused from the header."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )
    (tmp_path / "huge.png").write_bytes(data)
    with pytest.raises(ImageError, match="over 179 megapixels, more than bdinn decodes") as info:
        read_image(tmp_path / "huge.png")
    one_line(info, tmp_path / "huge.png")


@pytest.mark.parametrize("pillow_reads_it", [True, False])
def test_a_jpeg_header_claiming_a_huge_picture_is_refused(tmp_path, pillow_reads_it):
    """632 bytes whose frame header says 15000 x 15000: libjpeg decodes the rest as gray (with a
    warning nobody sees) into 675 MB, and the model then ran for minutes. Refused from Pillow's
    reading of the header, or, where a marker Pillow does not know (TEM) stops it, from
    TurboJPEG's, before any decoder allocates the frame."""
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "small.jpg")
    data = bytearray((tmp_path / "small.jpg").read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 15000, 15000)
    if not pillow_reads_it:
        data[2:2] = b"\xff\x01"
    (tmp_path / "claim.jpg").write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"claim\.jpg: over 179 megapixels") as info:
        read_image(tmp_path / "claim.jpg")
    one_line(info, tmp_path / "claim.jpg")


def test_a_device_is_not_read_as_a_picture(tmp_path):
    """/dev/zero read to its end never ends (6.9 GB, then MemoryError)."""
    with pytest.raises(ImageError, match="/dev/zero: is a device, not an image file"):
        read_image("/dev/zero")


def test_a_picture_is_read_from_a_pipe(tmp_path):
    """bdinn-run <(cat a.png) and `cat a.png | bdinn-run /dev/stdin`: a pipe is read to its end."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    data = (DATA / "sky-gradient.png").read_bytes()

    def feed() -> None:
        with fifo.open("wb") as writer:
            for start in range(0, len(data), 4096):  # in pieces, as a pipe delivers them
                writer.write(data[start : start + 4096])

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        assert np.array_equal(read_image(fifo), read_image(DATA / "sky-gradient.png"))
    finally:
        writer.join()


def test_a_tiff_tag_count_cannot_make_the_reader_allocate_gigabytes(tmp_path):
    """BitsPerSample with a count of 2^32 - 1: the tag reader built a 4 GB struct format for it."""
    entries = [(256, 3, 1, 16), (257, 3, 1, 16), (258, 3, 0xFFFFFFFF, 8), (262, 3, 1, 2), (277, 3, 1, 3)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0" * 4
    (tmp_path / "tags.tif").write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0" * 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own: "Tag data larger than file"
        assert stored_layout(tmp_path / "tags.tif") == (8, False)  # the damaged tag is ignored


def test_webp_is_written_losslessly_and_jpeg_refuses_alpha(tmp_path):
    """Lossless, the colour under fully transparent pixels included: OpenCV's WebP set it to 0."""
    rgba = np.random.default_rng(5).integers(0, 256, (16, 24, 4), dtype=np.uint8)
    rgba[:, :12, 3] = 0
    write_image(tmp_path / "x.webp", rgba)
    assert np.array_equal(read_image(tmp_path / "x.webp", as_file=True), rgba)
    write_image(tmp_path / "g.webp", rgba[:, :, 2:])  # gray + alpha: written as equal-channel RGBA
    assert np.array_equal(read_image(tmp_path / "g.webp", as_file=True), rgba[:, :, [2, 2, 2, 3]])
    (tmp_path / "g.webp").unlink()
    # WebP's sides end at 16383 px, JPEG's at 65500: RGB and gray were "cannot write images with
    # suffix '.webp'", as if the format were not written at all
    for name, shape in (("wide.webp", (1, 16400, 4)), ("wide.webp", (16384, 16, 3)), ("w.jpg", (2, 65501))):
        with pytest.raises(
            ImageError, match=rf"{name}: .*x.* is past .*'s \d+-pixel limit on a side; write \.png"
        ):
            write_image(tmp_path / name, np.zeros(shape, np.uint8))
    with pytest.raises(ImageError, match=r"JPEG has no alpha channel; write \.png to keep it"):
        write_image(tmp_path / "x.jpg", rgba)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.webp"]


def test_a_long_output_name_leaves_room_for_the_temporary_file(tmp_path):
    path = tmp_path / ("x" * 250 + ".png")  # 254 bytes: legal, but no room for a ".NAME.xxxx.tmp"
    write_image(path, np.zeros((4, 4, 3), np.uint8))
    assert read_image(path).shape == (4, 4, 3)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_an_icc_profile_travels_into_png(tmp_path):
    """A wide-gamut picture without its profile changes colour in every colour-managed viewer."""
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for dtype in (np.uint8, np.uint16):
        pixels = np.random.default_rng(6).integers(0, 256, (12, 20, 3)).astype(dtype)
        write_image(tmp_path / "x.png", pixels, icc_profile=profile)
        assert read_icc_profile(tmp_path / "x.png") == profile
        assert np.array_equal(read_image(tmp_path / "x.png"), pixels)
    write_image(tmp_path / "plain.png", pixels)
    assert read_icc_profile(tmp_path / "plain.png") is None


def _png(rows: np.ndarray, colour_type: int, bits: int | None = None, trns: bytes | None = None) -> bytes:
    """A PNG written byte by byte (OpenCV and Pillow write no 16-bit gray + alpha, nor 1-4-bit
    gray): `bits` below 8 packs several samples a byte, `trns` is a tRNS chunk's body."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    h, w = rows.shape[:2]
    bits = bits or 8 * rows.itemsize
    header = struct.pack(">IIBBBBB", w, h, bits, colour_type, 0, 0, 0)
    if bits < 8:  # samples packed from the high bits down, rows padded to whole bytes
        per = 8 // bits
        padded = np.pad(rows, ((0, 0), (0, -w % per))).reshape(h, -1, per).astype(np.uint8)
        rows = sum(padded[:, :, k] << (8 - bits * (k + 1)) for k in range(per)).astype(np.uint8)
    raw = b"".join(b"\0" + row.astype(">u2" if rows.itemsize == 2 else "u1").tobytes() for row in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + (chunk(b"tRNS", trns) if trns is not None else b"")
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_sixteen_bit_gray_with_alpha_png_stays_gray(tmp_path):
    """Pillow calls a 16-bit LA PNG 'RGBA': its gray came back as RGB with unequal channels."""
    la = np.random.default_rng(5).integers(0, 65536, (12, 20, 2)).astype(np.uint16)
    (tmp_path / "la16.png").write_bytes(_png(la, 4))
    assert np.array_equal(read_image(tmp_path / "la16.png", as_file=True), la)


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16])
def test_a_gray_pngs_transparent_colour_becomes_its_alpha(tmp_path, bits):
    """OpenCV ignores a gray PNG's tRNS colour key: the transparent parts came back opaque."""
    top, dtype = 2**bits - 1, np.uint16 if bits == 16 else np.uint8
    gray = np.random.default_rng(6).integers(0, top + 1, (12, 20)).astype(dtype)
    scale = 255 // top if bits < 8 else 1  # 1-4-bit gray is decoded scaled up to 8 bits
    for key in (int(gray[3, 5]), top):  # white too: Pillow hands a 1-bit key over already scaled
        (tmp_path / "keyed.png").write_bytes(_png(gray, 0, bits, trns=struct.pack(">H", key)))
        alpha = np.where(gray == key, 0, np.iinfo(dtype).max)
        want = np.stack((gray * scale, alpha), axis=2).astype(dtype)
        assert np.array_equal(read_image(tmp_path / "keyed.png", as_file=True), want), key
        assert stored_layout(tmp_path / "keyed.png") == (16 if bits == 16 else 8, True)
    (tmp_path / "plain.png").write_bytes(_png(gray, 0, bits))
    assert read_image(tmp_path / "plain.png", as_file=True).ndim == 2
    assert stored_layout(tmp_path / "plain.png") == (16 if bits == 16 else 8, False)


def test_a_one_bit_white_key_is_white_as_every_pillow_gives_it():
    """Pillow before 12.1 gives a 1-bit PNG's white tRNS key as 1, later ones as 255."""
    gray = np.array([[0, 255, 255]], np.uint8)  # 1-bit gray as decoded: scaled up to 8 bits
    for key in (1, 255):
        assert _keyed_gray_alpha(gray, key, 1)[..., 1].tolist() == [[255, 0, 0]]
    assert _keyed_gray_alpha(gray, 0, 1)[..., 1].tolist() == [[0, 255, 255]]


def test_rgb_and_palette_pngs_with_transparency_say_they_have_alpha(tmp_path):
    """OpenCV gives them an alpha, so a JPEG output must be refused before the work, not after."""
    rgb = np.random.default_rng(7).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png", transparency=tuple(int(v) for v in rgb[0, 0]))
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png", transparency=0)
    for name in ("rgb.png", "palette.png"):
        assert read_image(tmp_path / name, as_file=True).shape == (12, 20, 4)
        assert stored_layout(tmp_path / name) == (8, True)


def test_tiffs_opencv_misreads_are_mended_or_refused(tmp_path):
    """16-bit premultiplied colours come back straight, CMYK without an alpha of its own, and
    16-bit gray + alpha (which OpenCV reads as 8-bit gray) is refused in one line."""
    tifffile = pytest.importorskip("tifffile", reason="scikit-image's tifffile writes these TIFFs")
    rng = np.random.default_rng(6)
    straight = rng.integers(0, 65536, (10, 14, 3)).astype(np.float64)
    alpha = np.tile(np.linspace(1 / 8, 1, 14), (10, 1))[..., None]
    stored = np.concatenate((np.rint(straight * alpha), np.rint(alpha * 65535)), axis=2).astype(np.uint16)
    tifffile.imwrite(tmp_path / "pm.tif", stored, photometric="rgb", extrasamples=[1])  # associated
    read = read_image(tmp_path / "pm.tif", as_file=True).astype(np.float64)
    assert np.abs(read[..., :3] - straight).max() <= 9  # the stored product's rounding, over alpha >= 1/8
    assert np.array_equal(read[..., 3], stored[..., 3])
    cmyk = rng.integers(0, 256, (10, 14, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.tif")
    assert read_image(tmp_path / "cmyk.tif", as_file=True).shape == (10, 14, 3)
    tifffile.imwrite(tmp_path / "la16.tif", stored[..., [0, 3]], photometric="minisblack", extrasamples=[2])
    with pytest.raises(ImageError, match=r"la16\.tif: a 16-bit gray \+ alpha TIFF, which OpenCV misreads"):
        read_image(tmp_path / "la16.tif", as_file=True)


@pytest.mark.parametrize("bigtiff", [False, True])
def test_more_tiffs_opencv_misreads_are_mended_or_refused(tmp_path, bigtiff):
    """16-bit colour stored in separate planes (Photoshop's "per channel" order) came out as
    garbage and 16-bit MinIsWhite gray as its negative, both silently; BigTIFF was not taken for a
    TIFF at all, so its orientation was applied twice and none of these checks ran."""
    tifffile = pytest.importorskip("tifffile", reason="scikit-image's tifffile writes these TIFFs")
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 65536, (12, 20, 3), dtype=np.uint16)
    name = "big" if bigtiff else "classic"
    tifffile.imwrite(tmp_path / f"{name}.tif", rgb, photometric="rgb", bigtiff=bigtiff)
    assert np.array_equal(read_image(tmp_path / f"{name}.tif"), rgb)
    assert stored_layout(tmp_path / f"{name}.tif") == (16, False)
    turned = tmp_path / f"{name}-turned.tif"  # EXIF orientation 6: shown turned a quarter clockwise
    tifffile.imwrite(turned, rgb, photometric="rgb", bigtiff=bigtiff, extratags=[(274, "H", 1, 6, True)])
    assert np.array_equal(read_image(turned), np.rot90(rgb, k=-1))
    planes = rgb.transpose(2, 0, 1)
    tifffile.imwrite(
        tmp_path / "planes.tif", planes, photometric="rgb", planarconfig="separate", bigtiff=bigtiff
    )
    with pytest.raises(ImageError, match=r"planes\.tif: a 16-bit TIFF with separate colour planes"):
        read_image(tmp_path / "planes.tif")
    gray = rng.integers(0, 65536, (12, 20), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "white.tif", 65535 - gray, photometric="miniswhite", bigtiff=bigtiff)
    assert np.array_equal(read_image(tmp_path / "white.tif", as_file=True), gray)
    gray_alpha = np.stack((gray, gray), axis=2)
    tifffile.imwrite(
        tmp_path / "la16.tif", gray_alpha, photometric="minisblack", extrasamples=[2], bigtiff=bigtiff
    )
    with pytest.raises(ImageError, match=r"la16\.tif: a 16-bit gray \+ alpha TIFF, which OpenCV misreads"):
        read_image(tmp_path / "la16.tif", as_file=True)


def test_a_32_bit_bmp_without_alpha_stays_opaque(tmp_path):
    """A 32-bit BMP with colour masks (the Windows clipboard's) pads each pixel with a zero byte,
    which OpenCV took for alpha: the picture came out fully transparent."""
    rgb = np.random.default_rng(8).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    pixels = np.dstack([rgb[..., ::-1], np.zeros((6, 10), np.uint8)])[::-1].tobytes()  # BGRX, bottom-up
    header = struct.pack("<IiiHHIIiiII", 40, 10, 6, 1, 32, 3, len(pixels), 2835, 2835, 0, 0)  # BI_BITFIELDS
    masks = struct.pack("<III", 0xFF0000, 0xFF00, 0xFF)
    (tmp_path / "clip.bmp").write_bytes(
        b"BM" + struct.pack("<IHHI", 66 + len(pixels), 0, 0, 66) + header + masks + pixels
    )
    assert stored_layout(tmp_path / "clip.bmp") == (8, False)
    assert np.array_equal(read_image(tmp_path / "clip.bmp", as_file=True), rgb)
    assert np.array_equal(read_image(tmp_path / "clip.bmp", keep_alpha=True)[..., 3], np.full((6, 10), 255))


def test_a_pgm_or_ppm_below_full_scale_is_scaled_to_it(tmp_path):
    """A 10-bit PGM (maximum value 1023) came out as a near-black 16-bit picture: OpenCV keeps the
    file's values, and bdinn takes 16-bit samples as 0..65535."""
    rng = np.random.default_rng(9)
    ten_bit = rng.integers(0, 1024, (6, 10), dtype=np.uint16)
    (tmp_path / "ten.pgm").write_bytes(b"P5\n# ten bits\n10 6\n1023\n" + ten_bit.astype(">u2").tobytes())
    assert np.array_equal(read_image(tmp_path / "ten.pgm", as_file=True), np.rint(ten_bit * (65535 / 1023)))
    seven_bit = rng.integers(0, 128, (6, 10, 3), dtype=np.uint8)
    (tmp_path / "seven.ppm").write_bytes(b"P6 10 6 127\n" + seven_bit.tobytes())
    assert np.array_equal(read_image(tmp_path / "seven.ppm"), np.rint(seven_bit * (255 / 127)))
    plain = " ".join(map(str, ten_bit.ravel())).encode()  # ASCII: it was read as 0..1023 of 65535
    (tmp_path / "plain.pgm").write_bytes(b"P2\n10 6\n1023\n" + plain + b"\n")
    assert np.array_equal(read_image(tmp_path / "plain.pgm", as_file=True), np.rint(ten_bit * (65535 / 1023)))
    (tmp_path / "plain8.pgm").write_bytes(b"P2\n4 1\n15\n0 1 2 15\n")  # OpenCV stretches these itself
    assert read_image(tmp_path / "plain8.pgm", as_file=True).ravel().tolist() == [0, 17, 34, 255]
    (tmp_path / "plain8.ppm").write_bytes(b"P3\n2 1\n100\n0 50 100 100 100 100\n")
    assert read_image(tmp_path / "plain8.ppm").tolist() == [[[0, 127, 255], [255, 255, 255]]]
    full = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    (tmp_path / "full.ppm").write_bytes(b"P6\n10 6\n255\n" + full.tobytes())
    assert np.array_equal(read_image(tmp_path / "full.ppm"), full)


def test_a_valid_tiff_opencv_cannot_read_is_not_only_called_corrupt(tmp_path):
    """16-bit CMYK (and 5-sample or float16 TIFFs) got "truncated or corrupt": the user went looking
    for a broken copy of a good file."""
    tifffile = pytest.importorskip("tifffile", reason="scikit-image's tifffile writes these TIFFs")
    tifffile.imwrite(tmp_path / "cmyk16.tif", np.full((8, 20, 4), 1000, np.uint16), photometric="separated")
    with pytest.raises(
        ImageError, match=r"cmyk16\.tif: truncated or corrupt TIFF data, or a kind OpenCV does not read"
    ):
        read_image(tmp_path / "cmyk16.tif")


def test_an_opaque_alpha_is_full_scale_at_either_depth(tmp_path):
    """keep_alpha on a picture without alpha adds an opaque one: 65535 for 16-bit samples (255
    there is 0.4 % opacity, and the training loader then blends it away)."""
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        rgb = np.random.default_rng(1).integers(0, top, (8, 12, 3), dtype=dtype)
        write_image(tmp_path / "x.png", rgb)
        rgba = read_image(tmp_path / "x.png", keep_alpha=True)
        assert rgba.dtype == dtype and np.all(rgba[..., 3] == top) and np.array_equal(rgba[..., :3], rgb)


def test_stored_layout_tells_alpha_from_the_header(tmp_path):
    """What bdinn-run checks before the work: a gray + alpha picture cannot go into a JPEG."""
    gray = np.zeros((8, 12), np.uint8)
    Image.fromarray(np.dstack([gray, gray + 200]), "LA").save(tmp_path / "la.png")
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    write_image(tmp_path / "rgba16.png", np.zeros((8, 12, 4), np.uint16))
    write_image(tmp_path / "rgb.tif", np.zeros((8, 12, 3), np.uint8))
    layouts = [stored_layout(tmp_path / n) for n in ("la.png", "l.png", "rgba16.png", "rgb.tif")]
    assert layouts == [(8, True), (8, False), (16, True), (8, False)]


def _camera_jpeg(path: Path, orientation: int, dpi: tuple[int, int]) -> bytes:
    """A photo as cameras write it: EXIF with make, dates and an orientation, and a resolution."""
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0132] = orientation, "Canon", "2024:01:01 10:00:00"
    exif.get_ifd(0x8769)[0x9003] = "2024:01:01 09:59:58"  # DateTimeOriginal, in the Exif sub-IFD
    Image.open(DATA / "leaf-texture.png").save(path, exif=exif.tobytes(), dpi=dpi, quality=95)
    return Image.open(path).info["exif"]


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_and_resolution_are_carried_upright(tmp_path, suffix):
    """A debanded photo kept its ICC profile but lost its camera, dates, GPS and DPI."""
    source = tmp_path / "photo.jpg"
    raw = _camera_jpeg(source, orientation=6, dpi=(300, 200))
    metadata = read_metadata(source)
    assert metadata.dpi == (200, 300)  # turned a quarter, as the pixels are
    upright = read_image(source)
    assert upright.shape == (320, 192, 3)
    out = write_image(tmp_path / f"out{suffix}", upright, metadata=metadata)
    with Image.open(out) as written:
        exif = written.getexif()
        assert written.size == (192, 320) and exif[0x0112] == 1  # no viewer turns it again
        assert exif[0x010F] == "Canon" and exif.get_ifd(0x8769)[0x9003] == "2024:01:01 09:59:58"
        assert written.info["dpi"] == pytest.approx((200, 300), abs=0.01)
        carried = written.info["exif"].removeprefix(b"Exif\0\0")
    source_tiff = raw.removeprefix(b"Exif\0\0")
    assert len(carried) == len(source_tiff)  # changed in place: offsets (maker notes) still hold
    assert sum(a != b for a, b in zip(carried, source_tiff, strict=True)) == 1  # the orientation's byte
    if suffix == ".png":
        assert np.array_equal(read_image(out), upright)


@pytest.mark.parametrize(("orientation", "swapped"), [(6, True), (3, False), (1, False)])
def test_a_turned_photos_exif_describes_the_upright_picture(tmp_path, orientation, swapped):
    """Only the orientation was reset: a quarter-turned photo's EXIF kept its X and Y resolutions
    and pixel dimensions the old way round, and its thumbnail, which viewers then showed turned."""
    exif = Image.Exif()
    exif[0x0112], exif[0x0128], exif[0x011A], exif[0x011B] = orientation, 2, 300.0, 200.0
    exif.get_ifd(0x8769)[0xA002], exif.get_ifd(0x8769)[0xA003] = 320, 192  # as stored: 320 wide
    tiff = bytearray(exif.tobytes().removeprefix(b"Exif\0\0"))
    assert tiff[:4] == b"MM\0*"  # Pillow writes big-endian blocks
    thumbnail = b"\xff\xd8 a thumbnail \xff\xd9"
    following = 8 + 2 + 12 * struct.unpack(">H", tiff[8:10])[0]  # IFD0's link to the next directory
    assert tiff[following : following + 4] == bytes(4)
    tiff[following : following + 4] = struct.pack(">I", len(tiff))
    tiff += struct.pack(">HHHIIHHII", 2, 0x0201, 4, 1, len(tiff) + 30, 0x0202, 4, 1, len(thumbnail))
    tiff += bytes(4) + thumbnail
    (tmp_path / "photo.jpg").write_bytes(_with_exif_segment(_leaf_jpeg(), bytes(tiff)))
    metadata = read_metadata(tmp_path / "photo.jpg")
    assert metadata.dpi == ((200.0, 300.0) if swapped else (300.0, 200.0))
    out = write_image(tmp_path / "out.png", read_image(tmp_path / "photo.jpg"), metadata=metadata)
    with Image.open(out) as written:
        carried = written.getexif()
        size = written.size
    assert len(metadata.exif) == len(tiff) and carried[0x0112] == 1
    dims = (carried.get_ifd(0x8769)[0xA002], carried.get_ifd(0x8769)[0xA003])
    assert dims == size == ((192, 320) if swapped else (320, 192))
    assert (carried[0x011A], carried[0x011B]) == ((200.0, 300.0) if swapped else (300.0, 200.0))
    following_link = struct.unpack(">I", metadata.exif[following : following + 4])[0]
    assert following_link == (len(tiff) - 30 - len(thumbnail) if orientation == 1 else 0)


@pytest.mark.parametrize(("kind", "count", "value"), [(3, 2, b"\x06\x00\x01\x00"), (1, 1, b"\x06\0\0\0")])
def test_an_orientation_pillow_turns_a_png_by_is_the_one_reset(tmp_path, kind, count, value):
    """Two SHORTs (6, 1) or one BYTE: Pillow turns the PNG by the first, and the reset skipped
    such an entry, so the upright output still said 6 and viewers turned it a second time."""
    tiff = b"II*\0" + struct.pack("<IHHHI", 8, 1, 0x0112, kind, count) + value + bytes(4)
    png = (DATA / "leaf-texture.png").read_bytes()
    (tmp_path / "turned.png").write_bytes(png[:33] + _png_chunk(b"eXIf", tiff) + png[33:])
    upright = read_image(tmp_path / "turned.png")
    assert upright.shape == (320, 192, 3)
    out = write_image(tmp_path / "out.png", upright, metadata=read_metadata(tmp_path / "turned.png"))
    with Image.open(out) as written, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's doubt about the two values, which stay two
        assert written.getexif()[0x0112] in (1, b"\x01") and written.size == (192, 320)  # a BYTE: bytes


def test_a_tiff_without_resolution_tags_has_no_resolution(tmp_path):
    """Pillow gives a TIFF without XResolution/YResolution 1 dpi: its PNG and JPEG outputs said
    a 60 px picture was 60 inches wide. Tags that are there still carry, in inches or cm."""
    pixels = np.zeros((40, 60, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "none.tif"), pixels)  # OpenCV writes no resolution tags
    Image.fromarray(pixels).save(tmp_path / "inch.tif", dpi=(300, 150))
    Image.fromarray(pixels).save(tmp_path / "cm.tif", resolution=100, resolution_unit=3)
    assert read_metadata(tmp_path / "none.tif").dpi is None
    assert read_metadata(tmp_path / "inch.tif").dpi == pytest.approx((300, 150))
    assert read_metadata(tmp_path / "cm.tif").dpi == pytest.approx((254, 254))
    write_image(tmp_path / "out.png", pixels, metadata=read_metadata(tmp_path / "none.tif"))
    with Image.open(tmp_path / "out.png") as written:
        assert "dpi" not in written.info


def test_metadata_that_is_not_sound_is_left_behind(tmp_path):
    """An EXIF block cut short or of another byte order mark is not carried; nor is a TIFF's,
    whose tags describe its own strips; a TIFF's resolution is."""
    picture = Image.open(DATA / "leaf-texture.png")
    picture.save(tmp_path / "cut.jpg", exif=b"Exif\0\0MM\0*\0\0\0\x08\0\x05\x01\x12")
    assert read_metadata(tmp_path / "cut.jpg").exif is None
    picture.save(tmp_path / "scan.tif", dpi=(600, 600))
    assert read_metadata(tmp_path / "scan.tif") == Metadata(exif=None, dpi=(600, 600))
    assert read_metadata(DATA / "leaf-texture.png") == Metadata()
    write_image(tmp_path / "plain.png", read_image(DATA / "leaf-texture.png"), metadata=Metadata())
    assert (tmp_path / "plain.png").read_bytes() == cv2.imencode(
        ".png", cv2.imread(str(DATA / "leaf-texture.png"))
    )[1].tobytes()


def _png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _float_rgb_tiff(width: int, height: int) -> bytes:
    """An uncompressed 32-bit float RGB TIFF, a kind OpenCV decodes and Pillow cannot open."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, None), (277, 3, 1, 3), (278, 4, 1, height), (279, 4, 1, 12 * width * height),
               (339, 3, 3, None)]  # fmt: skip
    ifd_size = 2 + 12 * len(entries) + 4
    bits_at, formats_at = 8 + ifd_size, 8 + ifd_size + 6
    pixels_at = formats_at + 6
    values = {258: bits_at, 273: pixels_at, 339: formats_at}
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = values.get(tag, value)
        ifd += struct.pack("<HHI", tag, kind, count) + (
            struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value)
        )
    bits, formats = struct.pack("<3H", 32, 32, 32), struct.pack("<3H", 3, 3, 3)  # 3: IEEE float
    return b"II*\0" + struct.pack("<I", 8) + ifd + b"\0" * 4 + bits + formats + b"\0" * 4096


def _float_rgb_bigtiff(width: int, height: int) -> bytes:
    """The same as a BigTIFF, its sizes and offsets in LONG8 (16): 8-byte values, 20-byte entries."""
    entries = [(256, 16, 1, width), (257, 16, 1, height), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 16, 1, None), (277, 3, 1, 3), (278, 16, 1, height), (279, 16, 1, 12 * width * height),
               (339, 3, 3, None)]  # fmt: skip
    pixels_at = 16 + 8 + 20 * len(entries) + 8
    ifd = struct.pack("<Q", len(entries))
    for tag, kind, count, value in entries:
        if count == 3:  # three SHORTs fit in the entry
            packed = struct.pack("<3HH", *((32, 32, 32) if tag == 258 else (3, 3, 3)), 0)
        else:
            packed = struct.pack("<Q" if kind == 16 else "<HHI", *([pixels_at] if tag == 273 else [value])
                                 if kind == 16 else (value, 0, 0))  # fmt: skip
        ifd += struct.pack("<HHQ", tag, kind, count) + packed
    return b"II+\0" + struct.pack("<HHQ", 8, 0, 16) + ifd + b"\0" * 8 + b"\0" * 4096


@pytest.mark.parametrize("kind", ["png-bad-text-crc", "float-rgb-tiff", "float-rgb-bigtiff"])
def test_a_bomb_pillow_cannot_read_is_refused_before_opencv_decodes(tmp_path, kind):
    """Where Pillow gave up on the header (a text chunk with a wrong CRC, which libpng skips; a
    float RGB TIFF), OpenCV decoded up to its own 2^30 pixels: 5 GB for a 2.6 MB file."""
    if kind == "png-bad-text-crc":
        ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 14000, 14000, 8, 2, 0, 0, 0))
        text = _png_chunk(b"tEXt", b"Comment\0hello", crc=0)
        idat = _png_chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        data = b"\x89PNG\r\n\x1a\n" + ihdr + text + idat + _png_chunk(b"IEND", b"")
        path = tmp_path / "bomb.png"
    else:
        make = _float_rgb_tiff if kind == "float-rgb-tiff" else _float_rgb_bigtiff
        data, path = make(14000, 14000), tmp_path / "bomb.tif"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=r"bomb\.(png|tif): over 179 megapixels") as info:
        read_image(path)
    one_line(info, path)


def test_a_relative_xdg_cache_home_is_ignored(tmp_path, monkeypatch):
    """As the XDG spec says: `XDG_CACHE_HOME=dl` made the kernel library load from ./dl, wherever
    the command ran."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "dl")
    assert user_cache("plugins") == tmp_path / "home" / ".cache" / "bdinn" / "plugins"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache("engines") == tmp_path / "xdg" / "bdinn" / "engines"


def _with_exif_segment(jpeg: bytes, tiff: bytes, density_unit: int = 0) -> bytes:
    """The JPEG with an EXIF segment after its JFIF one, whose density unit is set to `density_unit`."""
    jfif_end = 4 + struct.unpack(">H", jpeg[4:6])[0]
    head = jpeg[:13] + bytes([density_unit]) + jpeg[14:jfif_end]
    body = b"Exif\0\0" + tiff
    return head + b"\xff\xe1" + struct.pack(">H", 2 + len(body)) + body + jpeg[jfif_end:]


def _orientation_only(order: str, kind: int, value: int) -> bytes:
    """An EXIF block of one entry, the orientation, of TIFF type `kind` (3 SHORT, 4 LONG, 8 SSHORT)."""
    mark = b"II*\0" if order == "<" else b"MM\0*"
    packed = struct.pack(order + ("I" if kind == 4 else "H"), value).ljust(4, b"\0")
    return mark + struct.pack(order + "IHHHI", 8, 1, 0x0112, kind, 1) + packed + b"\0" * 4


@pytest.mark.parametrize(("order", "kind"), [("<", 3), (">", 3), ("<", 4), (">", 4), ("<", 8)])
def test_the_orientation_turned_by_is_the_one_reset(tmp_path, order, kind):
    """Only a SHORT orientation was reset to 1, while Pillow's reading turned the pixels for a LONG
    or SSHORT one too: viewers turned the upright output a second time."""
    jpeg = _with_exif_segment(_leaf_jpeg(), _orientation_only(order, kind, 6))
    (tmp_path / "turned.jpg").write_bytes(jpeg)
    upright = read_image(tmp_path / "turned.jpg")
    assert upright.shape == (320, 192, 3)
    out = write_image(tmp_path / "out.png", upright, metadata=read_metadata(tmp_path / "turned.jpg"))
    with Image.open(out) as written:
        assert written.getexif()[0x0112] == 1


def test_jpeg_metadata_that_readers_disagree_on(tmp_path):
    """An orientation in XMP alone is not applied (OpenCV and browsers ignore it; Pillow turned
    the picture); an EXIF block with a broken TIFF header beside a JFIF density was a SyntaxError
    traceback from Pillow; a JPEG without a resolution of its own got Pillow's assumed 72 dpi."""
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    Image.open(DATA / "leaf-texture.png").save(tmp_path / "xmp.jpg", xmp=xmp)
    assert read_image(tmp_path / "xmp.jpg").shape == (192, 320, 3)
    (tmp_path / "broken.jpg").write_bytes(_with_exif_segment(_leaf_jpeg(), b"XX*\0\x08\0\0\0" + bytes(20), 1))
    assert read_image(tmp_path / "broken.jpg").shape == (192, 320, 3)
    assert read_metadata(tmp_path / "broken.jpg").exif is None
    (tmp_path / "no-dpi.jpg").write_bytes(_with_exif_segment(_leaf_jpeg(), _orientation_only("<", 3, 1)))
    assert read_metadata(tmp_path / "no-dpi.jpg").dpi is None


def test_a_tiff_width_of_no_values_is_one_line(tmp_path):
    """A width tag with a count of 0 raised IndexError from the size check, a traceback."""
    Image.open(DATA / "leaf-texture.png").save(tmp_path / "w0.tif")
    data = bytearray((tmp_path / "w0.tif").read_bytes())
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    width = next(
        ifd + 2 + 12 * i for i in range(count) if data[ifd + 2 + 12 * i : ifd + 4 + 12 * i] == b"\0\x01"
    )
    data[width + 4 : width + 8] = bytes(4)
    (tmp_path / "w0.tif").write_bytes(bytes(data))
    with pytest.raises(ImageError) as info:
        read_image(tmp_path / "w0.tif")
    one_line(info, tmp_path / "w0.tif")


def test_a_camera_jpegs_resolution_in_exif_is_carried(tmp_path):
    """Cameras record it in EXIF, with no JFIF density; only the assumed 72 dpi is not carried."""
    exif = Image.Exif()
    exif[0x0128], exif[0x011A], exif[0x011B] = 3, 118.0, 59.0  # dots per centimetre
    Image.open(DATA / "leaf-texture.png").save(tmp_path / "camera.jpg", exif=exif.tobytes())
    assert read_metadata(tmp_path / "camera.jpg").dpi == pytest.approx((118 * 2.54, 59 * 2.54))


def test_an_orientation_of_several_values_is_not_read_from_its_offset(tmp_path):
    """Three SHORTs do not fit in the entry, which then holds an offset: its low bytes were read as
    the orientation."""
    tiff = bytearray(_orientation_only("<", 3, 6))
    tiff[14:18] = struct.pack("<I", 3)  # the count: now the value field is an offset (6, garbage)
    (tmp_path / "three.jpg").write_bytes(_with_exif_segment(_leaf_jpeg(), bytes(tiff)))
    assert read_image(tmp_path / "three.jpg").shape == (192, 320, 3)


def test_pillows_doubts_about_exif_are_not_said(tmp_path):
    """Pillow warns of EXIF it cannot follow ("Tag data larger than file"), naming no file: a
    line on bdinn-run's stderr that says nothing useful. The picture reads as it is stored."""
    entry = struct.pack("<HHII", 0x010F, 2, 100, 5000)  # Make: 100 bytes, at an offset past the end
    tiff = b"II*\0" + struct.pack("<IH", 8, 1) + entry + bytes(4)
    (tmp_path / "odd.jpg").write_bytes(_with_exif_segment(_leaf_jpeg(), tiff))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "odd.jpg").shape == (192, 320, 3)


def _upright(rows: int = 64, columns: int = 96) -> np.ndarray:
    """A picture whose every column and row differs, so that any turn or scramble shows."""
    y, x = np.mgrid[:rows, :columns]
    return np.stack([x * 2 + 10, y * 3 + 20, (x * 7 + y * 5) % 256], axis=2).astype(np.uint8)


@pytest.mark.parametrize("gray", [False, True])
def test_a_mirrored_tiled_tiff_comes_out_whole(tmp_path, gray):
    """OpenCV turns each tile of an 8-bit tiled TIFF but not where the tiles lie: with a mirroring
    orientation the tile columns stayed in place, each one flipped, without a word."""
    tifffile = pytest.importorskip("tifffile", reason="scikit-image's tifffile writes these TIFFs")
    upright = _upright()[:, :, 0] if gray else _upright()
    for value, stored in ((2, upright[:, ::-1]), (3, upright[::-1, ::-1]), (6, np.rot90(upright))):
        path = tmp_path / f"o{value}.tif"
        tifffile.imwrite(path, np.ascontiguousarray(stored), photometric="minisblack" if gray else "rgb",
                         tile=(32, 32), extratags=[(274, 3, 1, value, True)])  # fmt: skip
        assert np.array_equal(read_image(path, as_file=True), upright), value


def test_an_orientation_only_xmp_gives_is_not_applied(tmp_path):
    """README: the EXIF orientation is applied, not one from XMP (browsers and bdinn's JPEG reader
    ignore it); Pillow's getexif() takes XMP's where EXIF has none, so such a PNG or WebP was turned
    (as_file, and bdinn-run) while read_image and the same JPEG were not."""
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    upright = _upright()
    Image.fromarray(upright).save(tmp_path / "x.webp", lossless=True, xmp=xmp)
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    Image.fromarray(upright).save(tmp_path / "x.png", pnginfo=info)
    for name in ("x.webp", "x.png"):
        assert Image.open(tmp_path / name).getexif().get(0x0112) == 6  # what Pillow makes of the XMP
        for keep in ({}, {"as_file": True}, {"keep_alpha": True}):
            assert np.array_equal(read_image(tmp_path / name, **keep)[:, :, :3], upright), (name, keep)


def test_a_16_bit_bmp_spreads_its_levels_over_0_to_255(tmp_path):
    """OpenCV shifts RGB565 values without repeating their top bits: white read (248, 252, 248)."""
    masks = struct.pack("<3I", 0xF800, 0x07E0, 0x001F)
    info = struct.pack("<IiiHHIIiiII", 40, 16, 16, 1, 16, 3, 16 * 16 * 2, 2835, 2835, 0, 0)
    pixels = np.full((16, 16), 0xFFFF, "<u2")
    pixels[:8] = 0x0821  # the lowest step of each channel: 1/31, 1/63, 1/31
    body = info + masks + pixels.tobytes()
    (tmp_path / "565.bmp").write_bytes(b"BM" + struct.pack("<IHHI", 14 + len(body), 0, 0, 14 + 52) + body)
    img = read_image(tmp_path / "565.bmp")
    assert img[0, 0].tolist() == [255, 255, 255]  # rows are stored bottom-up
    assert img[15, 0].tolist() == [8, 4, 8]  # 1 * 255 / 31 and 1 * 255 / 63, rounded
    # With an alpha mask (GIMP's A1R5G5B5, a V4 header): refused, not read without its alpha.
    v4 = struct.pack("<IiiHHIIiiII", 108, 16, 16, 1, 16, 3, 16 * 16 * 2, 2835, 2835, 0, 0)
    v4 += struct.pack("<4I", 0x7C00, 0x03E0, 0x001F, 0x8000) + bytes(108 - 56)
    body = v4 + pixels.tobytes()
    (tmp_path / "1555.bmp").write_bytes(b"BM" + struct.pack("<IHHI", 14 + len(body), 0, 0, 14 + 108) + body)
    with pytest.raises(ImageError, match=r"1555\.bmp: a 16-bit BMP with alpha, whose alpha no reader here"):
        read_image(tmp_path / "1555.bmp", keep_alpha=True)


def test_exif_over_a_jpegs_64_kb_goes_into_png_and_is_said_to_be_left_out_of_jpeg(tmp_path):
    """It was dropped from every output without a word, PNG included, which has no such limit."""
    exif = Image.Exif()
    exif[0x010F] = "BigCam"
    exif[0x927C] = b"m" * 70_000  # a large maker note
    Image.fromarray(_upright()).save(tmp_path / "big.png", exif=exif.tobytes())
    metadata = read_metadata(tmp_path / "big.png")
    assert metadata.exif is not None and len(metadata.exif) > 70_000
    write_image(tmp_path / "out.png", _upright(), metadata=metadata)
    assert read_metadata(tmp_path / "out.png").exif == metadata.exif
    with pytest.warns(
        UserWarning, match=r"out\.jpg: the source's EXIF \(70,\d{3} bytes\) is more than a JPEG"
    ):
        write_image(tmp_path / "out.jpg", _upright(), metadata=metadata)
    assert read_metadata(tmp_path / "out.jpg").exif is None


def test_colour_chunks_that_say_srgb_are_not_warned_about():
    """ImageMagick writes cHRM with sRGB's primaries beside sRGB, and cICP can say sRGB too: a
    .webp or .jpg output warned that they were lost."""
    from bdinn.runtime.png_chunks import png_chunk, srgb_like

    srgb = struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)
    p3 = struct.pack(">8I", 31270, 32900, 68000, 32000, 26500, 69000, 15000, 6000)
    assert srgb_like(b"cHRM", png_chunk(b"cHRM", srgb)) and not srgb_like(b"cHRM", png_chunk(b"cHRM", p3))
    assert srgb_like(b"cICP", png_chunk(b"cICP", bytes([1, 13, 0, 1])))
    assert not srgb_like(b"cICP", png_chunk(b"cICP", bytes([9, 16, 0, 1])))  # BT.2020 PQ
    assert srgb_like(b"gAMA", png_chunk(b"gAMA", struct.pack(">I", 45455)))
    assert not srgb_like(b"gAMA", png_chunk(b"gAMA", struct.pack(">I", 100000)))


def test_gama_and_chrm_beside_an_srgb_chunk_are_not_warned_about(tmp_path):
    """Readers that know sRGB ignore them there (PNG spec), so nothing is lost in a .webp."""
    from bdinn.runtime.png_chunks import png_chunk

    odd_gamma = png_chunk(b"gAMA", struct.pack(">I", 50000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_image(tmp_path / "a.webp", _upright(), png_colour=png_chunk(b"sRGB", b"\0") + odd_gamma)
    with pytest.warns(UserWarning, match=r"PNG colour chunks \(gAMA\) are not written into \.webp") as caught:
        write_image(tmp_path / "b.webp", _upright(), png_colour=odd_gamma)
    assert caught[0].filename == __file__  # points at write_image's caller


def test_a_folder_another_job_takes_back_meanwhile_is_made_again(tmp_path, monkeypatch):
    """Jobs writing into one new folder: one job's check made the folder and took it back (empty)
    between another job's mkdir and its open, which failed after its work ('cannot write there')."""
    folder, real_open, taken = tmp_path / "new", os.open, []

    def open_after_the_other_job(name, flags, *args):
        if not taken and Path(name).parent == folder:
            taken.append(name)
            os.rmdir(folder)  # the other job's check_writable, taking back the folder it made
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", open_after_the_other_job)
    written = atomic_write(folder / "a.txt", lambda tmp: Path(tmp).write_text("mine"))
    assert taken and written.path.read_text() == "mine"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_tiff_with_alpha_says_its_alpha_is_straight(tmp_path, dtype):
    """OpenCV wrote RGBA TIFFs without ExtraSamples; libtiff then took the fourth sample for
    premultiplied alpha and showed half-transparent colours 220 levels off."""
    tifffile = pytest.importorskip("tifffile", reason="scikit-image's tifffile reads the tags")
    top = np.iinfo(dtype).max
    rgba = np.random.default_rng(3).integers(0, top + 1, (9, 13, 4), dtype=dtype)
    for name, picture in (("rgba.tif", rgba), ("gray-alpha.tiff", rgba[..., 2:])):
        write_image(tmp_path / name, picture)
        with tifffile.TiffFile(tmp_path / name) as tiff:
            page = tiff.pages[0]
            assert (page.samplesperpixel, page.extrasamples) == (4, (2,))
        wanted = picture if picture.shape[2] == 4 else picture[..., [0, 0, 0, 1]]
        assert np.array_equal(read_image(tmp_path / name, keep_alpha=True), wanted)
    write_image(tmp_path / "rgb.tif", rgba[..., :3])
    assert EXTRA_SAMPLES not in read_tags((tmp_path / "rgb.tif").read_bytes(), (EXTRA_SAMPLES,))


def test_straight_alpha_is_added_to_a_bigtiff_directory(tmp_path):
    tifffile = pytest.importorskip("tifffile", reason="scikit-image's tifffile writes BigTIFF")
    rgb = np.random.default_rng(4).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", rgb, photometric="rgb", bigtiff=True)
    data = with_straight_alpha((tmp_path / "big.tif").read_bytes())
    assert read_tags(data, (WIDTH, LENGTH, EXTRA_SAMPLES)) == {WIDTH: (5,), LENGTH: (7,), EXTRA_SAMPLES: (2,)}
    assert with_straight_alpha(data) == data
