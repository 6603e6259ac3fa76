"""ONNX to a TensorRT plan (data-centre TensorRT or TensorRT-RTX), cached, with a JSON sidecar.

The graph's own dtypes decide precision (strongly typed networks): an FP16 plan comes from an
FP16 ONNX graph, never from a builder flag. TensorRT-RTX builds for a list of target compute
capabilities, so engines for RTX GPUs build on machines without one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..plugins.trt_plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, register_python_plugin
from ..runtime.engine_sidecar import ENGINE_FORMAT, INPUT_NAME, OUTPUT_NAME, plan_digest, plan_sidecar
from ..runtime.files import atomic_write_bytes, atomic_write_text, file_digest, written_together
from ..runtime.processing import MAX_SIDE
from ..runtime.stop_signals import signals_deferred
from ..runtime.tensorrt import (
    TensorRT,
    error_logger,
    link_unversioned_rtx_core,
    load_plugin_library,
    load_tensorrt,
)

RTX_TARGETS = ("sm75", "sm80", "sm86", "sm89", "sm120", "sm121")


class EngineError(RuntimeError):
    """The engine cannot be built as asked; the message is one line for the user."""


@dataclass(frozen=True)
class Profile:
    """Optimisation profile over image sizes (height, width); batch is 1."""

    min: tuple[int, int] = (64, 64)
    opt: tuple[int, int] = (1080, 1920)
    max: tuple[int, int] = (2160, 3840)

    def check(self) -> None:
        for axis, name in ((0, "height"), (1, "width")):
            low, mid, high = self.min[axis], self.opt[axis], self.max[axis]
            if not 16 <= low <= mid <= high <= MAX_SIDE:
                raise EngineError(
                    f"impossible profile {name}s min {low} <= opt {mid} <= max {high} (and 16 <= min, "
                    f"max <= {MAX_SIDE}, the graph's own bound)"
                )

    def shapes(self, io: str) -> tuple[tuple[int, ...], ...]:
        if io == "uint8":
            return tuple((h, w, 3) for h, w in (self.min, self.opt, self.max))
        return tuple((1, 3, h, w) for h, w in (self.min, self.opt, self.max))


@dataclass
class EngineSettings:
    profile: Profile = field(default_factory=Profile)
    targets: tuple[str, ...] = ()  # TensorRT-RTX compute capabilities, e.g. ("sm89", "sm120")
    optimization_level: int = 3
    workspace_mb: int | None = None
    timing_cache: Path | None = None  # data-centre TensorRT; None: one per GPU in cache_dir, if given
    plugin_library: Path | None = None  # the C++ plugin; the Python plugin otherwise
    serialize_plugin: bool = False  # embed plugin_library into the plan
    cache_dir: Path | None = None


def _target_enum(trt: Any, target: str) -> Any:
    if target not in RTX_TARGETS:
        raise EngineError(f"unknown target {target!r}: TensorRT-RTX builds for {', '.join(RTX_TARGETS)}")
    return getattr(trt.ComputeCapability, target.upper())


def cache_key(
    onnx_sha256: str, settings: EngineSettings, trt: TensorRT, io: str, gpu: str | None = None
) -> str:
    """Everything that makes a plan invalid: graph, shapes, I/O, TensorRT build, targets (or, for
    data-centre TensorRT, the `gpu` it builds for: a cache in a home folder shared across a
    cluster would otherwise hand an A100's plan to an H100), plugin."""
    plugin = file_digest(settings.plugin_library) if settings.plugin_library else f"python-{PLUGIN_VERSION}"
    parts = {
        "onnx": onnx_sha256,
        "profile": asdict(settings.profile),
        "io": io,
        "tensorrt": [trt.flavour, trt.version],
        "targets": list(settings.targets) or gpu or "current-gpu",
        "optimization_level": settings.optimization_level,
        "workspace_mb": settings.workspace_mb,
        "plugin": plugin,
        "serialize_plugin": settings.serialize_plugin,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _register_plugin(trt: Any, settings: EngineSettings) -> str:
    """The plugin the parser will meet: the Python one, or --plugin-library loaded into the registry."""
    if settings.plugin_library is None:
        try:
            register_python_plugin(trt)
        except RuntimeError as exc:
            raise EngineError(str(exc)) from None
        return "python"
    library = Path(settings.plugin_library)
    problem = load_plugin_library(trt, library)
    if problem is not None:
        raise EngineError(f"{library}: {problem}")
    return str(library)


def _check_kernels() -> None:
    """The Python plugin's CUDA kernels, which data-centre TensorRT runs while it builds; without
    them the build failed after the export, with only "could not build an engine"."""
    from ..plugins.kernels import KernelLibraryError, load_kernels

    try:
        load_kernels()
    except KernelLibraryError as exc:
        raise EngineError(f"the Python plugin cannot build an engine here: {exc}") from None


def _parse(trt: Any, builder: Any, onnx_path: Path, graph: bytes, logger: Any) -> Any:
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # TensorRT 10; TensorRT-RTX is always strongly typed
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(graph, str(onnx_path)):  # the path: where weights stored beside it are
        errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    return network


def preflight(settings: EngineSettings, graph: str) -> TensorRT:
    """Every check that needs no ONNX file, so bad settings fail before a slow export."""
    settings.profile.check()
    library = settings.plugin_library
    if library is not None and not Path(library).is_file():
        raise EngineError(
            f"{library}: plugin library not found; build it with cmake (see plugins/tensorrt/README.md) "
            "or leave --plugin-library out to use the Python plugin"
        )
    if settings.serialize_plugin and library is None:
        raise EngineError("--serialize-plugin needs --plugin-library: only a C++ plugin can live in a plan")
    info = load_tensorrt()
    if library is not None:  # that it loads, too: the export before the build takes minutes
        _register_plugin(info.module, settings)
    if settings.targets and not info.is_rtx:
        raise EngineError(
            "--target is for TensorRT-RTX; data-centre TensorRT, loaded here, builds for the GPU it runs on "
            "(set BDINN_TENSORRT=tensorrt-rtx where both are installed)"
        )
    if graph == "plugin" and info.is_rtx:
        link_unversioned_rtx_core(required=True)  # else the parser aborts the process at a plugin node
    if graph == "plugin" and not info.is_rtx and library is None:
        _check_kernels()  # data-centre TensorRT runs the plugin while it times tactics
    if graph == "deformconv" and info.is_rtx:
        raise EngineError(
            f"TensorRT-RTX {info.version}'s ONNX parser has no DeformConv importer: build the deformconv "
            "graph with data-centre TensorRT, or use --graph plugin or gridsample"
        )
    return info


def build_engine(
    onnx_path: Path, plan_path: Path, settings: EngineSettings, io: str, meta: dict, *, replace: bool = True
) -> dict:
    """Build (or take from the cache) the plan for onnx_path; write plan and sidecar atomically.

    `meta` (model config, checkpoint hash, graph, precision) goes into the sidecar. Returns the
    sidecar's content, with build timing and whether the cache was used. Without `replace`, a
    plan or sidecar that another job wrote meanwhile is kept and this build is an OutputError.
    A build stopped or failed after its plan was written takes back what it wrote: no plan stands
    beside another's sidecar, or without one.
    """
    info = preflight(settings, meta.get("graph", "plugin"))
    trt = info.module
    gpu = None if info.is_rtx else building_gpu()
    # Read once: the plan, its cache key and its sidecar are of one graph, even where another forced
    # export replaces the file during the build (the sidecar named the other graph).
    graph = onnx_path.read_bytes()
    onnx_sha256 = hashlib.sha256(graph).hexdigest()
    key = cache_key(onnx_sha256, settings, info, io, gpu)
    cache_dir = Path(settings.cache_dir) if settings.cache_dir else None
    cached = cache_dir / f"{key}.plan" if cache_dir else None
    started = time.perf_counter()
    plugin = _register_plugin(trt, settings)
    plan = _from_cache(cached) if cached is not None else None
    from_cache = plan is not None
    if plan is None:
        timing = settings.timing_cache
        if timing is None and cache_dir is not None and gpu is not None:  # tactic timings are the GPU's
            timing = cache_dir / f"timing-{re.sub(r'[^A-Za-z0-9.]+', '-', gpu).strip('-')}.cache"
        settings = dataclasses.replace(settings, timing_cache=timing)
        plan = _build(info, onnx_path, graph, settings, io, plan_path)
    sidecar = {
        "format": ENGINE_FORMAT,
        **meta,
        "onnx_sha256": onnx_sha256,
        "plan_sha256": plan_digest(plan),
        "cache_key": key,
        "io": _io_description(io, meta.get("precision", "fp32")),
        "profile": asdict(settings.profile),
        "tensorrt": {"flavour": info.flavour, "version": info.version},
        "targets": list(settings.targets),
        "plugin": {"name": PLUGIN_NAME, "version": PLUGIN_VERSION, "namespace": PLUGIN_NAMESPACE,
                   "implementation": plugin, "serialized_in_plan": settings.serialize_plugin},
    }  # fmt: skip
    # One step: a stop or a failed write puts the old pair back (the old plan was lost when its
    # sidecar could not be written, or when Ctrl-C came between the two); the cache is a bonus.
    with written_together(plan_path, plan_sidecar(plan_path)) as written:
        written.append(atomic_write_bytes(plan_path, plan, replace=replace))
        text = json.dumps(sidecar, indent=2) + "\n"
        written.append(atomic_write_text(plan_sidecar(plan_path), text, replace=replace))
        if cached is not None and not from_cache:
            _store(cached, plan)
    return {**sidecar, "build_seconds": time.perf_counter() - started, "from_cache": from_cache}


def building_gpu() -> str:
    """The GPU data-centre TensorRT builds for (the current CUDA device), by name and compute
    capability; "unknown GPU" where CUDA does not say (the build then fails on its own)."""
    from ..runtime.backends.base import BackendError
    from ..runtime.backends.tensorrt_backend import cuda_runtime, gpu_identity

    try:
        cudart = cuda_runtime()
        error, device = cudart.cudaGetDevice()
        if int(error) != 0:
            return "unknown GPU"
        return " ".join(gpu_identity(cudart, device))
    except BackendError:
        return "unknown GPU"


def _from_cache(cached: Path) -> bytes | None:
    """The cached plan if it is whole: its SHA-256 was recorded beside it (a plan cut short or
    damaged on disk was copied out as it was, and only a GPU would have refused it)."""
    try:
        plan, recorded = cached.read_bytes(), cached.with_suffix(".sha256").read_text().strip()
    except OSError:
        return None
    if plan_digest(plan) == recorded:
        return plan
    warnings.warn(f"{cached}: damaged (its SHA-256 is not the one recorded); building again", stacklevel=3)
    return None


def _store(cached: Path, plan: bytes) -> None:
    """Keep the plan for the next export of the same graph and settings; a cache that cannot be
    written (a read-only home, a full disk) costs the next export a build, nothing more."""
    try:
        atomic_write_bytes(cached, plan)
        digest = plan_digest(plan)
        atomic_write_text(cached.with_suffix(".sha256"), digest + "\n")
    except (OSError, ValueError) as exc:  # ValueError: atomic_write's OutputError
        warnings.warn(f"the engine is built, but not cached: {exc}", stacklevel=3)


def _io_description(io: str, precision: str) -> dict:
    if io == "uint8":
        return {"input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "HWC RGB"},
                "output": {"name": OUTPUT_NAME, "dtype": "uint8", "layout": "HWC RGB"}}  # fmt: skip
    dtype = "float16" if precision == "fp16" else "float32"
    return {"input": {"name": INPUT_NAME, "dtype": dtype, "layout": "NCHW RGB [0,1]"},
            "output": {"name": OUTPUT_NAME, "dtype": dtype, "layout": "NCHW RGB [0,1]"}}  # fmt: skip


def _until_stopped(trt: Any, caught: list[int]) -> Any:
    """A progress monitor that cancels the build once a signal has been caught."""

    class UntilStopped(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            pass

        def phase_finish(self, phase_name: str) -> None:
            pass

        def step_complete(self, phase_name: str, step: int) -> bool:
            return not caught  # False cancels

    return UntilStopped()


def _configured(info: TensorRT, builder: Any, network: Any, settings: EngineSettings, io: str) -> Any:
    """The builder config: optimisation level, workspace, targets, plugins carried, the profile."""
    trt = info.module
    config = builder.create_builder_config()
    config.builder_optimization_level = settings.optimization_level
    if settings.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    if settings.targets:
        config.num_compute_capabilities = len(settings.targets)
        for index, target in enumerate(settings.targets):
            config.set_compute_capability(_target_enum(trt, target), index)
    if settings.serialize_plugin and settings.plugin_library:
        config.plugins_to_serialize = [str(settings.plugin_library)]
        if not info.is_rtx:  # data-centre TensorRT embeds libraries only so
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, *settings.profile.shapes(io))
    config.add_optimization_profile(profile)
    return config


def _build(
    info: TensorRT, onnx_path: Path, graph: bytes, settings: EngineSettings, io: str, plan_path: Path
) -> bytes:
    """The serialized plan; a failure is named by the plan it was to be (bdinn-export takes the
    ONNX file back)."""
    trt = info.module
    logger = error_logger(trt)
    builder = trt.Builder(logger)
    # Signals wait for the parse and the build: raised inside TensorRT's callbacks (its logger, the
    # plugin's creator and methods), TensorRT caught them and went on to the end.
    with signals_deferred() as caught:
        network = _parse(trt, builder, onnx_path, graph, logger)
        config = _configured(info, builder, network, settings, io)
        # TensorRT-RTX times no tactics at build time (it specialises on the GPU at run time), and
        # its timing-cache calls are deprecated no-ops: use the cache with data-centre TensorRT only.
        use_cache = settings.timing_cache is not None and not info.is_rtx
        cache = _load_timing_cache(config, settings.timing_cache) if use_cache else None
        if hasattr(trt, "IProgressMonitor"):  # TensorRT 10 and TensorRT-RTX: stop at the next step
            monitor = _until_stopped(trt, caught)  # held here for the build: the config may not
            config.progress_monitor = monitor
        plan = builder.build_serialized_network(network, config) if not caught else None
    if plan is None:
        said = "; ".join(dict.fromkeys(logger.errors)) or "it gave no reason"
        if settings.workspace_mb and ("OutOfMemory" in said or "workspace" in said):
            hint = " (raise --workspace, or leave it out)"
        elif "FP32 GEMM is not supported" in said:  # TensorRT-RTX on Turing (sm75)
            hint = " (build FP16 with --fp16, or leave sm75 out of --target)"
        else:
            hint = ""
        raise EngineError(f"{plan_path}: TensorRT could not build the engine: {said}{hint}")
    if cache is not None:
        data = bytes(cache.serialize())
        try:
            atomic_write_bytes(settings.timing_cache, data)
        except (OSError, ValueError) as exc:  # ValueError: atomic_write's OutputError
            warnings.warn(f"the engine is built, but its timing cache is not kept: {exc}", stacklevel=3)
    return bytes(plan)


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    """A persistent timing cache makes rebuilds of the same layers skip tactic timing."""
    data = Path(path).read_bytes() if path is not None and Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False) and data:  # another GPU's or TensorRT's
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache
