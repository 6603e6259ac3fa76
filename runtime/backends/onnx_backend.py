"""ONNX Runtime backend: any exported graph (portable or uint8 I/O) on the CPU or CUDA."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..imageio import from_float, to_float
from ..stop_signals import signals_deferred
from .base import Backend, BackendError, tile_grid_of

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


# What ONNX Runtime says when its arena or the C++ allocator runs out: its one exception type
# carries no out-of-memory kind.
_OUT_OF_MEMORY = re.compile(r"Failed to allocate memory|bad_alloc")


def _one_line(exc: Exception, limit: int = 400) -> str:
    """ONNX Runtime's message on one line: what follows its first line (the sizes a graph takes)
    is the part that says what to do."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message if len(message) <= limit else message[: limit - 3] + "..."


class OnnxBackend(Backend):
    """Runs a bdinn ONNX graph with the CUDA provider when onnxruntime-gpu has it, else on the CPU.

    Float graphs take [1, 3, H, W]; uint8 graphs take H x W x 3 and are fed frame by frame
    (their input is quantised to 8 bits, as the graph was exported to expect). The plugin graph
    needs TensorRT: ONNX Runtime has no BandedDeformConv2d kernel, which is said up front.
    """

    name = "onnxruntime"

    def __init__(self, path: Path, device: str | None = None) -> None:
        self.path = Path(path)
        try:
            with signals_deferred():  # a SIGTERM inside its import came out as "does not import"
                import onnxruntime as ort
        except ImportError as exc:  # missing, or present but built for another numpy: say which
            raise BackendError(
                f"{path}: ONNX models need ONNX Runtime, and it does not import ({exc}): "
                "pip install -U onnxruntime"
            ) from None
        available = ort.get_available_providers()
        want_cuda = device is None or device.startswith("cuda")
        if device is not None and device.startswith("cuda") and "CUDAExecutionProvider" not in available:
            raise BackendError(
                f"{path}: device {device!r} (--device {device}) needs onnxruntime-gpu (installed: CPU only)"
            )
        providers: list = ["CPUExecutionProvider"]
        gpu = int(device.partition(":")[2] or 0) if device else 0
        if want_cuda and "CUDAExecutionProvider" in available:
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": gpu}))
        options = ort.SessionOptions()
        options.log_severity_level = 4  # fatal only: its own error lines (red, 2 lines) before ours
        # The memory pattern keeps the first run's buffers and adds one block for the plan: every
        # later frame then peaked at twice the memory (1080p: 3.1 GB instead of 1.6), no faster.
        options.enable_mem_pattern = False
        threads = os.environ.get("BDINN_ORT_THREADS", "").strip()
        if threads:
            if not threads.isdigit() or int(threads) > 4096:  # ONNX Runtime takes a C int: a traceback
                raise BackendError(
                    "BDINN_ORT_THREADS must be a number of threads (0: all cores; at most 4096), got "
                    f"{threads!r}"
                )
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types, all one line worth
            message = _one_line(exc)
            if "BandedDeformConv2d" in str(exc):
                message = "the plugin graph runs on TensorRT only; export --graph gridsample for ONNX Runtime"
            elif "DeformConv" in str(exc):  # its kernel came with ONNX Runtime 1.25
                message = f"ONNX Runtime {ort.__version__} lacks DeformConv: use 1.25+, or --graph gridsample"
            raise BackendError(f"{path}: ONNX Runtime cannot load this model ({message})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendError(
                f"{path}: not a bdinn graph ({len(inputs)} inputs and {len(outputs)} outputs; bdinn-export "
                "writes one of each)"
            )
        (inp,), (out,) = inputs, outputs
        if inp.type not in _ORT_TYPES or len(inp.shape) not in (3, 4):
            raise BackendError(f"{path}: not a bdinn graph (input {inp.name} is {inp.type} {inp.shape})")
        self.input_name, self.output_name = inp.name, out.name
        self.input_dtype = _ORT_TYPES[inp.type]
        self.uint8_io = self.input_dtype == np.uint8
        props = self.session.get_modelmeta().custom_metadata_map  # bdinn-export's
        recorded = props.get("bdinn.precision")
        self.tile_grid = tile_grid_of(props.get("bdinn.coarse_pass") == "true")
        self.precision = recorded or ("fp16" if self.input_dtype == np.float16 else "fp32")
        self.device = f"cuda:{gpu}" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    def _run_one(self, chw: np.ndarray) -> np.ndarray:
        if self.session is None:
            raise BackendError("this ONNX Runtime model is closed; open it again")
        feed = (
            from_float(chw.transpose(1, 2, 0), 8)
            if self.uint8_io
            else np.ascontiguousarray(chw[None], self.input_dtype)
        )
        try:
            (out,) = self.session.run([self.output_name], {self.input_name: feed})
        except Exception as exc:  # ORT's own types; out of memory is one of them
            message = _one_line(exc)
            if _OUT_OF_MEMORY.search(message):  # as torch's: one line with advice (a smaller tile)
                size = "x".join(map(str, chw.shape[1:]))
                raise MemoryError(f"ONNX Runtime could not allocate a {size} tile's memory") from None
            raise BackendError(f"{self.path}: ONNX Runtime failed to run the model ({message})") from None
        wanted = feed.shape
        if out.shape != wanted or (self.uint8_io and out.dtype not in (np.uint8, np.uint16)):
            raise BackendError(
                f"{self.path}: not a bdinn graph (it made {out.dtype} {list(out.shape)} of "
                f"{feed.dtype} {list(wanted)}; a debanded frame has its input's shape)"
            )
        # ONNX Runtime's output is a fresh, writable array: a float32 one is used as it is
        return to_float(out).transpose(2, 0, 1) if self.uint8_io else out[0].astype(np.float32, copy=False)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Frames one by one: exported graphs have batch 1 (the TensorRT profile's shape). One frame,
        the usual call, is not stacked: a copy of a 1080p frame's 25 MB, 1-2 % of a picture's run."""
        if len(batch) == 1:
            return np.ascontiguousarray(self._run_one(batch[0]))[None]
        return np.stack([self._run_one(chw) for chw in batch])

    def close(self) -> None:
        self.session = None  # the session holds the weights and ONNX Runtime's memory arena

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        io = "uint8" if self.uint8_io else str(np.dtype(self.input_dtype))
        return {**super().describe(), "onnxruntime": ort.__version__, "io": io,
                "providers": self.session.get_providers() if self.session else []}  # fmt: skip
