"""One small class per backend with the same life cycle: open a model file, infer, describe.

Every backend takes and returns float32 [N, 3, H, W] batches in [0, 1] on the host (`infer`);
the GPU backends also serve device memory directly (see their own docs). Which backend a file
needs is decided by its suffix in `open_backend`.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Backend, BackendError

SUFFIXES = {".plan": "tensorrt", ".engine": "tensorrt", ".onnx": "onnxruntime", ".safetensors": "torch"}
PICKLED_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle"}  # refused: unpickling runs code
BACKENDS = ("tensorrt", "onnxruntime", "torch")


def backend_for(path: Path) -> str:
    if path.suffix.lower() in PICKLED_SUFFIXES:
        raise BackendError(
            f"{path}: a pickled PyTorch file, which bdinn never loads (unpickling can run code); use a "
            "bdinn .safetensors checkpoint, an .onnx model or a .plan engine"
        )
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise BackendError(
            f"{path}: unknown model file type {path.suffix!r} (use .plan/.engine, .onnx or .safetensors)"
        ) from None


def open_backend(
    path: Path,
    backend: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    plugin_library: Path | None = None,
    allow_embedded_plugin: bool = False,
) -> Backend:
    """Open `path` with the backend its suffix asks for (or `backend`, which must agree)."""
    path = Path(path)
    if device is not None and not (isinstance(device, str) and re.fullmatch(r"cpu|cuda(:\d+)?", device)):
        raise BackendError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if precision not in (None, "fp32", "fp16"):
        raise BackendError(f"precision must be fp32 or fp16 (None: the model file's), got {precision!r}")
    if path.is_dir():
        raise BackendError(f"{path}: is a folder; give the model file (.onnx, .plan or .safetensors)")
    if not path.is_file():
        raise BackendError(f"{path}: no such model file (check the path)")
    wanted = backend_for(path)
    if backend is not None and backend != wanted:
        raise BackendError(f"{path}: a {path.suffix} file runs on the {wanted} backend, not {backend}")
    if plugin_library is not None and wanted != "tensorrt":  # it was ignored, its path never looked at
        raise BackendError(
            f"{path}: plugin_library (--plugin-library) is for TensorRT plans; a {path.suffix} file runs "
            f"on {wanted} without one"
        )
    if allow_embedded_plugin and wanted != "tensorrt":  # as silently meaningless
        raise BackendError(
            f"{path}: allow_embedded_plugin (--allow-embedded-plugin) is for TensorRT plans that carry "
            f"their plugin library; a {path.suffix} file runs on {wanted} without one"
        )
    if wanted == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(path, device=device, precision=precision)
    if wanted == "tensorrt" and device == "cpu":
        raise BackendError(f"{path}: TensorRT engines run on a GPU, not on the CPU (serve an .onnx there)")
    if wanted == "onnxruntime":
        from .onnx_backend import OnnxBackend

        opened: Backend = OnnxBackend(path, device=device)
    else:
        from .tensorrt_backend import TensorRTBackend

        opened = TensorRTBackend(
            path, device=device, plugin_library=plugin_library, allow_embedded_plugin=allow_embedded_plugin
        )
    if precision is not None and precision != opened.precision:
        opened.close()
        how = "with" if precision == "fp16" else "without"
        raise BackendError(
            f"{path}: this {path.suffix} file is {opened.precision}, fixed at export; export it again {how} "
            f"--fp16 for {precision}"
        )
    return opened


__all__ = [
    "BACKENDS",
    "PICKLED_SUFFIXES",
    "SUFFIXES",
    "Backend",
    "BackendError",
    "backend_for",
    "open_backend",
]
