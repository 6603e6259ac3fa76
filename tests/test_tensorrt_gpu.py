"""TensorRT-RTX engines on a CUDA GPU (needs a GPU TensorRT-RTX targets, tensorrt-rtx, cuda-python).

CI builds plans for SM89 without a GPU; these run one: the bundled model as an FP16 plugin engine
for the GPU at hand, served by the Python plugin, against ONNX Runtime's FP32 answer, and the
ordering of one thread's inferences across the streams it is handed. TensorRT-RTX has no target
for data-centre GPUs (Hopper's sm90 among them): there they skip.
"""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bdinn.export.cli import main as export_main
from bdinn.export.engine import RTX_TARGETS
from bdinn.plugins.build import build_libraries, default_build_dir
from bdinn.runtime import Debander
from bdinn.runtime.backends.base import BackendError
from bdinn.runtime.metrics import psnr
from bdinn.runtime.tensorrt import TensorRTUnavailable, load_tensorrt

pytest.importorskip("cuda.bindings", reason="TensorRT engines need cuda-python")
try:
    load_tensorrt("tensorrt-rtx")
    RTX = True
except TensorRTUnavailable:
    RTX = False

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch"),
    pytest.mark.skipif(not RTX, reason="TensorRT-RTX is not installed"),
]


def this_gpu() -> str:
    major, minor = torch.cuda.get_device_capability()
    return f"sm{major}{minor}"


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """The bundled model, FP16, plugin graph, for this GPU only (a build takes about a minute)."""
    if this_gpu() not in RTX_TARGETS:
        pytest.skip(f"TensorRT-RTX builds for {', '.join(RTX_TARGETS)}; this GPU is {this_gpu()}")
    build_libraries(default_build_dir(), cuda=True)  # the Python plugin launches these kernels
    path = tmp_path_factory.mktemp("engine") / "bdinn.plan"
    args = ["--fp16", "--target", this_gpu(), "--max", "1088x1920", "-o", str(path)]
    result = CliRunner().invoke(export_main, args)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """5-bit gradients with texture, 256x320: banding for the model to remove."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:320]
    base = np.stack((x * 0.6, y * 0.7, (x + y) * 0.35), axis=-1) + rng.normal(0, 3, (256, 320, 3))
    return [(np.clip(base + 20 * k, 0, 255).astype(np.uint8) >> 3 << 3) for k in range(3)]


def test_an_engine_serves_what_onnx_runtime_serves(plan, frames):
    """The first TensorRT engine run on a GPU: FP16 with the plugin against the FP32 graph."""
    with Debander.open(plan) as engine, Debander.open(backend="onnxruntime") as reference:
        for frame in frames:
            got, expected = engine(frame, bit_depth=16), reference(frame, bit_depth=16)
            score = psnr(got, expected, 65535)
            print(f"TensorRT-RTX FP16 against ONNX Runtime FP32: {score:.1f} dB")
            assert score > 55.0
            assert psnr(expected, frame.astype(np.uint16) * 257, 65535) < 50.0  # the model changed it


def test_inferences_on_several_streams_are_ordered(plan):
    """One thread's context serves its own stream (numpy frames) and the caller's (tensors): an
    inference queued on one while another ran on the other shared the context's scratch memory.
    1080p frames, so that two inferences would overlap; each shape run before the serial answers
    (TensorRT-RTX specialises its kernels lazily, on first runs)."""
    rng = np.random.default_rng(1)
    tensors = [torch.rand(3, 1080, 1920, generator=torch.Generator().manual_seed(k)).cuda() for k in range(3)]
    host = (rng.random((1080, 1920, 3)) * 255).astype(np.uint8)
    with Debander.open(plan, max_change=None) as deband:
        for _ in range(3):
            deband(host)
            for tensor in tensors:
                deband.tensor(tensor)
        torch.cuda.synchronize()
        alone = [deband.tensor(t).cpu() for t in tensors]
        torch.cuda.synchronize()
        streams = [torch.cuda.Stream() for _ in range(2)]
        results = []
        for round_ in range(4):
            for k, tensor in enumerate(tensors):
                with torch.cuda.stream(streams[(round_ + k) % 2]):
                    results.append((k, deband.tensor(tensor)))
                if k == 1:
                    deband(host)  # the thread's own stream in between, without waiting first
        torch.cuda.synchronize()
        for k, out in results:  # one engine, one shape: the same kernels; a race is far off
            assert (out.cpu() - alone[k]).abs().max() < 5e-3, f"frame {k} differs when streams alternate"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_a_tensor_on_another_gpu_is_refused_and_the_threads_device_kept(plan, frames):
    torch.cuda.set_device(1)
    try:
        with Debander.open(plan, device="cuda:0") as deband:
            assert torch.cuda.current_device() == 1  # opening the engine did not move the thread
            deband(frames[0])
            assert torch.cuda.current_device() == 1
            with pytest.raises(BackendError, match="the tensor is on cuda:1, the engine on cuda:0"):
                deband.tensor(torch.rand(3, 64, 64, device="cuda:1"))
    finally:
        torch.cuda.set_device(0)


def test_close_lets_go_of_the_engine_and_a_wrong_gpu_index_is_named(plan, frames):
    """close() kept the engine (its weights' GPU memory) until the Debander itself went; cuda:N
    beyond the GPUs there said that no GPU is usable."""
    deband = Debander.open(plan)
    backend = deband.backend
    deband(frames[0])
    deband.close()
    assert backend.engine is None
    with pytest.raises(BackendError, match="this TensorRT engine is closed; open it again"):
        backend.infer(np.zeros((1, 3, 64, 64), np.float32))
    beyond = torch.cuda.device_count()
    with pytest.raises(BackendError, match=rf"cuda:{beyond} asked for; this machine has cuda:0"):
        Debander.open(plan, device=f"cuda:{beyond}")


def test_frames_of_a_batch_in_the_engines_type_are_given_aligned(plan, frames):
    """A frame of a float16 batch is a view 3 x H x W x 2 bytes into it, which TensorRT, needing
    256-byte alignment, was handed as it was; infer_device refuses such a pointer in one line."""
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).cuda().half() / 255
    odd = batch[:, :, :65, :65].contiguous()  # 25,350 bytes a frame (inside the 64..1088 profile)
    assert odd[1].data_ptr() % 256
    with Debander.open(plan) as deband:
        together = deband.tensor(odd)  # in the FP16 engine's own type: no copy made on the way
        alone = torch.cat([deband.tensor(odd[i : i + 1].clone()) for i in range(len(odd))])
        torch.testing.assert_close(together, alone)
        out = torch.empty_like(odd[:1])
        with pytest.raises(BackendError, match="256-byte boundary"):
            deband.backend.infer_device(odd[1].data_ptr(), out.data_ptr(), 65, 65, 0)
