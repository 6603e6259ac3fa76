"""The bundled default model: present, served by every CPU backend alike, and really debanding."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bdinn.runtime import Debander, default_model_path
from bdinn.runtime.backends import BackendError
from bdinn.runtime.cambi import cambi
from bdinn.runtime.imageio import from_float, read_image, to_float, write_image
from bdinn.runtime.metrics import psnr
from bdinn.runtime.run_cli import main as run
from bdinn.train.degrade import reduce_bit_depth

DATA = Path(__file__).parent / "data"
MODELS = Path(__file__).parents[1] / "runtime" / "models"


@pytest.fixture(scope="module")
def sky() -> tuple[np.ndarray, np.ndarray]:
    """(clean, 5-bit banded) sky gradient."""
    clean = read_image(DATA / "sky-gradient.png")
    return clean, from_float(reduce_bit_depth(to_float(clean), 5), 8)


def test_bundled_files_describe_a_float16_lite_model():
    meta = json.loads((MODELS / "default.json").read_text())
    assert meta["format"] == "bdinn-checkpoint/1" and meta["dtype"] == "float16"
    assert meta["config_name"] == "lite" and meta["step"] > 0
    assert (MODELS / "default.safetensors").stat().st_size < 8 << 20
    installed = default_model_path("torch")  # the copy the package serves, wherever it is installed
    assert installed.read_bytes() == (MODELS / "default.safetensors").read_bytes()


def test_default_backend_and_backend_parity(sky):
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    _, banded = sky
    default = Debander.open(max_change=None)  # the raw outputs: the limit would hide differences
    assert default.backend.name == "onnxruntime"  # no GPU here: ONNX Runtime is the fastest CPU path
    torch_out = Debander.open(backend="torch", max_change=None)(banded, bit_depth=16).astype(np.int64)
    ort_out = default(banded, bit_depth=16).astype(np.int64)
    assert np.abs(torch_out - ort_out).max() <= 64  # 1/1024 of full scale: float rounding only


def test_the_bundled_model_on_a_cpu_machine_does_not_import_torch():
    """Asking torch whether there is a GPU cost 1.4 s of every bdinn-run with the bundled model."""
    import subprocess
    import sys

    from bdinn.runtime.debander import _may_have_cuda

    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    if _may_have_cuda():
        pytest.skip("an NVIDIA driver is loaded here: torch is asked about the GPU")
    code = "import sys; from bdinn.runtime import Debander; Debander.open(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_cpu_asked_for_on_a_gpu_machine_gets_onnx_runtime(monkeypatch):
    """--device cpu on a machine where torch sees a GPU ran the bundled checkpoint in PyTorch on the
    CPU, at half ONNX Runtime's speed (5.1 s against 2.3 s a 1080p frame)."""
    import torch

    from bdinn.runtime import debander

    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    monkeypatch.setattr(debander, "_may_have_cuda", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert debander.default_model_path().name == "default.safetensors"  # the GPU: PyTorch with our kernels
    with Debander.open(device="cpu") as deband:
        assert (deband.backend.name, deband.describe()["device"]) == ("onnxruntime", "cpu")
    with pytest.raises(
        BackendError, match="the bundled model runs fp16 in PyTorch on a CUDA GPU only; use fp32"
    ):
        Debander.open(device="cpu", precision="fp16")  # not "export it again with --fp16"


def test_fp16_of_the_bundled_model_without_a_gpu_names_no_file_the_user_did_not_give(monkeypatch):
    """With no device asked for on a machine without CUDA, the bundled ONNX graph was blamed:
    'default.onnx: this .onnx file is fp32, fixed at export'."""
    from bdinn.runtime import debander

    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    monkeypatch.setattr(debander, "_may_have_cuda", lambda: False)
    with pytest.raises(BackendError) as info:
        Debander.open(precision="fp16")
    assert str(info.value).startswith("the bundled model runs fp16 in PyTorch on a CUDA GPU only")


def test_it_debands(sky):
    clean, banded = sky
    out = Debander.open()(banded)
    assert psnr(to_float(out), to_float(clean)) > psnr(to_float(banded), to_float(clean)) + 0.5
    assert cambi(out) < cambi(banded) / 4


def test_bdinn_run_without_a_model(sky, tmp_path):
    out = tmp_path / "out.png"
    result = CliRunner().invoke(run, [str(DATA / "sky-gradient.png"), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert read_image(out).shape == sky[0].shape


def test_bdinn_run_keeps_letterbox_bars_and_flat_white(sky, tmp_path):
    """The bundled network lifts flat black and lowers flat white by a level or two in blotches
    (raw output below); what bdinn-run writes keeps them in an 8-bit picture. In a posterised one
    (the sky at 5 bits) a flat run at 0 may be a band to rebuild, and the network's output stands."""
    clean, banded = sky
    frames = {}
    for name, picture in (("letterbox", clean), ("posterised", banded)):
        frames[name] = np.zeros((clean.shape[0] + 80, clean.shape[1], 3), np.uint8)
        frames[name][40:-40] = picture
    frames["white"] = np.full((64, 96, 3), 255, np.uint8)
    raw = Debander.open(max_change=None)
    bars = np.r_[0:39, clean.shape[0] + 41 : clean.shape[0] + 80]  # the row beside the picture may change
    assert (raw(frames["letterbox"])[bars] != 0).any(axis=-1).mean() > 0.05
    assert (raw(frames["white"]) != 255).any(axis=-1).mean() > 0.2
    for name, picture in frames.items():
        write_image(tmp_path / f"{name}.png", picture)
        result = CliRunner().invoke(run, [str(tmp_path / f"{name}.png"), "-o", str(tmp_path / "out"), "-q"])
        assert result.exit_code == 0, result.output
    out = {name: read_image(tmp_path / "out" / f"{name}.png") for name in frames}
    assert (out["letterbox"][bars] == 0).all() and (out["white"] == 255).all()
    assert (out["posterised"][bars] != 0).any(axis=-1).mean() > 0.05
    debanded = out["posterised"][40:-40]
    assert psnr(to_float(debanded), to_float(clean)) > psnr(to_float(banded), to_float(clean)) + 0.5


@pytest.mark.parametrize("depth", [8, 10])
def test_a_letterboxed_video_keeps_its_black_bars(tmp_path, depth):
    """Video black (Y 16, limited range) decodes to RGB 0: bdinn-run's output keeps the bars at
    exactly video black, but for the rows beside the picture that 4:2:0 chroma reaches."""
    av = pytest.importorskip("av", reason="needs the video extra")
    height, width, bar = 144, 256, 24
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    picture = np.stack(
        [40 + 120 * xx / width, 60 + 80 * yy / height, 90 + 60 * (xx + yy) / (width + height)], -1
    )
    picture[:bar] = picture[-bar:] = 0
    source = tmp_path / "letterboxed.mkv"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.rint(picture).astype(np.uint8), format="rgb24")
            out.mux(stream.encode(frame.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)))
        out.mux(stream.encode())
    done = tmp_path / "out.mkv"
    args = [str(source), "-o", str(done), "--codec", "ffv1", "--bit-depth", str(depth), "-q"]
    result = CliRunner().invoke(run, args)
    assert result.exit_code == 0, result.output
    black = 16 << (depth - 8)
    with av.open(str(done)) as container:
        frames = [_luma_codes(frame) for frame in container.decode(video=0)]
    assert len(frames) == 2
    for luma in frames:
        far = np.r_[luma[: bar - 6], luma[height - bar + 6 :]]  # 6 rows clear of the picture's chroma
        assert (far == black).all(), np.unique(far)
        assert luma[bar:-bar].min() > black + (30 << (depth - 8))  # the picture is there


def _luma_codes(frame) -> np.ndarray:
    """The Y plane's code values as stored (a conversion to gray would take the range out)."""
    dtype = np.dtype(np.uint8 if frame.format.name == "yuv420p" else "<u2")
    plane = frame.planes[0]
    rows = np.frombuffer(plane, dtype).reshape(-1, plane.line_size // dtype.itemsize)
    return rows[: frame.height, : frame.width].astype(int)


def test_a_5_bit_fade_to_black_is_debanded_in_its_darkest_band():
    """The darkest band of a posterised fade is flat at 0 like a letterbox bar, but its true
    values reach 4 levels up: the network rebuilds that ramp, and the served output keeps it."""
    ramp = np.linspace(0, 40, 480, dtype=np.float32)
    clean = np.rint(np.stack([ramp, ramp * 0.9, ramp * 1.1], -1)[None].repeat(270, 0)).astype(np.uint8)
    banded = from_float(reduce_bit_depth(to_float(clean), 5), 8)
    out = Debander.open()(banded)
    black = banded == 0
    assert black.mean() > 0.05  # the band at 0 is dozens of pixels wide

    def rms(picture: np.ndarray) -> float:
        return float(np.sqrt(np.mean((picture.astype(float) - clean)[black] ** 2)))

    assert rms(out) < 0.75 * rms(banded)
