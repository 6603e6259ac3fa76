"""Shared test constants, models and checks."""

import dataclasses
import threading

import torch

from bdinn.train.network import BDINN, BandedDeformConv2d, BDINNConfig, build_model

# Small enough for a 2-core CPU to train in well under a second per step on 32x32 patches.
TINY = BDINNConfig(
    growth=(4, 4, 4),
    dense_depth=1,
    encoder_blocks=(1, 1, 1),
    decoder_blocks=(1, 1, 1),
    skip_blocks=(1, 1, 1),
    bottleneck_blocks=1,
    bottleneck_growth=4,
)

# The smallest network bdinn builds: one dense block, no banded layer. Its ONNX export takes a
# tenth of TINY's, for tests of files, messages and plumbing, where what it computes does not matter.
MICRO = dataclasses.replace(
    TINY, encoder_blocks=(1, 0, 0), decoder_blocks=(0, 0, 0), skip_blocks=(0, 0, 0), bottleneck_blocks=0
)


def perturbed_tiny(seed: int = 0, config: BDINNConfig | str = TINY) -> BDINN:
    """A network (TINY unless told) moved well away from its identity start, with rotated and
    stretched sampling grids, so that tests compare real computations, not copies of the input."""
    torch.manual_seed(seed)
    model = build_model(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        for module in model.modules():
            if isinstance(module, BandedDeformConv2d):
                module.head.weight.normal_(0, 0.2)
    return model


def workers_left_running(before: set[threading.Thread]) -> list[str]:
    """bdinn's worker threads started since `before` and still alive: a model left open (the shared
    row pool's workers, runtime/processing.py, stay by design)."""
    started = set(threading.enumerate()) - before
    return sorted(
        t.name for t in started if t.name.startswith("bdinn-") and not t.name.startswith("bdinn-rows")
    )


class Unallocatable(torch.nn.Module):
    """A network whose forward pass asks the allocator for more memory than any machine has: a
    real out-of-memory failure of PyTorch's, on any machine."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight + torch.empty(1 << 60, dtype=torch.uint8).sum()
