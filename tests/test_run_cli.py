"""`bdinn-run` end to end: pictures, folders, globs, video, and one clear line for each bad input."""

import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import zlib
from functools import partial
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from common import perturbed_tiny, workers_left_running
from PIL import Image, ImageCms, features
from stand_ins import signalled_in_import

from bdinn.runtime.debander import Debander
from bdinn.runtime.imageio import read_image, write_image
from bdinn.runtime.run_cli import main
from bdinn.train.checkpoint import save_checkpoint

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    return save_checkpoint(folder / "tiny.safetensors", perturbed_tiny(), config_name=None, step=1)


@pytest.fixture()
def pictures(tmp_path) -> Path:
    """Two small real pictures (one with a transparent alpha ramp) in a folder of their own."""
    folder = tmp_path / "in"
    sky = read_image(DATA / "sky-gradient.png")[:64, :96]
    write_image(folder / "sky.png", sky)
    alpha = np.tile(np.linspace(0, 255, 96).astype(np.uint8), (64, 1))
    write_image(folder / "shapes.png", np.dstack([read_image(DATA / "soft-shapes.png")[:64, :96], alpha]))
    return folder


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _bdinn_run(*args, stdin) -> subprocess.CompletedProcess:
    """bdinn-run in its own process, with real standard input and output (pipes)."""
    command = [sys.executable, "-c", "from bdinn.runtime.run_cli import main; main()", *map(str, args)]
    feed = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
    return subprocess.run(command, capture_output=True, timeout=300, check=False, **feed)


def one_line_error(result, exit_code: int = 1) -> str:
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_one_picture_with_model_first(model, pictures, tmp_path):
    out = tmp_path / "out.png"
    result = run(model, pictures / "sky.png", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    image = read_image(out)
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8


def test_a_model_after_the_pictures_is_refused_before_any_work(model, pictures, tmp_path):
    """`bdinn-run a.png model.onnx` debanded a.png with the bundled model, then failed on the
    model as a picture, and the rerun in the right order met the output it had left."""
    result = run(pictures / "sky.png", model, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 2
    assert f"{model}: a model among the inputs; give it first (bdinn-run MODEL INPUT...) or with -m" in (
        result.output
    )
    assert not (tmp_path / "out").exists()


def test_sixteen_bit_output_and_alpha(model, pictures, tmp_path):
    result = run(model, pictures / "shapes.png", "-o", tmp_path / "o.png", "--bit-depth", "16", "-q")
    assert result.exit_code == 0, result.output
    out = read_image(tmp_path / "o.png", keep_alpha=True)
    source = read_image(pictures / "shapes.png", keep_alpha=True)
    assert out.dtype == np.uint16 and out.shape == (64, 96, 4)
    np.testing.assert_array_equal(out[:, :, 3], source[:, :, 3].astype(np.uint16) * 257)


def test_opaque_alpha_stays(model, pictures, tmp_path):
    """An RGBA file whose alpha is all opaque is still written back as RGBA."""
    rgba = read_image(pictures / "sky.png", keep_alpha=True)
    assert rgba.shape[2] == 4 and (rgba[:, :, 3] == 255).all()
    write_image(tmp_path / "opaque.png", rgba)
    result = run(model, tmp_path / "opaque.png", "-o", tmp_path / "o.png", "-q")
    assert result.exit_code == 0, result.output
    out = cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == rgba.shape and (out[:, :, 3] == 255).all()


@pytest.mark.parametrize("depth", [8, 16])
def test_gray_picture_stays_gray(model, pictures, tmp_path, depth):
    """A one-channel file comes back as one channel, as the Python API returns it."""
    gray = read_image(pictures / "sky.png").mean(axis=2).astype(np.uint8)
    if depth == 16:
        gray = gray.astype(np.uint16) * 257
    write_image(tmp_path / "gray.png", gray)
    result = run(model, tmp_path / "gray.png", "-o", tmp_path / "o.png", "-q")
    assert result.exit_code == 0, result.output
    out = cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == gray.shape and out.dtype == gray.dtype
    np.testing.assert_array_equal(out, Debander.open(model)(gray))


def test_max_change_limits_the_output_and_off_gives_the_raw_model(model, pictures, tmp_path):
    sky = read_image(pictures / "sky.png")
    outputs = {}
    for value in ("5", "off", None):
        out = tmp_path / f"{value}.png"
        option = ("--max-change", value) if value else ()
        result = run(model, pictures / "sky.png", "-o", out, "-q", *option)
        assert result.exit_code == 0, result.output
        outputs[value] = read_image(out).astype(int)
    assert np.abs(outputs["5"] - sky).max() == 5  # the perturbed network moves values further
    np.testing.assert_array_equal(outputs["off"], Debander.open(model, max_change=None)(sky))
    assert np.abs(outputs["off"] - sky).max() > 5
    np.testing.assert_array_equal(outputs[None], Debander.open(model)(sky))  # the default, 2 levels
    assert np.abs(outputs[None] - sky).max() == 2


@pytest.mark.parametrize("value", ["0", "-2", "lots"])
def test_a_bad_max_change_is_refused(model, pictures, tmp_path, value):
    result = run(model, pictures / "sky.png", "-o", tmp_path / "o.png", "--max-change", value)
    assert result.exit_code == 2
    assert f"{value!r} is neither a positive number of 8-bit levels nor 'off'" in result.output
    assert not (tmp_path / "o.png").exists()


def test_folder_and_glob_to_an_output_folder(model, pictures, tmp_path):
    result = run("--model", model, pictures, "-o", tmp_path / "a")  # not -q: no bar, stderr is no terminal
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["shapes.png", "sky.png"]
    assert "file/s" not in result.output and "%|" not in result.output  # a log had a line per redraw
    result = run(model, str(pictures / "s*.png"), "-o", tmp_path / "b", "--dither", "--tile", "32", "-q")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "b").iterdir())) == 2
    twins = tmp_path / "twins"
    twins.mkdir()
    for name in ("a.png", "a.tif"):  # both would be a.png in the output folder
        write_image(twins / name, read_image(pictures / "sky.png"))
    result = run(model, twins, "-o", tmp_path / "c/", "-q")
    assert result.exit_code == 1
    assert (
        f"{tmp_path / 'c' / 'a.png'}: {twins / 'a.png'} and {twins / 'a.tif'} would both be written here"
        in (result.output)
    )


def test_default_output_is_beside_the_input(model, pictures):
    result = run(model, pictures / "sky.png", "-q")
    assert result.exit_code == 0, result.output
    assert (pictures / "sky.debanded.png").is_file()


def test_the_model_is_closed_when_bdinn_run_ends(model, pictures, tmp_path):
    """Run in-process (CliRunner, a click group of one's own), bdinn-run left the PyTorch backend's
    worker thread running after every call, also after an input failed."""
    (tmp_path / "cut.png").write_bytes((pictures / "sky.png").read_bytes()[:-20])
    for picture, code in ((pictures / "sky.png", 0), (tmp_path / "cut.png", 1)):
        before = set(threading.enumerate())
        assert run(model, picture, "-o", tmp_path / "out.png", "-q").exit_code == code
        assert workers_left_running(before) == []


