"""The interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class BackendError(RuntimeError):
    """A model file or backend that cannot serve; the message is one line for the user."""


class Backend(ABC):
    """A loaded model on one backend.

    `infer` maps float32 [N, 3, H, W] in [0, 1] to the same shape; it may be called from several
    threads at once. `max_size`/`min_size` bound (height, width) where the backend has a fixed
    range (a TensorRT optimisation profile); larger frames are tiled by the caller.
    """

    name: str = ""
    precision: str = "fp32"
    device: str = "cpu"
    min_size: tuple[int, int] = (16, 16)
    max_size: tuple[int, int] | None = None
    uint8_io: bool = False  # a graph exported with --io uint8: 8-bit pictures in and out
    tile_grid: int = 8  # where tiles may start: the model's own grid (tile_grid_of)

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]:
        """What a benchmark or log line should say about this backend."""
        return {"backend": self.name, "precision": self.precision, "device": self.device}

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on the CPU); benchmarks call it between timings."""
        return

    def close(self) -> None:
        """Free what the backend holds; the object is unusable afterwards."""
        return


def tile_grid_of(coarse_pass: bool) -> int:
    """The grid a model's tiles start on: it halves the resolution three times, and the coarse
    pass once more."""
    return 16 if coarse_pass else 8
