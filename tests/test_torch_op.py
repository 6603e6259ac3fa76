"""torch.ops.bdinn.banded_deform_conv on the CPU: schema, fake tensors, autograd, parity."""

import pytest
import torch
from common import perturbed_tiny

from bdinn.plugins.torch_op import banded_deform_conv
from bdinn.train.network import activate_geometry
from bdinn.train.ops import banded_deform_conv_reference


def inputs(dtype=torch.float64, requires_grad=False):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9, dtype=dtype)
    g = activate_geometry(torch.randn(2, 4, 7, 9, dtype=dtype) * 0.7)
    w = torch.randn(4, 3, 3, 5, dtype=dtype)
    b = torch.randn(4, dtype=dtype)
    return [t.requires_grad_(requires_grad) for t in (x, g, w, b)]


def test_registered_under_bdinn_namespace():
    assert torch.ops.bdinn.banded_deform_conv.default is not None
    x, g, w, b = inputs()
    out = torch.ops.bdinn.banded_deform_conv(x, g, w, b, 1, 2)
    assert torch.equal(out, banded_deform_conv_reference(x, g, w, b, (1, 2)))


def test_opcheck_schema_fake_and_autograd():
    x, g, w, b = inputs(requires_grad=True)
    torch.library.opcheck(banded_deform_conv, (x, g, w, b, 1, 1))
    torch.library.opcheck(banded_deform_conv, (x, g, w, None, 2, 1))


def test_gradients_match_the_reference():
    args = inputs(requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: banded_deform_conv(*t, 1, 1), args, eps=1e-6, atol=1e-5)


def test_second_order_gradients_match_the_reference():
    """A gradient penalty differentiates the op's gradient again: the backward detached its inputs,
    so the penalty's share of every gradient was dropped without a word."""
    assert torch.autograd.gradgradcheck(
        lambda *t: banded_deform_conv(*t, 1, 2), inputs(requires_grad=True), eps=1e-6, atol=1e-5
    )
    grads = []
    for conv in (banded_deform_conv, lambda *t: banded_deform_conv_reference(*t[:4], t[4:])):
        x, g, w, b = inputs(requires_grad=True)
        y = conv(x, g, w, b, 1, 2)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        (gw,) = torch.autograd.grad(y.mean() + gx.square().sum(), w)
        grads.append(gw)
    assert grads[1].norm() > 1e3  # the penalty's share: without it the norm is under 1
    torch.testing.assert_close(grads[0], grads[1])


def fake_operands(c: int, weight_c: int, kernel: tuple[int, int]) -> tuple:
    """x [1,c,6,7], its geometry, a weight [3,weight_c,kh,kw] and no bias; made inside FakeTensorMode."""
    return torch.empty(1, c, 6, 7), torch.empty(1, 4, 6, 7), torch.empty(3, weight_c, *kernel), None


