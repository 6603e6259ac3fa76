"""How the banded deformable convolution is spelled in ONNX, for each graph the exporter makes.

- plugin graph: one `bdinn::BandedDeformConv2d` node per layer (the TensorRT plugin's op). The
  exporter needs an ONNX schema for domain `bdinn` before onnxscript will emit the node. The node
  also carries `plugin_namespace="bdinn"`: older TensorRT ONNX parsers find a plugin's namespace
  only in that attribute (the convention TensorRT's plugin samples document); TensorRT-RTX's
  parser uses the node's domain, and passes on no attribute the creator does not declare.
- deformconv graph: ONNX `DeformConv` (opset 19) fed with per-tap offsets that ordinary ops
  compute from the geometry; TensorRT maps it to its built-in DCN plugin, ONNX Runtime runs it.
- gridsample graph: needs nothing here; `grid_sample` exports as ONNX GridSample.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import onnxscript
import torch
from onnx.defs import OpSchema, register_schema
from onnx.helper import make_attribute
from onnxscript import opset19 as op

from ..plugins.trt_plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION
from ..train.ops import apply_weight, bilinear_gather, kernel_offsets, sampling_positions

BDINN_OPSET = onnxscript.values.Opset(PLUGIN_NAMESPACE, int(PLUGIN_VERSION))


@cache
def register_onnx_schema() -> None:
    """Declare bdinn::BandedDeformConv2d to ONNX once per process (checker, shape inference)."""
    param = OpSchema.FormalParameter
    optional = OpSchema.FormalParameterOption.Optional
    schema = OpSchema(
        PLUGIN_NAME,
        PLUGIN_NAMESPACE,
        int(PLUGIN_VERSION),
        doc="Banded deformable convolution: x [N,C,H,W] sampled on a grid rotated and stretched per "
        "pixel by geometry [N,4,H,W] = (cos, sin, sx, sy), weighted by W [O,C,kh,kw], plus B [O].",
        inputs=[
            param("X", "T"), param("geometry", "T"), param("W", "T"), param("B", "T", param_option=optional)
        ],
        outputs=[param("Y", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float32 or float16, one for all")],
        attributes=[OpSchema.Attribute(name, OpSchema.AttrType.INT, "") for name in
                    ("kernel_h", "kernel_w", "dilation_h", "dilation_w")]
        + [OpSchema.Attribute("plugin_namespace", make_attribute("plugin_namespace", PLUGIN_NAMESPACE),
                              "TensorRT plugin namespace, for ONNX parsers that read it from here")],
    )  # fmt: skip
    register_schema(schema)


def plugin_node(x: Any, geometry: Any, weight: Any, bias: Any, dilation_h: int, dilation_w: int) -> Any:
    """onnxscript translation of torch.ops.bdinn.banded_deform_conv: one plugin node."""
    kernel_h, kernel_w = weight.shape[2], weight.shape[3]
    return BDINN_OPSET.BandedDeformConv2d(
        x, geometry, weight, bias,
        kernel_h=kernel_h, kernel_w=kernel_w, dilation_h=dilation_h, dilation_w=dilation_w,
        plugin_namespace=PLUGIN_NAMESPACE,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The DeformConv spelling.
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("bdinn::deform_conv", mutates_args=())
def deform_conv(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    dilation_h: int,
    dilation_w: int,
) -> torch.Tensor:
    """Plain deformable convolution ('same' padding, stride 1) with offsets [N, 2*kh*kw, H, W] in
    (dy, dx) pairs, as ONNX DeformConv takes them; eager maths shared with the reference."""
    n, _, h, w = x.shape
    kh, kw = weight.shape[2:]
    rows = torch.arange(h, device=x.device, dtype=offset.dtype).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device, dtype=offset.dtype).view(1, 1, 1, w)
    taps_y, taps_x = _tap_offsets(kh, kw, dilation_h, dilation_w, x.device, offset.dtype)
    dy, dx = offset.view(n, kh * kw, 2, h, w).unbind(2)
    cols_ = bilinear_gather(x, cols + taps_x + dx, rows + taps_y + dy)
    return apply_weight(cols_, weight, bias, h, w).to(x.dtype)


@deform_conv.register_fake
def _deform_conv_fake(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    dilation_h: int,
    dilation_w: int,
) -> torch.Tensor:
    return x.new_empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))


def _tap_offsets(
    kh: int, kw: int, dh: int, dw: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The undeformed kernel points (dy, dx), shaped to broadcast over [N, kh*kw, H, W]."""
    tx, ty = kernel_offsets((kh, kw), (dh, dw), device, dtype)
    return ty.view(1, -1, 1, 1), tx.view(1, -1, 1, 1)


def deform_conv_node(x: Any, offset: Any, weight: Any, bias: Any, dilation_h: int, dilation_w: int) -> Any:
    """onnxscript translation of bdinn::deform_conv to ONNX DeformConv (opset 19)."""
    kh, kw = weight.shape[2], weight.shape[3]
    return op.DeformConv(
        x, weight, offset, bias,
        dilations=[dilation_h, dilation_w], kernel_shape=[kh, kw], group=1, offset_group=1,
        pads=[kh // 2 * dilation_h, kw // 2 * dilation_w, kh // 2 * dilation_h, kw // 2 * dilation_w],
        strides=[1, 1],
    )  # fmt: skip


def banded_as_deformconv(
    x: torch.Tensor,
    geometry: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    dilation: tuple[int, int] = (1, 1),
) -> torch.Tensor:
    """The banded convolution as a plain deformable one: offset = banded tap - regular tap.

    Offsets are computed in float32 from the geometry (they reach ~10 px, where float16 would
    keep only 1/128 px), then cast to the model's dtype for DeformConv, which takes one type.
    """
    kh, kw = weight.shape[2:]
    n, _, h, w = x.shape
    px, py = sampling_positions(geometry, (kh, kw), dilation)
    rows = torch.arange(h, device=x.device, dtype=px.dtype).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device, dtype=px.dtype).view(1, 1, 1, w)
    taps_y, taps_x = _tap_offsets(kh, kw, dilation[0], dilation[1], x.device, px.dtype)
    offset = torch.stack((py - rows - taps_y, px - cols - taps_x), dim=2).reshape(n, 2 * kh * kw, h, w)
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    return torch.ops.bdinn.deform_conv(x, offset.to(x.dtype), weight, bias, *dilation)


def translation_table() -> dict:
    """custom_translation_table for torch.onnx.export covering both custom spellings."""
    from ..plugins import torch_op  # registers torch.ops.bdinn.banded_deform_conv

    register_onnx_schema()
    return {
        torch_op.banded_deform_conv._opoverload: plugin_node,
        deform_conv._opoverload: deform_conv_node,
    }
