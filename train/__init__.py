"""Training side of bdinn: the BDINN network, the reference banded deformable convolution, data and the trainer (needs torch)."""
