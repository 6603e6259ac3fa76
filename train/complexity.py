"""MAC counts, as the paper's table reports them ("FLOPs" there are MACs); parameters: network.py.

MACs are counted with PyTorch's own FlopCounterMode (2 FLOPs per multiply-accumulate) over the
convolutions and matrix products of one forward pass, including the banded deformable
convolutions' sampling GEMM; elementwise work (bilinear weights, activations) is not counted,
as MAC-counting tools do not count it either.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .network import BDINN


def count_macs(model: BDINN, height: int = 256, width: int = 256) -> int:
    """Multiply-accumulates of the forward pass on one 3xHxW image: G's (Y, Y) decomposition,
    and with the coarse pass, its second run at half size and the pass's own convolutions."""
    y = torch.zeros(1, model.config.channels, height, width)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(y)
    return counter.get_total_flops() // 2
