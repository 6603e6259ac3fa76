"""TensorRT backend: a .plan from bdinn-export on TensorRT or TensorRT-RTX, driven by cuda-python.

Host frames go through pinned buffers with asynchronous copies on the thread's own stream; each
thread gets its own execution context and stream, so a decode thread and an encode thread can
share one engine. `infer_device` serves device pointers on the caller's stream with no copy at
all, and fixed shapes can be replayed as CUDA graphs.
"""

from __future__ import annotations

import contextlib
import ctypes
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..engine_sidecar import IO_DTYPES, SidecarError, read_sidecar
from ..imageio import from_float, to_float
from ..tensorrt import TensorRTUnavailable, error_logger, load_plugin_library, load_tensorrt
from .base import Backend, BackendError, tile_grid_of

_NP_DTYPES = {name: np.dtype(name).type for name in IO_DTYPES}  # the sidecar's names, checked there


def cuda_runtime() -> Any:
    """cuda-python's runtime API, under either of its spellings."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python 12.x spelling
        except ImportError:
            raise BackendError("TensorRT engines need cuda-python: pip install cuda-python") from None
    return cudart


def cuda_driver() -> Any:
    """cuda-python's driver API (contexts), under either of its spellings."""
    try:
        from cuda.bindings import driver
    except ImportError:
        from cuda import cuda as driver  # cuda-python 12.x spelling
    return driver


_EM_CUDA = 190  # ELF machine of CUDA device code (cubins), which every plan may hold


def carries_host_library(plan: bytes) -> bool:
    """Whether a plan holds a shared library for the CPU (an ELF of type ET_DYN for a machine other
    than CUDA): what a plugin library serialised into it looks like. Such a library is loaded,
    and its code run, as TensorRT deserialises the plan, before anything else can be checked."""
    found = plan.find(b"\x7fELF")
    while found >= 0:
        header = plan[found : found + 20]
        if len(header) == 20 and header[5] in (1, 2):  # ELFDATA2LSB, ELFDATA2MSB
            e_type, e_machine = struct.unpack("<HH" if header[5] == 1 else ">HH", header[16:20])
            if e_type == 3 and e_machine != _EM_CUDA:
                return True
        found = plan.find(b"\x7fELF", found + 1)
    return False


