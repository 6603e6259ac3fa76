"""Checkpoint to ONNX: the plugin graph or a portable graph, float32 or float16, float or uint8 I/O.

Every graph computes the forward (debanding) direction only: banded image in, clean layer X out;
the banding layer B is dropped. Height and width are dynamic; padding to a multiple of 8 and
cropping back happen inside the graph, so any size from 16x16 up goes in as it is.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
from torch import nn

from ..runtime.engine_sidecar import INPUT_NAME, OUTPUT_NAME
from ..runtime.files import WrittenFile, atomic_write
from ..runtime.processing import MAX_SIDE, MIN_SIDE
from ..runtime.stop_signals import signals_deferred
from ..train.network import BDINN, banded_deform_conv_op
from ..train.ops import banded_deform_conv_gridsample
from .custom_ops import banded_as_deformconv, translation_table

# How each graph spells the banded convolution.
GRAPHS: dict[str, Callable[..., torch.Tensor]] = {
    "plugin": banded_deform_conv_op,  # one bdinn::BandedDeformConv2d node (TensorRT plugin)
    "gridsample": banded_deform_conv_gridsample,  # GridSample + MatMul
    "deformconv": banded_as_deformconv,  # ONNX DeformConv with offsets from the geometry
}
IO_MODES = ("float", "uint8")
OPSET = 19  # DeformConv needs 19; TensorRT 10 and ONNX Runtime read it


class DebandGraph(nn.Module):
    """What an exported graph computes.

    io="float": [1,3,H,W] in [0, 1] of the model's dtype in and out (one frame a call; H and W dynamic).
    io="uint8": [H,W,3] uint8 RGB in and out, so a pipeline moves 6 MB per 1080p frame, not 24,
    and does no conversion work on the CPU.
    """

    def __init__(self, model: BDINN, io: str) -> None:
        super().__init__()
        if io not in IO_MODES:
            raise ValueError(f"io must be one of {IO_MODES}, got {io!r}")
        self.model = model
        self.io = io

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.io == "float":
            return self.model(image)
        # Transposes on float tensors only: TensorRT's parser refuses a uint8 transpose.
        dtype = next(self.model.parameters()).dtype
        x = image.to(dtype).permute(2, 0, 1).unsqueeze(0) / 255
        out = self.model(x)
        # NaN (broken weights, an FP16 overflow) keeps the input's value, as Debander does for float
        # graphs: the host never sees these values, and a NaN cast to uint8 is 0.
        out = torch.where(torch.isnan(out), x, out).clamp(0, 1) * 255
        return torch.round(out.squeeze(0).permute(1, 2, 0)).to(torch.uint8)


@dataclass
class OnnxExport:
    """What an export produced, for bdinn-export's report (--json)."""

    written: WrittenFile  # the file, and what a failed step after it takes back (bdinn-export)
    graph: str
    fp16: bool
    io: str
    nodes_exported: int
    nodes_final: int
    seconds: float
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.written.path


def export_model(model: BDINN, graph: str = "plugin", fp16: bool = False, io: str = "float") -> DebandGraph:
    """A copy of the model wired for one graph and precision, ready for torch.onnx.export."""
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {sorted(GRAPHS)}, got {graph!r}")
    model = copy.deepcopy(model).eval()
    model.set_banded_impl(GRAPHS[graph])
    if fp16:
        model.half()  # sampling coordinates stay float32 inside the banded convolutions
    return DebandGraph(model, io)


def sample_input(io: str, fp16: bool) -> torch.Tensor:
    """A frame to trace with; its 64x96 size is not baked in (both sides are dynamic)."""
    if io == "uint8":
        return torch.randint(0, 256, (64, 96, 3), dtype=torch.uint8)
    return torch.rand(1, 3, 64, 96, dtype=torch.float16 if fp16 else torch.float32)


# Logs four lines on every export that torchvision (which bdinn does not use) is not installed.
_TORCHVISION_CHATTER = "torch.onnx._internal.exporter._registration"


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Errors only from one logger for the block."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def export_onnx(
    model: BDINN,
    path: Path,
    graph: str = "plugin",
    fp16: bool = False,
    io: str = "float",
    *,
    replace: bool = True,
    written_into: list[WrittenFile] | None = None,
) -> OnnxExport:
    """Export, simplify, check and save atomically; returns node counts and timing. Without
    `replace`, a file another job wrote at `path` meanwhile is kept and this is an OutputError.
    The file written is appended to `written_into` in the same step, signals held (a Ctrl-C
    between the write and its caller's record of it left the new graph beside the old plan)."""
    started = time.perf_counter()
    wrapper = export_model(model, graph, fp16, io)
    sample = sample_input(io, fp16)
    height = torch.export.Dim("height", min=MIN_SIDE, max=MAX_SIDE)
    width = torch.export.Dim("width", min=MIN_SIDE, max=MAX_SIDE)
    axes = {0: height, 1: width} if io == "uint8" else {2: height, 3: width}
    with torch.no_grad(), warnings.catch_warnings(), _quiet(_TORCHVISION_CHATTER):
        warnings.simplefilter("ignore")  # the exporter's own deprecation chatter
        program = torch.onnx.export(
            wrapper,
            (sample,),
            dynamo=True,
            dynamic_shapes={"image": axes},
            custom_translation_table=translation_table(),
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            verbose=False,
        )
    proto = program.model_proto
    exported = len(proto.graph.node)
    import onnxslim

    proto = onnxslim.slim(proto)
    proto = onnx.shape_inference.infer_shapes(proto)
    # The output has the input's size; the exporter writes it as the padding's arithmetic
    # ("Min(height, 2*(((height + ...") where readers and tools expect "height".
    for out_dim, in_dim in zip(
        proto.graph.output[0].type.tensor_type.shape.dim,
        proto.graph.input[0].type.tensor_type.shape.dim,
        strict=True,
    ):
        out_dim.CopyFrom(in_dim)
    # What the runtime cannot tell from the inputs: a uint8-I/O graph computes in fp32 or fp16.
    props = {"bdinn.precision": "fp16" if fp16 else "fp32", "bdinn.graph": graph}
    if model.config.coarse_pass:  # the runtime tiles such a graph on its 16-px grid
        props["bdinn.coarse_pass"] = "true"
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    with signals_deferred():
        written = atomic_write(path, lambda tmp: onnx.save(proto, tmp), replace=replace)
        if written_into is not None:
            written_into.append(written)
    counts = Counter(f"{n.domain + '::' if n.domain else ''}{n.op_type}" for n in proto.graph.node)
    return OnnxExport(
        written,
        graph,
        fp16,
        io,
        exported,
        len(proto.graph.node),
        time.perf_counter() - started,
        dict(counts),
    )
