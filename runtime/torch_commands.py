"""Console entry points of the commands that need PyTorch: bdinn-train and bdinn-export.

The runtime installs without torch (pictures and video through ONNX Runtime or TensorRT), and
these commands import it as they start, so without it they ended in a ModuleNotFoundError
traceback. Each entry point looks for torch first and says in one line what to install.
"""

from __future__ import annotations

import importlib
import sys

_MODULES = {
    "bdinn-train": "bdinn.train.cli",
    "bdinn-export": "bdinn.export.cli",
}
# What else a command imports as it starts: the `onnx` extra for export (torch's exporter needs
# onnxscript; the slimming pass imports ONNX Runtime). Without them, --help was a traceback.
_EXTRAS = {"bdinn-export": ("onnx", "onnxscript", "onnxslim", "onnxruntime")}


def _launch(command: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        print(f"{command}: error: needs PyTorch: pip install '.[train,onnx]' in bdinn's folder (on a "
              "CPU-only machine the CPU build of torch first: README, Quick start); bdinn-run, bdinn-eval "
              "and bdinn-bench work without it",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(1) from None
    for module in _EXTRAS.get(command, ()):
        try:
            importlib.import_module(module)
        except ImportError as exc:  # missing, or built against another numpy
            print(f"{command}: error: needs the onnx extra ({exc}): pip install '.[onnx]' in bdinn's folder",
                  file=sys.stderr)  # fmt: skip
            raise SystemExit(1) from None
    importlib.import_module(_MODULES[command]).main()


def train() -> None:
    _launch("bdinn-train")


def export() -> None:
    _launch("bdinn-export")
