"""bdinn::BandedDeformConv2d for onnx.reference, in numpy: runs plugin graphs without TensorRT.

The maths of bdinn.train.ops in numpy (positions and weights in float64), so the plugin graph can
be checked against PyTorch on any machine:

    ReferenceEvaluator(model, new_ops=[BandedDeformConv2d]).run(None, {"image": x})
"""

from __future__ import annotations

import numpy as np
from onnx.reference.op_run import OpRun


def banded_deform_conv_numpy(
    x: np.ndarray,
    geometry: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    dilation: tuple[int, int] = (1, 1),
) -> np.ndarray:
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    g = geometry.astype(np.float64)
    cos, sin, sx, sy = (g[:, i : i + 1] for i in range(4))
    py = ((np.arange(kh) - (kh - 1) / 2) * dilation[0]).repeat(kw).reshape(1, -1, 1, 1)
    px = np.tile((np.arange(kw) - (kw - 1) / 2) * dilation[1], kh).reshape(1, -1, 1, 1)
    ax, ay = sx * px, sy * py
    pos_x = np.arange(w).reshape(1, 1, 1, w) + cos * ax - sin * ay
    pos_y = np.arange(h).reshape(1, 1, h, 1) + sin * ax + cos * ay
    x0, y0 = np.floor(pos_x), np.floor(pos_y)
    fx, fy = pos_x - x0, pos_y - y0
    flat = x.reshape(n, c, h * w).astype(np.float64)
    cols = np.zeros((n, c, pos_x[0].size))
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0.astype(np.int64) + dx, y0.astype(np.int64) + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            index = (np.clip(yi, 0, h - 1) * w + np.clip(xi, 0, w - 1)).reshape(n, 1, -1)
            gathered = np.take_along_axis(flat, np.broadcast_to(index, (n, c, index.shape[-1])), axis=2)
            cols += gathered * (wx * wy * inside).reshape(n, 1, -1)
    out = np.einsum(
        "ok,nkp->nop", weight.reshape(o, -1).astype(np.float64), cols.reshape(n, c * kh * kw, h * w)
    )
    if bias is not None:
        out += bias.astype(np.float64).reshape(1, o, 1)
    return out.reshape(n, o, h, w).astype(x.dtype)


class BandedDeformConv2d(OpRun):
    """onnx.reference implementation of the plugin node (domain bdinn, version 1)."""

    op_domain = "bdinn"

    def _run(
        self,
        x: np.ndarray,
        geometry: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        kernel_h: int | None = None,
        kernel_w: int | None = None,
        dilation_h: int = 1,
        dilation_w: int = 1,
        plugin_namespace: str | None = None,
    ) -> tuple[np.ndarray]:
        if (kernel_h, kernel_w) != weight.shape[2:]:
            raise ValueError(f"kernel attributes {kernel_h}x{kernel_w} disagree with weight {weight.shape}")
        return (banded_deform_conv_numpy(x, geometry, weight, bias, (dilation_h, dilation_w)),)
