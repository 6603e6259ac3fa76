"""The one place that knows there are two TensorRT Python modules.

Data-centre TensorRT installs as `tensorrt`, TensorRT-RTX as `tensorrt_rtx`; their APIs agree on
everything bdinn uses. Everything else imports `load_tensorrt()` and is written once.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from .stop_signals import signals_deferred

FLAVOURS = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}


class TensorRTUnavailable(RuntimeError):
    """No usable TensorRT module; the message says what to install or fix."""


@dataclass(frozen=True)
class TensorRT:
    module: ModuleType
    flavour: str  # "tensorrt" or "tensorrt-rtx"
    version: str

    @property
    def is_rtx(self) -> bool:
        return self.flavour == "tensorrt-rtx"


def is_rtx_module(trt: ModuleType) -> bool:
    """Whether a TensorRT module in hand (not yet wrapped in a TensorRT) is TensorRT-RTX."""
    return trt.__name__ == FLAVOURS["tensorrt-rtx"]


def link_unversioned_rtx_core(required: bool = False) -> None:
    """TensorRT-RTX 1.7's ONNX parser dlopen()s "libtensorrt_rtx.so" when it meets a plugin node,
    but the wheel ships only libtensorrt_rtx.so.1, and the failed dlopen aborts the process.
    The parser's RPATH is its own folder, so a symlink there makes the lookup succeed. Tried by
    load_tensorrt and by the Python plugin's registration, the two ways to a plugin graph; only
    the parser needs it, so where the folder is read-only it is `required` (TensorRTUnavailable)
    by those about to parse a plugin graph, and running plans goes on without it."""
    libs = importlib.import_module("tensorrt_rtx_libs")
    folder = Path(next(iter(libs.__path__)))
    versioned = folder / "libtensorrt_rtx.so.1"
    link = folder / "libtensorrt_rtx.so"
    if link.exists() or not versioned.exists():
        return
    try:
        if link.is_symlink():  # dangling: left by an earlier install, and pip does not remove it
            link.unlink(missing_ok=True)
        os.symlink(versioned.name, link)
    except FileExistsError:
        pass  # another process made it first
    except OSError as exc:
        if not required:
            return
        raise TensorRTUnavailable(
            f"{link}: cannot create it ({exc.strerror}); TensorRT-RTX's ONNX parser needs it to load "
            f"plugins: run `ln -s libtensorrt_rtx.so.1 {link}` once as the owner of that folder"
        ) from None


def load_tensorrt(flavour: str | None = None) -> TensorRT:
    """The installed TensorRT: `flavour`, else $BDINN_TENSORRT, else tensorrt then tensorrt-rtx."""
    if flavour is None and (chosen := os.environ.get("BDINN_TENSORRT", "").strip()):  # empty: unset
        if chosen not in FLAVOURS:
            raise TensorRTUnavailable(
                f"BDINN_TENSORRT={chosen!r} names no TensorRT; set tensorrt or tensorrt-rtx"
            )
        flavour = chosen
    return _load(flavour)


@cache
def _load(wanted: str | None) -> TensorRT:
    if wanted is not None and wanted not in FLAVOURS:
        raise TensorRTUnavailable(f"unknown TensorRT flavour {wanted!r}; choose tensorrt or tensorrt-rtx")
    errors = []
    for name in [wanted] if wanted else list(FLAVOURS):
        try:
            with signals_deferred():  # pybind11 turns a signal's exception inside it into ImportError
                module = importlib.import_module(FLAVOURS[name])
        except (ImportError, OSError) as exc:
            errors.append(f"{FLAVOURS[name]}: {exc}")
            continue
        if name == "tensorrt-rtx":
            link_unversioned_rtx_core()
        return TensorRT(module, name, module.__version__)
    raise TensorRTUnavailable(
        "TensorRT is not installed or does not load (" + "; ".join(errors) + "): "
        "pip install '.[tensorrt]' on data-centre GPUs or '.[tensorrt-rtx]' on RTX GPUs, in bdinn's folder"
    )


_loaded_libraries: set[tuple[int, str]] = set()  # (TensorRT module, library): loaded once a process
_loading = threading.Lock()  # two models opened at once on two threads load a library once


def load_plugin_library(trt: ModuleType, library: Path) -> str | None:
    """Load a C++ plugin library into `trt`'s registry, once a process (a second load fails, so a
    model opened again after close() was refused); None when it is there, else why not."""
    key = (id(trt), str(Path(library).resolve()))
    with _loading:
        if key in _loaded_libraries:
            return None
        problem = _load_library(trt, library)
        if problem is None:
            _loaded_libraries.add(key)
        return problem


def _load_library(trt: ModuleType, library: Path) -> str | None:
    """One try at loading `library`; why it failed, or None."""
    from ..plugins.trt_plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

    registry = trt.get_plugin_registry()
    if registry.load_library(str(library)) is None:
        also = (
            f"; and a {PLUGIN_NAMESPACE}::{PLUGIN_NAME} plugin is registered in this process already (the "
            "Python plugin, or another library), which TensorRT refuses a second of: use one per process"
            if registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None
            else ""
        )
        return (
            "TensorRT could not load this plugin library (built for another TensorRT version, or not a "
            "TensorRT plugin: bdinn's is libbdinn_trt_plugin.so, not the kernels' libbdinn_bdconv.so)" + also
        )
    return None


def error_logger(trt: ModuleType) -> Any:
    """A TensorRT logger that keeps its errors (`.errors`) for a one-line message: trt.Logger
    printed them to standard output, into `bdinn-export --json`'s JSON and `bdinn-run -o -`'s
    video, and the error said only 'see its log'."""

    class ErrorLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: deque[str] = deque(maxlen=16)  # the latest: an engine logs for its whole life

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(" ".join(msg.split()))  # one line: TensorRT's span several

    return ErrorLogger()
