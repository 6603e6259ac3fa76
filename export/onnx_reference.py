"""bdinn::BandedDeformConv2d for onnx.reference: runs plugin graphs without TensorRT.

PyTorch's reference operator in float64, so the plugin graph can be checked against the
checkpoint on any machine:

    ReferenceEvaluator(model, new_ops=[BandedDeformConv2d]).run(None, {"image": x})
"""

from __future__ import annotations

import numpy as np
import torch
from onnx.reference.op_run import OpRun

from ..train.ops import banded_deform_conv_reference


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
        # PyTorch's reference in float64 (the ground truth, not a copy of its maths), cast back to
        # x's dtype as a plan's output is
        operands = (
            None if a is None else torch.from_numpy(np.asarray(a, np.float64))
            for a in (x, geometry, weight, bias)
        )
        with torch.no_grad():
            out = banded_deform_conv_reference(*operands, dilation=(dilation_h, dilation_w))
        return (out.numpy().astype(x.dtype),)
