"""The CUDA kernels through their C ABI against the PyTorch reference (needs an NVIDIA GPU)."""

import ctypes

import numpy as np
import pytest
import torch
from test_kernels_cpu import EXACT_CASES, PLUGINS, huge_case, make_case, reference64, relative_error

from bdinn.plugins.build import build_libraries, default_build_dir
from bdinn.plugins.kernels import declare_c_abi
from bdinn.train.network import activate_geometry
from bdinn.train.ops import banded_deform_conv_reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch"),
]

FP32_TOLERANCE = 1e-4  # max abs error / max abs reference output
FP16_TOLERANCE = 1e-2
FLOAT32, FLOAT16 = 0, 1
AUTO, CUDA_CORES, TENSOR_CORES = 0, 1, 2


@pytest.fixture(scope="module")
def kernels() -> ctypes.CDLL:
    """The library the torch op loads too (one build per machine; $CUDAARCHS=90-real builds one GPU's)."""
    libs = build_libraries(default_build_dir(), cuda=True, source_dir=PLUGINS)
    return declare_c_abi(ctypes.CDLL(str(libs["cuda"])))


def run_cuda(lib, x, geometry, weight, bias, dilation, dtype=torch.float32, algo=AUTO) -> np.ndarray:
    """Copies the inputs to the GPU in dtype, runs the kernel on torch's current stream."""
    dev = [t.to("cuda", dtype).contiguous() if t is not None else None for t in (x, geometry, weight, bias)]
    xd, gd, wd, bd = dev
    n, _, h, w = xd.shape
    o, c, kh, kw = wd.shape
    out = torch.full((n, o, h, w), float("nan"), device="cuda", dtype=dtype)
    status = lib.bdinn_banded_deform_conv_forward_algo(
        FLOAT32 if dtype == torch.float32 else FLOAT16, algo,
        xd.data_ptr(), gd.data_ptr(), wd.data_ptr(), None if bd is None else bd.data_ptr(), out.data_ptr(),
        n, c, h, w, o, kh, kw, dilation[0], dilation[1],
        torch.cuda.current_stream().cuda_stream,
    )  # fmt: skip
    assert status == 0, lib.bdinn_error_string(status).decode()
    torch.cuda.current_stream().synchronize()
    return out.double().cpu().numpy()


def half_rounded(*tensors):
    """The values an FP16 kernel actually sees, so that the reference differs only in its maths."""
    return [None if t is None else t.half().float() for t in tensors]


@pytest.mark.parametrize("case", EXACT_CASES)
def test_fp32_matches_reference(kernels, case):
    x, g, w, b, dilation = make_case(case)
    got = run_cuda(kernels, x, g, w, b, dilation)
    err = relative_error(got, reference64(x, g, w, b, dilation))
    print(f"fp32 {case}: {err:.2e}")  # the measured tolerances, shown with pytest -s
    assert err <= FP32_TOLERANCE, f"{case}: max error {err:.2e} of the output scale"


@pytest.mark.parametrize("algo", [CUDA_CORES, TENSOR_CORES])
@pytest.mark.parametrize("case", [*EXACT_CASES, "wide_random"])
def test_fp16_matches_reference(kernels, case, algo):
    *tensors, dilation = make_case(case)
    x, g, w, b = half_rounded(*tensors)
    got = run_cuda(kernels, x, g, w, b, dilation, torch.float16, algo)
    err = relative_error(got, reference64(x, g, w, b, dilation))
    print(f"fp16 algo {algo} {case}: {err:.2e}")
    assert err <= FP16_TOLERANCE, f"{case}: max error {err:.2e} of the output scale"


def test_fp32_wide_map_no_worse_than_float32_reference(kernels):
    """Arbitrary geometry above x = 2048: see test_kernels_cpu's twin of this test."""
    x, g, w, b, dilation = make_case("wide_random")
    ref = reference64(x, g, w, b, dilation)
    ref32 = banded_deform_conv_reference(x, g, w, b, dilation).double().numpy()
    err = relative_error(run_cuda(kernels, x, g, w, b, dilation), ref)
    print(f"fp32 wide_random: {err:.2e} (float32 reference: {relative_error(ref32, ref):.2e})")
    assert err <= max(relative_error(ref32, ref), FP32_TOLERANCE)


@pytest.mark.parametrize(
    "shape",
    [(1, 96, 136, 240, 96), (1, 24, 136, 240, 24), (1, 8, 64, 2304, 8)],
    ids=["bottleneck96", "bottleneck24", "wide"],
)
def test_large_shapes(kernels, shape):
    """The paper's bottleneck at FHD (1/8 resolution, C = O = 24), a 96-channel one, a wide map."""
    n, c, h, w, o = shape
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, c, h, w, generator=gen)
    g = torch.round(activate_geometry(2 * torch.randn(n, 4, h, w, generator=gen)) * 64) / 64
    weight = torch.randn(o, c, 3, 5, generator=gen) / (c * 15) ** 0.5
    bias = torch.randn(o, generator=gen)
    on_gpu = [t.cuda() for t in (x, g, weight, bias)]  # a float64 reference of this size is slow on a CPU
    ref = reference64(*on_gpu, (1, 1))
    err = relative_error(run_cuda(kernels, x, g, weight, bias, (1, 1)), ref)
    print(f"fp32 {shape}: {err:.2e}")
    assert err <= FP32_TOLERANCE, f"fp32: {err:.2e}"
    xh, gh, wh, bh = half_rounded(x, g, weight, bias)
    ref16 = reference64(*[t.cuda() for t in (xh, gh, wh, bh)], (1, 1))
    for algo in (CUDA_CORES, TENSOR_CORES):
        err = relative_error(run_cuda(kernels, xh, gh, wh, bh, (1, 1), torch.float16, algo), ref16)
        print(f"fp16 algo {algo} {shape}: {err:.2e}")
        assert err <= FP16_TOLERANCE, f"fp16 algo {algo}: {err:.2e}"


def test_huge_offsets_leave_the_centre_tap(kernels):
    case, expected = huge_case()
    err = relative_error(run_cuda(kernels, *case), expected)
    print(f"fp32 huge offsets: {err:.2e}")
    assert err <= FP32_TOLERANCE


def test_enqueues_on_the_given_stream(kernels):
    x, g, w, b, dilation = make_case("random_3x5")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = run_cuda(kernels, x, g, w, b, dilation)
    assert relative_error(got, reference64(x, g, w, b, dilation)) <= FP32_TOLERANCE


def test_rejects_tensor_cores_for_fp32(kernels):
    x, g, w, b, dilation = make_case("random_3x5")
    with pytest.raises(AssertionError, match="tensor cores asked for float32"):
        run_cuda(kernels, x, g, w, b, dilation, torch.float32, TENSOR_CORES)