@pytest.mark.parametrize("dilation", [(0, 1), (-1, 1), (1, -3)])
def test_dilations_below_one_are_refused_on_every_path(dilation):
    """The kernels and both TensorRT plugins refuse them: the CPU op, the layer and tracing ran such
    a layer, which then failed at export or on a GPU."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from bdinn.train.network import BandedDeformConv2d

    x, g, w, b = inputs(torch.float32)
    with pytest.raises(ValueError, match="dilations must be at least 1"):
        banded_deform_conv(x, g, w, b, *dilation)
    with pytest.raises(ValueError, match="dilations must be at least 1"):
        BandedDeformConv2d(3, 4, (3, 5), dilation)
    with FakeTensorMode(), pytest.raises(ValueError, match="dilations must be at least 1"):
        banded_deform_conv(*fake_operands(3, 3, (3, 5)), *dilation)


def test_tracing_checks_shapes_as_the_kernels_do():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(), pytest.raises(ValueError, match="weight has 9 input channels, x has 2"):
        banded_deform_conv(*fake_operands(2, 9, (3, 5)), 1, 1)
    with FakeTensorMode(), pytest.raises(ValueError, match="kernel sizes must be odd"):
        banded_deform_conv(*fake_operands(2, 2, (4, 4)), 1, 1)


def test_fake_tensor_shapes_for_tracing():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(1, 6, 37, 53)
        out = banded_deform_conv(x, torch.empty(1, 4, 37, 53), torch.empty(10, 6, 3, 5), None, 1, 1)
    assert out.shape == (1, 10, 37, 53)


def test_the_cuda_kernel_refuses_operands_it_would_read_past_or_cannot_reach():
    """Checks the CUDA path makes before it hands pointers to the kernels (they run on CPU tensors:
    each refusal comes before any CUDA call). The CPU path has always had the shape checks."""
    from bdinn.plugins.torch_op import _cuda

    x, g, w, b = inputs(torch.float32)
    for args, error in [
        ((x, g, w[:, :2], b), "weight has 2 input channels, x has 3"),
        ((x, g[:, :, :5], w, b), r"geometry must be \[2,4,7,9\], got \[2, 4, 5, 9\]"),
        ((x, g, w, b[:3]), r"bias must be \[4\], one per output channel, got \[3\]"),
        ((x, g, w.to("meta"), b.to("meta")), "weight, bias not on x's device cpu"),
    ]:
        with pytest.raises(ValueError, match=error):
            _cuda(*args, 1, 1)
    for empty in (x[:0], x[:, :0]):  # no pictures, no channels: the reference's answer, no launch
        geometry, weight = g[: len(empty)], w[:, : empty.shape[1]]
        expected = banded_deform_conv_reference(empty, geometry, weight, b, (1, 1))
        assert torch.equal(_cuda(empty, geometry, weight, b, 1, 1), expected)
    assert _cuda(x[:0], g[:0], w, b, 1, 1).shape == (0, 4, 7, 9)
    assert _cuda(x, g, w[:0], None, 1, 1).shape == (2, 0, 7, 9)  # no output channels: the kernels refuse O=0


def test_the_cuda_kernel_answers_dtypes_it_has_no_kernel_for_as_the_reference_does():
    """bfloat16 (autocast's x beside float32 weights, training with --amp) and float64 were a
    TypeError on the GPU where the CPU path answered; they take the reference there too (these
    return before any CUDA call, so they run on CPU tensors)."""
    from bdinn.plugins.torch_op import _cuda

    x, g, w, b = inputs(torch.float32)
    for operands in ((x.bfloat16(), g, w, b), (x.double(), g.double(), w.double(), b.double())):
        expected = banded_deform_conv_reference(*operands, (1, 2))
        got = _cuda(*operands, 1, 2)
        assert got.dtype == operands[0].dtype
        assert torch.equal(got, expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    "x_dtype, weight_dtype", [(torch.float16, torch.float32), (torch.float32, torch.float16)]
)
def test_the_cuda_op_takes_mixed_float_dtypes_and_computes_in_xs(x_dtype, weight_dtype):
    """A half x with float32 weights (a layer kept in float32) ran into a TypeError; the kernels
    now run in x's dtype, the output's, as the reference computes it."""
    from bdinn.plugins.build import build_libraries, default_build_dir

    build_libraries(default_build_dir(), cuda=True)
    x, g, w, b = (t.cuda() for t in inputs(torch.float32))
    operands = (x.to(x_dtype), g.to(x_dtype), w.to(weight_dtype))  # the geometry as the network gives it
    expected = banded_deform_conv_reference(*(t.float() for t in operands), b, (1, 2))
    got = torch.ops.bdinn.banded_deform_conv(*operands, b, 1, 2)
    assert got.dtype == x_dtype
    torch.testing.assert_close(got.float(), expected, rtol=1e-2, atol=1e-2)


def _without_banded_convs(*args, **kwargs) -> torch.Tensor:
    """A stand-in banded convolution that returns zeros: what a network ignoring them would see."""
    inputs, weight = args[0], args[2]  # (x, geometry, weight, bias, dilation)
    return inputs.new_zeros(inputs.shape[0], weight.shape[0], *inputs.shape[2:])


def _compare_impls(model: torch.nn.Module, y: torch.Tensor, impl: str, reference: str) -> tuple[float, float]:
    """(max |impl - reference|, max |reference - without banded convs|) over the network output.

    The second number shows the comparison means something: an untrained BDINN is the identity
    and ignores its banded convolutions, so tests use perturbed weights and check they matter."""
    outputs = {}
    with torch.no_grad():
        for name in (impl, reference, _without_banded_convs):
            model.set_banded_impl(name)
            outputs[name] = model(y)
    diff = (outputs[impl] - outputs[reference]).abs().max().item()
    weight = (outputs[reference] - outputs[_without_banded_convs]).abs().max().item()
    return diff, weight


def test_network_with_the_op_equals_gridsample():
    model = perturbed_tiny(1, "lite")
    diff, weight = _compare_impls(model, torch.rand(1, 3, 40, 48), "op", "gridsample")
    assert weight > 1e-2, "the banded convolutions do not affect the output: the comparison is void"
    assert diff < 1e-5


def test_the_network_trains_through_the_op_as_through_the_reference():
    """The op's CPU result was a view, and the network's in-place LeakyReLU on it failed in
    backward ('Output 0 ... is a view and is being modified inplace'): training with
    banded_impl "op" on the CPU, or on a GPU for an empty extent, raised."""
    torch.manual_seed(0)
    y = torch.rand(1, 3, 32, 32)
    grads = {}
    for impl in ("op", "reference"):
        model = perturbed_tiny().train()
        model.set_banded_impl(impl)
        model(y).abs().mean().backward()
        grads[impl] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert grads["op"].abs().max() > 0
    torch.testing.assert_close(grads["op"], grads["reference"], rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_op_inside_full_network_at_1080p():
    """The CUDA kernels against the reference inside the whole paper network at 1x3x1080x1920.

    In full FP32: with cuDNN's default TF32 convolutions, a 1e-6 difference entering a layer can
    round to a different TF32 value, and the network's output then differs by about 2e-3 between
    any two implementations (the H200 gave 1.9e-3 for the kernels, 1.4e-3 for grid_sample)."""
    from bdinn.plugins.build import build_libraries, default_build_dir

    build_libraries(default_build_dir(), cuda=True)
    model = perturbed_tiny(0, "paper").cuda()
    y = torch.rand(1, 3, 1080, 1920, device="cuda")
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        diff, weight = _compare_impls(model, y, "op", "reference")
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    print(f"paper network at 1080p: CUDA kernels vs reference {diff:.2e} (banded convs move it {weight:.2e})")
    assert weight > 1e-2, "the banded convolutions do not affect the output: the comparison is void"
    assert diff < 1e-4