def gpu_identity(cudart: Any, index: int) -> tuple[str, str]:
    """The name of CUDA device `index` and its compute capability as smXY."""
    props = cuda_checked(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else props.name
    return name, f"sm{props.major}{props.minor}"


def cuda_checked(result: Any, what: str) -> Any:
    """cuda-python returns (error, *values); raise BackendError on an error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA {what} failed: {err!r}")
    return values[0] if len(values) == 1 else values


class _PinnedArray:
    """A page-locked host buffer seen as a numpy array (what async copies need)."""

    def __init__(self, cudart: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.cudart = cudart
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.ptr = int(cuda_checked(cudart.cudaMallocHost(nbytes), "cudaMallocHost"))
        raw = (ctypes.c_byte * nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        self.nbytes = nbytes

    def free(self) -> None:
        self.cudart.cudaFreeHost(self.ptr)


class _ThreadState:
    """One execution context and stream per thread, with buffers for the last shape seen."""

    def __init__(self, backend: TensorRTBackend) -> None:
        cudart = backend.cudart
        self.context = backend.engine.create_execution_context()
        if self.context is None:
            raise BackendError(
                f"{backend.path}: TensorRT could not create an execution context (GPU memory?)"
            )
        self.stream = int(
            cuda_checked(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "stream")
        )
        # The context's scratch memory serves one inference at a time: `done` marks the end of the
        # last one, which the next waits for, on whichever stream either was queued.
        self.done = cuda_checked(cudart.cudaEventCreateWithFlags(cudart.cudaEventDisableTiming), "event")
        self.thread = threading.current_thread()  # its owner: once it has ended, the state is freed
        self.shape: tuple[int, ...] | None = None
        self.buffers: list[Any] = []
        self.graphs: dict[tuple[int, ...], Any] = {}


class TensorRTBackend(Backend):
    """Deserialises a plan after checking its sidecar against the installed TensorRT and GPU."""

    name = "tensorrt"

    def __init__(
        self,
        path: Path,
        device: str | None = None,
        plugin_library: Path | None = None,
        allow_embedded_plugin: bool = False,
    ) -> None:
        self.path = Path(path)
        try:
            sidecar, plan = read_sidecar(self.path)
        except SidecarError as exc:
            raise BackendError(str(exc)) from None
        self.sidecar = sidecar
        built_with = sidecar["tensorrt"]
        try:
            info = load_tensorrt(built_with["flavour"])
        except TensorRTUnavailable as exc:
            raise BackendError(
                f"{path}: built with {built_with['flavour']} {built_with['version']}; {exc}"
            ) from None
        if info.version != built_with["version"]:
            raise BackendError(
                f"{path}: built with {info.flavour} {built_with['version']} but {info.version} is installed; "
                "rebuild the engine with bdinn-export"
            )
        self.trt, self.info = info.module, info
        # Native code runs only where the user asked for it: a library the sidecar names (a JSON
        # file anyone can edit) is never loaded, and a plan's embedded one only when allowed. Which
        # plans carry one is read from the plan itself: a sidecar saying "serialized_in_plan":
        # false had TensorRT load the library, and run its code, with no leave asked.
        embedded = bool(sidecar["plugin"].get("serialized_in_plan")) or carries_host_library(plan)
        if embedded and not allow_embedded_plugin:
            raise BackendError(
                f"{path}: carries its TensorRT plugin library, native code that runs as the plan loads; "
                "if you trust where the plan came from, pass --allow-embedded-plugin "
                "(allow_embedded_plugin=True)"
            )
        library = Path(plugin_library) if plugin_library is not None else None
        if library is not None:  # before the GPU check: a bad library path is the first thing to fix
            self._load_plugin_library(library)
        self.cudart = cuda_runtime()
        self.device_index = int(device.split(":")[1]) if device and ":" in device else 0
        self.device = f"cuda:{self.device_index}"
        self._check_device_count()
        self.cudadrv = cuda_driver()
        with self.on_device():  # the engine is deserialised onto the current device
            self.gpu, self.compute = self._check_gpu(sidecar.get("targets") or [])
            if library is None and not embedded and sidecar.get("graph", "plugin") == "plugin":
                self._register_python_plugin()  # a portable graph (gridsample, deformconv) needs no plugin
            self._logger = error_logger(self.trt)  # kept: TensorRT logs through it while the engine runs
            self._runtime = self.trt.Runtime(self._logger)
            if embedded and hasattr(self._runtime, "engine_host_code_allowed"):
                self._runtime.engine_host_code_allowed = True  # the embedded plugin library is host code
            self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise BackendError(
                f"{path}: TensorRT could not deserialise this plan on {self.gpu} ({self.compute}; "
                f"{'; '.join(self._logger.errors) or 'no reason given'}); it was built for "
                f"{', '.join(sidecar.get('targets') or ['another GPU'])}: rebuild with bdinn-export"
            )
        self.input_name = sidecar["io"]["input"]["name"]
        self.output_name = sidecar["io"]["output"]["name"]
        self.input_dtype = _NP_DTYPES[sidecar["io"]["input"]["dtype"]]
        self.output_dtype = _NP_DTYPES[sidecar["io"]["output"]["dtype"]]
        self.uint8_io = self.input_dtype == np.uint8
        self.precision = sidecar.get("precision", "fp32")
        config = sidecar.get("model_config")
        self.tile_grid = tile_grid_of(isinstance(config, dict) and config.get("coarse_pass") is True)
        profile = sidecar["profile"]
        self.min_size, self.max_size = tuple(profile["min"]), tuple(profile["max"])
        self.cuda_graph = False  # bdinn-bench --cuda-graph replays each shape's captured graph
        self._local = threading.local()
        self._states: list[_ThreadState] = []
        self._lock = threading.Lock()

    def _check_device_count(self) -> None:
        count = self.cudart.cudaGetDeviceCount()
        if int(count[0]) != 0 or count[1] == 0:
            raise BackendError(
                f"{self.path}: TensorRT engines need an NVIDIA GPU and driver, and none is usable here "
                "(use an .onnx or .safetensors model on the CPU)"
            )
        if count[1] <= self.device_index:  # a GPU is there: the index is what is wrong
            gpus = ", ".join(f"cuda:{index}" for index in range(count[1]))
            raise BackendError(f"{self.path}: cuda:{self.device_index} asked for; this machine has {gpus}")

    @contextlib.contextmanager
    def on_device(self) -> Iterator[None]:
        """The engine's GPU current for the CUDA calls inside, and the thread's own context back
        after: an engine, its contexts and buffers belong to one device, while the caller's thread
        may work on another (torch.cuda.set_device), or on none yet (restoring "device 0" would
        make a context there, hundreds of MB on a GPU the caller never used)."""
        saved = cuda_checked(self.cudadrv.cuCtxGetCurrent(), "cuCtxGetCurrent")
        cuda_checked(self.cudart.cudaSetDevice(self.device_index), "cudaSetDevice")
        try:
            yield
        finally:
            self.cudadrv.cuCtxSetCurrent(saved)

    def _check_gpu(self, targets: list[str]) -> tuple[str, str]:
        name, compute = gpu_identity(self.cudart, self.device_index)
        if targets and compute not in targets:
            raise BackendError(
                f"{self.path}: built for {', '.join(targets)} but this GPU ({name}) is {compute}; "
                f"rebuild with bdinn-export --target {compute}"
            )
        return name, compute

    def _load_plugin_library(self, library: Path) -> None:
        if not library.is_file():
            raise BackendError(f"{library}: plugin library not found (pass --plugin-library with its path)")
        problem = load_plugin_library(self.trt, library)
        if problem is not None:
            raise BackendError(f"{library}: {problem}")

    def _register_python_plugin(self) -> None:
        from ...plugins.kernels import KernelLibraryError, load_kernels
        from ...plugins.trt_plugin import register_python_plugin

        try:
            load_kernels()
        except KernelLibraryError as exc:
            built_with = self.sidecar["plugin"].get("implementation")
            also = (
                f"; or pass --plugin-library with the C++ plugin it was built with ({built_with})"
                if isinstance(built_with, str) and built_with != "python"
                else ""
            )
            raise BackendError(f"{self.path}: the engine's plugin cannot run: {exc}{also}") from None
        try:
            register_python_plugin(self.trt)
        except RuntimeError as exc:
            raise BackendError(f"{self.path}: {exc}") from None

    def _state(self) -> _ThreadState:
        state = getattr(self._local, "state", None)
        if state is None:
            if self.engine is None:
                raise BackendError(f"{self.path}: this TensorRT engine is closed; open it again")
            with self._lock:  # a thread per request or per video: free the states of those that ended
                for ended in [s for s in self._states if not s.thread.is_alive()]:
                    self._release(ended)
                state = self._local.state = _ThreadState(self)
                self._states.append(state)
        return state

    def _release(self, state: _ThreadState) -> None:
        """Free a thread's context (its activation memory), stream and buffers, once all the work
        queued is done: infer_device returns before it is, on the caller's own stream, which only
        the whole device's synchronisation waits for. Called with the lock held."""
        if state not in self._states:
            return
        self._states.remove(state)
        self.cudart.cudaDeviceSynchronize()
        self._free_buffers(state)
        self.cudart.cudaStreamDestroy(state.stream)
        self.cudart.cudaEventDestroy(state.done)
        state.context = None

    def _io_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Input and output share one shape: [1,3,H,W], or H x W x 3 for uint8 I/O."""
        return (height, width, 3) if self.uint8_io else (1, 3, height, width)

    def _bind(self, state: _ThreadState, height: int, width: int) -> None:
        """Allocate device and pinned buffers for a new shape and bind them to the context."""
        shape_in = shape_out = self._io_shape(height, width)
        if state.shape == shape_in:
            return
        self._free_buffers(state)
        cudart = self.cudart
        # Each kept as it is made: an allocation that fails (a large frame, GPU memory full) frees
        # those before it with the rest (they leaked, pinned memory too, at every retry).
        state.buffers.append(host_in := _PinnedArray(cudart, shape_in, self.input_dtype))
        state.buffers.append(host_out := _PinnedArray(cudart, shape_out, self.output_dtype))
        state.buffers.append(dev_in := int(cuda_checked(cudart.cudaMalloc(host_in.nbytes), "cudaMalloc")))
        state.buffers.append(dev_out := int(cuda_checked(cudart.cudaMalloc(host_out.nbytes), "cudaMalloc")))
        if not state.context.set_input_shape(self.input_name, shape_in):
            raise BackendError(
                f"{self.path}: {height}x{width} is outside the engine's profile "
                f"{self.min_size}..{self.max_size}"
            )
        state.context.set_tensor_address(self.input_name, dev_in)
        state.context.set_tensor_address(self.output_name, dev_out)
        state.shape = shape_in

    def _free_buffers(self, state: _ThreadState) -> None:
        for graph in state.graphs.values():
            self.cudart.cudaGraphExecDestroy(graph)
        state.graphs.clear()
        for buffer in state.buffers:  # pinned host arrays, then device pointers; all four or fewer
            if isinstance(buffer, _PinnedArray):
                buffer.free()
            else:
                self.cudart.cudaFree(buffer)
        state.buffers, state.shape = [], None

    def _enqueue_failed(self) -> BackendError:
        """The one error for a refused enqueue: TensorRT has already logged why."""
        return BackendError(f"{self.path}: TensorRT failed to enqueue the engine (its error is above)")

    def _execute(self, context: Any, stream: int) -> None:
        """Enqueue the engine on `stream`, raising if TensorRT refuses."""
        if not context.execute_async_v3(stream):
            raise self._enqueue_failed()

    def _capturing(self, stream: int) -> bool:
        status = cuda_checked(self.cudart.cudaStreamIsCapturing(stream), "stream capture status")
        return status != self.cudart.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone

    def _wait_for_the_last(self, state: _ThreadState, stream: int) -> None:
        """Order an inference on `stream` after the context's last one, wherever that was queued
        (the thread's own stream, or a caller's): two at once would share its scratch memory. Not
        in a caller's CUDA graph capture (torch.cuda.graph), which may not wait on an event
        recorded outside it; the caller orders its replays."""
        if not self._capturing(stream):
            cuda_checked(self.cudart.cudaStreamWaitEvent(stream, state.done, 0), "stream wait")

    def _mark_the_last(self, state: _ThreadState, stream: int) -> None:
        if not self._capturing(stream):  # an event recorded in a capture could not be waited for
            cuda_checked(self.cudart.cudaEventRecord(state.done, stream), "event record")

    def _enqueue(self, state: _ThreadState) -> None:
        """Run the engine on the thread's stream, through a captured CUDA graph when asked."""
        if not self.cuda_graph:
            self._execute(state.context, state.stream)
            return
        graph = state.graphs.get(state.shape)
        if graph is None:
            cudart = self.cudart
            mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
            self._execute(state.context, state.stream)  # first run outside capture: lazy setup
            cuda_checked(cudart.cudaStreamBeginCapture(state.stream, mode), "stream capture")
            enqueued = state.context.execute_async_v3(state.stream)
            captured = cuda_checked(cudart.cudaStreamEndCapture(state.stream), "stream capture")
            if not enqueued:  # a graph of part of the engine would replay silently
                cudart.cudaGraphDestroy(captured)
                raise self._enqueue_failed()
            try:
                graph = cuda_checked(cudart.cudaGraphInstantiate(captured, 0), "graph instantiate")
            finally:  # the captured graph leaked where instantiating it failed
                cudart.cudaGraphDestroy(captured)
            state.graphs[state.shape] = graph
        cuda_checked(self.cudart.cudaGraphLaunch(graph, state.stream), "graph launch")

    def _run_one(self, chw: np.ndarray) -> np.ndarray:
        with self.on_device():
            return self._run_one_here(chw)

    def _run_one_here(self, chw: np.ndarray) -> np.ndarray:
        state = self._state()
        h, w = chw.shape[-2:]
        self._wait_for_the_last(state, state.stream)  # before _bind frees or rebinds anything
        self._bind(state, h, w)
        host_in, host_out, dev_in, dev_out = state.buffers
        if self.uint8_io:
            from_float(chw.transpose(1, 2, 0), 8, out=host_in.array)
        else:
            np.copyto(host_in.array[0], chw, casting="same_kind")
        cudart, kind = self.cudart, self.cudart.cudaMemcpyKind
        upload = cudart.cudaMemcpyAsync(
            dev_in, host_in.ptr, host_in.nbytes, kind.cudaMemcpyHostToDevice, state.stream
        )
        cuda_checked(upload, "copy to GPU")
        self._enqueue(state)
        self._mark_the_last(state, state.stream)
        download = cudart.cudaMemcpyAsync(
            host_out.ptr, dev_out, host_out.nbytes, kind.cudaMemcpyDeviceToHost, state.stream
        )
        cuda_checked(download, "copy from GPU")
        cuda_checked(self.cudart.cudaStreamSynchronize(state.stream), "stream synchronize")
        if self.uint8_io:  # uint8 or uint16 output
            return to_float(host_out.array).transpose(2, 0, 1)
        return host_out.array[0].astype(np.float32)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([self._run_one(chw) for chw in batch])

    def infer_device(self, input_ptr: int, output_ptr: int, height: int, width: int, stream: int) -> None:
        """Enqueue one frame already in GPU memory on the caller's stream; returns without waiting.

        The buffers hold the engine's I/O as the sidecar describes it ([1,3,H,W] float16/32, or
        H x W x 3 uint8), each starting on a 256-byte boundary as TensorRT requires (cudaMalloc's
        and torch's allocations do; a view into a batch may not); the caller owns them and
        synchronises `stream` before reading.
        """
        stream = int(stream)
        if int(input_ptr) % 256 or int(output_ptr) % 256:  # undefined for TensorRT: a fault, or worse
            raise BackendError(
                f"{self.path}: infer_device needs buffers that start on a 256-byte boundary; copy a view "
                "into a buffer of its own (tensor.clone())"
            )
        with self.on_device():
            state = self._state()
            self._wait_for_the_last(state, stream)
            shape_in = self._io_shape(height, width)
            if not state.context.set_input_shape(self.input_name, shape_in):
                raise BackendError(f"{self.path}: {height}x{width} is outside the engine's profile")
            state.context.set_tensor_address(self.input_name, int(input_ptr))
            state.context.set_tensor_address(self.output_name, int(output_ptr))
            state.shape = None  # the host path must rebind its own buffers next time
            self._execute(state.context, stream)
            self._mark_the_last(state, stream)

    def infer_tensor(self, batch: Any) -> Any:
        """A torch CUDA tensor [N, 3, H, W] in [0, 1] -> debanded on the GPU, on torch's current stream."""
        import torch

        if not batch.is_cuda or self.uint8_io:  # uint8 engines take H x W x 3 frames: the host path
            host = self.infer(batch.detach().float().cpu().numpy())
            return torch.from_numpy(host).to(batch.device, batch.dtype)
        if batch.device.index != self.device_index:  # its memory is out of this engine's reach
            raise BackendError(
                f"{self.path}: the tensor is on {batch.device}, the engine on {self.device}; "
                f"move it there first (.to('{self.device}'))"
            )
        dtype = torch.float16 if self.input_dtype == np.float16 else torch.float32
        stream = torch.cuda.current_stream(batch.device).cuda_stream
        outputs = []
        for frame in batch:
            x = frame[None].to(dtype).contiguous()
            if x.data_ptr() % 256:  # a frame of a batch in the engine's type is a view into it
                x = x.clone()
            y = torch.empty_like(x)
            self.infer_device(x.data_ptr(), y.data_ptr(), x.shape[-2], x.shape[-1], stream)
            outputs.append(y)  # x may be freed now: torch reuses its memory only after this stream's work
        return torch.cat(outputs).to(batch.dtype)

    def describe(self) -> dict[str, Any]:
        with self.on_device():  # the engine's GPU's memory, not the thread's current one's
            free, total = cuda_checked(self.cudart.cudaMemGetInfo(), "cudaMemGetInfo")
        driver = cuda_checked(self.cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")
        return {
            **super().describe(),
            "gpu": self.gpu,
            "compute_capability": self.compute,
            "driver_cuda_version": f"{driver // 1000}.{driver % 1000 // 10}",
            "tensorrt": f"{self.info.flavour} {self.info.version}",
            "io": self.sidecar["io"]["input"]["dtype"],
            "gpu_memory_used_mib": round((total - free) / 2**20),
            "cuda_graph": self.cuda_graph,
        }

    def synchronize(self) -> None:
        state = getattr(self._local, "state", None)
        if state is not None:  # its last inference, on whichever stream it was queued
            with self.on_device():  # a fresh thread's runtime would make a context on device 0
                cuda_checked(self.cudart.cudaEventSynchronize(state.done), "event synchronize")

    def close(self) -> None:
        with self._lock, self.on_device():  # a thread starting meanwhile frees ended threads' states too
            for state in list(self._states):
                self._release(state)
            self.engine = self._runtime = None  # the weights' GPU memory, after their contexts
        self._local = threading.local()
