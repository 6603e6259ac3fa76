"""The banded deformable convolution operator in plain PyTorch.

Interface (shared with the CUDA kernels, the TensorRT plugin and the ONNX node):
x [N,C,H,W], geometry g [N,4,H,W] = (cos, sin, sx, sy) already activated, weight [O,C,kh,kw],
optional bias [O]; kernel point (px, py) of output pixel p0 is sampled at
p0 + R(theta) · diag(sx, sy) · (px, py) by bilinear interpolation with zeros outside the image.

Two formulations of the same maths live here: `banded_deform_conv_reference` gathers the four
bilinear corners explicitly (the ground truth every other implementation is checked against), and
`banded_deform_conv_gridsample` uses `grid_sample`, the spelling the portable ONNX graph uses.
Sampling coordinates are always computed in float32 or wider: half precision has no fractional
bits above 1024, which would destroy sub-pixel sampling on wide feature maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_attributes(kernel: tuple[int, int], dilation: tuple[int, int]) -> None:
    """Odd kernel sides and dilations of at least 1: what the kernels, the TensorRT plugins and the
    ONNX node accept, so that a layer one device runs is never refused later by another."""
    kh, kw = kernel
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sizes must be odd, got {kh}x{kw}")
    if dilation[0] < 1 or dilation[1] < 1:
        raise ValueError(f"dilations must be at least 1, got {dilation[0]}x{dilation[1]}")


def kernel_offsets(
    kernel: tuple[int, int], dilation: tuple[int, int], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Undeformed kernel point offsets (px, py), each [kh*kw], in the weight's row-major order."""
    check_attributes(kernel, dilation)
    kh, kw = kernel
    dh, dw = dilation
    py = (torch.arange(kh, device=device, dtype=dtype) - (kh - 1) / 2) * dh
    px = (torch.arange(kw, device=device, dtype=dtype) - (kw - 1) / 2) * dw
    return px.repeat(kh), py.repeat_interleave(kw)


def sampling_positions(
    geometry: torch.Tensor, kernel: tuple[int, int], dilation: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute sampling coordinates (x, y), each [N, kh*kw, H, W], in pixels.

    Computed in at least float32 whatever the geometry's dtype, so that coordinates keep their
    fractional part on maps wider than 1024 pixels.
    """
    _, _, h, w = geometry.shape
    dtype = torch.promote_types(geometry.dtype, torch.float32)
    g = geometry.to(dtype)
    cos, sin, sx, sy = g[:, 0:1], g[:, 1:2], g[:, 2:3], g[:, 3:4]
    px, py = kernel_offsets(kernel, dilation, g.device, dtype)
    ax = sx * px.view(1, -1, 1, 1)
    ay = sy * py.view(1, -1, 1, 1)
    base_y = torch.arange(h, device=g.device, dtype=dtype).view(1, 1, h, 1)
    base_x = torch.arange(w, device=g.device, dtype=dtype).view(1, 1, 1, w)
    x = base_x + cos * ax - sin * ay
    y = base_y + sin * ax + cos * ay
    return x, y


def bilinear_gather(x: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Sample x [N,C,H,W] at positions [N,K,H,W]; corners outside the image read as zero.

    Returns columns [N, C, K, H*W] in x's dtype (weights and accumulation in the positions' dtype).
    """
    n, c, h, w = x.shape
    k = px.shape[1]
    flat = x.reshape(n, c, h * w).to(px.dtype)
    x0 = torch.floor(px)
    y0 = torch.floor(py)
    fx = px - x0
    fy = py - y0
    x0 = x0.long()
    y0 = y0.long()
    cols = torch.zeros(n, c, k * h * w, dtype=px.dtype, device=x.device)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi = x0 + dx
            yi = y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).reshape(n, 1, k * h * w).expand(n, c, -1)
            weight = (wx * wy * inside).reshape(n, 1, k * h * w)
            cols = cols + torch.gather(flat, 2, index) * weight
    return cols.reshape(n, c, k, h * w)


def apply_weight(
    cols: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, h: int, w: int
) -> torch.Tensor:
    """The small GEMM after sampling: [O, C*K] @ [N, C*K, H*W] -> [N, O, H, W]."""
    n, c, k, hw = cols.shape
    o = weight.shape[0]
    out = torch.matmul(weight.reshape(o, c * k).to(cols.dtype), cols.reshape(n, c * k, hw))
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, o, 1)
    return out.reshape(n, o, h, w)


def check_operands(
    x: torch.Tensor, geometry: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> None:
    """Shapes that fit together: the CUDA kernels trust them, and read past a buffer otherwise."""
    if x.dim() != 4 or geometry.dim() != 4 or weight.dim() != 4:
        raise ValueError("x, geometry and weight must be 4-D")
    n, c, h, w = x.shape
    if tuple(geometry.shape) != (n, 4, h, w):
        raise ValueError(f"geometry must be [{n},4,{h},{w}], got {list(geometry.shape)}")
    if weight.shape[1] != c:
        raise ValueError(f"weight has {weight.shape[1]} input channels, x has {c}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must be [{weight.shape[0]}], one per output channel, got {list(bias.shape)}")


def banded_deform_conv_reference(
    x: torch.Tensor,
    geometry: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    dilation: tuple[int, int] = (1, 1),
) -> torch.Tensor:
    """Ground-truth banded deformable convolution by explicit bilinear gathers.

    Differentiable in x, geometry, weight and bias; runs on any device. Output dtype is x's dtype.
    """
    check_operands(x, geometry, weight, bias)
    kernel = (weight.shape[2], weight.shape[3])
    px, py = sampling_positions(geometry, kernel, dilation)
    cols = bilinear_gather(x, px, py)
    return apply_weight(cols, weight, bias, x.shape[2], x.shape[3]).to(x.dtype)


def banded_deform_conv_gridsample(
    x: torch.Tensor,
    geometry: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    dilation: tuple[int, int] = (1, 1),
) -> torch.Tensor:
    """The same operator through `grid_sample` (zeros padding), as the portable ONNX graph spells it.

    Pixel coordinates are normalised with align_corners=False, which maps pixel centre i exactly to
    (2i + 1) / size - 1 and stays defined for maps one pixel wide.
    """
    check_operands(x, geometry, weight, bias)
    n, c, h, w = x.shape
    kernel = (weight.shape[2], weight.shape[3])
    k = kernel[0] * kernel[1]
    px, py = sampling_positions(geometry, kernel, dilation)
    gx = (2 * px + 1) / w - 1
    gy = (2 * py + 1) / h - 1
    grid = torch.stack((gx, gy), dim=-1).reshape(n, k * h, w, 2)
    sampled = F.grid_sample(
        x.to(grid.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    cols = sampled.reshape(n, c, k, h * w)
    return apply_weight(cols, weight, bias, h, w).to(x.dtype)
