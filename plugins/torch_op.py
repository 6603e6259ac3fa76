"""`torch.ops.bdinn.banded_deform_conv`: one PyTorch operator for every device and for export.

CUDA tensors run the shared CUDA kernels through their C ABI on the current stream; CPU tensors
run the reference implementation; a fake implementation gives shapes for tracing and export;
gradients come from the reference, so training may use the op on any device.
"""

from __future__ import annotations

from typing import Any

import torch

from ..train.ops import banded_deform_conv_reference, check_attributes, check_operands
from .kernels import FP16, FP32, forward

_DTYPES = {torch.float32: FP32, torch.float16: FP16}


@torch.library.custom_op("bdinn::banded_deform_conv", mutates_args=())
def banded_deform_conv(
    x: torch.Tensor,
    geometry: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    dilation_h: int,
    dilation_w: int,
) -> torch.Tensor:
    """Banded deformable convolution; see bdinn.train.ops for the maths."""
    return _reference(x, geometry, weight, bias, (dilation_h, dilation_w))


def _reference(*operands: Any) -> torch.Tensor:
    """The reference's result as a tensor of its own: it is a view (a reshape), and autograd
    forbids changing a custom op's view output in place (the network's in-place activations)."""
    return banded_deform_conv_reference(*operands).clone()


@banded_deform_conv.register_fake
def _fake(
    x: torch.Tensor,
    geometry: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    dilation_h: int,
    dilation_w: int,
) -> torch.Tensor:
    """Shapes for tracing, after the checks the kernels make: an export must not take a layer that
    the CPU reference and every kernel refuse."""
    check_operands(x, geometry, weight, bias)
    check_attributes((weight.shape[2], weight.shape[3]), (dilation_h, dilation_w))
    return x.new_empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))


@banded_deform_conv.register_kernel("cuda")
def _cuda(
    x: torch.Tensor,
    geometry: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    dilation_h: int,
    dilation_w: int,
) -> torch.Tensor:
    # The kernels trust every extent and pointer: a wrong shape reads past a buffer, and a tensor on
    # another device hands them a pointer they cannot read (a fault that ends the CUDA context).
    check_operands(x, geometry, weight, bias)
    elsewhere = [name for name, t in (("geometry", geometry), ("weight", weight), ("bias", bias))
                 if t is not None and t.device != x.device]  # fmt: skip
    if elsewhere:
        raise ValueError(f"bdinn::banded_deform_conv: {', '.join(elsewhere)} not on x's device {x.device}")
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    # No kernel for nothing to sample or to write (they refuse empty extents), nor for bfloat16
    # (autocast's x beside float32 weights) or float64: there, the reference's answer, as on the CPU.
    if n * h * w * c * o == 0 or x.dtype not in _DTYPES:
        return _reference(x, geometry, weight, bias, (dilation_h, dilation_w))
    # The rest in x's dtype, the dtype of the output (as the reference gives it): float32 weights
    # with a half x are those of an FP16 network whose layer was kept in float32, and the reverse.
    x, geometry, weight = (t.to(x.dtype).contiguous() for t in (x, geometry, weight))
    bias = None if bias is None else bias.to(x.dtype).contiguous()
    with torch.cuda.device(x.device):  # the launch goes to the current device's context
        out = x.new_empty((n, o, h, w))
        stream = torch.cuda.current_stream(x.device).cuda_stream
        forward(
            "bdinn::banded_deform_conv", _DTYPES[x.dtype],
            x.data_ptr(), geometry.data_ptr(), weight.data_ptr(), None if bias is None else bias.data_ptr(),
            out.data_ptr(),
            n, c, h, w, o, (kh, kw), (dilation_h, dilation_w), stream,
        )  # fmt: skip
    return out


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, geometry, weight, bias, dilation_h, dilation_w = inputs
    ctx.save_for_backward(x, geometry, weight, bias)
    ctx.dilation = (dilation_h, dilation_w)


def _backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """Gradients of the reference implementation, recomputed: the kernels are forward-only.

    Under create_graph (a gradient penalty, double backward) the recomputation keeps the saved
    inputs' own graph, so that the gradients returned are differentiable in turn."""
    saved = ctx.saved_tensors
    wanted = [t is not None and needs for t, needs in zip(saved, ctx.needs_input_grad[:4], strict=True)]
    higher_order = torch.is_grad_enabled()
    with torch.enable_grad():
        inputs = [
            t if t is None or higher_order else t.detach().requires_grad_(w)
            for t, w in zip(saved, wanted, strict=True)
        ]
        out = banded_deform_conv_reference(*inputs, ctx.dilation)
        targets = [t for t, w in zip(inputs, wanted, strict=True) if w]
        grads = iter(torch.autograd.grad(out, targets, grad, create_graph=higher_order) if targets else [])
    return (*(next(grads) if w else None for w in wanted), None, None)


banded_deform_conv.register_autograd(_backward, setup_context=_setup_context)
