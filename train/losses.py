"""Training loss (paper §3.4): L1 content loss plus 0.1 x L1 of the 2-D Fourier transform."""

from __future__ import annotations

import torch


def frequency_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |F(pred) - F(target)| over real and imaginary parts of the real 2-D FFT.

    The FFT is unnormalised (PyTorch's default, as the paper's code base would write it), so
    this term grows with patch size; the paper's weight 0.1 is meant for 256x256 patches.
    """
    diff = torch.fft.rfft2(pred.float()) - torch.fft.rfft2(target.float())
    return torch.view_as_real(diff).abs().mean()


def debanding_loss(pred: torch.Tensor, target: torch.Tensor, fft_weight: float = 0.1) -> torch.Tensor:
    """L = ||X - X'||_1 + fft_weight * ||F(X) - F(X')||_1; only the clean layer X is supervised."""
    content = (pred.float() - target.float()).abs().mean()
    return content + fft_weight * frequency_l1(pred, target)