def test_existing_output_needs_force_and_inputs_are_never_overwritten(model, pictures, tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    line = one_line_error(run(model, pictures / "sky.png", "-o", out))
    assert "already exists (pass --force" in line and out.read_bytes() == b"keep me"
    (tmp_path / "link.png").symlink_to(tmp_path / "nowhere.png")  # said before the work, not after
    assert "link.png: already exists" in one_line_error(
        run(model, pictures / "sky.png", "-o", tmp_path / "link.png")
    )
    assert run(model, pictures / "sky.png", "-o", out, "--force", "-q").exit_code == 0
    assert read_image(out).shape == (64, 96, 3)
    before = (pictures / "sky.png").read_bytes()
    line = one_line_error(run(model, pictures / "sky.png", "-o", pictures / "sky.png", "--force"))
    assert "is an input; bdinn-run never overwrites its inputs" in line
    assert (pictures / "sky.png").read_bytes() == before


def test_unwritable_output_is_one_line_naming_it(model, pictures, tmp_path):
    """An output under a file (no folder can be made there) fails before anything is written."""
    blocker = tmp_path / "taken"
    blocker.write_bytes(b"a file")
    line = one_line_error(run(model, pictures / "sky.png", "-o", blocker / "sky.png"))
    assert f"{blocker / 'sky.png'}: cannot write there ({blocker} is a file, not a folder)" in line
    assert blocker.read_bytes() == b"a file" and leftovers(tmp_path) == []


def _truncated_png(folder: Path) -> Path:
    data = (DATA / "sky-gradient.png").read_bytes()
    path = folder / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    return path


def _jpeg_cut_mid_scan(folder: Path) -> Path:
    """Its end marker is there, so OpenCV decodes it, the lower half flat gray, and exited 0."""
    ok, encoded = cv2.imencode(".jpg", cv2.imread(str(DATA / "leaf-texture.png")))
    assert ok
    data = encoded.tobytes()
    path = folder / "damaged.jpg"
    path.write_bytes(data[: len(data) * 3 // 5] + b"\xff\xd9")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.png", "missing.png: no such file (check the path)"),
        (lambda d: (d / "notes.png").write_text("hello") and d / "notes.png", "notes.png: not an image file"),
        (_truncated_png, "cut.png: truncated PNG, the file ends early"),
        (_jpeg_cut_mid_scan, "damaged.jpg: truncated or corrupt JPEG data (premature end of data segment)"),
        (lambda d: (d / "empty.png").write_bytes(b"") or d / "empty.png", "empty.png: empty file, 0 bytes"),
    ],
)
def test_bad_pictures_are_one_line_and_write_nothing(model, tmp_path, make, message):
    source = make(tmp_path)
    out = tmp_path / "out"
    line = one_line_error(run(model, source, "-o", out / "new" / "x.png"))
    assert line.startswith("bdinn-run: error: ") and message in line
    assert not out.exists()  # not even the folders made to check that the output can be written


def test_a_url_is_said_to_be_one(model, tmp_path):
    """Path() folded it into a local path: "http:/host/clip.mkv: no such file"."""
    line = one_line_error(run(model, "https://example.com/clip.mkv", "-o", tmp_path / "out.mkv"))
    assert line == (
        "bdinn-run: error: https://example.com/clip.mkv: bdinn-run reads files, not URLs; download it, or "
        "pipe it in: ffmpeg -i https://example.com/clip.mkv -c copy -f matroska - | bdinn-run - -o OUT.mkv"
    )


def test_one_bad_file_among_several(model, pictures, tmp_path):
    (pictures / "zz-broken.png").write_bytes(b"not a png")
    result = run(model, pictures, "-o", tmp_path / "o", "-q")
    assert result.exit_code == 1
    assert "zz-broken.png: not an image file" in result.output
    assert "1 of 3 inputs failed" in result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["shapes.png", "sky.png"]


def test_outputs_are_checked_before_the_model_loads(pictures, tmp_path):
    """A model file that does not exist shows the order: every output problem is found first."""
    absent = tmp_path / "absent.onnx"
    line = one_line_error(run(absent, pictures / "sky.png", "-o", tmp_path / "sky.mkv"))
    assert "sky.mkv: cannot write a picture as '.mkv' (use .png)" in line
    (tmp_path / "taken").write_bytes(b"a file")
    line = one_line_error(run(absent, pictures, "-o", tmp_path / "taken" / "sub"))
    assert "cannot write there (" in line and "taken is a file, not a folder" in line
    (tmp_path / "sky.debanded.png").mkdir()
    line = one_line_error(
        run(absent, pictures / "sky.png", "-o", tmp_path / "sky.debanded.png/x.png", "--force")
    )
    assert "absent.onnx" in line  # that one was fine: its folder exists
    (pictures / "sky.debanded.png").mkdir()
    line = one_line_error(run(absent, pictures / "sky.png", "--force"))
    assert "sky.debanded.png: is a folder; name a file to write" in line


class _Booby:
    """Unpickling this creates a file: proof that a pickled model was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_model_is_refused_unread(pictures, tmp_path):
    import pickle

    marker = tmp_path / "unpickled"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(_Booby(marker)))
    line = one_line_error(run(tmp_path / "evil.pt", pictures / "sky.png", "-o", tmp_path / "out.png"))
    assert "evil.pt: a pickled PyTorch file, which bdinn never loads" in line
    assert not marker.exists() and not (tmp_path / "out.png").exists()


def test_a_file_name_for_several_inputs_is_refused(model, pictures, tmp_path):
    line = one_line_error(run(model, pictures, "-o", tmp_path / "out.png"))
    assert "out.png: names a file, but 2 inputs need a folder" in line
    assert not (tmp_path / "out.png").exists()


def test_a_trailing_slash_makes_the_output_a_folder(model, pictures, tmp_path):
    result = run(model, pictures / "sky.png", "-o", f"{tmp_path / 'results.v2'}/", "-q")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "results.v2").iterdir()] == ["sky.png"]


def test_a_folder_done_twice_skips_its_own_outputs(model, pictures):
    assert run(model, pictures, "-q").exit_code == 0
    result = run(model, pictures, "-q", "--force")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in pictures.iterdir()) == [
        "shapes.debanded.png", "shapes.png", "sky.debanded.png", "sky.png"
    ]  # fmt: skip


def test_a_glob_done_twice_skips_its_own_outputs(model, pictures, monkeypatch):
    """A second run of "*.png" took the first run's outputs in, and then refused to write over them."""
    monkeypatch.chdir(pictures)
    assert run(model, "*.png", "-q").exit_code == 0
    result = run(model, "*.png", "-q", "--force")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in pictures.iterdir()) == [
        "shapes.debanded.png", "shapes.png", "sky.debanded.png", "sky.png"
    ]  # fmt: skip
    result = run(model, "s*.debanded.png", "-q")  # asked for by name: taken
    assert result.exit_code == 0, result.output
    assert (pictures / "sky.debanded.debanded.png").is_file()


def test_a_glob_takes_no_folder_and_a_vanished_input_fails_alone(model, pictures, tmp_path, monkeypatch):
    """A glob matching a folder (IsADirectoryError) or a link to nothing (FileNotFoundError), and a
    name too long for the file system, were tracebacks that ended the batch. A folder's hidden
    files (macOS's ._NAME.jpg beside each picture) were taken as pictures and failed."""
    (pictures / "sub.png").mkdir()  # a folder the glob matches: its pictures, as from the shell
    write_image(pictures / "sub.png" / "inner.png", read_image(pictures / "sky.png"))
    (pictures / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (pictures / "._sky.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    result = run(model, str(pictures / "*.png"), "-o", tmp_path / "out", "-q")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"bdinn-run: error: {pictures / 'gone.png'}: No such file or directory",
        "bdinn-run: error: 1 of 4 inputs failed (see above)",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["inner.png", "shapes.png", "sky.png"]
    (pictures / "gone.png").unlink()
    result = run(model, pictures, "-o", tmp_path / "folder", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["shapes.png", "sky.png"]
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".sky.png").write_bytes((pictures / "sky.png").read_bytes())
    message = one_line_error(run(model, tmp_path / "hidden", "-q"))
    assert message.endswith("folder holds no pictures or videos (hidden files are skipped)")
    long = "a" * 300 + ".png"
    message = one_line_error(run(model, pictures / "sky.png", "-o", tmp_path / long, "-q"))
    assert message == f"bdinn-run: error: {tmp_path / long}: File name too long"


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow writes no AVIF")
def test_a_still_avif_is_a_picture(model, pictures, tmp_path):
    """FFmpeg's MP4 reader shows it as a video of one frame: it became NAME.debanded.mkv, an HEVC
    clip, and -o x.png was refused as 'cannot write a video as .png'."""
    Image.open(pictures / "sky.png").save(tmp_path / "sky.avif", quality=95)
    result = run(model, tmp_path / "sky.avif", "-q")
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "sky.debanded.png").shape == (64, 96, 3)
    result = run(model, tmp_path / "sky.avif", "-o", tmp_path / "x.png", "-q")
    assert result.exit_code == 0 and (tmp_path / "x.png").is_file(), result.output
    # HEIF, which Pillow does not read, stays what FFmpeg reads it as: a video of one frame
    with av.open(str(tmp_path / "one.heic"), "w", format="mp4", options={"brand": "heic"}) as heif:
        stream = heif.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(read_image(pictures / "sky.png"))),
                       *stream.encode()]:  # fmt: skip
            heif.mux(packet)
    result = run(model, tmp_path / "one.heic", "-q")
    assert result.exit_code == 0 and (tmp_path / "one.debanded.mkv").is_file(), result.output


