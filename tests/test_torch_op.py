"""torch.ops.bdinn.banded_deform_conv on the CPU: schema, fake tensors, autograd, parity."""

import copy

import pytest
import torch

from bdinn.plugins.torch_op import banded_deform_conv
from bdinn.train.network import BandedDeformConv2d, activate_geometry, build_model
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


def test_fake_tensor_shapes_for_tracing():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(1, 6, 37, 53)
        out = banded_deform_conv(x, torch.empty(1, 4, 37, 53), torch.empty(10, 6, 3, 5), None, 1, 1)
    assert out.shape == (1, 10, 37, 53)


def test_network_with_the_op_equals_gridsample():
    torch.manual_seed(1)
    gridsample = build_model("lite").eval()
    with torch.no_grad():
        for m in gridsample.modules():
            if isinstance(m, BandedDeformConv2d):
                m.head.weight.normal_(0, 0.1)  # rotate and stretch the grids
    with_op = copy.deepcopy(gridsample)
    for m in with_op.modules():
        if isinstance(m, BandedDeformConv2d):
            m.impl = "op"
    y = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        assert torch.allclose(gridsample(y), with_op(y), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_op_inside_full_network_at_1080p():
    """The CUDA kernels against the reference inside the whole paper network at 1x3x1080x1920."""
    from bdinn.plugins.build import build_libraries, default_build_dir

    build_libraries(default_build_dir(), cuda=True)
    torch.manual_seed(0)
    reference = build_model("paper").cuda().eval()
    for m in reference.modules():
        if isinstance(m, BandedDeformConv2d):
            torch.nn.init.normal_(m.head.weight, 0, 0.05)
    fast = build_model("paper").cuda().eval()
    fast.load_state_dict(reference.state_dict())
    for m in fast.modules():
        if isinstance(m, BandedDeformConv2d):
            m.impl = "op"
    for m in reference.modules():
        if isinstance(m, BandedDeformConv2d):
            m.impl = "reference"
    y = torch.rand(1, 3, 1080, 1920, device="cuda")
    with torch.no_grad():
        err = (fast(y) - reference(y)).abs().max().item()
    print(f"paper network at 1080p, CUDA kernels vs reference: max abs difference {err:.2e}")
    assert err < 1e-3
