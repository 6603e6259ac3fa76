"""The reference banded deformable convolution against plain convolutions and finite differences."""

import pytest
import torch
import torch.nn.functional as F

from bdinn.train.network import BandedDeformConv2d, activate_geometry
from bdinn.train.ops import banded_deform_conv_gridsample, banded_deform_conv_reference

IMPLS = [banded_deform_conv_reference, banded_deform_conv_gridsample]


def plain_geometry(n: int, h: int, w: int, cos: float = 1.0, sin: float = 0.0) -> torch.Tensor:
    g = torch.empty(n, 4, h, w, dtype=torch.float64)
    g[:, 0], g[:, 1], g[:, 2], g[:, 3] = cos, sin, 1.0, 1.0
    return g


@pytest.mark.parametrize("op", IMPLS)
@pytest.mark.parametrize(("kernel", "dilation"), [((3, 5), (1, 1)), ((3, 3), (2, 1)), ((5, 3), (1, 2))])
def test_unrotated_grid_equals_conv2d(op, kernel, dilation):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 17, 23, dtype=torch.float64)
    weight = torch.randn(7, 5, *kernel, dtype=torch.float64)
    bias = torch.randn(7, dtype=torch.float64)
    padding = (kernel[0] // 2 * dilation[0], kernel[1] // 2 * dilation[1])
    expected = F.conv2d(x, weight, bias, padding=padding, dilation=dilation)
    got = op(x, plain_geometry(2, 17, 23), weight, bias, dilation)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-10)


def test_layer_at_init_equals_conv2d():
    torch.manual_seed(1)
    layer = BandedDeformConv2d(6, 8, kernel=(3, 5))
    conv = torch.nn.Conv2d(6, 8, (3, 5), padding=(1, 2))
    with torch.no_grad():
        conv.weight.copy_(layer.weight)
        conv.bias.copy_(layer.bias)
    x = torch.randn(1, 6, 20, 31)
    assert torch.allclose(layer(x), conv(x), atol=1e-5)
    geometry = layer.geometry(x)
    assert torch.allclose(geometry, torch.tensor([1.0, 0.0, 1.0, 1.0]).view(1, 4, 1, 1).expand_as(geometry))


@pytest.mark.parametrize("op", IMPLS)
def test_quarter_turn_of_3x5_is_5x3_with_transposed_kernel(op):
    torch.manual_seed(2)
    x = torch.randn(1, 4, 19, 21, dtype=torch.float64)
    weight = torch.randn(3, 4, 3, 5, dtype=torch.float64)
    rotated = op(x, plain_geometry(1, 19, 21, cos=0.0, sin=1.0), weight)
    # Offset (px, py) -> (-py, px): kernel row i, column j lands at row +(j-2), column -(i-1).
    transposed = weight.transpose(-1, -2).flip(-1)
    assert transposed.shape[-2:] == (5, 3)
    expected = F.conv2d(x, transposed, padding=(2, 1))
    assert torch.allclose(rotated, expected, atol=1e-10)


@pytest.mark.parametrize("op", IMPLS)
def test_samples_outside_read_zero(op):
    x = torch.randn(1, 3, 9, 11, dtype=torch.float64)
    weight = torch.randn(2, 3, 3, 5, dtype=torch.float64)
    bias = torch.tensor([0.5, -1.5], dtype=torch.float64)
    g = plain_geometry(1, 9, 11)
    g[:, 2:] = 40.0  # stretch the grid far beyond the image: every tap but the centre is outside
    centre_only = torch.zeros_like(weight)
    centre_only[:, :, 1, 2] = weight[:, :, 1, 2]
    expected = F.conv2d(x, centre_only, bias, padding=(1, 2))
    assert torch.allclose(op(x, g, weight, bias), expected, atol=1e-10)


def test_formulations_agree_on_random_geometry():
    torch.manual_seed(3)
    x = torch.randn(2, 6, 13, 29, dtype=torch.float64)
    g = activate_geometry(torch.randn(2, 4, 13, 29, dtype=torch.float64))
    weight = torch.randn(5, 6, 3, 5, dtype=torch.float64)
    a = banded_deform_conv_reference(x, g, weight, dilation=(1, 2))
    b = banded_deform_conv_gridsample(x, g, weight, dilation=(1, 2))
    assert torch.allclose(a, b, atol=1e-10)


def test_gradcheck_float64():
    torch.manual_seed(4)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    # Random geometry keeps every sample off the integer grid, where bilinear is not differentiable.
    g = activate_geometry(torch.randn(1, 4, 5, 6, dtype=torch.float64) * 0.7).detach().requires_grad_(True)
    weight = torch.randn(3, 2, 3, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(banded_deform_conv_reference, (x, g, weight, bias), eps=1e-6, atol=1e-5)


def test_layer_gradcheck_through_geometry_head():
    torch.manual_seed(5)
    layer = BandedDeformConv2d(2, 2, impl="reference").double()
    with torch.no_grad():
        layer.head.weight.normal_(0, 0.3)
        layer.head.bias.normal_(0, 0.3)
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("op", IMPLS)
def test_odd_sizes_keep_shape(op):
    x = torch.randn(2, 3, 37, 53)
    g = activate_geometry(torch.randn(2, 4, 37, 53))
    out = op(x, g, torch.randn(8, 3, 3, 5), torch.randn(8))
    assert out.shape == (2, 8, 37, 53)
    assert torch.isfinite(out).all()


def test_half_input_keeps_fractional_coordinates_above_1024():
    """Coordinates stay float32 for half inputs: a half-pixel shift on a 2048-wide map is kept.

    Columns alternate 0, 1, 0, 1 (exact in half); sampling half a pixel right of any column reads
    0.5, whereas coordinates rounded to half precision (no fractional bits above 1024) read 0 or 1.
    """
    w = 2048
    x = (torch.arange(w) % 2).float().view(1, 1, 1, w).expand(1, 1, 3, w).contiguous()
    weight = torch.zeros(1, 1, 3, 5)
    weight[0, 0, 1, 3] = 1.0  # the tap one to the right of centre
    g = torch.zeros(1, 4, 3, w)
    g[:, 0], g[:, 2], g[:, 3] = 1.0, 0.5, 1.0  # sx = 0.5: that tap samples x + 0.5
    for op in IMPLS:
        out = op(x.half(), g.half(), weight.half())
        assert out.dtype == torch.float16
        assert torch.all(out[0, 0, 1, 1024:2046] == 0.5)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="geometry"):
        banded_deform_conv_reference(
            torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 3, 5)
        )
    with pytest.raises(ValueError, match="odd"):
        BandedDeformConv2d(2, 2, kernel=(3, 4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_heads_keep_a_unit_rotation(dtype):
    """The bundled model's heads reach ~1900 on 1-px patterns: squared in half precision the norm
    overflowed to inf, cos and sin became 0, and every tap sampled the centre pixel."""
    raw = torch.zeros(1, 4, 2, 3, dtype=dtype)
    raw[:, 0], raw[:, 1] = 1000.0, torch.tensor([[-1500.0, 300.0, 0.0], [2.0, -0.5, 1900.0]])
    geometry = activate_geometry(raw)
    assert geometry.dtype == dtype
    exact = activate_geometry(raw.double())
    assert torch.allclose(geometry.double(), exact, atol=1e-2)
    assert torch.allclose(exact[:, 0] ** 2 + exact[:, 1] ** 2, torch.ones(1, 2, 3, dtype=torch.float64))