def test_a_checkpoints_sidecar_given_as_the_model_is_refused_before_any_work(model, pictures, tmp_path):
    """`bdinn-run best.json a.png` debanded a.png with the bundled model, then failed on best.json
    as a picture."""
    sidecar = model.with_suffix(".json")
    message = one_line_error(run(sidecar, pictures / "sky.png", "-o", tmp_path / "out", "-q"), exit_code=2)
    assert message.startswith(f"bdinn-run: error: {sidecar}: a JSON file, not a picture, video or model;")
    assert not (tmp_path / "out").exists()


def test_an_overlap_over_half_the_tile_is_a_usage_error_naming_it(model, pictures, tmp_path):
    """It exited 1 with the Python API's words, 'overlap must be a whole number between 0 and half
    the tile', where every other bad option exits 2 and names its flag."""
    result = run(model, pictures / "sky.png", "-o", tmp_path / "o.png", "--tile", "40", "--overlap", "24")
    message = one_line_error(result, exit_code=2)
    assert message == (
        "bdinn-run: error: Invalid value for --overlap: 24 is more than half of --tile 40 "
        "(see bdinn-run --help)"
    )


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (("--plugin-library", "x.so"), "plugin_library (--plugin-library) is for TensorRT plans; a"),
        (
            ("--allow-embedded-plugin",),
            "allow_embedded_plugin (--allow-embedded-plugin) is for TensorRT plans that carry their "
            "plugin library; a",
        ),
    ],
)
def test_plugin_options_for_a_model_that_is_no_plan_are_refused(model, pictures, tmp_path, option, said):
    """--plugin-library and --allow-embedded-plugin with a checkpoint or an ONNX file were ignored
    (the library's path never looked at)."""
    result = run(model, pictures / "sky.png", "-o", tmp_path / "o.png", *option)
    message = one_line_error(result)
    assert message == f"bdinn-run: error: {model}: {said} .safetensors file runs on torch without one"
    assert not (tmp_path / "o.png").exists()


def test_an_empty_output_path_is_refused(model, pictures, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(model, pictures / "sky.png", "-o", "")  # -o "$OUT" with OUT unset wrote into .
    assert result.exit_code == 2 and "an empty path (an unset variable?)" in result.output
    assert not (tmp_path / "sky.png").exists()


def test_dither_is_the_same_every_run_and_differs_between_pictures(model, pictures, tmp_path):
    """Seeded by the picture's name: reruns agree, and the frames of a sequence get noise of their
    own (one seed for all laid the same pattern over every frame, correlated 0.67 frame to frame)."""
    for name in ("a.png", "b.png"):
        assert run(model, pictures / "sky.png", "-o", tmp_path / name, "--dither", "-q").exit_code == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    frames = tmp_path / "frames"
    frames.mkdir()
    deep = (read_image(pictures / "sky.png").astype(np.uint16) * 257 + 128).astype(
        np.uint16
    )  # between levels
    for name in ("0001.png", "0002.png"):
        write_image(frames / name, deep)
    odd = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name on a UTF-8 system: no str encodes it
    write_image(frames.parent / odd, deep)
    assert run(model, frames.parent / odd, "-o", tmp_path / "odd.png", "--dither", "-q").exit_code == 0
    result = run(model, frames, "-o", tmp_path / "out/", "--bit-depth", "8", "--dither", "-q")
    assert result.exit_code == 0, result.output
    one, two = (read_image(tmp_path / "out" / name).astype(int) for name in ("0001.png", "0002.png"))
    assert np.abs(one - two).max() >= 1 and np.mean(one != two) > 0.1


def test_a_file_named_twice_is_done_once(model, pictures, tmp_path, monkeypatch):
    from bdinn.runtime.run_cli import expand_inputs

    monkeypatch.chdir(pictures)
    named = expand_inputs(("sky.png", "shapes.png", str(pictures / "sky.png"), "./shapes.png"))
    assert named == [Path("sky.png"), Path("shapes.png")]  # first spelling, first place
    result = run(model, "sky.png", pictures / "sky.png", "./sky.png", "-o", tmp_path / "o", "-q")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["sky.png"]


def test_a_picture_too_small_is_named_in_its_error(model, pictures, tmp_path):
    write_image(pictures / "tiny.png", np.zeros((8, 8, 3), np.uint8))
    result = run(model, pictures, "-o", tmp_path / "o", "-q")
    assert result.exit_code == 1
    assert "tiny.png: image is 8x8; bdinn needs at least 16x16 (pad or enlarge it)" in result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["shapes.png", "sky.png"]


def _with_red_primary(profile: bytes, xyz: tuple[float, float, float]) -> bytes:
    """An ICC profile with its red colorant (rXYZ tag) moved: another colour space, same name."""
    (count,) = struct.unpack(">I", profile[128:132])
    for entry in range(132, 132 + 12 * count, 12):
        signature, offset, _ = struct.unpack(">4sII", profile[entry : entry + 12])
        if signature == b"rXYZ":  # 'XYZ ', 4 reserved bytes, then X, Y, Z as s15Fixed16
            values = struct.pack(">3i", *(round(v * 65536) for v in xyz))
            return profile[: offset + 8] + values + profile[offset + 20 :]
    raise AssertionError("no rXYZ tag")


def test_the_colour_profile_is_kept(model, pictures, tmp_path):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.open(pictures / "sky.png").save(pictures / "tagged.png", icc_profile=profile)
    result = run(model, pictures / "tagged.png", "-o", tmp_path / "out.png", "-q")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out.png").info.get("icc_profile") == profile
    gray = bytearray(profile)
    gray[16:20] = b"GRAY"  # a gray profile does not describe an RGB picture: PNG readers reject it
    Image.open(pictures / "sky.png").save(pictures / "gray-tagged.png", icc_profile=bytes(gray))
    result = run(model, pictures / "gray-tagged.png", "-o", tmp_path / "g.png", "-q")
    assert result.exit_code == 0, result.output
    assert "Warning: " in result.output and "GRAY colour profile does not fit this picture" in result.output
    assert "icc_profile" not in Image.open(tmp_path / "g.png").info
    # sRGB on a gray picture is left out as well, but with nothing to say: it is what viewers assume
    Image.open(pictures / "sky.png").convert("L").save(pictures / "gray-srgb.png", icc_profile=profile)
    result = run(model, pictures / "gray-srgb.png", "-o", tmp_path / "gs.png", "-q")
    assert result.exit_code == 0 and "Warning" not in result.output, result.output
    # OpenCV writes no profile into TIFF, WebP or JPEG: said, unless it is sRGB (what viewers assume),
    # by its colours, not its name: a wider red under the name sRGB was dropped without a word
    wide = _with_red_primary(profile, (0.55, 0.26, 0.0))
    Image.open(pictures / "sky.png").save(pictures / "wide.png", icc_profile=wide)
    renamed = profile.replace("sRGB".encode("utf-16-be"), "Mine".encode("utf-16-be"))  # sRGB by another name
    Image.open(pictures / "sky.png").save(pictures / "renamed.png", icc_profile=renamed)
    for source, said in (("tagged.png", False), ("renamed.png", False), ("wide.png", True)):
        result = run(model, pictures / source, "-o", tmp_path / f"{source}.tif", "-q")
        assert result.exit_code == 0, result.output
        warned = "ICC colour profile is not written into .tif; write .png for it" in result.output
        assert warned == said, result.output


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _chunk_types(png: Path) -> list[bytes]:
    data, found, at = png.read_bytes(), [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        found.append(kind)
        at += 12 + length
    return found


def test_colour_chunks_after_64_kib_of_text_are_kept_whole(model, pictures, tmp_path):
    """Only the first 64 KiB were read for colour chunks: a cICP behind an XMP packet was lost
    without a word, and a gAMA cut by the 64 KiB mark was copied cut short, which made the output
    a broken PNG (exit status 0)."""
    data = (pictures / "sky.png").read_bytes()
    cicp, gama = _chunk(b"cICP", bytes([9, 16, 0, 1])), _chunk(b"gAMA", struct.pack(">I", 100000))
    straddling = (1 << 16) - 10 - 33 - 12 - 8  # gAMA starts 10 bytes before the mark
    for name, text, colour in (("far.png", 70000, cicp), ("straddle.png", straddling, gama)):
        comment = _chunk(b"tEXt", b"Comment\0" + b"a" * text)
        (pictures / name).write_bytes(data[:33] + comment + colour + data[33:])
        result = run(model, pictures / name, "-o", tmp_path / name, "-q")
        assert result.exit_code == 0, result.output
        out = (tmp_path / name).read_bytes()
        assert colour in out and read_image(tmp_path / name).shape == read_image(pictures / "sky.png").shape
    broken = data[:33] + _chunk(b"gAMA", struct.pack(">I", 100000))[:-1] + b"\0" + data[33:]  # bad CRC
    (pictures / "badcrc.png").write_bytes(broken)
    from bdinn.runtime.png_chunks import read_png_colour

    assert read_png_colour(pictures / "badcrc.png") == b""


def test_a_pngs_colour_chunks_are_kept(model, pictures, tmp_path):
    """gAMA, cHRM and cICP (an HDR PNG's PQ coding) were dropped without a word: viewers then took
    linear or PQ values for sRGB. They go into a PNG output, and are said to be lost elsewhere."""
    colour = (
        _chunk(b"gAMA", struct.pack(">I", 100000))  # linear light
        + _chunk(b"cHRM", struct.pack(">8I", 31270, 32900, 70800, 29200, 17000, 79700, 13100, 4600))
        + _chunk(b"cICP", bytes([9, 16, 0, 1]))  # BT.2020 primaries, PQ, full range
    )
    data = (pictures / "sky.png").read_bytes()
    (pictures / "hdr.png").write_bytes(data[:33] + colour + data[33:])  # after IHDR
    result = run(model, pictures / "hdr.png", "-o", tmp_path / "out.png", "-q")
    assert result.exit_code == 0, result.output
    out = (tmp_path / "out.png").read_bytes()
    assert colour in out and out.index(colour) < out.index(b"IDAT")
    # README's recipe for writing a picture as bdinn-run writes it gives the same file.
    from bdinn.runtime import Debander
    from bdinn.runtime.imageio import read_icc_profile, read_metadata, read_png_colour

    source = pictures / "hdr.png"
    with Debander.open(model) as deband:
        picture = read_image(source, as_file=True)
        icc, colour, metadata = read_icc_profile(source), read_png_colour(source), read_metadata(source)
        write_image(tmp_path / "api.png", deband(picture), icc, colour, metadata=metadata, replace=False)
    assert (tmp_path / "api.png").read_bytes() == out  # the recipe without png_colour lost the chunks
    result = run(model, pictures / "hdr.png", "-o", tmp_path / "out.tif", "-q")
    assert (
        result.exit_code == 0
        and "PNG colour chunks (gAMA, cHRM, cICP) are not written into .tif" in result.output
    )
    # sRGB's own chunks: kept in a PNG, and nothing to say for a .tif (what it is taken for anyway)
    srgb = _chunk(b"sRGB", bytes([0])) + _chunk(b"gAMA", struct.pack(">I", 45455))
    (pictures / "srgb.png").write_bytes(data[:33] + srgb + data[33:])
    result = run(model, pictures / "srgb.png", "-o", tmp_path / "s.png", "-q")
    assert result.exit_code == 0 and {b"sRGB", b"gAMA"} <= set(_chunk_types(tmp_path / "s.png"))
    result = run(model, pictures / "srgb.png", "-o", tmp_path / "s.tif", "-q")
    assert result.exit_code == 0 and "Warning" not in result.output
    # An sRGB chunk beside an ICC profile, which goes in too, would break the PNG rules: left out
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    icc = _chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(profile))
    (pictures / "both.png").write_bytes(data[:33] + icc + srgb + data[33:])
    result = run(model, pictures / "both.png", "-o", tmp_path / "b.png", "-q")
    assert result.exit_code == 0, result.output
    kinds = _chunk_types(tmp_path / "b.png")
    assert b"iCCP" in kinds and b"gAMA" in kinds and b"sRGB" not in kinds


def test_an_output_format_that_cannot_hold_the_picture_is_refused_before_the_work(model, pictures, tmp_path):
    """16 bits into WebP and alpha into JPEG failed after the model had run (25 s on a 2000 x
    1500 picture); the header tells before."""
    write_image(pictures / "deep.png", np.full((24, 24, 3), 40000, np.uint16))
    write_image(pictures / "clear.png", np.full((24, 24, 4), 200, np.uint8))
    write_image(pictures / "strip.png", np.full((16, 16400, 3), 90, np.uint8))  # past WebP's 16383 px
    write_image(pictures / "tall.tif", np.full((16400, 16, 3), 90, np.uint8))  # TIFFs were checked after
    for source, target, message in (
        ("deep.png", "deep.webp", "a 16-bit picture is written as .png or .tif only; pass --bit-depth 8"),
        ("clear.png", "clear.jpg", "JPEG holds no alpha"),
        (
            "strip.png",
            "strip.webp",
            "strip.webp: 16400x16 is past WebP's 16383-pixel limit on a side; write .png",
        ),
        ("tall.tif", "tall.webp", "tall.webp: 16x16400 is past WebP's 16383-pixel limit on a side"),
    ):
        result = run(tmp_path / "absent.onnx", pictures / source, "-o", tmp_path / target)
        assert result.exit_code == 1 and message in result.output, result.output  # before the model
    result = run(model, pictures / "deep.png", "-o", tmp_path / "deep.webp", "--bit-depth", "8", "-q")
    assert result.exit_code == 0, result.output
    # a float TIFF was told to pass --bit-depth 8, which only led to the real refusal
    Image.fromarray(np.full((24, 24), 0.5, np.float32), mode="F").save(pictures / "float.tif")
    for extra in ([], ["--bit-depth", "8"]):
        result = run(tmp_path / "absent.onnx", pictures / "float.tif", "-o", tmp_path / "float.jpg", *extra)
        line = one_line_error(result)
        assert line.endswith("float.tif: 32-bit samples are not supported (save it as 8- or 16-bit)")


def test_jpeg_output_is_written_with_a_warning(model, pictures, tmp_path):
    result = run(model, pictures / "sky.png", "-o", tmp_path / "sky.jpg", "-q")
    assert result.exit_code == 0, result.output
    assert "JPEG's lossy compression brings some banding back" in result.output
    assert read_image(tmp_path / "sky.jpg").shape == (64, 96, 3)


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--bit-depth", "10"], "pictures are written with 8 or 16 bits", 2),
        (["--tile", "100"], "100 is not a multiple of 8", 2),
        (["--backend", "onnxruntime"], "a .safetensors file runs on the torch backend, not onnxruntime", 1),
        (["--device", "cuda"], "PyTorch sees no CUDA GPU", 1),
    ],
)
def test_bad_options(model, pictures, tmp_path, args, message, code):
    result = run(model, pictures / "sky.png", "-o", tmp_path / "o.png", *args)
    assert result.exit_code == code
    assert message in result.output
    assert not (tmp_path / "o.png").exists()


