"""PyTorch backend: a .safetensors checkpoint on the CPU or a CUDA GPU (eager, no compilation)."""

from __future__ import annotations

import contextlib
import os
import warnings
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .base import Backend, BackendError, tile_grid_of

PRECISIONS = {"fp32": "float32", "fp16": "float16"}


@contextlib.contextmanager
def torch_memory_errors() -> Iterator[None]:
    """PyTorch out of memory as MemoryError, which bdinn's commands turn into one line with advice:
    its CPU allocator raises a bare RuntimeError, CUDA's torch.OutOfMemoryError (a RuntimeError)."""
    try:
        yield
    except RuntimeError as exc:
        said = str(exc)
        if type(exc).__name__ != "OutOfMemoryError" and "can't allocate memory" not in said:
            raise
        raise MemoryError(said.strip().splitlines()[-1]) from None


class TorchBackend(Backend):
    """The reference backend, and the fallback when no ONNX Runtime or TensorRT is installed.

    On CUDA the banded convolutions use our CUDA kernels (torch.ops.bdinn) when their library
    is built, else the grid_sample formulation; on the CPU the grid_sample formulation, which is
    about 12x faster there than gathering. `infer_tensor` serves torch tensors already on the
    device without a host round trip.

    On the CPU every call runs on one inference thread owned by the backend, whatever thread it
    comes from. PyTorch's OpenMP runtime gives each calling thread its own team of worker threads
    (torn down when that thread exits), so callers on a decode and an encode thread would each
    bring a team onto cores that one team already fills. We also saw three caller threads hang
    for good when the process ran under SCHED_FIFO: two threads spinning on both cores while the
    two they waited for were runnable and never ran. One thread keeps one team and queues callers.
    """

    name = "torch"

    def __init__(self, path: Path, device: str | None = None, precision: str | None = None) -> None:
        try:
            import torch
        except ImportError:
            raise BackendError(
                f"{path}: checkpoints need PyTorch: pip install '.[train]' in bdinn's folder, or export the "
                "model to ONNX (bdinn-export --onnx-only) and serve that"
            ) from None
        from ...train.checkpoint import CheckpointError, load_checkpoint

        self._torch = torch
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(
                f"{path}: device {device!r} (--device {device}) asked for, but PyTorch sees no CUDA GPU"
            )
        precision = precision or "fp32"  # open_backend has checked it
        if precision == "fp16" and not device.startswith("cuda"):
            raise BackendError(f"{path}: fp16 runs on CUDA only; use fp32 on the CPU")
        try:
            model, meta = load_checkpoint(path)
        except CheckpointError as exc:
            raise BackendError(str(exc)) from None
        impl = "gridsample"
        if device.startswith("cuda"):
            from ...plugins.kernels import KernelLibraryError, load_kernels

            try:
                load_kernels()
                impl = "op"
            except KernelLibraryError as exc:  # grid_sample is correct, only slower: say so once
                warnings.warn(f"bdinn: banded convolutions run as grid_sample (slower): {exc}", stacklevel=2)
        model.set_banded_impl(impl)
        self.model = model.to(device=device, dtype=getattr(torch, PRECISIONS[precision])).eval()
        self.tile_grid = tile_grid_of(model.config.coarse_pass)
        self.meta = meta
        self.device = device
        self.precision = precision
        self.impl = impl
        self._cpu_thread = None
        if device == "cpu":
            self._cpu_thread = _inference_thread()
            _ON_THE_CPU.add(self)

    def infer_tensor(self, batch: Any) -> Any:
        """A [N, 3, H, W] tensor in [0, 1] on any device -> the debanded tensor, same device/dtype."""
        if self.model is None:
            raise BackendError("this PyTorch model is closed; open it again")
        if self._cpu_thread is None:
            return self._forward(batch)
        try:
            work = self._cpu_thread.submit(self._forward, batch)
        except RuntimeError:  # closed by another thread since the check above
            raise BackendError("this PyTorch model is closed; open it again") from None
        return work.result()

    def _forward(self, batch: Any) -> Any:
        torch = self._torch
        dtype = next(self.model.parameters()).dtype
        with torch.inference_mode(), torch_memory_errors():
            out = self.model(batch.to(self.device, dtype))
        return out.to(batch.device, batch.dtype)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        tensor = self._torch.from_numpy(np.ascontiguousarray(batch, np.float32))
        return self.infer_tensor(tensor).numpy()

    def describe(self) -> dict[str, Any]:
        info = {**super().describe(), "banded_conv": self.impl, "config": self.meta.get("config_name")}
        if self.device.startswith("cuda"):
            info["gpu"] = self._torch.cuda.get_device_name(self.device)
        return info

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize(self.device)

    def close(self) -> None:
        if self._cpu_thread is not None:
            self._cpu_thread.shutdown()
        self.model = None  # frees the weights (GPU memory included) once no call holds them


def _inference_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="bdinn-torch-cpu")


_ON_THE_CPU: weakref.WeakSet[TorchBackend] = weakref.WeakSet()


def _renew_inference_threads() -> None:
    """In a forked child (a data loader worker): it inherits each backend's executor but not its
    thread, so a call was queued for a thread that never ran it and waited forever."""
    for backend in list(_ON_THE_CPU):
        if backend.model is not None:
            backend._cpu_thread = _inference_thread()


os.register_at_fork(after_in_child=_renew_inference_threads)
