"""Shared test constants."""

from bdinn.train.network import BDINNConfig

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