def test_unknown_model_file(pictures, tmp_path):
    weights = tmp_path / "random.safetensors"
    weights.write_bytes(b"\x00" * 64)
    line = one_line_error(run(weights, pictures / "sky.png", "-o", tmp_path / "o.png"))
    assert "random" in line


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Path | None:
    """A real plan for SM89 built on this machine by TensorRT-RTX (no GPU needed to build)."""
    pytest.importorskip("onnx", reason="needs the onnx extra")
    from bdinn.runtime.tensorrt import TensorRTUnavailable, load_tensorrt

    try:
        load_tensorrt("tensorrt-rtx")
    except TensorRTUnavailable:
        pytest.skip("TensorRT-RTX is not installed")
    from bdinn.export.cli import main as export

    folder = tmp_path_factory.mktemp("engine")
    ckpt = save_checkpoint(folder / "tiny.safetensors", perturbed_tiny(), config_name=None, step=1)
    plan = folder / "tiny.plan"
    result = CliRunner().invoke(export, [str(ckpt), "--fp16", "--target", "sm89", "-o", str(plan),
                                         "--cache-dir", str(folder / "cache"), "--opt", "64x64",
                                         "--max", "256x256"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return plan


def test_engine_without_a_gpu_is_one_clear_line(engine, pictures, tmp_path):
    line = one_line_error(run(engine, pictures / "sky.png", "-o", tmp_path / "o.png"))
    assert "TensorRT engines need an NVIDIA GPU and driver, and none is usable here" in line
    assert not (tmp_path / "o.png").exists()


def test_engine_for_another_tensorrt_version(engine, pictures, tmp_path):
    plan = tmp_path / "old.plan"
    plan.write_bytes(engine.read_bytes())
    sidecar = json.loads(engine.with_suffix(".plan.json").read_text())
    sidecar["tensorrt"]["version"] = "1.0.0.1"
    plan.with_suffix(".plan.json").write_text(json.dumps(sidecar))
    line = one_line_error(run(plan, pictures / "sky.png", "-o", tmp_path / "o.png"))
    assert "built with tensorrt-rtx 1.0.0.1 but" in line and "rebuild the engine with bdinn-export" in line


def test_plugin_library_that_cannot_load(engine, pictures, tmp_path):
    broken = tmp_path / "libbroken.so"
    broken.write_bytes(b"not an ELF file")
    args = (engine, pictures / "sky.png", "-o", tmp_path / "o.png", "--plugin-library")
    line = one_line_error(run(*args, broken))
    assert "libbroken.so: TensorRT could not load this plugin library" in line
    line = one_line_error(run(*args, tmp_path / "none.so"))
    assert "none.so: plugin library not found" in line


@pytest.mark.parametrize(("key", "value"), [
    ("tensorrt", "x"),
    ("io", {"input": "image"}),
    ("profile", []),
    ("io", {"input": {"name": "x", "dtype": "float64"}, "output": {"name": "y", "dtype": "float32"}}),
    ("profile", {"min": [64, 64], "opt": [64, 64], "max": "big"}),  # read as ('b', 'i', 'g')
    # a hostile sidecar: a TypeError traceback (unhashable), and a frame padded to 120 GB
    ("tensorrt", {"flavour": ["tensorrt"], "version": "10"}),
    ("tensorrt", {"flavour": "tensorrt-rtx", "version": {"a": 1}}),
    ("io", {"input": {"name": ["x"], "dtype": "float32"}, "output": {"name": "y", "dtype": "float32"}}),
    ("profile", {"min": [100000, 100000], "opt": [100000, 100000], "max": [100000, 100000]}),
])  # fmt: skip
def test_engine_with_a_damaged_sidecar(engine, pictures, tmp_path, key, value):
    plan = tmp_path / "edited.plan"
    plan.write_bytes(engine.read_bytes())
    sidecar = json.loads(engine.with_suffix(".plan.json").read_text())
    plan.with_suffix(".plan.json").write_text(json.dumps({**sidecar, key: value}))
    line = one_line_error(run(plan, pictures / "sky.png", "-o", tmp_path / "o.png"))
    assert f"edited.plan.json: engine sidecar's {key!r} is damaged; rebuild with bdinn-export" in line


def test_engine_with_another_plans_sidecar(engine, pictures, tmp_path):
    """A sidecar says a plan's I/O dtypes and profile: one copied beside another plan (FP16 beside
    FP32) would size every buffer wrong. It records its plan's SHA-256."""
    plan = tmp_path / "other.plan"
    plan.write_bytes(engine.read_bytes() + b"\0")  # any other plan
    plan.with_suffix(".plan.json").write_text(engine.with_suffix(".plan.json").read_text())
    line = one_line_error(run(plan, pictures / "sky.png", "-o", tmp_path / "o.png"))
    assert "other.plan.json: describes another plan than other.plan (its SHA-256 differs)" in line


def test_engine_without_sidecar(engine, pictures, tmp_path):
    plan = tmp_path / "lonely.plan"
    plan.write_bytes(engine.read_bytes())
    line = one_line_error(run(plan, pictures / "sky.png", "-o", tmp_path / "o.png"))
    assert "lonely.plan" in line


class TestVideo:
    av = pytest.importorskip("av", reason="needs the video extra")

    def test_video_round_trip(self, model, tmp_path):
        from video_sources import N, make_video

        source = make_video(tmp_path / "clip.mp4")
        result = run(model, source, "-o", tmp_path / "clip.mkv", "-q")
        assert result.exit_code == 0, result.output
        with self.av.open(str(tmp_path / "clip.mkv")) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.pix_fmt == "yuv420p10le"
            assert sum(1 for _ in container.decode(stream)) == N
            assert len(container.streams.audio) == 1

    def test_a_pipe_without_a_suffix_is_a_video_or_a_picture_as_its_output_says(
        self, model, pictures, tmp_path
    ):
        """<(cat clip.mkv) or a FIFO has no suffix, and looking inside would use it up: it was taken
        for a picture, and -o clip.mkv refused as "cannot write a picture as '.mkv' (use .png)". A
        picture through a FIFO was opened four times (pixels, colour profile, chunks, EXIF): the
        second open waited for a writer forever."""
        from video_sources import N, make_video

        def fed(name: str, data: bytes) -> tuple[Path, threading.Thread]:
            fifo = tmp_path / name
            os.mkfifo(fifo)
            writer = threading.Thread(target=fifo.write_bytes, args=(data,), daemon=True)
            writer.start()
            return fifo, writer

        def drained(fifo: Path, writer: threading.Thread) -> None:
            if writer.is_alive():  # bdinn-run refused before opening it: let the writer finish
                fifo.read_bytes()
            writer.join(10)

        clip = make_video(tmp_path / "clip.mkv", audio=False).read_bytes()
        fifo, writer = fed("feed", clip)
        result = run(model, fifo, "-o", tmp_path / "out.mkv", "-q")
        drained(fifo, writer)
        assert result.exit_code == 0, result.output
        with self.av.open(str(tmp_path / "out.mkv")) as container:
            assert sum(1 for _ in container.decode(video=0)) == N
        fifo, writer = fed("picture", (pictures / "sky.png").read_bytes())  # still a picture
        result = run(model, fifo, "-o", tmp_path / "out.png", "-q")
        drained(fifo, writer)
        assert result.exit_code == 0, result.output
        assert run(model, pictures / "sky.png", "-o", tmp_path / "from-file.png", "-q").exit_code == 0
        assert np.array_equal(read_image(tmp_path / "out.png"), read_image(tmp_path / "from-file.png"))

    @pytest.mark.parametrize(("depth", "precision"), [(None, 16), ("10", 16), ("12", 16), ("8", 8)])
    def test_frames_are_debanded_at_the_precision_the_output_keeps(
        self, model, tmp_path, monkeypatch, depth, precision
    ):
        """10-bit output (the default) made from frames rounded to 8 bits has the bands back."""
        from video_sources import make_video

        from bdinn.runtime.debander import Debander

        asked, real = [], Debander.__call__
        monkeypatch.setattr(
            Debander, "__call__", lambda me, *a, **k: asked.append(k["bit_depth"]) or real(me, *a, **k)
        )
        source = make_video(tmp_path / "clip.mp4", audio=False)
        extra = ["--bit-depth", depth] if depth else []
        assert run(model, source, "-o", tmp_path / "out.mkv", *extra, "-q").exit_code == 0
        assert asked and set(asked) == {precision}

    def test_dithered_8_bit_video_is_the_same_every_run(self, model, tmp_path):
        """Each frame's dither is seeded by its index: reruns give the same video, frame to frame
        the noise still changes."""
        from video_sources import make_video, planes

        source = make_video(tmp_path / "clip.mp4", audio=False)
        for name in ("a.mkv", "b.mkv"):
            args = (source, "-o", tmp_path / name, "--bit-depth", "8", "--dither", "--codec", "ffv1", "-q")
            assert run(model, *args).exit_code == 0
        a, b = planes(tmp_path / "a.mkv"), planes(tmp_path / "b.mkv")
        assert all(
            np.array_equal(x, y) for fa, fb in zip(a, b, strict=True) for x, y in zip(fa, fb, strict=True)
        )
        plain = (source, "-o", tmp_path / "plain.mkv", "--bit-depth", "8", "--codec", "ffv1", "-q")
        assert run(model, *plain).exit_code == 0
        noise = [fa[0].astype(int) - fp[0] for fa, fp in zip(a, planes(tmp_path / "plain.mkv"), strict=True)]
        moved = [np.count_nonzero(n) / n.size for n in noise]
        assert all(0.05 < share < 0.95 for share in moved), moved  # dither moved some samples, not all
        # A still shot: the same picture in every frame gets fresh noise in each (a seed per frame)
        still = tmp_path / "still.mkv"
        with self.av.open(str(still), "w") as out:
            stream = out.add_stream("ffv1", rate=24)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            picture = np.repeat(np.linspace(40, 90, 64)[None, :, None], 48, 0).repeat(3, 2).astype(np.uint8)
            for i in range(3):
                frame = self.av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        dithered = (still, "-o", tmp_path / "still-d.mkv", "--bit-depth", "8", "--dither", "--codec", "ffv1")
        assert run(model, *dithered, "-q").exit_code == 0
        frames = [f[0] for f in planes(tmp_path / "still-d.mkv")]
        assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])

    def test_video_without_video_stream(self, model, tmp_path):
        from video_sources import make_video

        source = make_video(tmp_path / "song.mp4", video=False)
        line = one_line_error(run(model, source, "-o", tmp_path / "out.mkv"))
        assert "song.mp4: no video stream; pass a file with video" in line
        assert not (tmp_path / "out.mkv").exists() and leftovers(tmp_path) == []

    def test_sound_or_subtitles_named_as_neither_picture_nor_video(self, model, tmp_path):
        """audio.m4a -o x.mkv said 'x.mkv: cannot write a picture as .mkv', blaming the output, and
        -o - said to give the 'picture' an output file: FFmpeg reads them, with no moving picture."""
        from video_sources import make_video

        sound = make_video(tmp_path / "song.m4a", video=False)
        (tmp_path / "talk.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
        for source in (sound, tmp_path / "talk.srt"):
            for out in (tmp_path / "out.mkv", "-"):
                line = one_line_error(run(model, source, "-o", out))
                assert f"{source}: no video stream (only sound, subtitles or cover art)" in line, line
        assert leftovers(tmp_path) == [] and not (tmp_path / "out.mkv").exists()

    def test_unwritable_video_output(self, model, tmp_path):
        from video_sources import make_video

        source = make_video(tmp_path / "clip.mp4")
        (tmp_path / "taken").write_bytes(b"a file")
        line = one_line_error(run(model, source, "-o", tmp_path / "taken" / "out.mkv", "-q"))
        assert "out.mkv: cannot write there (" in line and "is a file, not a folder" in line
        assert leftovers(tmp_path) == []

    def test_library_warnings_are_one_line_each(self, model, tmp_path):
        from video_sources import make_video

        source = make_video(tmp_path / "clip.mp4")
        result = run(model, source, "-o", tmp_path / "clip.y4m", "-q")
        assert result.exit_code == 0, result.output
        assert result.output.strip().splitlines() == [
            f"Warning: {tmp_path / 'clip.y4m'}: Y4M holds no audio; 1 audio stream(s) dropped"
        ]

    def test_a_pipe_in_and_out(self, model, tmp_path):
        """`producer | bdinn-run - -o - | encoder`: the same Y4M bytes as writing a .y4m file."""
        from video_sources import N, make_video

        source = make_video(tmp_path / "clip.mkv")
        assert run(model, source, "-o", tmp_path / "file.y4m", "-q").exit_code == 0
        with source.open("rb") as stdin:
            piped = _bdinn_run(model, "-", "-o", "-", "-q", stdin=stdin)
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout == (tmp_path / "file.y4m").read_bytes()
        assert piped.stdout.startswith(b"YUV4MPEG2 W64 H48 F24:1") and b" C420p10 " in piped.stdout[:64]
        assert piped.stdout.count(b"FRAME\n") == N
        assert piped.stderr.decode().splitlines() == [
            "Warning: <stdout>: Y4M holds no audio; 1 audio stream(s) dropped"
        ]
        with (tmp_path / "file.y4m").open("rb") as stdin:  # and back in: Y4M from a pipe to a file
            again = _bdinn_run(model, "-", "-o", tmp_path / "again.mkv", "-q", stdin=stdin)
        assert again.returncode == 0, again.stderr
        with self.av.open(str(tmp_path / "again.mkv")) as container:
            assert sum(1 for _ in container.decode(video=0)) == N

    def test_a_pipe_that_ends_inside_a_frame(self, model, tmp_path):
        """`producer | bdinn-run - -o out.mkv` where the producer died mid-frame: FFmpeg drops the
        part frame silently, so without a word this looked like the stream's end (exit 0)."""
        frame = b"FRAME\n" + bytes(64 * 48 * 3 // 2)
        stream = b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\n" + frame * 3
        cut = _bdinn_run(model, "-", "-o", tmp_path / "cut.mkv", "-q", stdin=stream[:-1000])
        assert cut.returncode == 0, cut.stderr
        assert cut.stderr.decode().splitlines() == [
            "Warning: <stdin>: ends inside a frame (3614 bytes after the last whole one, which FFmpeg "
            "drops); the output holds the whole frames: did the program writing it stop early?"
        ]
        with self.av.open(str(tmp_path / "cut.mkv")) as container:
            assert sum(1 for _ in container.decode(video=0)) == 2
        whole = _bdinn_run(model, "-", "-o", tmp_path / "whole.mkv", "-q", stdin=stream)
        assert whole.returncode == 0 and whole.stderr == b""

    def test_a_reader_that_stops_early(self, model, tmp_path):
        """`bdinn-run - -o - | head -c 100`: one line saying so, not an FFmpeg errno."""
        from video_sources import make_video

        source = make_video(tmp_path / "clip.mkv", audio=False)  # 8 Y4M frames: more than a pipe buffers
        command = [sys.executable, "-c", "from bdinn.runtime.run_cli import main; main()", str(model)]
        with source.open("rb") as stdin:
            process = subprocess.Popen(
                [*command, "-", "-o", "-", "-q"], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            assert process.stdout.read(100).startswith(b"YUV4MPEG2")
            process.stdout.close()
            stderr = process.stderr.read().decode()
            assert process.wait(timeout=300) == 1
        assert re.fullmatch(
            r"bdinn-run: error: <stdout>: the program reading standard output closed it after \d+ frame\(s\) "
            r"were encoded; stopping\n",
            stderr,
        ), stderr

    def test_a_pipe_with_stderr_closed(self, model, tmp_path):
        """`bdinn-run - -o - 2>&-`: progress and warnings go nowhere, the stream stays clean."""
        import os

        from video_sources import N, make_video

        source = make_video(tmp_path / "clip.mkv")  # with audio: its warning must not reach stdout
        command = [sys.executable, "-c", "from bdinn.runtime.run_cli import main; main()", str(model)]
        with source.open("rb") as stdin:
            done = subprocess.run(
                [*command, "-", "-o", "-"], stdin=stdin, stdout=subprocess.PIPE,
                preexec_fn=lambda: os.close(2), timeout=300, check=False,
            )  # fmt: skip
        assert done.returncode == 0
        assert done.stdout.startswith(b"YUV4MPEG2") and done.stdout.count(b"FRAME\n") == N

    def test_video_is_not_written_to_or_read_from_a_terminal(self, model, tmp_path):
        import os
        import pty

        from video_sources import make_video

        source = make_video(tmp_path / "clip.mkv", audio=False)
        controller, terminal = pty.openpty()
        try:
            with source.open("rb") as stdin:
                command = [sys.executable, "-c", "from bdinn.runtime.run_cli import main; main()", str(model)]
                done = subprocess.run(
                    [*command, "-", "-o", "-"],
                    stdin=stdin,
                    stdout=terminal,
                    stderr=subprocess.PIPE,
                    timeout=300,
                )
        finally:
            os.close(terminal)
            os.close(controller)
        assert done.returncode == 1
        assert (
            done.stderr.decode()
            == "bdinn-run: error: -o -: standard output is a terminal; pipe it into a program "
            "(| ffmpeg -i - ...)\n"
        )
        controller, terminal = pty.openpty()  # nor read from one: it would wait for keystrokes
        try:
            command = [sys.executable, "-c", "from bdinn.runtime.run_cli import main; main()", str(model)]
            done = subprocess.run(
                [*command, "-", "-o", tmp_path / "out.mkv"], stdin=terminal, capture_output=True, timeout=300
            )
        finally:
            os.close(terminal)
            os.close(controller)
        assert done.returncode == 1
        assert done.stderr.decode().startswith(
            "bdinn-run: error: -: standard input is a terminal; pipe a video into it"
        )

    def test_closed_standard_streams_and_special_outputs_are_one_line(self, model, pictures, tmp_path):
        """A closed standard input or output (<&-, >&-) was an AttributeError traceback; a named pipe
        or device as the output was replaced by a regular file (--force), or refused as if several
        inputs needed a folder (no suffix)."""
        from video_sources import make_video

        clip = make_video(tmp_path / "clip.mkv", audio=False)
        command = [sys.executable, "-c", "from bdinn.runtime.run_cli import main; main()", str(model)]

        def closing(fd: int, *args: object) -> subprocess.CompletedProcess:
            """bdinn-run ARGS started with file descriptor `fd` closed."""
            started = [*command, *map(str, args)]
            return subprocess.run(
                started, stderr=subprocess.PIPE, timeout=300, preexec_fn=partial(os.close, fd)
            )

        closed_out = closing(1, clip, "-o", "-")
        assert closed_out.returncode == 1
        assert closed_out.stderr.decode().splitlines() == [
            "bdinn-run: error: -o -: standard output is closed; pipe it into a program (| ffmpeg -i - ...)"
        ]
        closed_in = closing(0, "-", "-o", tmp_path / "out.mkv")
        assert closed_in.returncode == 1
        assert closed_in.stderr.decode().splitlines() == [
            "bdinn-run: error: -: standard input is closed; pipe a video into it (ffmpeg ... | bdinn-run -)"
        ]
        fifo = tmp_path / "to-player.y4m"
        os.mkfifo(fifo)
        for args in ([clip, "-o", fifo], [clip, "-o", fifo, "--force"]):
            line = one_line_error(run(model, *args))
            assert line == (
                f"bdinn-run: error: {fifo}: is a named pipe or device, not a file; to stream a video into "
                f"it, use -o - > {fifo}"
            )
        assert fifo.is_fifo()
        line = one_line_error(run(model, pictures / "sky.png", "-o", "/dev/null", "--force"))
        assert line == (
            "bdinn-run: error: /dev/null: -o needs a file name with a suffix that says its format "
            "(.mkv, .png); to stream a video into a pipe or device, use -o - > /dev/null"
        )

    def test_pipe_errors_are_one_line(self, model, pictures, tmp_path):
        garbage = _bdinn_run(model, "-", "-o", "-", stdin=b"not a video")
        assert garbage.returncode == 1 and garbage.stdout == b""
        assert garbage.stderr.decode().splitlines() == [
            "bdinn-run: error: <stdin>: not a video stream FFmpeg can read from a pipe "
            "(pipe Y4M, MKV or MPEG-TS; "
            "MP4 only with its index first, -movflags faststart)"
        ]
        noise = tmp_path / "noise.mp4"  # an MP4 with its index at the end, too big to probe whole
        rng = np.random.default_rng(0)
        with self.av.open(str(noise), "w") as out:
            stream = out.add_stream("libx264", rate=24)
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            stream.options = {"crf": "0", "preset": "ultrafast"}
            for i in range(12):
                frame = self.av.VideoFrame.from_ndarray(
                    rng.integers(0, 256, (240, 320, 3), np.uint8), format="rgb24"
                )
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        unseekable = _bdinn_run(model, "-", "-o", "-", "-q", stdin=noise.read_bytes())
        assert unseekable.returncode == 1 and "an MP4 with its index first (-movflags faststart)" in (
            unseekable.stderr.decode()
        )
        for args, message in [
            (("-",), "-: standard input needs -o (a video file, or - for Y4M on stdout)"),
            (("-", pictures / "sky.png", "-o", tmp_path / "o"), "-: standard input must be the only input"),
            ((pictures / "sky.png", "-o", "-"), "writes a Y4M video stream; give "),
            ((pictures, "-o", "-"), "-o -: standard output takes one video, not 2 inputs"),
            (("-", "-o", tmp_path / "folder"), "folder: name an output file for the video on standard input"),
            (("-", "-o", tmp_path / "out.png"), "out.png: cannot write a video as '.png' (use .mkv)"),
        ]:
            assert message in one_line_error(run(model, *args))

    def test_encoder_settings_reach_the_encoder_and_are_checked_before_the_model_loads(self, model, tmp_path):
        from video_sources import N, make_video, x26x_settings

        source = make_video(tmp_path / "clip.mp4")
        fast = tmp_path / "fast.mp4"
        result = run(model, source, "-o", fast, "--codec", "libx264", "--preset", "ultrafast",
                     "--codec-option", "g=4", "--codec-option", "tune=grain", "-q")  # fmt: skip
        assert result.exit_code == 0, result.output
        settings = x26x_settings(tmp_path / "fast.mp4")
        assert (settings["subme"], settings["keyint"], settings["deadzone"]) == ("0", "4", "6,6")
        with self.av.open(str(tmp_path / "fast.mp4")) as container:
            assert container.streams.video[0].frames == N
        missing = tmp_path / "missing.onnx"  # the model would fail to load: the settings fail first
        line = one_line_error(run(missing, source, "-o", tmp_path / "a.mkv", "--preset", "fastest"))
        assert "a.mkv: libx265 has no preset 'fastest'; use one of ultrafast" in line
        line = one_line_error(run(missing, source, "-o", tmp_path / "b.mkv", "--codec-option", "bogus=1"))
        assert "b.mkv: libx265 has no option 'bogus'" in line
        result = run(missing, source, "-o", tmp_path / "c.mkv", "--codec-option", "tune")
        assert result.exit_code == 2 and "'tune' is not KEY=VALUE" in result.output
        # x264 writes this refusal to stderr itself: it becomes the reason in bdinn's one line
        done = _bdinn_run(missing, source, "-o", tmp_path / "d.mkv", "--codec", "libx264",
                          "--codec-option", "tune=nonsense", stdin=b"")  # fmt: skip
        [line] = done.stderr.decode().splitlines()
        assert done.returncode == 1 and "refuses the option tune=nonsense (x264 [error]: invalid tune" in line
        # x265 printed "encoded 0 frames" as the trial encoder of a refused x265-params closed
        done = _bdinn_run(missing, source, "-o", tmp_path / "f.mkv", "--codec-option", "x265-params=bogus=1",
                          stdin=b"")  # fmt: skip
        [line] = done.stderr.decode().splitlines()
        assert done.returncode == 1 and "does not take the option x265-params=bogus=1 (Unknown option" in line
        # SVT-AV1 prints a 20-line banner per encoder unless told otherwise, the trial one included
        env = {k: v for k, v in os.environ.items() if k != "SVT_LOG"}
        done = subprocess.run(
            [sys.executable, "-c", "from bdinn.runtime.run_cli import main; main()", str(model), str(source),
             "-o", str(tmp_path / "e.mkv"), "--codec", "libsvtav1", "--codec-option", "g=12", "-q"],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert leftovers(tmp_path) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "e.mkv", "fast.mp4"]

    def test_repeated_encoder_parameter_lists_add_up(self):
        from bdinn.runtime.run_cli import parse_codec_options

        pairs = ("x265-params=keyint=5", " g =1", "x265-params=bframes=0", "g=2", "tune=")
        expected = {"x265-params": "keyint=5:bframes=0", "g": "2", "tune": ""}
        assert parse_codec_options(None, None, pairs) == expected

    def test_sixteen_bit_video_is_refused(self, model, tmp_path):
        from video_sources import make_video

        source = make_video(tmp_path / "clip.mp4")
        result = run(model, source, "-o", tmp_path / "out.mkv", "--bit-depth", "16")
        assert result.exit_code == 2 and "videos are written with 8, 10 or 12 bits" in result.output


def test_a_bad_option_value_is_one_line_with_click_usage_exit_code(tmp_path):
    line = one_line_error(CliRunner().invoke(main, ["--tile", "abc", str(tmp_path / "x.png")]), exit_code=2)
    assert line == (
        "bdinn-run: error: Invalid value for '--tile': 'abc' is not a valid integer (see bdinn-run --help)"
    )


def test_a_picture_in_tiles_shows_its_tiles_and_quiet_shows_nothing(model, pictures, tmp_path, monkeypatch):
    """A large picture on the CPU runs in tiles for a minute: a bar of its tiles says it is alive,
    on a terminal (in a log each redraw was a line: 858 for one picture)."""
    from bdinn.runtime import run_cli

    logged = run(model, pictures / "sky.png", "-o", tmp_path / "log.png", "--tile", "32")
    assert logged.exit_code == 0 and "\r" not in logged.output and "%|" not in logged.output  # no terminal
    monkeypatch.setattr(run_cli, "draws_bars", lambda quiet: not quiet)  # as on a terminal
    shown = run(model, pictures / "sky.png", "-o", tmp_path / "a.png", "--tile", "32")
    assert shown.exit_code == 0, shown.output
    assert re.search(r"sky\.png: 100%\S* 15/15 ", shown.output.replace("\r", "\n"))  # 3 x 5 tiles of 64x96
    for overlap, tiles in (("0", 6), ("8", 12)):  # 2 x 3 tiles side by side; 3 x 4 overlapping by 8
        shown = run(model, pictures / "sky.png", "-o", tmp_path / f"o{overlap}.png", "--tile", "32",
                    "--overlap", overlap)  # fmt: skip
        assert shown.exit_code == 0, shown.output
        assert re.search(rf"sky\.png: 100%\S* {tiles}/{tiles} ", shown.output.replace("\r", "\n"))
    quiet = run(model, pictures / "sky.png", "-o", tmp_path / "b.png", "--tile", "32", "-q")
    assert quiet.exit_code == 0 and quiet.output == ""
    whole = run(model, pictures / "sky.png", "-o", tmp_path / "c.png")
    assert "\r" not in whole.output  # no bar: the frame ran whole


def test_progress_counts_the_tiles_of_a_frame():
    from bdinn.runtime.processing import run_tiled

    calls: list[tuple[int, int]] = []
    batch = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    out = run_tiled(lambda x: x, batch, (32, 48), 8, lambda done, total: calls.append((done, total)))
    np.testing.assert_allclose(out, batch, atol=1e-6)  # the identity, blended, is the identity
    assert calls == [(n, 9) for n in range(1, 10)]  # 3 x 3 tiles


def test_running_out_of_memory_on_one_input_is_its_line_and_the_others_go_on(
    model, pictures, tmp_path, monkeypatch
):
    """A picture too large for the memory left was a MemoryError traceback that also lost every
    input after it."""
    from bdinn.runtime import run_cli

    real = run_cli.read_image

    def read(path, **kwargs):
        if Path(path).name == "shapes.png":
            raise MemoryError
        return real(path, **kwargs)

    monkeypatch.setattr(run_cli, "read_image", read)
    result = run(model, pictures / "shapes.png", pictures / "sky.png", "-o", tmp_path / "out", "-q")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    said = "not enough memory for it (try --tile 48)"  # half the 64 x 96 picture it ran as, whole
    assert f"bdinn-run: error: {pictures / 'shapes.png'}: {said}" in lines
    assert lines[-1] == "bdinn-run: error: 1 of 2 inputs failed (see above)"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sky.png"]


def test_a_file_name_cannot_forge_lines_of_output(model, pictures, tmp_path):
    """A name holding a newline printed as two lines, the second one whatever the name said."""
    forged = pictures / "x\nbdinn-run: all done.png"
    forged.write_bytes(b"not a picture")
    result = run(model, forged, pictures / "sky.png", "-o", tmp_path / "out", "-q")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"bdinn-run: error: {pictures}/x\\nbdinn-run: all done.png: ")
    assert lines[1:] == ["bdinn-run: error: 1 of 2 inputs failed (see above)"]
    one = run(model, pictures / "sky.png", "-o", tmp_path / "a\nb.png")
    assert one.exit_code == 0 and one.output.strip().splitlines() == [
        f"{pictures / 'sky.png'} -> {tmp_path}/a\\nb.png"
    ]


def test_a_png_cut_inside_its_header_is_one_line_for_any_output(model, tmp_path):
    """A PNG signature and its end chunk, 20 bytes, with -o x.bmp: the output check read the
    header's bit depth past the file's end (IndexError)."""
    short = tmp_path / "short.png"
    short.write_bytes(
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    )
    line = one_line_error(run(model, short, "-o", tmp_path / "x.bmp"))
    assert line.startswith(f"bdinn-run: error: {short}: ")


def test_a_photo_keeps_its_exif_and_resolution(model, tmp_path):
    """bdinn-run carries the camera's EXIF (orientation set to 1: the output is upright) and DPI."""
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 8, "Nikon"
    Image.open(DATA / "soft-shapes.png").save(tmp_path / "photo.jpg", exif=exif.tobytes(), dpi=(240, 240))
    result = run(model, tmp_path / "photo.jpg")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "photo.debanded.png") as out:
        assert out.size == (192, 320) and out.getexif()[0x010F] == "Nikon" and out.getexif()[0x0112] == 1
        assert out.info["dpi"] == pytest.approx((240, 240), abs=0.01)


def test_loops_of_symbolic_links_and_fifos_are_no_traceback_nor_a_hang(model, pictures, tmp_path):
    """Path.resolve() raises RuntimeError on a link loop (Python 3.10-3.12): a traceback for an
    output path, and a glob that matched one lost the whole batch; a FIFO a glob matched waited
    forever for a writer."""
    (tmp_path / "l1.png").symlink_to("l2.png")
    (tmp_path / "l2.png").symlink_to("l1.png")
    line = one_line_error(run(model, pictures / "sky.png", "-o", tmp_path / "l1.png", "-q"))
    assert line == f"bdinn-run: error: {tmp_path / 'l1.png'}: already exists (pass --force to overwrite it)"
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_image(mixed / "a.png", read_image(pictures / "sky.png"))
    (mixed / "b1.png").symlink_to("b2.png")
    (mixed / "b2.png").symlink_to("b1.png")
    os.mkfifo(mixed / "c.png")
    result = run(model, f"{mixed}/*.png", "-o", tmp_path / "out", "-q")
    assert result.exit_code == 1 and result.output.splitlines()[-1].endswith(
        "2 of 3 inputs failed (see above)"
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


def test_a_device_given_as_a_picture_is_refused_unread(model, tmp_path):
    """/dev/zero (or a .png link to it) was copied to a temporary file up to 4 GB, 20-50 s and
    that much disk, before the refusal."""
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    for source in ("/dev/zero", tmp_path / "zero.png"):
        line = one_line_error(run(model, source, "-o", tmp_path / "out.png"))
        assert line == f"bdinn-run: error: {source}: is a device, not an image file"


def test_a_picture_from_a_pipe_without_a_writable_temporary_folder_is_one_line(tmp_path, monkeypatch):
    """<(cat a.png) is copied to a temporary folder first: in a read-only container, a traceback."""
    import tempfile

    from bdinn.runtime.imageio import ImageError
    from bdinn.runtime.run_cli import read_once

    fifo = tmp_path / "picture"
    os.mkfifo(fifo)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    message = r"picture: a picture from a pipe is copied to a temporary folder first, and none is writable"
    with (
        pytest.raises(ImageError, match=message + r" \(No such file or directory\); set TMPDIR"),
        read_once(fifo),
    ):
        pass


def test_a_sigterm_while_onnx_runtime_imports_stops_the_run_as_a_sigterm(tmp_path):
    """ONNX Runtime's native initialisation turns an exception raised inside it into ImportError:
    a SIGTERM there (about one time in five at 0.3 s) said ONNX Runtime 'does not import (initialization
    failed): pip install -U onnxruntime' and exited 1. A stand-in module does what its initialisation
    does with the signal's SystemExit."""
    modules = signalled_in_import(tmp_path, "onnxruntime")
    model = Path(__file__).parents[1] / "runtime" / "models" / "default.onnx"
    code = "import sys; sys.argv[0] = 'bdinn-run'; from bdinn.runtime.run_cli import main; main()"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(model),
            str(DATA / "sky-gradient.png"),
            "-o",
            str(tmp_path / "out.png"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(modules), "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert done.stderr.splitlines()[-1] == "Terminated." and not (tmp_path / "out.png").exists()


def test_help_gives_each_encoders_own_crf_range():
    """It said 'SVT-AV1 and VP9 0..63': --crf 0 with SVT-AV1 is refused (1 is its best), and VP8's
    4..63 was not given at all."""
    text = " ".join(run("--help").output.split())
    for said in ("libx264 0..51 (default 18)", "libsvtav1 1..63 (default 28)", "libvpx 4..63 (default 10)"):
        assert said in text
    assert "libvpx 0 (slowest)..16" in text  # --preset: VP8's cpu-used was left out too


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_an_unwritable_stderr_loses_lines_not_work(model, pictures, tmp_path):
    """bdinn-run 2>/dev/full (or 2>&1 | head, a terminal gone): the line for a failed input
    raised, the batch stopped there and later inputs were never debanded; a single picture,
    written in full, exited 1 for its "a -> b" line."""
    (pictures / "ruined.png").write_bytes(b"not a picture")  # sorted first: the others come after it
    command = [sys.executable, "-c", "from bdinn.runtime.run_cli import main; main()", str(model)]
    with open("/dev/full", "w") as full:
        batch = subprocess.run(
            [*command, str(pictures), "-o", str(tmp_path / "out")], stderr=full, timeout=300, check=False
        )
        one = subprocess.run(
            [*command, str(pictures / "sky.png"), "-o", str(tmp_path / "one.png")], stderr=full, timeout=300
        )
    assert batch.returncode == 1  # one input of three failed: said nowhere, counted all the same
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["shapes.png", "sky.png"]
    assert one.returncode == 0 and read_image(tmp_path / "one.png").shape == (64, 96, 3)
